//! pushhub's own listeners, which timers and cron jobs never call.
//!
//! A timer is an HTTP call made later by pushhub itself, from the host it runs on. Aimed
//! at pushhub's own API on loopback, where an app without API keys is open, it would let
//! whoever holds one app's key push into another app, create more timers and read the
//! answers: a way around every key. So the guard refuses every address a call could
//! reach one of pushhub's listeners on, on its port: the address it is bound to; every
//! loopback address (127.0.0.0/8, `::1`) when it is bound to loopback; any address of
//! this host when it is bound to all of them (`0.0.0.0`, `[::]`).
//!
//! The server learns the addresses once it has bound its sockets (port 0 included) and
//! hands them over as plain socket addresses: the scheduler knows nothing of the gateway.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The socket addresses pushhub's listeners are bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnListeners {
    bound: Vec<SocketAddr>,
}

impl OwnListeners {
    /// The listeners bound to `bound` (client, API, raw TCP; TLS or not).
    pub fn new(bound: impl IntoIterator<Item = SocketAddr>) -> Self {
        let mut bound: Vec<SocketAddr> = bound.into_iter().collect();
        bound.sort();
        bound.dedup();
        Self { bound }
    }

    /// The listener a call to `ip` on `port` would reach, if any. `ip` is an address as
    /// connected to (an embedded IPv4 address already unwrapped). With `port` unknown,
    /// any of the listeners' ports counts: refusing too much is the safe side.
    pub fn reached_by(&self, ip: IpAddr, port: Option<u16>) -> Option<SocketAddr> {
        self.bound.iter().copied().find(|listener| {
            port.is_none_or(|port| port == listener.port()) && reaches(listener.ip(), ip)
        })
    }
}

/// Would connecting to `ip` reach a socket bound to `bound`?
fn reaches(bound: IpAddr, ip: IpAddr) -> bool {
    // Connecting to the unspecified address connects to this host.
    if ip.is_unspecified() {
        return true;
    }
    if bound.is_unspecified() {
        ip.is_loopback() || is_this_hosts(ip)
    } else if bound.is_loopback() {
        ip.is_loopback()
    } else {
        ip == bound
    }
}

/// True when `ip` is an address of this host: only then can a socket be bound to it.
/// Asked of the kernel at each call, so addresses added after start count too.
fn is_this_hosts(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_loopback_listener_is_reached_by_every_loopback_address_on_its_port() {
        let own = OwnListeners::new([at("127.0.0.1:8081"), at("127.0.0.1:8082")]);
        for loopback in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "0.0.0.0",
            "::",
        ] {
            assert_eq!(
                own.reached_by(ip(loopback), Some(8082)),
                Some(at("127.0.0.1:8082")),
                "{loopback}"
            );
        }
        assert_eq!(own.reached_by(ip("127.0.0.1"), Some(9000)), None);
        assert_eq!(own.reached_by(ip("10.0.0.1"), Some(8082)), None);
        assert!(own.reached_by(ip("127.0.0.1"), None).is_some());
    }

    #[test]
    fn a_listener_on_one_address_is_reached_by_that_address() {
        let own = OwnListeners::new([at("192.0.2.10:8082"), at("[2001:db8::5]:8081")]);
        assert!(own.reached_by(ip("192.0.2.10"), Some(8082)).is_some());
        assert!(own.reached_by(ip("2001:db8::5"), Some(8081)).is_some());
        assert!(own.reached_by(ip("192.0.2.11"), Some(8082)).is_none());
        assert!(own.reached_by(ip("127.0.0.1"), Some(8082)).is_none());
    }

    #[test]
    fn a_listener_on_every_address_is_reached_by_this_hosts_addresses() {
        let own = OwnListeners::new([at("0.0.0.0:8082")]);
        assert!(own.reached_by(ip("127.0.0.1"), Some(8082)).is_some());
        assert!(own.reached_by(ip("::1"), Some(8082)).is_some());
        assert!(
            own.reached_by(ip("192.0.2.1"), Some(8082)).is_none(),
            "a documentation address is nobody's own"
        );
        let dual = OwnListeners::new([at("[::]:8082")]);
        assert!(dual.reached_by(ip("127.0.0.1"), Some(8082)).is_some());
    }
}
