//! What `yardctl` prints for a successful reply: tables and `key: value`
//! blocks for people, pretty JSON for scripts — the same data in both.
//!
//! Contract: pure functions of the request and the reply payload. A mutation
//! prints one short confirmation line built from the request (and the
//! created object, where the reply carries one); a query prints its payload.
//! With `--json` the payload's data is printed as is, and `Payload::Done` prints
//! `{"ok": true}`.
//!
//! Tunnel ports (`gre`, `gre-udp`) have no namespace, interface name or
//! address of their own: `port ls` shows `-` there and adds a TUNNEL column,
//! in `ip link`'s words (`remote 192.168.50.2 key 42 csum`), whenever a listed
//! port is a tunnel. Their MTU is the one in force (the overlay MTU).
//!
//! The L3 gateway's replies (uplinks, published ports, conntrack) are laid
//! out in [`nat`].

pub mod nat;
pub mod rules;

use std::io::{self, Write};

use serde_json::{json, Value};

use super::table::{render_fields, Table};
use crate::api::{
    FdbEntry, LinkInfo, LinkSpec, MdbEntry, NetworkInfo, Payload, PortInfo, PortKind, PortState,
    PortStats, Request, StatusInfo, TraceOutcome, TraceReport,
};

/// Placeholder for an empty cell.
const NONE: &str = "-";

/// The JSON document `--json` prints for a reply payload.
pub fn render_json(payload: &Payload) -> Value {
    let value = match payload {
        Payload::Done => Ok(json!({ "ok": true })),
        Payload::Status(status) => serde_json::to_value(status),
        Payload::Network(net) => serde_json::to_value(net),
        Payload::Networks(nets) => serde_json::to_value(nets),
        Payload::Port(port) => serde_json::to_value(port),
        Payload::Ports(ports) => serde_json::to_value(ports),
        Payload::PortStats(stats) => serde_json::to_value(stats),
        Payload::Fdb(entries) => serde_json::to_value(entries),
        Payload::Mdb(entries) => serde_json::to_value(entries),
        Payload::Uplink(uplink) => serde_json::to_value(uplink),
        Payload::Uplinks(uplinks) => serde_json::to_value(uplinks),
        Payload::Publish(rule) => serde_json::to_value(rule),
        Payload::Publishes(rules) => serde_json::to_value(rules),
        Payload::Link(link) => serde_json::to_value(link),
        Payload::Links(links) => serde_json::to_value(links),
        Payload::Rule(rule) => serde_json::to_value(rule),
        Payload::Rules(rules) => serde_json::to_value(rules),
        Payload::Conntrack(page) => serde_json::to_value(&page.entries),
        Payload::Flushed { removed } => Ok(json!({ "removed": removed })),
        Payload::ConntrackStats(stats) => serde_json::to_value(stats),
        Payload::ConntrackSettings(settings) => serde_json::to_value(settings),
        Payload::Trace(report) => serde_json::to_value(report),
        Payload::CaptureStarted { port } => Ok(json!({ "port": port })),
        Payload::EventsStarted => Ok(json!({ "events": true })),
    };
    // These types hold only strings, numbers and string-keyed maps, which
    // always convert; keep a message rather than panicking if that changes.
    value.unwrap_or_else(|e| json!({ "error": format!("cannot encode the reply: {e}") }))
}

/// Writes the human-readable output for `payload`, the reply to `request`.
pub fn render_human(request: &Request, payload: &Payload, out: &mut dyn Write) -> io::Result<()> {
    match (request, payload) {
        (Request::NetCreate(spec), Payload::Network(info)) => {
            writeln!(
                out,
                "network {} created ({})",
                spec.name,
                network_summary(info)
            )
        }
        (Request::NetCreate(spec), _) => writeln!(out, "network {} created", spec.name),
        (Request::NetRm { name }, _) => writeln!(out, "network {name} removed"),
        (Request::PortAdd(_), Payload::Port(info)) => match &info.state {
            PortState::Up => writeln!(
                out,
                "port {} added ({})",
                info.spec.name,
                port_summary(info)
            ),
            PortState::Down(reason) => writeln!(
                out,
                "port {} added ({}), but it is down: {reason}",
                info.spec.name,
                port_summary(info)
            ),
        },
        (Request::PortAdd(spec), _) => writeln!(out, "port {} added", spec.name),
        (Request::PortRm { name }, _) => writeln!(out, "port {name} removed"),
        (Request::FdbAdd { net, mac, port }, _) => {
            writeln!(
                out,
                "static entry {mac} -> port {port} added to network {net}"
            )
        }
        (Request::FdbDel { net, mac }, _) => {
            writeln!(out, "entry {mac} removed from network {net}")
        }
        (Request::FdbFlush { net: Some(net) }, _) => {
            writeln!(out, "learned entries flushed from network {net}")
        }
        (Request::FdbFlush { net: None }, _) => {
            writeln!(out, "learned entries flushed from every network")
        }
        (Request::NetConnect { a, b }, _) => writeln!(out, "networks {a} and {b} connected"),
        (Request::NetDisconnect { a, b }, _) => {
            writeln!(out, "networks {a} and {b} disconnected")
        }
        (Request::UplinkAdd(_), Payload::Uplink(info)) => {
            writeln!(out, "{}", nat::uplink_added(info))
        }
        (Request::UplinkAdd(spec), _) => writeln!(out, "uplink {} added", spec.name),
        (Request::UplinkRm { name }, _) => writeln!(out, "uplink {name} removed"),
        (Request::PublishAdd(_), Payload::Publish(info)) => {
            writeln!(out, "{}", nat::published(info))
        }
        (Request::PublishAdd(spec), _) => writeln!(out, "published {spec}"),
        (Request::LinkAdd(_), Payload::Link(link)) => {
            writeln!(out, "linked {} ({})", link_text(&link.spec), link.net)
        }
        (Request::LinkRm { a, b }, _) => writeln!(out, "link {a} - {b} removed"),
        (Request::RuleAdd { .. }, Payload::Rule(info)) => {
            writeln!(out, "{}", rules::rule_added(info))
        }
        (Request::RuleRm { net, position }, _) => {
            writeln!(out, "rule {position} of network {net} removed")
        }
        (Request::PublishRm(spec), _) => writeln!(out, "{}", nat::unpublished(spec)),
        (_, payload) => render_payload(payload, out),
    }
}

/// Writes a payload on its own, whatever asked for it.
fn render_payload(payload: &Payload, out: &mut dyn Write) -> io::Result<()> {
    match payload {
        Payload::Done => writeln!(out, "ok"),
        Payload::Status(status) => render_fields(&status_fields(status), out),
        Payload::Network(net) => render_fields(&network_fields(net), out),
        Payload::Networks(nets) => networks_table(nets).render(out),
        Payload::Port(port) => ports_table(std::slice::from_ref(port)).render(out),
        Payload::Ports(ports) => ports_table(ports).render(out),
        Payload::PortStats(stats) => stats_table(stats).render(out),
        Payload::Fdb(entries) => fdb_table(entries).render(out),
        Payload::Mdb(entries) => mdb_table(entries).render(out),
        Payload::Uplink(uplink) => nat::uplinks_table(std::slice::from_ref(uplink)).render(out),
        Payload::Uplinks(uplinks) => nat::uplinks_table(uplinks).render(out),
        Payload::Publish(rule) => nat::publishes_table(std::slice::from_ref(rule)).render(out),
        Payload::Publishes(rules) => nat::publishes_table(rules).render(out),
        Payload::Link(link) => links_table(std::slice::from_ref(link)).render(out),
        Payload::Links(links) => links_table(links).render(out),
        Payload::Rule(rule) => rules::rules_table(std::slice::from_ref(rule)).render(out),
        Payload::Rules(rules) => rules::rules_table(rules).render(out),
        Payload::Conntrack(page) => nat::conntrack_table(&page.entries).render(out),
        Payload::Flushed { removed } => writeln!(out, "{}", nat::flushed(*removed)),
        Payload::ConntrackStats(stats) => {
            render_owned_fields(&nat::conntrack_stats_fields(stats), out)
        }
        Payload::ConntrackSettings(settings) => {
            render_owned_fields(&nat::conntrack_settings_fields(settings), out)
        }
        Payload::Trace(report) => render_trace(report, out),
        Payload::CaptureStarted { port } => writeln!(out, "capturing on port {port}"),
        Payload::EventsStarted => writeln!(out, "streaming events"),
    }
}

/// A trace: one line per decision, the stage in a column of its own, then
/// the verdict.
pub fn render_trace(report: &TraceReport, out: &mut dyn Write) -> io::Result<()> {
    let width = report
        .steps
        .iter()
        .map(|s| s.stage.len())
        .max()
        .unwrap_or(0)
        .max("verdict".len());
    for step in &report.steps {
        writeln!(out, "{:width$}  {}", step.stage, step.words)?;
    }
    let verdict = match &report.outcome {
        TraceOutcome::Leaves { ports } if ports.is_empty() => {
            "goes nowhere: no other port on the network".to_string()
        }
        TraceOutcome::Leaves { ports } => format!("leaves by {}", ports.join(", ")),
        TraceOutcome::Dropped { reason, counted_on } => {
            format!("dropped: {reason} (counted on {counted_on})")
        }
        TraceOutcome::Kept { words } => words.clone(),
    };
    writeln!(out, "{:width$}  {verdict}", "verdict")
}

/// `A -> B on 3306/tcp`, or `A <-> B` for a link of all traffic.
fn link_text(link: &LinkSpec) -> String {
    if link.ports.is_empty() {
        format!("{} <-> {}", link.a, link.b)
    } else {
        format!("{} -> {} on {}", link.a, link.b, link_ports(link))
    }
}

fn link_ports(link: &LinkSpec) -> String {
    let ports: Vec<String> = link.ports.iter().map(ToString::to_string).collect();
    list_or_none(&ports)
}

/// The `link ls` table.
pub fn links_table(links: &[LinkInfo]) -> Table {
    let mut t = Table::new(&["A", "B", "PORTS", "NETWORK"]);
    for link in links {
        t.row(vec![
            link.spec.a.clone(),
            link.spec.b.clone(),
            if link.spec.ports.is_empty() {
                "all".to_string()
            } else {
                link_ports(&link.spec)
            },
            link.net.clone(),
        ]);
    }
    t
}

/// One event as a line: time, what, object, why and who.
pub fn event_line(event: &crate::api::Event) -> String {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!("{} {kind} {}", event.time, event.object);
    if let Some(detail) = &event.detail {
        line.push_str(&format!(" ({detail})"));
    }
    if let Some(uid) = event.user {
        line.push_str(&format!(" by uid {uid}"));
    }
    line
}

/// [`render_fields`] for keys that are data (counter and timeout names).
fn render_owned_fields(fields: &[(String, String)], out: &mut dyn Write) -> io::Result<()> {
    let borrowed: Vec<(&str, String)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    render_fields(&borrowed, out)
}

fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| NONE.to_string(), |v| v.to_string())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        NONE.to_string()
    } else {
        items.join(",")
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// `1d 02h03m04s`-style uptime, shortest form that shows every nonzero unit.
pub fn format_duration(secs: u64) -> String {
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h{mins:02}m{s:02}s")
    } else if hours > 0 {
        format!("{hours}h{mins:02}m{s:02}s")
    } else if mins > 0 {
        format!("{mins}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The `status` block.
pub fn status_fields(s: &StatusInfo) -> Vec<(&'static str, String)> {
    vec![
        ("version", s.version.clone()),
        ("api version", s.api_version.to_string()),
        ("pid", s.pid.to_string()),
        ("mode", s.mode.to_string()),
        ("uptime", format_duration(s.uptime_secs)),
        ("socket", s.socket.clone()),
        ("state dir", s.state_dir.clone()),
        ("networks", s.networks.to_string()),
        ("ports", s.ports.to_string()),
        ("threads", s.datapath_threads.to_string()),
        (
            "tunnel drops",
            if s.tunnel_drops.is_empty() {
                "-".to_string()
            } else {
                s.tunnel_drops
                    .iter()
                    .map(|(reason, n)| format!("{reason}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ),
        (
            "tunnel GRO",
            format!(
                "{} segments merged into {} frames",
                s.tunnel_gro.segments, s.tunnel_gro.frames
            ),
        ),
    ]
}

/// The `net inspect` block.
pub fn network_fields(n: &NetworkInfo) -> Vec<(&'static str, String)> {
    vec![
        ("name", n.spec.name.clone()),
        ("subnet", or_none(n.spec.subnet)),
        ("gateway", or_none(n.spec.gateway)),
        ("vlan", or_none(n.spec.vlan)),
        ("icc", on_off(n.spec.icc).to_string()),
        ("internal", yes_no(n.spec.internal).to_string()),
        ("masquerade", masquerade_text(n).to_string()),
        ("host loopback", or_none(n.spec.host_loopback)),
        ("connected", list_or_none(&n.connected)),
        ("aging", format!("{}s", n.spec.aging_secs)),
        ("mtu", n.spec.mtu.to_string()),
        ("overlay mtu", or_none(n.overlay_mtu)),
        ("ports", list_or_none(&n.ports)),
        ("fdb entries", n.fdb_entries.to_string()),
        ("mac moves", n.mac_moves.to_string()),
    ]
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

/// `on`/`off`, or `-` for an L2-only network, which is never routed.
fn masquerade_text(n: &NetworkInfo) -> &'static str {
    match n.spec.subnet {
        Some(_) => on_off(n.spec.masquerade),
        None => NONE,
    }
}

/// The NAT column of `net ls`: `on`/`off` (masquerade to the uplink),
/// `internal` (never routed to the uplink), `-` (L2 only).
fn nat_column(n: &NetworkInfo) -> &'static str {
    if n.spec.subnet.is_some() && n.spec.internal {
        "internal"
    } else {
        masquerade_text(n)
    }
}

fn network_summary(n: &NetworkInfo) -> String {
    let l3 = match (n.spec.subnet, n.spec.gateway) {
        (Some(subnet), Some(gw)) => format!("subnet {subnet}, gateway {gw}"),
        (Some(subnet), None) => format!("subnet {subnet}"),
        _ => "L2 only".to_string(),
    };
    let vlan = n
        .spec
        .vlan
        .map(|v| format!(", vlan {v}"))
        .unwrap_or_default();
    let routing = match (n.spec.subnet, n.spec.internal, n.spec.masquerade) {
        (Some(_), true, _) => ", internal",
        (Some(_), false, false) => ", no masquerade",
        _ => "",
    };
    format!("{l3}{vlan}{routing}, mtu {}", n.spec.mtu)
}

/// The parenthesised part of `port add`'s confirmation.
fn port_summary(p: &PortInfo) -> String {
    if let Some(tunnel) = tunnel_summary(&p.spec.kind) {
        return format!("{tunnel}, overlay mtu {}", p.mtu);
    }
    let mut parts = vec![port_kind_name(&p.spec.kind).to_string()];
    match &p.spec.kind {
        PortKind::Tap {
            netns, ifname, ip, ..
        } => {
            let place = netns
                .as_deref()
                .map_or(String::new(), |ns| format!(" in netns {ns}"));
            parts.push(format!("{ifname}{place}"));
            parts.extend(ip.map(|ip| ip.to_string()));
        }
        PortKind::Veth {
            ifname, peer, ip, ..
        } => {
            parts.push(format!("{ifname}, peer {peer} to hand over"));
            parts.extend(ip.map(|ip| ip.to_string()));
        }
        _ => {}
    }
    if let Some(socket) = qemu_socket(&p.spec.kind) {
        parts.push(socket);
    }
    if let Some(mac) = port_mac(p) {
        parts.push(format!("mac {mac}"));
    }
    parts.push(format!("mtu {}", p.mtu));
    match p.spec.kind.security() {
        Some((false, _)) => parts.push("port security off".to_string()),
        Some((true, allowed)) if !allowed.is_empty() => {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            parts.push(format!("also allowed {}", list.join(" ")));
        }
        _ => {}
    }
    parts.join(", ")
}

/// The SECURITY cell of `port ls`: `on`, `on +ADDR,…` with the allowed
/// addresses, `off` (`--no-port-security`), or `-` for a port that is not a
/// TAP (port security applies to TAPs only).
fn security_cell(kind: &PortKind) -> String {
    match kind.security() {
        Some((false, _)) => "off".to_string(),
        Some((true, allowed)) if !allowed.is_empty() => {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            format!("on +{}", list.join(","))
        }
        Some((true, _)) => "on".to_string(),
        None => NONE.to_string(),
    }
}

/// True when a port's security differs from the default (on, nothing else
/// allowed): `port ls` then shows the SECURITY column.
fn security_is_special(kind: &PortKind) -> bool {
    matches!(kind.security(), Some((on, allowed)) if !on || !allowed.is_empty())
}

/// The `net ls` table; NAT is `on`/`off` (masquerade to the uplink),
/// `internal` (never routed to the uplink) or `-` (L2 only).
pub fn networks_table(nets: &[NetworkInfo]) -> Table {
    let mut t = Table::new(&[
        "NAME", "SUBNET", "GATEWAY", "NAT", "VLAN", "ICC", "MTU", "PORTS",
    ]);
    for n in nets {
        t.row(vec![
            n.spec.name.clone(),
            or_none(n.spec.subnet),
            or_none(n.spec.gateway),
            nat_column(n).to_string(),
            or_none(n.spec.vlan),
            on_off(n.spec.icc).to_string(),
            n.spec.mtu.to_string(),
            n.ports.len().to_string(),
        ]);
    }
    t
}

fn port_kind_name(kind: &PortKind) -> &'static str {
    match kind {
        PortKind::Tap { .. } => "tap",
        PortKind::Veth { .. } => "veth",
        PortKind::Iface { .. } => "iface",
        PortKind::Trunk { .. } => "trunk",
        PortKind::Gre { .. } => "gre",
        PortKind::GreUdp { .. } => "gre-udp",
        PortKind::QemuStream { .. } => "qemu-stream",
        PortKind::QemuDgram { .. } => "qemu-dgram",
    }
}

/// Where a QEMU port's socket is (`port ls` shows it as the IFNAME), or
/// `None` for another kind of port.
fn qemu_socket(kind: &PortKind) -> Option<String> {
    match kind {
        PortKind::QemuStream { path, .. } => Some(path.clone()),
        PortKind::QemuDgram { addr, .. } => Some(addr.to_string()),
        _ => None,
    }
}

/// A tunnel's configuration, whatever its encapsulation: endpoints as text
/// (with the port for GRE-in-UDP), key and flags.
struct Tunnel {
    remote: String,
    local: Option<String>,
    key: Option<u32>,
    csum: bool,
    seq: bool,
}

fn tunnel(kind: &PortKind) -> Option<Tunnel> {
    let (remote, local) = match kind {
        PortKind::Gre { remote, local, .. } => (remote.to_string(), local.map(|l| l.to_string())),
        PortKind::GreUdp { remote, local, .. } => {
            (remote.to_string(), local.map(|l| l.to_string()))
        }
        PortKind::Tap { .. }
        | PortKind::Veth { .. }
        | PortKind::Iface { .. }
        | PortKind::Trunk { .. }
        | PortKind::QemuStream { .. }
        | PortKind::QemuDgram { .. } => return None,
    };
    let gre = kind.gre_settings()?;
    Some(Tunnel {
        remote,
        local,
        key: gre.key,
        csum: gre.csum,
        seq: gre.seq,
    })
}

/// `gre to 192.168.50.2, from 192.168.50.1, key 42, csum, seq` for `port add`.
fn tunnel_summary(kind: &PortKind) -> Option<String> {
    let t = tunnel(kind)?;
    let mut parts = vec![format!("{} to {}", port_kind_name(kind), t.remote)];
    if let Some(local) = t.local {
        parts.push(format!("from {local}"));
    }
    if let Some(key) = t.key {
        parts.push(format!("key {key}"));
    }
    if t.csum {
        parts.push("csum".to_string());
    }
    if t.seq {
        parts.push("seq".to_string());
    }
    Some(parts.join(", "))
}

/// The TUNNEL cell of `port ls`, as `ip link` words it:
/// `remote 192.168.50.2 local 192.168.50.1 key 42 csum seq`.
fn tunnel_cell(kind: &PortKind) -> Option<String> {
    let t = tunnel(kind)?;
    let mut text = format!("remote {}", t.remote);
    if let Some(local) = t.local {
        text.push_str(&format!(" local {local}"));
    }
    if let Some(key) = t.key {
        text.push_str(&format!(" key {key}"));
    }
    if t.csum {
        text.push_str(" csum");
    }
    if t.seq {
        text.push_str(" seq");
    }
    Some(text)
}

/// The MAC yardd reports, else the one configured.
fn port_mac(p: &PortInfo) -> Option<crate::types::MacAddr> {
    p.mac.or(match &p.spec.kind {
        PortKind::Tap { mac, .. } | PortKind::Veth { mac, .. } => *mac,
        _ => None,
    })
}

fn state_text(state: &PortState) -> String {
    match state {
        PortState::Up => "up".to_string(),
        PortState::Down(reason) => format!("down: {reason}"),
    }
}

/// The `port ls` table; a TUNNEL column (before STATE, which may be long)
/// appears when any of `ports` is a tunnel, a SECURITY column when any TAP
/// has port security off or extra allowed addresses.
pub fn ports_table(ports: &[PortInfo]) -> Table {
    let tunnels = ports.iter().any(|p| tunnel(&p.spec.kind).is_some());
    let mut headers = vec![
        "NAME",
        "KIND",
        "NETWORK(S)",
        "NETNS",
        "IFNAME",
        "IP",
        "MAC",
        "MTU",
    ];
    if tunnels {
        headers.push("TUNNEL");
    }
    // Port security, when some TAP's differs from the default (on).
    let security = ports.iter().any(|p| security_is_special(&p.spec.kind));
    if security {
        headers.push("SECURITY");
    }
    // Which datapath thread reads each port, when yardd runs several.
    let threads = ports.iter().any(|p| p.thread.is_some());
    if threads {
        headers.push("THREAD");
    }
    headers.push("STATE");
    let mut t = Table::new(&headers);
    for p in ports {
        let (netns, ifname, ip) = match &p.spec.kind {
            PortKind::Tap {
                netns, ifname, ip, ..
            } => (netns.clone(), ifname.clone(), ip.map(|ip| ip.to_string())),
            PortKind::Veth { ifname, ip, .. } => {
                (None, ifname.clone(), ip.map(|ip| ip.to_string()))
            }
            PortKind::Iface { iface, .. } | PortKind::Trunk { iface, .. } => {
                (None, iface.clone(), None)
            }
            PortKind::Gre { .. } | PortKind::GreUdp { .. } => (None, NONE.to_string(), None),
            PortKind::QemuStream { .. } | PortKind::QemuDgram { .. } => {
                (None, qemu_socket(&p.spec.kind).unwrap_or_default(), None)
            }
        };
        let nets: Vec<String> = p.spec.nets().into_iter().map(str::to_string).collect();
        let mut row = vec![
            p.spec.name.clone(),
            port_kind_name(&p.spec.kind).to_string(),
            list_or_none(&nets),
            or_none(netns),
            ifname,
            or_none(ip),
            or_none(port_mac(p)),
            p.mtu.to_string(),
        ];
        if tunnels {
            row.push(or_none(tunnel_cell(&p.spec.kind)));
        }
        if security {
            row.push(security_cell(&p.spec.kind));
        }
        if threads {
            row.push(or_none(p.thread.map(|t| t.to_string())));
        }
        row.push(state_text(&p.state));
        t.row(row);
    }
    t
}

/// The `port stats` table; DROPS lists `reason=count` pairs.
pub fn stats_table(stats: &[PortStats]) -> Table {
    let mut t = Table::new(&[
        "NAME", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "DROPS",
    ]);
    for s in stats {
        let drops: Vec<String> = s
            .drops
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(reason, count)| format!("{reason}={count}"))
            .collect();
        t.row(vec![
            s.name.clone(),
            s.rx_packets.to_string(),
            s.rx_bytes.to_string(),
            s.tx_packets.to_string(),
            s.tx_bytes.to_string(),
            list_or_none(&drops),
        ]);
    }
    t
}

/// The `fdb show` table; AGE is seconds since last seen, `-` for static entries.
pub fn fdb_table(entries: &[FdbEntry]) -> Table {
    let mut t = Table::new(&["NETWORK", "MAC", "PORT", "TYPE", "AGE"]);
    for e in entries {
        t.row(vec![
            e.net.clone(),
            e.mac.to_string(),
            e.port.clone(),
            if e.is_static { "static" } else { "learned" }.to_string(),
            e.age_secs
                .map_or_else(|| NONE.to_string(), |s| format!("{s}s")),
        ]);
    }
    t
}

/// `mdb show`: one row per port and group; a router port's group is `*`.
pub fn mdb_table(entries: &[MdbEntry]) -> Table {
    let mut t = Table::new(&["NETWORK", "GROUP", "PORT", "EXPIRES"]);
    for e in entries {
        t.row(vec![
            e.net.clone(),
            e.group
                .map_or_else(|| "* (router)".to_string(), |g| g.to_string()),
            e.port.clone(),
            e.expires_secs
                .map_or_else(|| NONE.to_string(), |s| format!("{s}s")),
        ]);
    }
    t
}

#[cfg(test)]
mod tests;
