//! Which address a client connects from, for the per-address connection limit.
//!
//! Directly connected clients are their socket's peer. Behind nginx or a load balancer
//! every socket comes from the proxy, so for peers listed in `limits.trusted_proxies` the
//! client is the right-most address in `X-Forwarded-For` that is not itself a trusted proxy
//! (what each hop appended; the left part is whatever the client claimed), or `X-Real-IP`.
//! Headers from untrusted peers are ignored: anyone can write them.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::transport::Peer;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Proxies in `nets` (addresses are one-address networks).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return Some(ip),
                Err(_) => return Some(peer),
            }
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .or(Some(peer))
    }

    /// The client of an HTTP request, whose socket peer the server recorded: its address
    /// is the socket's, or the one trusted proxies forwarded.
    pub fn peer_of_request(
        &self,
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
    ) -> Peer {
        let socket = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        Peer::new(socket, self.client_ip(socket.map(|s| s.ip()), headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let forwarded = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &forwarded),
            ip("1.2.3.4")
        );
        assert_eq!(
            proxies.client_ip(ip("8.8.8.8"), &forwarded),
            ip("8.8.8.8"),
            "an untrusted peer's headers are ignored"
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &headers(&[("x-real-ip", "5.5.5.5")])),
            ip("5.5.5.5")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &headers(&[("x-forwarded-for", "junk")])),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.1.1.1"), &split), ip("2.2.2.2"));
        assert_eq!(TrustedProxies::default().client_ip(None, &forwarded), None);
    }
}
