//! The switch's side of the L3 gateway: translating between the control
//! API's types and `yard-nat`'s (network and uplink configuration, publish
//! rules, conntrack listings, filters, statistics and timeouts). Slow path
//! only; nothing here runs per frame.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use yard_ctl::api::{
    ConntrackEntry, ConntrackFilter, ConntrackSettings, ConntrackStats, NetworkSpec, Transport,
    Tuple,
};
use yard_ctl::MacAddr;
use yard_nat::conntrack::{Entry, Filter, Timeouts};
use yard_nat::flow::{FlowKey, Proto};
use yard_nat::gateway::{Gateway, NetConfig};

/// The gateway's MAC address in network `name`: stable across restarts, so
/// containers' ARP caches stay right.
pub fn gateway_mac(name: &str) -> MacAddr {
    MacAddr::local_from_seed(format!("gateway/{name}").as_bytes())
}

/// The gateway configuration of a network; `None` for a plain L2 network.
pub fn net_config(id: u16, spec: &NetworkSpec) -> Option<NetConfig> {
    let subnet = spec.subnet?;
    Some(NetConfig {
        id,
        subnet: (subnet.addr, subnet.prefix),
        gateway: spec.gateway.unwrap_or_else(|| subnet.first_host()),
        mac: gateway_mac(&spec.name).0,
        masquerade: spec.masquerade,
        internal: spec.internal,
    })
}

/// The nat crate's protocol for an API transport.
pub fn proto_of(t: Transport) -> Proto {
    match t {
        Transport::Tcp => Proto::Tcp,
        Transport::Udp => Proto::Udp,
    }
}

/// Parses a filter's protocol name.
pub fn filter_of(f: &ConntrackFilter) -> Result<Filter, String> {
    let proto = match f.proto.as_deref() {
        None => None,
        Some("tcp") => Some(Proto::Tcp),
        Some("udp") => Some(Proto::Udp),
        Some("icmp") => Some(Proto::Icmp),
        Some(other) => {
            return Err(format!(
                "protocol {other} is not tracked: use tcp, udp or icmp"
            ))
        }
    };
    Ok(Filter {
        zone: None,
        proto,
        addr: f.addr,
        port: f.port,
    })
}

fn tuple(k: &FlowKey) -> Tuple {
    Tuple {
        src: k.src,
        sport: k.sport,
        dst: k.dst,
        dport: k.dport,
    }
}

fn endpoint((addr, port): (Ipv4Addr, u16)) -> String {
    format!("{addr}:{port}")
}

/// One conntrack entry as `conntrack ls` shows it.
pub fn entry_info(e: &Entry, now_ms: u64) -> ConntrackEntry {
    ConntrackEntry {
        proto: e.proto().as_str().to_string(),
        original: tuple(&e.original),
        reply: tuple(&e.reply),
        state: e.state_name().to_string(),
        snat: e.nat.snat.map(endpoint),
        dnat: e.nat.dnat.map(endpoint),
        timeout_secs: e.remaining(now_ms) / 1000,
        assured: e.assured,
        packets_original: e.counters[0].packets,
        bytes_original: e.counters[0].bytes,
        packets_reply: e.counters[1].packets,
        bytes_reply: e.counters[1].bytes,
    }
}

/// Conntrack and gateway counters.
pub fn stats(gw: &Gateway) -> ConntrackStats {
    let ct = gw.conntrack();
    let s = ct.stats();
    let mut counters = BTreeMap::new();
    for (name, value) in [
        ("inserted", s.inserted),
        ("evicted-unreplied", s.evicted_unreplied),
        ("evicted-other", s.evicted_other),
        ("expired", s.expired),
        ("removed", s.removed),
        ("refused", s.refused),
        ("snat-mappings", ct.mapping().len() as u64),
        ("table-bytes", ct.heap_bytes() as u64),
    ] {
        counters.insert(name.to_string(), value);
    }
    let g = gw.counters();
    for (name, value) in [
        ("gw-forwarded", g.forwarded),
        ("gw-arp-requests-sent", g.arp_requests_sent),
        ("gw-arp-replies-sent", g.arp_replies_sent),
        ("gw-echo-replies", g.echo_replies),
        ("gw-icmp-errors-sent", g.icmp_errors_sent),
        ("gw-icmp-errors-limited", g.icmp_errors_limited),
        ("gw-held-for-arp", g.held_for_arp),
        ("gw-fragmented", g.fragmented),
        ("gw-arp-timeouts", g.arp_timeouts),
    ] {
        counters.insert(name.to_string(), value);
    }
    for (name, value) in g.drops_by_name() {
        counters.insert(name.to_string(), value);
    }
    ConntrackStats {
        entries: s.entries as u64,
        max_entries: ct.config().max_entries as u64,
        counters,
    }
}

const SEC: u64 = 1000;

/// The timeout names `conntrack set --timeout NAME=SECONDS` takes, with
/// accessors into [`Timeouts`] (milliseconds).
fn timeout_fields(t: &mut Timeouts) -> [(&'static str, &mut u64); 11] {
    [
        ("tcp-syn-sent", &mut t.tcp_syn_sent),
        ("tcp-syn-recv", &mut t.tcp_syn_recv),
        ("tcp-established", &mut t.tcp_established),
        ("tcp-fin-wait", &mut t.tcp_fin_wait),
        ("tcp-close-wait", &mut t.tcp_close_wait),
        ("tcp-last-ack", &mut t.tcp_last_ack),
        ("tcp-time-wait", &mut t.tcp_time_wait),
        ("tcp-close", &mut t.tcp_close),
        ("udp-unreplied", &mut t.udp_unreplied),
        ("udp-replied", &mut t.udp_replied),
        ("icmp", &mut t.icmp),
    ]
}

/// Applies `changes` to `timeouts`, refusing unknown names and values below
/// the RFC minimums (RFC 5382: established ≥ 7440 s, transitory ≥ 240 s;
/// RFC 4787: UDP ≥ 120 s; RFC 5508: ICMP ≥ 60 s).
pub fn apply_timeouts(
    timeouts: &mut Timeouts,
    changes: &BTreeMap<String, u64>,
) -> Result<(), String> {
    for (name, secs) in changes {
        let minimum = match name.as_str() {
            "tcp-established" => 7440,
            "tcp-close" => 1,
            n if n.starts_with("tcp-") => 240,
            n if n.starts_with("udp-") => 120,
            _ => 60,
        };
        let mut fields = timeout_fields(timeouts);
        let Some((_, field)) = fields.iter_mut().find(|(n, _)| n == name) else {
            let names: Vec<&str> = timeout_fields(&mut Timeouts::default())
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return Err(format!(
                "unknown timeout {name}: use one of {}",
                names.join(", ")
            ));
        };
        if *secs < minimum {
            return Err(format!(
                "timeout {name}={secs} s is below the RFC minimum of {minimum} s"
            ));
        }
        **field = secs * SEC;
    }
    Ok(())
}

/// The settings in force, for a reply.
pub fn settings(max_entries: usize, timeouts: &Timeouts) -> ConntrackSettings {
    let mut t = *timeouts;
    ConntrackSettings {
        max_entries: Some(max_entries as u64),
        timeouts: timeout_fields(&mut t)
            .iter()
            .map(|(n, v)| (n.to_string(), **v / SEC))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_respect_rfc_minimums() {
        let mut t = Timeouts::default();
        let mut changes = BTreeMap::new();
        changes.insert("udp-replied".to_string(), 600);
        apply_timeouts(&mut t, &changes).unwrap();
        assert_eq!(t.udp_replied, 600_000);
        changes.insert("tcp-established".to_string(), 60);
        assert!(apply_timeouts(&mut t, &changes)
            .unwrap_err()
            .contains("RFC minimum of 7440"));
        let mut bad = BTreeMap::new();
        bad.insert("tcp-nope".to_string(), 600);
        assert!(apply_timeouts(&mut t, &bad)
            .unwrap_err()
            .contains("unknown timeout"));
        let s = settings(1000, &Timeouts::default());
        assert_eq!(s.timeouts["tcp-established"], 5 * 24 * 3600);
        assert_eq!(s.timeouts["udp-unreplied"], 120);
    }

    #[test]
    fn gateway_macs_are_stable_and_local() {
        assert_eq!(gateway_mac("yard0"), gateway_mac("yard0"));
        assert_ne!(gateway_mac("yard0"), gateway_mac("web"));
        assert!(gateway_mac("yard0").is_valid_source());
    }
}
