//! yardd's own resolver, for the gateway's DNS with a host uplink: the
//! first IPv4 `nameserver` of `/etc/resolv.conf` as yardd sees it (inside
//! its namespace, after `ip netns exec`'s `/etc/netns/NAME` binds).

use std::net::Ipv4Addr;

/// The path read.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The first IPv4 `nameserver` in the text of a resolv.conf; comments
/// (`#`, `;`) and IPv6 servers are skipped.
pub fn first_ipv4_nameserver(text: &str) -> Option<Ipv4Addr> {
    text.lines().find_map(|line| {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(addr)) => addr.parse().ok(),
            _ => None,
        }
    })
}

/// yardd's resolver: the first IPv4 nameserver of [`RESOLV_CONF`], if it
/// can be read and has one.
pub fn host_resolver() -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string(RESOLV_CONF).ok()?;
    first_ipv4_nameserver(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ipv4_nameserver_is_taken() {
        let text = "# generated\nsearch lan\n; nameserver 10.0.0.9\nnameserver fe80::1\n\\
                    nameserver 127.0.0.53 # systemd\nnameserver 10.0.0.1\n";
        assert_eq!(
            first_ipv4_nameserver(text),
            Some(Ipv4Addr::new(127, 0, 0, 53))
        );
        assert_eq!(first_ipv4_nameserver("search lan\nnameserver ::1\n"), None);
        assert_eq!(first_ipv4_nameserver("nameserver\n"), None);
    }
}
