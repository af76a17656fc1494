//! Which hosts timers and cron jobs may call: the guard that keeps whoever holds an API
//! key from using pushhub as a proxy into the network it runs in (SSRF).
//!
//! A target is checked twice. When a timer or job is created, its URL's host is checked
//! as written (`400 target_not_allowed`). Before each call it is checked again (the
//! configuration may have changed since) and, for a host name, every address DNS gives
//! for it is checked too, by the HTTP client's resolver ([`GuardedResolver`]): only the
//! allowed addresses are handed to the connector, so a name that resolves to a forbidden
//! address (by design, or by DNS rebinding between the check and the call) is never
//! connected to. A refused call fails for good; retrying would not change the answer.
//!
//! Always refused, unless an address or network in `[timers] allow_hosts` covers them:
//! link-local addresses (169.254.0.0/16, fe80::/10: where the cloud metadata services
//! live), the metadata addresses outside them (fd00:ec2::254, 100.100.100.200), the
//! unspecified, broadcast and multicast addresses, the same written as IPv4-mapped or
//! NAT64 IPv6 addresses, and metadata host names such as `metadata.google.internal`.
//! Loopback and private networks are allowed by default: a backend on the same host or
//! network is what timers usually call. A non-empty `allow_hosts` allows only what it
//! lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Host names of cloud metadata services, refused unless listed in `allow_hosts`. Their
/// addresses are refused anyway; the names let a create fail at once.
const METADATA_NAMES: [&str; 6] = [
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// A call refused by the guard, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target not allowed: {0}")]
pub struct Refused(String);

/// A host name entry of `allow_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This name exactly.
    Exact(String),
    /// Any name ending in this (`.example.com`, from `*.example.com`).
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::Suffix(suffix) => name.ends_with(suffix.as_str()),
        }
    }
}

/// How a host name stands with the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// `allow_hosts` lists it: its addresses need only not be forbidden.
    Listed,
    /// Not listed: its addresses must be allowed on their own.
    Unlisted,
}

/// What timers and cron jobs may call: `[timers] allow_hosts`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    names: Vec<HostPattern>,
    nets: Vec<IpNet>,
}

impl TargetPolicy {
    /// The policy for `allow_hosts`: host names (`api.example.com`), wildcards
    /// (`*.example.com`), addresses (`10.1.2.3`, `::1`) and networks (`10.0.0.0/8`).
    /// Empty: every host but the forbidden ones. Errors name each entry that is none of
    /// these.
    pub fn new(allow_hosts: &[String]) -> Result<Self, Vec<String>> {
        let mut policy = Self::default();
        let mut errors = Vec::new();
        for entry in allow_hosts {
            let text = entry.trim().to_ascii_lowercase();
            if let Ok(net) = text.parse::<IpNet>() {
                policy.nets.push(net);
            } else if let Ok(ip) = text.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if let Some(domain) = text.strip_prefix("*.").filter(|d| is_host_name(d)) {
                policy.names.push(HostPattern::Suffix(format!(".{domain}")));
            } else if is_host_name(&text) {
                policy.names.push(HostPattern::Exact(text));
            } else {
                errors.push(format!(
                    "{entry:?} is not a host name, *.domain, address or network like 10.0.0.0/8"
                ));
            }
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// True when `allow_hosts` lists something, so only what it lists is allowed.
    fn restricted(&self) -> bool {
        !self.names.is_empty() || !self.nets.is_empty()
    }

    /// May `url` be called, as far as its host as written tells? Host names are checked
    /// again once resolved, by [`GuardedResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        // The URL parser writes addresses in their one canonical form (`2852039166` and
        // `0xa9.0xfe.0xa9.0xfe` become `169.254.169.254`), IPv6 ones in brackets.
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| Refused(format!("{url} has no host")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip, NameRule::Unlisted),
            Err(_) => self.check_name(host).map(drop),
        }
    }

    fn check_name(&self, name: &str) -> Result<NameRule, Refused> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.names.iter().any(|pattern| pattern.matches(&name)) {
            return Ok(NameRule::Listed);
        }
        if METADATA_NAMES.contains(&name.as_str()) {
            return Err(Refused(format!("{name} is a cloud metadata host")));
        }
        if self.restricted() && self.nets.is_empty() {
            return Err(Refused(format!("{name} is not in timers.allow_hosts")));
        }
        Ok(NameRule::Unlisted)
    }

    fn check_ip(&self, ip: IpAddr, rule: NameRule) -> Result<(), Refused> {
        match self.refusal(ip, rule) {
            Some(why) => Err(Refused(format!("{} is {why}", canonical(ip)))),
            None => Ok(()),
        }
    }

    /// Why `ip` may not be connected to, if it may not.
    fn refusal(&self, ip: IpAddr, rule: NameRule) -> Option<&'static str> {
        let ip = canonical(ip);
        if self.nets.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        if let Some(why) = forbidden(ip) {
            return Some(why);
        }
        if self.restricted() && rule == NameRule::Unlisted {
            return Some("not in timers.allow_hosts");
        }
        None
    }

    /// The addresses of `name` that may be connected to, or why none may.
    fn filter(
        &self,
        name: &str,
        rule: NameRule,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut allowed = Vec::new();
        let mut refused = None;
        for addr in addrs {
            match self.refusal(addr.ip(), rule) {
                None => allowed.push(addr),
                Some(why) => refused = refused.or(Some((canonical(addr.ip()), why))),
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some((ip, why))) => {
                Err(Refused(format!("{name} resolves to {ip}, which is {why}")))
            }
            (true, None) => Err(Refused(format!("{name} has no address"))),
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:169.254.169.254`, NAT64's
/// `64:ff9b::a9fe:a9fe`) as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
                let [.., a, b, c, d] = v6.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// Why `ip` is never a callback target by default, if it is not.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
    const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    match ip {
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (cloud metadata services)"),
        IpAddr::V4(v4) if v4 == ALIBABA_METADATA => Some("a cloud metadata address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_broadcast() || v4.is_multicast() => Some("broadcast or multicast"),
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("link-local (cloud metadata services)")
        }
        IpAddr::V6(v6) if v6 == AWS_METADATA_V6 => Some("a cloud metadata address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("broadcast or multicast"),
        _ => None,
    }
}

/// A host name: labels of letters, digits and hyphens, separated by dots.
fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The HTTP client's resolver for callbacks: the system's resolver (getaddrinfo), then
/// the policy, so only allowed addresses are ever connected to.
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl GuardedResolver {
    /// A resolver that keeps to `policy`.
    pub fn new(policy: Arc<TargetPolicy>) -> Self {
        Self { policy }
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let rule = policy.check_name(&name)?;
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed = policy.filter(&name, rule, found)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> TargetPolicy {
        TargetPolicy::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .expect("valid entries")
    }

    fn url_ok(policy: &TargetPolicy, url: &str) -> bool {
        policy.check_url(&Url::parse(url).expect("a URL")).is_ok()
    }

    fn addr(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().expect("an address"), 80)
    }

    #[test]
    fn by_default_metadata_and_link_local_are_refused_and_the_rest_allowed() {
        let open = TargetPolicy::default();
        for refused in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.0.23/",
            "http://2852039166/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://100.100.100.200/",
            "http://0.0.0.0:8080/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://instance-data/",
        ] {
            assert!(!url_ok(&open, refused), "{refused} is refused");
        }
        for allowed in [
            "http://127.0.0.1:9000/hook",
            "http://localhost:9000/",
            "http://[::1]/",
            "http://10.1.2.3/",
            "https://api.example.com/x",
            "http://169.253.1.1/",
        ] {
            assert!(url_ok(&open, allowed), "{allowed} is allowed");
        }
    }

    #[test]
    fn an_allow_list_allows_only_what_it_lists() {
        let listed = policy(&["api.example.com", "*.internal.example", "10.0.0.0/8", "::1"]);
        assert!(url_ok(&listed, "https://api.example.com/a"));
        assert!(url_ok(&listed, "https://API.example.com./a"));
        assert!(url_ok(&listed, "http://billing.internal.example/"));
        assert!(url_ok(&listed, "http://10.9.8.7/"));
        assert!(url_ok(&listed, "http://[::1]:8080/"));
        assert!(
            !url_ok(&listed, "http://127.0.0.1/"),
            "loopback is not listed"
        );
        assert!(!url_ok(&listed, "http://11.0.0.1/"));
        assert!(!url_ok(&listed, "http://169.254.169.254/"));
        assert!(
            url_ok(&listed, "http://other.example.org/"),
            "an unlisted name may still resolve into a listed network: checked at call time"
        );
        let names_only = policy(&["api.example.com"]);
        let refused = names_only
            .check_url(&Url::parse("http://other.example.org/").unwrap())
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "target not allowed: other.example.org is not in timers.allow_hosts"
        );
        let metadata = policy(&["169.254.169.254", "metadata.google.internal"]);
        assert!(
            url_ok(&metadata, "http://169.254.169.254/"),
            "explicitly allowed"
        );
        assert!(url_ok(&metadata, "http://metadata.google.internal/"));
        assert!(!url_ok(&metadata, "http://169.254.0.1/"));
        let errors = TargetPolicy::new(&[
            "ok.example".into(),
            "not a host".into(),
            "10.0.0.0/99".into(),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn resolved_addresses_are_filtered_so_rebinding_gets_nowhere() {
        let open = TargetPolicy::default();
        let rule = open.check_name("rebind.example").unwrap();
        assert_eq!(
            open.filter(
                "rebind.example",
                rule,
                [addr("169.254.169.254"), addr("93.184.216.34")]
            ),
            Ok(vec![addr("93.184.216.34")]),
            "only the allowed address is connected to"
        );
        assert_eq!(
            open.filter("rebind.example", rule, [addr("169.254.169.254")])
                .unwrap_err()
                .to_string(),
            "target not allowed: rebind.example resolves to 169.254.169.254, which is link-local (cloud metadata services)"
        );
        assert!(open
            .filter("x", rule, [addr("::ffff:169.254.169.254")])
            .is_err());
        let listed = policy(&["api.example.com", "10.0.0.0/8"]);
        let rule = listed.check_name("api.example.com").unwrap();
        assert_eq!(
            listed.filter("api.example.com", rule, [addr("203.0.113.5")]),
            Ok(vec![addr("203.0.113.5")]),
            "a listed name may resolve anywhere allowed"
        );
        assert!(listed
            .filter("api.example.com", rule, [addr("169.254.169.254")])
            .is_err());
        let rule = listed.check_name("other.example").unwrap();
        assert!(listed
            .filter("other.example", rule, [addr("203.0.113.5")])
            .is_err());
        assert!(listed
            .filter("other.example", rule, [addr("10.0.0.5")])
            .is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_what_the_policy_refuses() {
        let only_10 = Arc::new(policy(&["10.0.0.0/8"]));
        let resolver = GuardedResolver::new(only_10);
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolves to loopback, which is not listed"),
            Err(error) => error,
        };
        assert!(error.downcast_ref::<Refused>().is_some(), "{error}");
        let open = GuardedResolver::new(Arc::new(TargetPolicy::default()));
        let found: Vec<SocketAddr> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(error) => panic!("{error}"),
        };
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
        let metadata = GuardedResolver::new(Arc::new(TargetPolicy::default()));
        assert!(metadata
            .resolve("metadata.google.internal".parse().unwrap())
            .await
            .is_err());
    }
}
