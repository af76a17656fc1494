//! A plain TCP socket shared by its connection's task and the hub's fan-outs: the task
//! reads and writes through [`SharedTcp`] as through any stream, and fan-outs write frames
//! into it directly (see [`crate::hub::outbox`]) when the task is not writing. TLS streams
//! keep their session state in the task and are not shared.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::hub::{DirectWrite, Outbox};
use crate::stats::Stats;

/// The connection task's side of a shared socket.
pub struct SharedTcp {
    read: OwnedReadHalf,
    write: Arc<OwnedWriteHalf>,
}

impl SharedTcp {
    /// Share `stream` with fan-outs writing to `outbox`, counting their bytes in `stats`.
    pub fn attach(stream: TcpStream, outbox: &Outbox, stats: Arc<Stats>) -> Self {
        let (read, write) = stream.into_split();
        let write = Arc::new(write);
        outbox.attach_direct(Arc::new(FanOutWriter {
            socket: write.clone(),
            stats,
        }));
        Self { read, write }
    }

    fn socket(&self) -> &TcpStream {
        (*self.write).as_ref()
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = self.socket();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            match socket.try_write_vectored(bufs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-close now: a fan-out's handle on the socket must not keep it open.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.socket()).shutdown(Shutdown::Write))
    }
}

/// The fan-outs' side of a shared socket.
struct FanOutWriter {
    socket: Arc<OwnedWriteHalf>,
    stats: Arc<Stats>,
}

impl DirectWrite for FanOutWriter {
    fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> io::Result<usize> {
        let socket: &TcpStream = (*self.socket).as_ref();
        let written = socket.try_write_vectored(frames)?;
        self.stats.bytes_out(written);
        Ok(written)
    }
}
