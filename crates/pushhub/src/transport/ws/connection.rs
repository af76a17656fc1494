//! One WebSocket connection: RFC 6455 framing as a [`Wire`] for the shared stream task
//! (reading, writing, heartbeat and close live in [`crate::transport::stream`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{self, FrameReader, Inbound, Step};
use crate::disconnect::Disconnect;
use crate::stats::Stats;
use crate::transport::stream::{self, Next, StreamSettings, Wire};
use crate::transport::{ClientHandler, Link};

/// Server-wide settings of WebSocket connections (those of every stream connection).
pub type WsSettings = StreamSettings;

/// Run one connection until it ends. `leftover` is what the HTTP layer had already read
/// past the handshake.
pub async fn run<S, H>(
    mut stream: S,
    leftover: Bytes,
    handler: H,
    link: Link,
    settings: WsSettings,
    stats: Arc<Stats>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: ClientHandler,
{
    // Copy, then release: `leftover` may be a view into the HTTP layer's whole read buffer.
    let buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let wire = WsWire(FrameReader::new());
    stream::run(&mut stream, buf, wire, handler, link, settings, stats).await;
}

/// WebSocket frames in, control frames answered, close frames both ways.
struct WsWire(FrameReader);

impl Wire for WsWire {
    fn next(&mut self, buf: &mut BytesMut, max_message: usize) -> Result<Next, Disconnect> {
        Ok(match self.0.next(buf, max_message)? {
            Step::NeedMore(want) => Next::NeedMore(want),
            Step::Fragment => Next::Heard,
            Step::Frame(Inbound::Text(text)) => Next::Text(text),
            Step::Frame(Inbound::Binary(data)) => Next::Binary(data),
            Step::Frame(Inbound::Ping(payload)) => Next::Reply(codec::pong_frame(&payload)),
            Step::Frame(Inbound::Pong) => Next::Heard,
            Step::Frame(Inbound::Close(code)) => Next::Close(match code {
                None | Some(1000) | Some(1001) => Disconnect::NORMAL,
                Some(code) => Disconnect::new(code, "closed by client"),
            }),
        })
    }

    fn in_message(&self) -> bool {
        self.0.in_message()
    }

    fn ping(&self) -> Bytes {
        codec::ping_frame()
    }

    /// A close frame with the code and reason; nothing when the client is already gone.
    fn goodbye(&self, reason: &Disconnect) -> Option<Bytes> {
        (reason.code != Disconnect::ABNORMAL.code)
            .then(|| codec::close_frame(reason.code, &reason.reason))
    }

    fn end_of_stream(&self) -> Disconnect {
        Disconnect::ABNORMAL.with_reason("client closed the socket without a close frame")
    }
}
