//! A connection's RPC calls, for every dialect that carries them (native `rpc` frames,
//! MSwoole's `method` frames): each runs in a task of its own so the connection keeps
//! reading while the backend thinks, at most so many per connection, and all are
//! abandoned when the connection closes (their answers would have nowhere to go). Close
//! notes an answer carries are applied to the connection before its reply is queued.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::backend::rpc::{RpcCall, RpcError};
use crate::backend::rpc_answer::{RpcAnswer, RESERVED_MEMBER};
use crate::hub::Session;
use crate::transport::LinkSender;

/// The calls of one connection.
#[derive(Default)]
pub struct Calls {
    in_flight: Arc<AtomicUsize>,
    abandon: CancellationToken,
}

/// Counts one call in flight until dropped, however the call ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Calls {
    /// Call `method` with `data` on `session`'s app backend for its user (with what its
    /// credential said about it), and queue `answer(result)` to `sender` when it returns.
    /// Refused at once (the error is returned, nothing is queued) when the app takes no
    /// calls or the connection has its limit in flight.
    pub fn start(
        &self,
        session: &Session,
        method: String,
        data: Box<RawValue>,
        sender: LinkSender,
        answer: impl FnOnce(Result<Box<RawValue>, RpcError>) -> Vec<u8> + Send + 'static,
    ) -> Result<(), RpcError> {
        let proxy = session.app().rpc.clone().ok_or(RpcError::NotEnabled)?;
        let limit = proxy.settings().max_in_flight_per_connection;
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= limit {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(RpcError::Busy(limit));
        }
        let in_flight = InFlight(self.in_flight.clone());
        let abandon = self.abandon.clone();
        let (hub, app, user, conn, info) = (
            session.hub().clone(),
            session.app().clone(),
            session.presence_id(),
            session.conn(),
            session.grant().info.clone(),
        );
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let call = RpcCall {
                app: &app.name,
                user: &user,
                conn: &conn,
                info: info.as_deref(),
                method: &method,
                data: &data,
            };
            let result = tokio::select! {
                result = proxy.call(&call) => result,
                _ = abandon.cancelled() => return,
            };
            let reply = match result {
                Ok(RpcAnswer {
                    reply,
                    close_notes: Some(change),
                }) => match hub.change_close_notes(&app.name, &conn, &change).await {
                    Ok(()) => Ok(reply),
                    Err(error) => Err(RpcError::BadAnswer(format!(
                        "{RESERVED_MEMBER}.close_notes: {error}"
                    ))),
                },
                Ok(RpcAnswer { reply, .. }) => Ok(reply),
                Err(error) => Err(error),
            };
            sender.send_text(&answer(reply));
        });
        Ok(())
    }

    /// Abandon every call in flight: the connection closed.
    pub fn abandon(&self) {
        self.abandon.cancel();
    }
}
