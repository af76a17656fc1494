//! [`TimerStore`] and [`TimerClaims`] on Redis: each method is one script.

use async_trait::async_trait;
use fred::interfaces::HashesInterface;
use fred::types::Value;

use super::codec::{self, items, number, text, Spec};
use super::{scripts, RedisStore};
use crate::store::{
    Attempt, Cancel, Claimed, Created, ListPage, ListQuery, NewTimer, Next, StoreError, Timer,
    TimerClaims, TimerId, TimerState, TimerStore,
};

/// Most timers a filtered list page looks at, so a page never scans an app's whole index.
const LIST_SCAN: usize = 1000;

/// The idempotency hash's field for `key` of `app`: the app's length first, so no app
/// and key pair can spell another's.
fn idempotency_field(app: &str, key: &str) -> String {
    format!("{}:{app}{key}", app.len())
}

fn state_named(name: &str) -> Option<TimerState> {
    TimerState::ALL.into_iter().find(|s| s.name() == name)
}

fn required(timer: Option<Timer>) -> Result<Timer, StoreError> {
    timer.ok_or_else(|| StoreError::Backend("a script returned no timer".into()))
}

#[async_trait]
impl TimerStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create(&self, timer: NewTimer) -> Result<Created, StoreError> {
        let spec = Spec {
            request: timer.request,
            retry: timer.retry,
            idempotency_key: timer.idempotency_key,
            created_ms: timer.created_ms,
            interval: timer.interval,
        };
        let field = spec
            .idempotency_key
            .as_deref()
            .map_or_else(String::new, |key| idempotency_field(&timer.app, key));
        let spec = serde_json::to_string(&spec)
            .map_err(|e| StoreError::Backend(format!("encoding a timer: {e}")))?;
        let reply = self
            .eval(
                &scripts::CREATE,
                vec![timer.app, field, spec, timer.due_ms.to_string()],
            )
            .await?;
        let mut reply = items(reply).into_iter();
        let created = reply.next().as_ref().and_then(number) == Some(1);
        let timer = required(codec::timer(reply.next().unwrap_or(Value::Null))?)?;
        Ok(Created {
            timer,
            existing: !created,
        })
    }

    async fn get(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        self.check_open()?;
        let key = self.key(&format!("t:{id}"));
        let fields = self.pool.hgetall(key).await.map_err(super::backend)?;
        codec::timer_from(fields)
    }

    async fn list(&self, query: ListQuery) -> Result<ListPage, StoreError> {
        let limit = query.limit.max(1);
        let scan = match query.state {
            Some(_) => LIST_SCAN.max(limit),
            None => limit,
        };
        let reply = self
            .eval(
                &scripts::LIST,
                vec![
                    query.app,
                    query.after.unwrap_or(0).to_string(),
                    query.state.map_or("", TimerState::name).to_owned(),
                    limit.to_string(),
                    scan.to_string(),
                ],
            )
            .await?;
        let mut reply = items(reply).into_iter();
        let mut timers = Vec::new();
        for record in items(reply.next().unwrap_or(Value::Null)) {
            timers.extend(codec::timer(record)?);
        }
        let next = reply.next().as_ref().and_then(number);
        Ok(ListPage { timers, next })
    }

    async fn recover(&self) -> Result<Vec<(u64, TimerId)>, StoreError> {
        let reply = self
            .eval(&scripts::RECOVER, vec![self.owner.clone()])
            .await?;
        let flat = items(reply);
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [id, due] => Some((number(due)?, number(id)?)),
                _ => None,
            })
            .collect())
    }

    async fn begin_attempt(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        let until = self.lease_end(crate::scheduler::unix_ms());
        let reply = self
            .eval(
                &scripts::BEGIN,
                vec![id.to_string(), self.owner.clone(), until.to_string()],
            )
            .await?;
        let timer = codec::timer(reply)?;
        if timer.is_some() {
            self.held.take_timer(id);
        }
        Ok(timer)
    }

    async fn finish_attempt(
        &self,
        id: TimerId,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
    ) -> Result<Option<TimerState>, StoreError> {
        let last = serde_json::to_string(&attempt)
            .map_err(|e| StoreError::Backend(format!("encoding an attempt: {e}")))?;
        let (next, due) = match next {
            Next::Retry { due_ms } => ("retry", due_ms),
            Next::Succeeded => ("succeeded", 0),
            Next::Failed => ("failed", 0),
        };
        let reply = self
            .eval(
                &scripts::FINISH,
                vec![
                    id.to_string(),
                    self.owner.clone(),
                    last,
                    next.to_owned(),
                    due.to_string(),
                    now_ms.to_string(),
                ],
            )
            .await;
        // Held no more either way: a result that cannot be stored lets the lease run out,
        // and another node makes the call again.
        self.held.drop_timer(id);
        let reply = reply?;
        Ok(text(&reply).as_deref().and_then(state_named))
    }

    async fn cancel(&self, id: TimerId, now_ms: u64) -> Result<Cancel, StoreError> {
        let reply = self
            .eval(&scripts::CANCEL, vec![id.to_string(), now_ms.to_string()])
            .await?;
        let mut reply = items(reply).into_iter();
        let outcome = reply.next().as_ref().and_then(text);
        let was = reply.next().as_ref().and_then(text);
        let timer = codec::timer(reply.next().unwrap_or(Value::Null))?;
        Ok(match (outcome.as_deref(), timer) {
            (Some("cancelled"), Some(timer)) => Cancel::Cancelled {
                timer,
                was: was
                    .as_deref()
                    .and_then(state_named)
                    .unwrap_or(TimerState::Pending),
            },
            (Some(_), Some(timer)) => Cancel::Finished(timer),
            _ => Cancel::NotFound,
        })
    }

    async fn purge(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let reply = self
            .eval(
                &scripts::PURGE,
                vec![before_ms.to_string(), limit.to_string()],
            )
            .await?;
        Ok(number(&reply).unwrap_or(0) as usize)
    }

    async fn close(&self) -> Result<(), StoreError> {
        if self.check_open().is_err() {
            return Ok(());
        }
        let released = self.release().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        released
    }
}

#[async_trait]
impl TimerClaims for RedisStore {
    async fn claim_due(&self, now_ms: u64, limit: usize) -> Result<Claimed, StoreError> {
        let reply = self
            .eval(
                &scripts::CLAIM,
                vec![
                    self.owner.clone(),
                    now_ms.to_string(),
                    self.lease_end(now_ms).to_string(),
                    limit.max(1).to_string(),
                ],
            )
            .await?;
        let mut reply = items(reply).into_iter();
        let mut timers = Vec::new();
        for record in items(reply.next().unwrap_or(Value::Null)) {
            if let Some(timer) = codec::timer(record)? {
                self.held.take_timer(timer.id);
                timers.push(timer);
            }
        }
        Ok(Claimed {
            timers,
            next_due_ms: reply.next().as_ref().and_then(number),
            pending: reply.next().as_ref().and_then(number).unwrap_or(0),
        })
    }

    fn lease(&self) -> std::time::Duration {
        self.lease
    }

    async fn renew_leases(&self, now_ms: u64) -> Result<(), StoreError> {
        self.renew(now_ms).await
    }
}
