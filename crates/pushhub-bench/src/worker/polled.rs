//! Reading all of a worker's clients from one thread that polls for ready
//! sockets every millisecond, instead of sleeping until the kernel wakes it.
//!
//! Why: client and server share a kernel and two cores. A reader blocked in
//! `epoll_wait` is woken from inside the server's `write` on loopback, so the
//! server is charged for waking (and then being preempted by) the load
//! generator once per delivery — work a server with remote clients never does.
//! A reader that looks with a zero timeout and sleeps between looks is never
//! woken by a delivery: the kernel only marks the socket ready. The price is
//! that a frame is read up to one interval late, which the latency figures
//! include (see docs/benchmarks.md).

use std::io::{self, Cursor, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use crate::plan::Plan;
use crate::seq::SeqTracker;
use crate::worker::client::{ClientOutcome, Shared};
use crate::worker::connect::WsStream;

/// How long the reader sleeps when no socket had anything to read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Ready-socket events taken per look.
const EVENTS_PER_LOOK: usize = 1024;

/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 4096;

/// The reading thread of one worker and the way to hand it clients.
pub struct PolledReader {
    handoff: mpsc::Sender<(u64, TcpStream)>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<ClientOutcome>>,
}

impl PolledReader {
    /// Starts the reading thread; it accounts every frame in `shared` against `plan`.
    pub fn start(plan: Plan, shared: Arc<Shared>) -> Result<Self> {
        let poll = Poll::new().context("creating the reader's poll instance")?;
        let (handoff, arrivals) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("polled-reader".into())
            .spawn(move || read_until_stopped(poll, arrivals, &stopping, plan, &shared))
            .context("starting the reader thread")?;
        Ok(Self {
            handoff,
            stop,
            thread,
        })
    }

    /// A handle through which connecting tasks hand their clients over.
    pub fn handoff(&self) -> Handoff {
        Handoff(self.handoff.clone())
    }

    /// Stops reading and returns what every handed-over client saw. A reader that
    /// panicked is an error, not an empty tally that would pass for "nothing expected".
    pub fn finish(self) -> Result<Vec<ClientOutcome>> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow!("the reader thread panicked"))
    }
}

/// Hands connected clients to a [`PolledReader`].
#[derive(Clone)]
pub struct Handoff(mpsc::Sender<(u64, TcpStream)>);

impl Handoff {
    /// Hands over the client of user index `user`, whose welcome was already read.
    ///
    /// Nothing but the welcome may have arrived yet: bytes the WebSocket
    /// library buffered beyond it are not carried over. The scenarios publish
    /// only once every client is connected, so nothing is.
    pub fn add(&self, user: u64, ws: WsStream) -> Result<()> {
        let socket = ws.into_inner().into_std()?;
        self.0
            .send((user, TcpStream::from_std(socket)))
            .map_err(|_| anyhow!("the reader thread has ended"))
    }
}

/// One client as the reading thread holds it.
struct PolledClient {
    user: u64,
    socket: TcpStream,
    buf: Vec<u8>,
    seen: SeqTracker,
    disconnected: bool,
}

/// The thread body: look, read what is ready, sleep when nothing was.
fn read_until_stopped(
    mut poll: Poll,
    arrivals: mpsc::Receiver<(u64, TcpStream)>,
    stop: &AtomicBool,
    plan: Plan,
    shared: &Shared,
) -> Vec<ClientOutcome> {
    let mut clients: Vec<PolledClient> = Vec::new();
    let mut events = Events::with_capacity(EVENTS_PER_LOOK);
    let mut chunk = vec![0u8; READ_CHUNK];
    while !stop.load(Ordering::Acquire) {
        while let Ok((user, mut socket)) = arrivals.try_recv() {
            let token = Token(clients.len());
            let disconnected = poll
                .registry()
                .register(&mut socket, token, Interest::READABLE)
                .is_err();
            clients.push(PolledClient {
                user,
                socket,
                buf: Vec::new(),
                seen: SeqTracker::default(),
                disconnected,
            });
        }
        if poll.poll(&mut events, Some(Duration::ZERO)).is_err() || events.is_empty() {
            std::thread::sleep(POLL_INTERVAL);
            continue;
        }
        for event in events.iter() {
            if let Some(client) = clients.get_mut(event.token().0) {
                if !client.disconnected {
                    client.read_ready(&mut chunk, &plan, shared);
                    if client.disconnected {
                        let _ = poll.registry().deregister(&mut client.socket);
                    }
                }
            }
        }
    }
    clients
        .into_iter()
        .map(|c| ClientOutcome {
            tally: c.seen.tally(c.user, &plan),
            disconnected: c.disconnected,
        })
        .collect()
}

impl PolledClient {
    /// Reads until the socket has nothing more and accounts every complete frame.
    ///
    /// Readiness is edge-triggered, so the socket must be emptied; a read that
    /// fills less than `chunk` already did (every later arrival raises a new
    /// edge), which saves the `read` that would only return `WouldBlock`.
    /// Frames are parsed straight out of `chunk`; only a frame cut in two by
    /// the read is copied, to wait for its rest.
    fn read_ready(&mut self, chunk: &mut [u8], plan: &Plan, shared: &Shared) {
        loop {
            let n = match self.socket.read(chunk) {
                Ok(0) => {
                    self.disconnected = true;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.disconnected = true;
                    return;
                }
            };
            let taken = if self.buf.is_empty() {
                take_frames(
                    &chunk[..n],
                    self.user,
                    &mut self.seen,
                    &mut self.socket,
                    plan,
                    shared,
                )
                .map(|used| self.buf.extend_from_slice(&chunk[used..n]))
            } else {
                self.buf.extend_from_slice(&chunk[..n]);
                take_frames(
                    &self.buf,
                    self.user,
                    &mut self.seen,
                    &mut self.socket,
                    plan,
                    shared,
                )
                .map(|used| drop(self.buf.drain(..used)))
            };
            if taken.is_err() {
                self.disconnected = true;
                return;
            }
            if n < chunk.len() {
                return;
            }
        }
    }
}

/// Accounts every complete frame at the front of `data` for user index `user`,
/// answering pings on `socket`; returns how many bytes that used. An error
/// means the connection is over (a close frame or a protocol violation).
fn take_frames(
    data: &[u8],
    user: u64,
    seen: &mut SeqTracker,
    socket: &mut TcpStream,
    plan: &Plan,
    shared: &Shared,
) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let mut cursor = Cursor::new(&data[consumed..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(consumed),
            Err(e) => return Err(io::Error::new(ErrorKind::InvalidData, e)),
        };
        let start = consumed + cursor.position() as usize;
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|len| start.checked_add(len))
        else {
            return Err(ErrorKind::InvalidData.into());
        };
        if data.len() < end {
            return Ok(consumed);
        }
        consumed = end;
        let payload = &data[start..end];
        match header.opcode {
            OpCode::Data(Data::Text) => {
                let now = crate::clock::unix_micros();
                match std::str::from_utf8(payload) {
                    Ok(text) => shared.account(text, now, user, plan, seen),
                    Err(_) => shared.count_malformed(),
                }
            }
            OpCode::Control(Control::Ping) => {
                // A pong that does not fit the socket buffer is simply not sent:
                // the next ping gets another chance.
                let _ = socket.write(&masked_pong(payload));
            }
            OpCode::Control(Control::Close) => return Err(ErrorKind::ConnectionAborted.into()),
            _ => {}
        }
    }
}

/// A client-to-server pong answering a ping with `payload` (at most 125 bytes
/// per RFC 6455, so the length fits the first length byte). Clients must mask;
/// an all-zero mask is valid and leaves the payload as it is.
fn masked_pong(payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut frame = Vec::with_capacity(6 + len);
    frame.push(0x8A);
    frame.push(0x80 | len as u8);
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&payload[..len]);
    frame
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;
    use crate::plan::Mode;

    /// An unmasked server text frame (payload under 126 bytes).
    fn text_frame(text: &str) -> Vec<u8> {
        let mut frame = vec![0x81, text.len() as u8];
        frame.extend_from_slice(text.as_bytes());
        frame
    }

    fn probe(seq: u64) -> Vec<u8> {
        text_frame(&format!(r#"{{"type":"msg","data":{{"seq":{seq},"t":1}}}}"#))
    }

    /// Reads whatever arrives until `done` holds, for at most five seconds.
    fn read_until(
        client: &mut PolledClient,
        shared: &Shared,
        done: impl Fn(&PolledClient) -> bool,
    ) {
        let plan = Plan {
            mode: Mode::Broadcast,
            conns: 1,
            messages: 2,
        };
        let mut chunk = vec![0u8; READ_CHUNK];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(client) {
            assert!(Instant::now() < deadline, "nothing arrived in 5 s");
            client.read_ready(&mut chunk, &plan, shared);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn frames_cut_across_reads_are_joined_pings_answered_and_close_ends_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        socket.set_nonblocking(true).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let shared = Shared::new();
        shared.remaining.store(2, Ordering::SeqCst);
        let mut client = PolledClient {
            user: 0,
            socket: TcpStream::from_std(socket),
            buf: Vec::new(),
            seen: SeqTracker::default(),
            disconnected: false,
        };

        let first = probe(0);
        server.write_all(&first[..5]).unwrap();
        read_until(&mut client, &shared, |c| c.buf.len() == 5);
        assert_eq!(shared.remaining.load(Ordering::SeqCst), 2);

        let mut rest = first[5..].to_vec();
        rest.extend(probe(1));
        rest.extend([0x89, 2, b'h', b'i']);
        server.write_all(&rest).unwrap();
        read_until(&mut client, &shared, |c| c.buf.is_empty());
        assert_eq!(shared.remaining.load(Ordering::SeqCst), 0);
        assert_eq!(shared.malformed.load(Ordering::SeqCst), 0);
        let mut pong = [0u8; 8];
        server.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x8A, 0x82, 0, 0, 0, 0, b'h', b'i']);

        server.write_all(&[0x88, 0]).unwrap();
        read_until(&mut client, &shared, |c| c.disconnected);
    }

    #[test]
    fn pong_is_masked_and_echoes_the_payload() {
        assert_eq!(masked_pong(b"hi"), vec![0x8A, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }
}
