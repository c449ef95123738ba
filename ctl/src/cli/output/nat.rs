//! What `yardctl` prints for the L3 gateway's replies: uplinks, published
//! ports, conntrack entries, counters and settings.
//!
//! Contract: pure functions of the reply data, in the style of [`super`]:
//! tables with `-` for an empty cell, `key: value` blocks, one-line
//! confirmations. ICMP tuples carry the echo identifier in both port fields,
//! so they are shown as `src -> dst id N` rather than with ports.

use super::{format_duration, or_none, state_text, NONE};
use crate::api::{
    ConntrackEntry, ConntrackSettings, ConntrackStats, PortState, PublishInfo, PublishSpec,
    Transport, Tuple, UplinkInfo, UplinkKind,
};
use crate::cli::table::Table;

/// `8080`, or `8080-8089` for a range.
fn port_range((first, last): (u16, u16)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

fn proto_name(proto: Transport) -> &'static str {
    match proto {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

fn uplink_kind_name(kind: &UplinkKind) -> &'static str {
    match kind {
        UplinkKind::Iface { .. } => "iface",
        UplinkKind::Tap { .. } => "tap",
        UplinkKind::Host => "host",
    }
}

/// The IFACE/NETNS cell: the interface, and for a TAP in a namespace
/// `IFNAME@NETNS`.
fn uplink_place(kind: &UplinkKind) -> String {
    match kind {
        UplinkKind::Iface { iface } => iface.clone(),
        UplinkKind::Tap {
            netns: Some(netns),
            ifname,
        } => format!("{ifname}@{netns}"),
        UplinkKind::Tap {
            netns: None,
            ifname,
        } => ifname.clone(),
        UplinkKind::Host => "-".to_string(),
    }
}

/// The line `uplink add` prints.
pub fn uplink_added(u: &UplinkInfo) -> String {
    let place = match &u.spec.kind {
        UplinkKind::Iface { iface } => format!("iface {iface}"),
        UplinkKind::Tap {
            netns: Some(netns),
            ifname,
        } => format!("tap {ifname} in netns {netns}"),
        UplinkKind::Tap {
            netns: None,
            ifname,
        } => format!("tap {ifname}"),
        UplinkKind::Host => "host sockets".to_string(),
    };
    let mut parts = vec![place];
    if let Some(ip) = u.spec.ip {
        parts.push(ip.to_string());
    }
    if let Some(gateway) = u.spec.gateway {
        parts.push(format!("gateway {gateway}"));
    }
    if let Some(mac) = u.mac {
        parts.push(format!("mac {mac}"));
    }
    parts.push(format!("mtu {}", u.mtu));
    let down = match &u.state {
        PortState::Up => String::new(),
        PortState::Down(reason) => format!(", but it is down: {reason}"),
    };
    format!("uplink {} added ({}){down}", u.spec.name, parts.join(", "))
}

/// The `uplink ls` table.
pub fn uplinks_table(uplinks: &[UplinkInfo]) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "KIND",
        "IFACE/NETNS",
        "IP",
        "GATEWAY",
        "MAC",
        "MTU",
        "STATE",
    ]);
    for u in uplinks {
        t.row(vec![
            u.spec.name.clone(),
            uplink_kind_name(&u.spec.kind).to_string(),
            uplink_place(&u.spec.kind),
            or_none(u.spec.ip),
            or_none(u.spec.gateway),
            or_none(u.mac),
            u.mtu.to_string(),
            state_text(&u.state),
        ]);
    }
    t
}

/// A rule's canonical text, as yardd gave it (or as the spec prints).
fn rule_text(p: &PublishInfo) -> String {
    if p.rule.is_empty() {
        p.spec.to_string()
    } else {
        p.rule.clone()
    }
}

/// The line `publish add` prints.
pub fn published(p: &PublishInfo) -> String {
    let rule = rule_text(p);
    match (&p.state, p.target_ip) {
        (PortState::Down(reason), _) => format!("published {rule}, but it is down: {reason}"),
        (PortState::Up, Some(ip)) if ip.to_string() != p.spec.target => {
            format!("published {rule} ({} is {ip})", p.spec.target)
        }
        (PortState::Up, _) => format!("published {rule}"),
    }
}

/// What `publish rm` removed: the whole rule, or `[HOSTIP:]HOSTPORT/PROTO`
/// when only the host part was given.
pub fn unpublished(spec: &PublishSpec) -> String {
    if !spec.target.is_empty() {
        return format!("unpublished {spec}");
    }
    let host = spec.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
    format!(
        "unpublished {host}{}/{}",
        port_range(spec.host_ports),
        proto_name(spec.proto)
    )
}

/// The `publish ls` table; HOST without an address is the uplink's.
pub fn publishes_table(rules: &[PublishInfo]) -> Table {
    let mut t = Table::new(&["RULE", "PROTO", "HOST", "TARGET", "TARGET-IP", "STATE"]);
    for p in rules {
        let host_ports = port_range(p.spec.host_ports);
        let host = match p.spec.host_ip {
            Some(ip) => format!("{ip}:{host_ports}"),
            None => host_ports,
        };
        t.row(vec![
            rule_text(p),
            proto_name(p.spec.proto).to_string(),
            host,
            format!("{}:{}", p.spec.target, port_range(p.spec.target_ports)),
            or_none(p.target_ip),
            state_text(&p.state),
        ]);
    }
    t
}

/// One direction of a connection: `src:sport -> dst:dport`, or for ICMP
/// `src -> dst id N`.
fn tuple_text(proto: &str, t: &Tuple) -> String {
    if proto == "icmp" {
        format!("{} -> {} id {}", t.src, t.dst, t.sport)
    } else {
        format!("{}:{} -> {}:{}", t.src, t.sport, t.dst, t.dport)
    }
}

/// The NAT cell: `snat ADDR:PORT`, `dnat ADDR:PORT`, both, or `-`; for a
/// flow the host uplink relays, `host LOCAL->REMOTE` (its host socket).
fn nat_text(e: &ConntrackEntry) -> String {
    let parts: Vec<String> = [("snat", &e.snat), ("dnat", &e.dnat), ("host", &e.host)]
        .into_iter()
        .filter_map(|(kind, to)| to.as_ref().map(|to| format!("{kind} {to}")))
        .collect();
    if parts.is_empty() {
        NONE.to_string()
    } else {
        parts.join(", ")
    }
}

/// The `conntrack ls` table, like `conntrack -L`: PKTS and BYTES are
/// `original/reply`, STATE carries `[assured]` once a reply was seen.
pub fn conntrack_table(entries: &[ConntrackEntry]) -> Table {
    let mut t = Table::new(&[
        "PROTO", "STATE", "ORIGINAL", "REPLY", "NAT", "TIMEOUT", "PKTS", "BYTES",
    ]);
    for e in entries {
        let state = if e.assured {
            format!("{} [assured]", e.state)
        } else {
            e.state.clone()
        };
        t.row(vec![
            e.proto.clone(),
            state,
            tuple_text(&e.proto, &e.original),
            tuple_text(&e.proto, &e.reply),
            nat_text(e),
            format_duration(e.timeout_secs),
            format!("{}/{}", e.packets_original, e.packets_reply),
            format!("{}/{}", e.bytes_original, e.bytes_reply),
        ]);
    }
    t
}

/// The line `conntrack flush` prints.
pub fn flushed(removed: u64) -> String {
    match removed {
        1 => "1 entry removed".to_string(),
        n => format!("{n} entries removed"),
    }
}

/// The `conntrack stats` block: entries, the limit, then every counter by name.
pub fn conntrack_stats_fields(s: &ConntrackStats) -> Vec<(String, String)> {
    let mut fields = vec![
        ("entries".to_string(), s.entries.to_string()),
        ("max entries".to_string(), s.max_entries.to_string()),
    ];
    if let Some(p) = s.snat_share_percent {
        fields.push(("snat share".to_string(), share_text(p)));
    }
    if !s.by_state.is_empty() {
        let states: Vec<String> = s.by_state.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fields.push(("by state".to_string(), states.join(" ")));
    }
    fields.extend(s.counters.iter().map(|(k, v)| (k.clone(), v.to_string())));
    fields
}

fn share_text(percent: u8) -> String {
    format!("{percent}% of each port range per container")
}

/// The `conntrack set` block: the limit, then every timeout in seconds.
pub fn conntrack_settings_fields(s: &ConntrackSettings) -> Vec<(String, String)> {
    let mut fields = vec![("max entries".to_string(), or_none(s.max_entries))];
    if let Some(p) = s.snat_share_percent {
        fields.push(("snat share".to_string(), share_text(p)));
    }
    fields.extend(
        s.timeouts
            .iter()
            .map(|(name, secs)| (name.clone(), format!("{secs}s"))),
    );
    fields
}

#[cfg(test)]
mod tests;
