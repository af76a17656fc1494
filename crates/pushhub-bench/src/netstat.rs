//! Kernel TCP counters from `/proc/net/netstat`.
//!
//! A server whose listen backlog is too small for a connection storm silently
//! drops SYNs; each drop costs the client a 1 s retransmit and shows up only
//! as slow connect times. The generator reports the (system-wide) number of
//! accept-queue overflows during the connect phase so this is visible.

/// Current `TcpExt: ListenOverflows`, if readable.
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    tcp_ext_counter(&text, "ListenOverflows")
}

/// Value of counter `key` in the `TcpExt:` header/value line pair.
fn tcp_ext_counter(text: &str, key: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let idx = names.split_whitespace().position(|n| n == key)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_counter() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 142 150\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext_counter(text, "ListenOverflows"), Some(142));
        assert_eq!(tcp_ext_counter(text, "Nope"), None);
    }
}
