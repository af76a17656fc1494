//! Engine round trips, timed: decorators that wrap the broker and presence the server
//! runs on and record each call's latency and failures. Engine calls happen once per
//! publish or connect, never once per recipient, so timing them costs the fan-out nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::EngineLabels;
use crate::engine::{
    BatchPublish, Broker, BrokerEvents, BrokerStats, Engine, EngineError, Entered, HistoryPolicy,
    HistoryRequest, Left, Member, Message, Presence, PresenceEvents, Recovery, RemoteConn,
    StreamPosition,
};

/// `engine` with its broker and presence timed.
pub fn engine(engine: Engine) -> Engine {
    Engine {
        broker: Arc::new(TimedBroker(engine.broker)),
        presence: Arc::new(TimedPresence(engine.presence)),
        nodes: engine.nodes,
        idempotency: engine.idempotency,
    }
}

/// Run `call`, recording how long it took and whether it failed.
async fn timed<T, E>(
    part: &'static str,
    engine: &'static str,
    op: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    let metrics = super::global();
    let labels = EngineLabels { part, engine, op };
    metrics
        .engine
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics.engine_errors.get_or_create(&labels).inc();
    }
    result
}

struct TimedBroker(Arc<dyn Broker>);

#[async_trait]
impl Broker for TimedBroker {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn register_events(&self, events: Arc<dyn BrokerEvents>) {
        self.0.register_events(events)
    }

    async fn subscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        timed(
            "broker",
            self.kind(),
            "subscribe",
            self.0.subscribe(channels),
        )
        .await
    }

    async fn unsubscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        timed(
            "broker",
            self.kind(),
            "unsubscribe",
            self.0.unsubscribe(channels),
        )
        .await
    }

    async fn publish(
        &self,
        channels: &[Arc<str>],
        message: &Arc<Message>,
        history: HistoryPolicy,
    ) -> Result<Vec<StreamPosition>, EngineError> {
        let call = self.0.publish(channels, message, history);
        timed("broker", self.kind(), "publish", call).await
    }

    async fn publish_batch(
        &self,
        batch: &[BatchPublish],
    ) -> Vec<Result<Vec<StreamPosition>, EngineError>> {
        // A batch with any failed publish counts as one failure.
        let call = async {
            let results = self.0.publish_batch(batch).await;
            if results.iter().any(Result::is_err) {
                Err(results)
            } else {
                Ok(results)
            }
        };
        timed("broker", self.kind(), "publish_batch", call)
            .await
            .unwrap_or_else(|results| results)
    }

    async fn history(&self, requests: &[HistoryRequest]) -> Result<Vec<Recovery>, EngineError> {
        timed("broker", self.kind(), "history", self.0.history(requests)).await
    }

    fn stats(&self) -> BrokerStats {
        self.0.stats()
    }

    async fn health(&self) -> Result<(), String> {
        self.0.health().await
    }
}

struct TimedPresence(Arc<dyn Presence>);

#[async_trait]
impl Presence for TimedPresence {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn spans_nodes(&self) -> bool {
        self.0.spans_nodes()
    }

    async fn join(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
    ) -> Result<(), EngineError> {
        let call = self.0.join(scope, user, conn, since_ms);
        timed("presence", self.kind(), "join", call).await
    }

    async fn leave(&self, scope: &str, user: &str, conn: u64) -> Result<(), EngineError> {
        timed(
            "presence",
            self.kind(),
            "leave",
            self.0.leave(scope, user, conn),
        )
        .await
    }

    async fn users(&self, scope: &str) -> Result<Vec<(String, usize)>, EngineError> {
        timed("presence", self.kind(), "users", self.0.users(scope)).await
    }

    async fn user_count(&self, scope: &str) -> Result<usize, EngineError> {
        timed(
            "presence",
            self.kind(),
            "user_count",
            self.0.user_count(scope),
        )
        .await
    }

    async fn connections(&self, scope: &str, user: &str) -> Result<usize, EngineError> {
        let call = self.0.connections(scope, user);
        timed("presence", self.kind(), "connections", call).await
    }

    async fn total(&self, scope: &str) -> Result<usize, EngineError> {
        timed("presence", self.kind(), "total", self.0.total(scope)).await
    }

    async fn nodes(&self) -> Result<Vec<String>, EngineError> {
        timed("presence", self.kind(), "nodes", self.0.nodes()).await
    }

    async fn elsewhere(&self, scope: &str, user: &str) -> Result<Vec<RemoteConn>, EngineError> {
        let call = self.0.elsewhere(scope, user);
        timed("presence", self.kind(), "elsewhere", call).await
    }

    async fn online_elsewhere(&self, scope: &str, conn: &str) -> Result<bool, EngineError> {
        let call = self.0.online_elsewhere(scope, conn);
        timed("presence", self.kind(), "online_elsewhere", call).await
    }

    async fn enter(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
        info: Option<&str>,
    ) -> Result<Entered, EngineError> {
        let call = self.0.enter(scope, user, conn, since_ms, info);
        timed("presence", self.kind(), "enter", call).await
    }

    async fn exit(&self, scope: &str, user: &str, conn: u64) -> Result<Left, EngineError> {
        let call = self.0.exit(scope, user, conn);
        timed("presence", self.kind(), "exit", call).await
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, EngineError> {
        timed("presence", self.kind(), "members", self.0.members(scope)).await
    }

    async fn scopes(&self, prefix: &str) -> Result<Vec<(String, usize)>, EngineError> {
        timed("presence", self.kind(), "scopes", self.0.scopes(prefix)).await
    }

    fn register_events(&self, events: Arc<dyn PresenceEvents>) {
        self.0.register_events(events);
    }
}
