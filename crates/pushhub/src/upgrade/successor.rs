//! The new process's half of an upgrade: the listeners it inherited, and the channel on
//! which it reports ready (or why not) and learns that the old process has released the
//! data directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::{Role, UpgradeError, ENV, FAILED, READY, RELEASED};

/// What a process started by an upgrade inherited from its predecessor.
pub struct Inherited {
    listeners: Vec<(Role, TcpListener)>,
    /// The channel to the predecessor.
    pub channel: Channel,
}

/// The predecessor, at the other end of the inherited socket pair.
pub struct Channel {
    stream: BufReader<UnixStream>,
}

/// How the wait for the predecessor ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// It said it closed its stores.
    Said,
    /// It exited (or closed the channel) without saying so: its locks went with it.
    Gone,
}

impl Inherited {
    /// The sockets and channel named by [`ENV`], when this process was started by an
    /// upgrade; `None` otherwise.
    pub fn from_env() -> Result<Option<Self>, UpgradeError> {
        let Some(spec) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let spec = spec
            .into_string()
            .map_err(|_| UpgradeError::Environment("not UTF-8".into()))?;
        Self::parse(&spec).map(Some)
    }

    fn parse(spec: &str) -> Result<Self, UpgradeError> {
        let mut listeners = Vec::new();
        let mut channel = None;
        for entry in spec.split(',') {
            let bad = || UpgradeError::Environment(format!("{entry:?} is not NAME=FD"));
            let (name, fd) = entry.split_once('=').ok_or_else(bad)?;
            let fd: RawFd = fd.parse().ok().filter(|fd| *fd > 2).ok_or_else(bad)?;
            // SAFETY: the predecessor cleared close-on-exec on exactly these descriptors
            // for this process and names each once; nothing else here owns them.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            if name == "channel" {
                channel = Some(UnixStream::from(owned));
                continue;
            }
            let role = Role::parse(name)
                .ok_or_else(|| UpgradeError::Environment(format!("unknown listener {name:?}")))?;
            let listener = TcpListener::from(owned);
            listener.local_addr().map_err(|e| {
                UpgradeError::Environment(format!("descriptor {fd} ({role}) is not a socket: {e}"))
            })?;
            listeners.push((role, listener));
        }
        let stream = channel.ok_or_else(|| UpgradeError::Environment("no channel".into()))?;
        Ok(Self {
            listeners,
            channel: Channel {
                stream: BufReader::new(stream),
            },
        })
    }

    /// Tell the predecessor this process is ready (it stops accepting then), and wait
    /// until it has closed the data directory's stores (or is gone). Returns when `ready`
    /// was said: the moment new connections started waiting in the kernel's queue.
    pub async fn take_over(self) -> std::io::Result<std::time::Instant> {
        let mut channel = self.channel;
        channel.ready()?;
        let ready_at = std::time::Instant::now();
        tracing::info!(
            "upgrade: ready; waiting for the old process to drain and release the data directory"
        );
        let released = tokio::task::spawn_blocking(move || channel.wait_released())
            .await
            .map_err(std::io::Error::other)?;
        tracing::info!(
            how = ?released,
            after_ms = ready_at.elapsed().as_millis() as u64,
            "upgrade: the old process released the data directory"
        );
        Ok(ready_at)
    }

    /// Take the inherited listener of `role`, if there is one.
    pub fn take(&mut self, role: Role) -> Option<TcpListener> {
        let at = self.listeners.iter().position(|(r, _)| *r == role)?;
        Some(self.listeners.remove(at).1)
    }
}

impl Channel {
    /// Tell the predecessor this process can serve.
    pub fn ready(&mut self) -> std::io::Result<()> {
        self.say(READY)
    }

    /// Tell the predecessor why this process cannot serve (it keeps serving).
    pub fn failed(&mut self, reason: &str) {
        let reason = reason.trim_end().replace(":\n", ": ").replace('\n', "; ");
        let _ = self.say(&format!("{FAILED}{reason}"));
    }

    fn say(&mut self, line: &str) -> std::io::Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(line.as_bytes())?;
        stream.write_all(b"\n")
    }

    /// Wait (blocking) until the predecessor has closed its stores, or is gone.
    pub fn wait_released(&mut self) -> Released {
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(_) if line.trim_end() == RELEASED => Released::Said,
            _ => Released::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn listeners_and_channel_come_back_by_name_and_the_channel_talks() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut old, new) = UnixStream::pair().unwrap();
        let spec = format!(
            "channel={},api={}",
            new.into_raw_fd(),
            listener.into_raw_fd()
        );
        let mut inherited = Inherited::parse(&spec).unwrap();
        assert!(inherited.take(Role::Client).is_none());
        let api = inherited.take(Role::Api).unwrap();
        assert_eq!(api.local_addr().unwrap(), addr);
        inherited.channel.ready().unwrap();
        old.write_all(b"released\n").unwrap();
        assert_eq!(inherited.channel.wait_released(), Released::Said);
        let mut heard = String::new();
        BufReader::new(&old).read_line(&mut heard).unwrap();
        assert_eq!(heard, "ready\n");
        drop(old);
        assert_eq!(inherited.channel.wait_released(), Released::Gone);
    }

    #[test]
    fn a_malformed_variable_is_refused_with_its_entry() {
        for spec in ["client", "client=x", "client=1"] {
            let error = Inherited::parse(spec).err().expect(spec).to_string();
            assert!(error.contains(ENV), "{error}");
        }
        let file = std::fs::File::open("/dev/null").unwrap();
        let spec = format!("client={}", file.as_raw_fd());
        let error = Inherited::parse(&spec).err().unwrap().to_string();
        assert!(error.contains("not a socket"), "{error}");
        std::mem::forget(file);
    }
}
