//! One raw TCP connection: a [`Framing`] as a [`Wire`] for the shared stream task.
//!
//! TCP has no control frames, so the dialect the listener carries supplies what WebSocket
//! does with them (see [`Control`]): the heartbeat is one of its frames, and so is the
//! goodbye, which names the close reason and its code before the socket is shut down.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::framing::{Decoded, Decoder, Framing};
use super::Control;
use crate::disconnect::Disconnect;
use crate::hub::Outbox;
use crate::stats::Stats;
use crate::transport::stream::{self, Next, StreamSettings, Wire};
use crate::transport::{ClientHandler, Framer, Link, Peer};

/// What the connections of one listener share: framing, and the dialect's frames.
#[derive(Clone)]
pub struct Shared {
    /// The listener's framing.
    pub framing: Framing,
    /// The listener's framer, made once for its connections and their renderers.
    pub framer: &'static dyn Framer,
    /// The heartbeat, framed once for every connection.
    pub ping: Bytes,
    /// The dialect's goodbye.
    pub control: Control,
}

/// Run one accepted connection until it ends. `socket` is the TCP socket itself or TLS
/// over it; each kind is its own instance of the task (nothing boxed per write).
pub async fn run<S, H>(
    mut socket: S,
    handler: H,
    outbox: Arc<Outbox>,
    peer: Peer,
    shared: Shared,
    settings: StreamSettings,
    stats: Arc<Stats>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: ClientHandler,
{
    let link = Link::new(outbox, shared.framer, peer);
    let wire = TcpWire {
        decoder: Decoder::new(shared.framing),
        framer: shared.framer,
        ping: shared.ping,
        control: shared.control,
    };
    stream::run(
        &mut socket,
        BytesMut::new(),
        wire,
        handler,
        link,
        settings,
        stats,
    )
    .await;
}

/// Frames of one framing, carrying UTF-8 text.
struct TcpWire {
    decoder: Decoder,
    framer: &'static dyn Framer,
    /// The heartbeat, shared by the listener's connections.
    ping: Bytes,
    control: Control,
}

impl Wire for TcpWire {
    fn next(&mut self, buf: &mut BytesMut, max_message: usize) -> Result<Next, Disconnect> {
        match self.decoder.next(buf, max_message)? {
            Decoded::NeedMore(want) => Ok(Next::NeedMore(want)),
            Decoded::Payload(payload) if payload.is_empty() => Ok(Next::Heard),
            Decoded::Payload(payload) => match std::str::from_utf8(&payload) {
                Ok(text) => Ok(Next::Text(text.to_owned())),
                Err(_) => Err(Disconnect::INVALID_UTF8.with_reason("frame is not valid UTF-8")),
            },
        }
    }

    fn ping(&self) -> Bytes {
        self.ping.clone()
    }

    /// The dialect's closing frame, unless the client is gone or closed the socket itself
    /// (it has said it is done; writing after its close would only earn a reset).
    fn goodbye(&self, reason: &Disconnect) -> Option<Bytes> {
        if reason.code == Disconnect::ABNORMAL.code || reason.code == Disconnect::NORMAL.code {
            return None;
        }
        Some(self.framer.frame_text(&(self.control.goodbye)(reason)))
    }

    fn end_of_stream(&self) -> Disconnect {
        Disconnect::NORMAL.with_reason("client closed the connection")
    }
}
