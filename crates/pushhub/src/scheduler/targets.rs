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
//! Always refused, whatever `[timers] allow_hosts` says: pushhub's own listeners, on
//! every address that reaches them ([`OwnListeners`]), including the name `localhost`, so
//! a timer can never use pushhub's API (another app's, a keyless one's) on its creator's
//! behalf. The port matters: at call time the executor tells the resolver which port the
//! call is for ([`for_port`]).
//!
//! Always refused, unless an address or network in `[timers] allow_hosts` covers them:
//! link-local addresses (169.254.0.0/16, fe80::/10: where the cloud metadata services
//! live), the metadata addresses outside them (fd00:ec2::254, 100.100.100.200), the
//! unspecified, broadcast and multicast addresses, and metadata host names such as
//! `metadata.google.internal`. Every rule judges the IPv4 hosts an IPv6 address embeds
//! (IPv4-mapped, -compatible, -translated, 6to4, NAT64, Teredo: [`embedded_ipv4`]), so
//! no transition form gets around it. Loopback and private networks are allowed by
//! default: a backend on the same host or network is what timers usually call. A
//! non-empty `allow_hosts` allows only what it lists.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::embedded_ipv4;
use super::own_listeners::OwnListeners;

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

tokio::task_local! {
    /// The port of the call being connected, for the resolver, which is given only names.
    static CALL_PORT: u16;
}

/// Run `call` (an HTTP request to `port`) so that [`GuardedResolver`] knows the port: a
/// name resolving to one of pushhub's own listeners is refused only on that listener's
/// port. The resolver is asked while `call` is first polled, inside this scope.
pub async fn for_port<F: Future>(port: u16, call: F) -> F::Output {
    CALL_PORT.scope(port, call).await
}

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
    own: OwnListeners,
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

    /// This policy, also refusing pushhub's listeners `own`, once they are bound.
    pub fn refusing_own(self, own: OwnListeners) -> Self {
        Self { own, ..self }
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
        let port = url.port_or_known_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip, NameRule::Unlisted, port),
            Err(_) => {
                self.check_name(host)?;
                // `localhost` is loopback by definition, whatever DNS says later.
                let loopback = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
                match loopback
                    .into_iter()
                    .find_map(|ip| self.own.reached_by(ip, port))
                    .filter(|_| is_localhost(host))
                {
                    Some(listener) => Err(Refused(format!(
                        "{host} is {}",
                        own_listener_refusal(listener)
                    ))),
                    None => Ok(()),
                }
            }
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

    fn check_ip(&self, ip: IpAddr, rule: NameRule, port: Option<u16>) -> Result<(), Refused> {
        match self.refusal(ip, rule, port) {
            Some((host, why)) => Err(Refused(format!("{host} is {why}"))),
            None => Ok(()),
        }
    }

    /// Why `ip` may not be connected to on `port` (`None`: any port), if it may not: the
    /// first host it reaches that is refused, and why.
    fn refusal(
        &self,
        ip: IpAddr,
        rule: NameRule,
        port: Option<u16>,
    ) -> Option<(IpAddr, Cow<'static, str>)> {
        embedded_ipv4::reaches(ip)
            .addresses()
            .into_iter()
            .find_map(|host| Some((host, self.host_refusal(host, rule, port)?)))
    }

    /// Why one host (an IPv4 address, or an IPv6 address embedding none) may not be
    /// connected to on `port`, if it may not.
    fn host_refusal(
        &self,
        ip: IpAddr,
        rule: NameRule,
        port: Option<u16>,
    ) -> Option<Cow<'static, str>> {
        if let Some(listener) = self.own.reached_by(ip, port) {
            return Some(own_listener_refusal(listener).into());
        }
        if self.nets.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        if let Some(why) = forbidden(ip) {
            return Some(why.into());
        }
        if self.restricted() && rule == NameRule::Unlisted {
            return Some("not in timers.allow_hosts".into());
        }
        None
    }

    /// The addresses of `name` that may be connected to on `port` (`None`: any port), or
    /// why none may.
    fn filter(
        &self,
        name: &str,
        rule: NameRule,
        port: Option<u16>,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut allowed = Vec::new();
        let mut refused = None;
        for addr in addrs {
            match self.refusal(addr.ip(), rule, port) {
                None => allowed.push(addr),
                Some(why) => refused = refused.or(Some(why)),
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

/// Why a host that reaches pushhub's own `listener` is refused.
fn own_listener_refusal(listener: SocketAddr) -> String {
    format!("pushhub's own listener {listener}: timers and cron jobs never call pushhub itself")
}

/// `localhost` and the names under it (RFC 6761: loopback, always).
fn is_localhost(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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
        // Read when asked and again when resolving: the call that asks is polled inside
        // `for_port` at one of the two.
        let asked_for = CALL_PORT.try_with(|port| *port).ok();
        Box::pin(async move {
            let port = asked_for.or_else(|| CALL_PORT.try_with(|port| *port).ok());
            let rule = policy.check_name(&name)?;
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed = policy.filter(&name, rule, port, found)?;
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
                None,
                [addr("169.254.169.254"), addr("93.184.216.34")]
            ),
            Ok(vec![addr("93.184.216.34")]),
            "only the allowed address is connected to"
        );
        assert_eq!(
            open.filter("rebind.example", rule, None, [addr("169.254.169.254")])
                .unwrap_err()
                .to_string(),
            "target not allowed: rebind.example resolves to 169.254.169.254, which is link-local (cloud metadata services)"
        );
        assert!(open
            .filter("x", rule, None, [addr("::ffff:169.254.169.254")])
            .is_err());
        let listed = policy(&["api.example.com", "10.0.0.0/8"]);
        let rule = listed.check_name("api.example.com").unwrap();
        assert_eq!(
            listed.filter("api.example.com", rule, None, [addr("203.0.113.5")]),
            Ok(vec![addr("203.0.113.5")]),
            "a listed name may resolve anywhere allowed"
        );
        assert!(listed
            .filter("api.example.com", rule, None, [addr("169.254.169.254")])
            .is_err());
        let rule = listed.check_name("other.example").unwrap();
        assert!(listed
            .filter("other.example", rule, None, [addr("203.0.113.5")])
            .is_err());
        assert!(listed
            .filter("other.example", rule, None, [addr("10.0.0.5")])
            .is_ok());
    }

    #[test]
    fn every_embedded_ipv4_form_of_a_metadata_address_is_refused() {
        let open = TargetPolicy::default();
        for refused in [
            "http://[::169.254.169.254]/",
            "http://[::a9fe:a9fe]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[2002:a9fe:a9fe:1::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[64:ff9b:1:a9fe:a9:fe00::]/",
            "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",
            "http://[::100.100.100.200]/",
            "http://[2002:6464:64c8::]/",
        ] {
            let error = open.check_url(&Url::parse(refused).unwrap()).unwrap_err();
            assert!(error.to_string().contains("metadata"), "{refused}: {error}");
        }
        let refused = open
            .check_url(&Url::parse("http://[2002:a9fe:a9fe::]/").unwrap())
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "target not allowed: 169.254.169.254 is link-local (cloud metadata services)"
        );
        assert!(
            url_ok(&open, "http://[2002:5db8:d822::]/"),
            "6to4 of a public host"
        );
        assert!(url_ok(&open, "http://[2001:db8::1]/"));
    }

    #[test]
    fn allow_lists_judge_the_embedded_host_too() {
        let listed = policy(&["10.0.0.0/8"]);
        assert!(url_ok(&listed, "http://[::ffff:10.1.2.3]/"));
        assert!(url_ok(&listed, "http://[2002:a01:203::]/"));
        assert!(!url_ok(&listed, "http://[::ffff:11.0.0.1]/"));
        assert!(!url_ok(&listed, "http://[2002:b00:1::]/"));
        assert!(
            !url_ok(&listed, "http://[64:ff9b::7f00:1]/"),
            "127.0.0.1 is not listed"
        );
    }

    fn own(listeners: &[&str]) -> TargetPolicy {
        TargetPolicy::default().refusing_own(OwnListeners::new(
            listeners.iter().map(|l| l.parse::<SocketAddr>().unwrap()),
        ))
    }

    #[test]
    fn pushhubs_own_listeners_are_refused_on_every_address_that_reaches_them() {
        let policy = own(&["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:7000"]);
        for refused in [
            "http://127.0.0.1:8082/v1/push",
            "http://127.0.0.1:8081/",
            "http://127.0.0.1:7000/",
            "http://127.1.2.3:8082/",
            "http://2130706433:8082/",
            "http://[::1]:8082/",
            "http://[::ffff:127.0.0.1]:8082/",
            "http://[::127.0.0.1]:8082/",
            "http://[::ffff:0:7f00:1]:8082/",
            "http://[2002:7f00:1::]:8082/",
            "http://[64:ff9b::7f00:1]:8082/",
            "http://localhost:8082/",
            "http://LocalHost.:8082/",
            "http://api.localhost:8082/",
        ] {
            let error = policy.check_url(&Url::parse(refused).unwrap()).unwrap_err();
            assert!(
                error.to_string().contains("pushhub's own listener"),
                "{refused}: {error}"
            );
        }
        for allowed in [
            "http://127.0.0.1:9000/hook",
            "http://localhost:9000/",
            "http://[::1]:9000/",
            "http://10.0.0.8:8082/",
        ] {
            assert!(url_ok(&policy, allowed), "{allowed}");
        }
        let https = own(&["127.0.0.1:443"]);
        assert!(
            !url_ok(&https, "https://localhost/"),
            "the default port counts"
        );
        let listed = TargetPolicy::new(&["127.0.0.1".to_owned()])
            .unwrap()
            .refusing_own(OwnListeners::new(["127.0.0.1:8082".parse().unwrap()]));
        assert!(
            !url_ok(&listed, "http://127.0.0.1:8082/"),
            "listing loopback for a backend does not open pushhub's own API"
        );
        assert!(url_ok(&listed, "http://127.0.0.1:9000/"));
    }

    #[test]
    fn the_single_port_case_is_refused_too() {
        let policy = own(&["127.0.0.1:8081", "127.0.0.1:8081"]);
        assert!(!url_ok(&policy, "http://127.0.0.1:8081/v1/push"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_reaching_pushhub_on_the_calls_port_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resolver = GuardedResolver::new(Arc::new(
            TargetPolicy::default()
                .refusing_own(OwnListeners::new([listener.local_addr().unwrap()])),
        ));
        let resolve = || async { resolver.resolve("localhost".parse().unwrap()).await };
        let refused = match for_port(port, resolve()).await {
            Ok(_) => panic!("localhost on pushhub's own port resolved"),
            Err(error) => error,
        };
        assert!(
            refused.to_string().contains("pushhub's own listener"),
            "{refused}"
        );
        let other_port = port.wrapping_add(1).max(1);
        assert!(for_port(other_port, resolve()).await.is_ok());
        assert!(
            resolve().await.is_err(),
            "with the port unknown, every listener's port counts"
        );
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
