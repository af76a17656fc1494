//! The IPv4 hosts an IPv6 address really reaches, so the target guard judges
//! `::169.254.169.254` and `2002:a9fe:a9fe::` as the metadata address they lead to.
//!
//! Every transition form that carries an IPv4 address inside an IPv6 one is unwrapped:
//! IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible (`::/96`, deprecated but still routed by
//! some stacks), IPv4-translated (`::ffff:0:0:0/96`), 6to4 (`2002::/16`), NAT64's
//! well-known prefix (`64:ff9b::/96`) and local-use prefix (`64:ff9b:1::/48`, where the
//! operator picks the prefix length, so every RFC 6052 position is a candidate), and
//! Teredo (`2001::/32`: its server address, and its client address, stored inverted).
//! The guard refuses an address when any host it may reach is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an address leads: itself, or the IPv4 hosts it embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaches {
    /// An IPv4 address, or an IPv6 address that embeds none.
    Itself(IpAddr),
    /// An IPv6 address that stands for these IPv4 hosts (one, or several candidates).
    Embedded(Vec<Ipv4Addr>),
}

impl Reaches {
    /// Every address to judge for `ip`.
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Reaches::Itself(ip) => vec![*ip],
            Reaches::Embedded(hosts) => hosts.iter().copied().map(IpAddr::V4).collect(),
        }
    }
}

/// What `ip` reaches.
pub fn reaches(ip: IpAddr) -> Reaches {
    match ip {
        IpAddr::V4(_) => Reaches::Itself(ip),
        IpAddr::V6(v6) => match embedded(v6) {
            hosts if hosts.is_empty() => Reaches::Itself(ip),
            hosts => Reaches::Embedded(hosts),
        },
    }
}

fn v4(bytes: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(bytes)
}

/// The IPv4 hosts embedded in `ip`, empty when it is a plain IPv6 address.
fn embedded(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last = v4([o[12], o[13], o[14], o[15]]);
    match s {
        // IPv4-mapped, ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] => vec![last],
        // IPv4-translated (SIIT), ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0xffff, 0, _, _] => vec![last],
        // IPv4-compatible, ::a.b.c.d: not :: (unspecified) nor ::1 (loopback), which are
        // IPv6's own.
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => vec![last],
        // NAT64 well-known prefix, 64:ff9b::a.b.c.d.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![last],
        // NAT64 local-use prefix 64:ff9b:1::/48: the network's prefix length decides
        // where the IPv4 address sits (RFC 6052 section 2.2), so each place is a candidate.
        [0x64, 0xff9b, 1, ..] => {
            let mut hosts = vec![
                v4([o[6], o[7], o[9], o[10]]),   // /48: bits 48-63, 72-87
                v4([o[7], o[9], o[10], o[11]]),  // /56: bits 56-63, 72-95
                v4([o[9], o[10], o[11], o[12]]), // /64: bits 72-103
                last,                            // /96: bits 96-127
            ];
            // 0.0.0.0/8 is never translated: a zero there is the prefix, not a host.
            hosts.retain(|host| host.octets()[0] != 0);
            hosts.dedup();
            hosts
        }
        // 6to4, 2002:AABB:CCDD::/48.
        [0x2002, ..] => vec![v4([o[2], o[3], o[4], o[5]])],
        // Teredo, 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, the client address inverted.
        [0x2001, 0, ..] => vec![
            v4([o[4], o[5], o[6], o[7]]),
            v4([!o[12], !o[13], !o[14], !o[15]]),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<IpAddr> {
        reaches(text.parse().expect("an address")).addresses()
    }

    fn metadata() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))
    }

    #[test]
    fn every_embedding_form_leads_to_its_ipv4_host() {
        for form in [
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::169.254.169.254",
            "::a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "2002:a9fe:a9fe:1234::1",
        ] {
            assert_eq!(hosts(form), [metadata()], "{form}");
        }
    }

    #[test]
    fn local_use_nat64_is_judged_at_every_place_the_host_may_sit() {
        // 169.254.169.254 under a /48, /56, /64 and /96 local-use prefix.
        for form in [
            "64:ff9b:1:a9fe:a9:fe00::",
            "64:ff9b:1:a9:fe:a9fe::",
            "64:ff9b:1:0:a9:fea9:fe00:0",
            "64:ff9b:1::a9fe:a9fe",
        ] {
            assert!(
                hosts(form).contains(&metadata()),
                "{form}: {:?}",
                hosts(form)
            );
        }
    }

    #[test]
    fn teredo_leads_to_its_server_and_its_inverted_client() {
        // Server 65.54.227.120, client 169.254.169.254 stored as its complement.
        let teredo = hosts("2001:0:4136:e378:8000:63bf:5601:5601");
        assert_eq!(
            teredo,
            [
                IpAddr::V4(Ipv4Addr::new(65, 54, 227, 120)),
                IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            ]
        );
    }

    #[test]
    fn plain_addresses_and_ipv6s_own_specials_stay_themselves() {
        for plain in [
            "::1",
            "::",
            "2001:db8::1",
            "fe80::1",
            "fd00:ec2::254",
            "10.0.0.1",
        ] {
            let ip: IpAddr = plain.parse().unwrap();
            assert_eq!(reaches(ip), Reaches::Itself(ip), "{plain}");
        }
    }
}
