//! `yardd --metrics ADDR:PORT`: Prometheus metrics at `/metrics`, in the
//! text exposition format (0.0.4), which Prometheus and OpenMetrics
//! scrapers both read.
//!
//! Contract: every value comes from the same requests `yardctl` makes
//! (`port stats`, `net ls`, `conntrack stats`, `rule ls`, `status`)
//! answered by [`Control`] — threads' CPU time aside — so
//! a scrape and `yardctl … --json` agree. [`render`] is a pure function of
//! those replies. The listener is bound by `bin/yardd.rs` before privileges
//! are dropped (a low port needs it) and served by one thread of its own;
//! a scrape holds the control lock only while the four replies are made.
//!
//! Names follow Prometheus' conventions: `switchyard_` prefix, base units
//! (bytes, seconds), `_total` on counters, variants as labels (`port`,
//! `reason`, `network`, `event`, `state`, `thread`, a rule's `position`
//! and `action`). Threads' CPU time comes from the kernel's accounting
//! (`sys::thread_cpu`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use yard_ctl::api::{
    ConntrackStats, NetworkInfo, Payload, PortStats, Request, RuleInfo, TunnelGro,
};

use crate::control::Control;

/// What one scrape is made from.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// `port stats` (the uplink included).
    pub ports: Vec<PortStats>,
    /// `net ls`.
    pub networks: Vec<NetworkInfo>,
    /// `conntrack stats`.
    pub conntrack: Option<ConntrackStats>,
    /// CPU seconds of yardd's datapath threads, by label.
    pub threads: Vec<(String, f64)>,
    /// `status`' tunnel drops: packets dropped before reaching a tunnel
    /// port, by reason.
    pub tunnel_drops: BTreeMap<String, u64>,
    /// `status`' tunnel GRO: received segments merged into GSO frames.
    pub tunnel_gro: TunnelGro,
    /// `rule ls` (every network's).
    pub rules: Vec<RuleInfo>,
}

/// Conntrack counters that are levels, not counts.
const CONNTRACK_GAUGES: [(&str, &str, &str); 2] = [
    (
        "snat-mappings",
        "switchyard_nat_snat_mappings",
        "SNAT mappings (external ports) in use.",
    ),
    (
        "table-bytes",
        "switchyard_conntrack_table_bytes",
        "Memory the connection table takes, in bytes.",
    ),
];

/// Writes one metric family's HELP and TYPE lines, then `samples`.
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, V)],
) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `{k="v",…}` with the values escaped as the format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The exposition text of `scrape`.
pub fn render(scrape: &Scrape) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "switchyard_up",
        "gauge",
        "1 while yardd answers.",
        &[(String::new(), 1)],
    );
    let per_port = |value: fn(&PortStats) -> u64| -> Vec<(String, u64)> {
        scrape
            .ports
            .iter()
            .map(|p| (labels(&[("port", &p.name)]), value(p)))
            .collect()
    };
    family(
        &mut out,
        "switchyard_port_receive_packets_total",
        "counter",
        "Frames received on the port.",
        &per_port(|p| p.rx_packets),
    );
    family(
        &mut out,
        "switchyard_port_receive_bytes_total",
        "counter",
        "Bytes received on the port.",
        &per_port(|p| p.rx_bytes),
    );
    family(
        &mut out,
        "switchyard_port_transmit_packets_total",
        "counter",
        "Frames sent on the port.",
        &per_port(|p| p.tx_packets),
    );
    family(
        &mut out,
        "switchyard_port_transmit_bytes_total",
        "counter",
        "Bytes sent on the port.",
        &per_port(|p| p.tx_bytes),
    );
    let drops: Vec<(String, u64)> = scrape
        .ports
        .iter()
        .flat_map(|p| {
            p.drops
                .iter()
                .map(|(reason, n)| (labels(&[("port", &p.name), ("reason", reason)]), *n))
        })
        .collect();
    family(
        &mut out,
        "switchyard_port_drops_total",
        "counter",
        "Frames dropped on the way in from the port, by reason (as in yardctl port stats).",
        &drops,
    );
    let per_net = |value: fn(&NetworkInfo) -> u64| -> Vec<(String, u64)> {
        scrape
            .networks
            .iter()
            .map(|n| (labels(&[("network", &n.spec.name)]), value(n)))
            .collect()
    };
    family(
        &mut out,
        "switchyard_network_ports",
        "gauge",
        "Ports on the network.",
        &per_net(|n| n.ports.len() as u64),
    );
    family(
        &mut out,
        "switchyard_network_fdb_entries",
        "gauge",
        "Entries in the network's MAC table.",
        &per_net(|n| n.fdb_entries as u64),
    );
    family(
        &mut out,
        "switchyard_network_mac_moves_total",
        "counter",
        "Times a MAC address was learned on another port of the network.",
        &per_net(|n| n.mac_moves),
    );
    if let Some(ct) = &scrape.conntrack {
        family(
            &mut out,
            "switchyard_conntrack_entries",
            "gauge",
            "Tracked connections.",
            &[(String::new(), ct.entries)],
        );
        family(
            &mut out,
            "switchyard_conntrack_entries_limit",
            "gauge",
            "The connection table's limit.",
            &[(String::new(), ct.max_entries)],
        );
        let by_state: Vec<(String, u64)> = ct
            .by_state
            .iter()
            .map(|(state, n)| (labels(&[("state", state)]), *n))
            .collect();
        family(
            &mut out,
            "switchyard_conntrack_entries_by_state",
            "gauge",
            "Tracked connections by state, as conntrack ls names them.",
            &by_state,
        );
        for (key, name, help) in CONNTRACK_GAUGES {
            if let Some(value) = ct.counters.get(key) {
                family(&mut out, name, "gauge", help, &[(String::new(), *value)]);
            }
        }
        let (mut gateway, mut conntrack) = (BTreeMap::new(), BTreeMap::new());
        for (key, value) in &ct.counters {
            if CONNTRACK_GAUGES.iter().any(|(k, _, _)| k == key) {
                continue;
            }
            match key.strip_prefix("gw-") {
                Some(event) => gateway.insert(event.to_string(), *value),
                None => conntrack.insert(key.clone(), *value),
            };
        }
        let events = |map: BTreeMap<String, u64>| -> Vec<(String, u64)> {
            map.into_iter()
                .map(|(event, n)| (labels(&[("event", &event)]), n))
                .collect()
        };
        family(
            &mut out,
            "switchyard_gateway_events_total",
            "counter",
            "What the L3 gateway did and dropped, by event (yardctl conntrack stats' gw- counters).",
            &events(gateway),
        );
        family(
            &mut out,
            "switchyard_conntrack_events_total",
            "counter",
            "Connection table events: inserted, removed, expired, evicted, refused, SNAT exhaustion and reclaim.",
            &events(conntrack),
        );
    }
    let rule_hits: Vec<(String, u64)> = scrape
        .rules
        .iter()
        .map(|r| {
            let position = r.position.to_string();
            let action = r.spec.action.to_string();
            let pairs = [
                ("network", r.spec.net.as_str()),
                ("position", position.as_str()),
                ("action", action.as_str()),
            ];
            (labels(&pairs), r.hits)
        })
        .collect();
    family(
        &mut out,
        "switchyard_rule_hits_total",
        "counter",
        "New connections a firewall rule decided (allowed or denied), by network and position (yardctl rule ls).",
        &rule_hits,
    );
    let tunnel_drops: Vec<(String, u64)> = scrape
        .tunnel_drops
        .iter()
        .map(|(reason, n)| (labels(&[("reason", reason)]), *n))
        .collect();
    family(
        &mut out,
        "switchyard_tunnel_drops_total",
        "counter",
        "Tunnel packets dropped before reaching a tunnel port, by reason (yardctl status).",
        &tunnel_drops,
    );
    family(
        &mut out,
        "switchyard_tunnel_gro_segments_total",
        "counter",
        "TCP segments tunnels received that software GRO merged into GSO frames (yardctl status).",
        &[(String::new(), scrape.tunnel_gro.segments)],
    );
    family(
        &mut out,
        "switchyard_tunnel_gro_frames_total",
        "counter",
        "GSO frames software GRO made from received tunnel segments (yardctl status).",
        &[(String::new(), scrape.tunnel_gro.frames)],
    );
    let threads: Vec<(String, f64)> = scrape
        .threads
        .iter()
        .map(|(thread, secs)| (labels(&[("thread", thread)]), *secs))
        .collect();
    family(
        &mut out,
        "switchyard_thread_cpu_seconds_total",
        "counter",
        "CPU time of yardd's datapath threads (a poll loop's busy time, the host uplink's relay included), in seconds.",
        &threads,
    );
    out
}

/// Makes the replies of one scrape.
fn scrape(control: &Mutex<Control>) -> Result<Scrape, String> {
    let mut control = control.lock().unwrap_or_else(|p| p.into_inner());
    let mut ask = |request: Request| control.handle(request).map_err(|e| e.to_string());
    let ports = match ask(Request::PortStats { name: None })? {
        Payload::PortStats(stats) => stats,
        _ => return Err("port stats: unexpected reply".into()),
    };
    let networks = match ask(Request::NetLs)? {
        Payload::Networks(nets) => nets,
        _ => return Err("net ls: unexpected reply".into()),
    };
    let conntrack = match ask(Request::ConntrackStats)? {
        Payload::ConntrackStats(stats) => Some(stats),
        _ => None,
    };
    let rules = match ask(Request::RuleLs { net: None })? {
        Payload::Rules(rules) => rules,
        _ => return Err("rule ls: unexpected reply".into()),
    };
    let (tunnel_drops, tunnel_gro) = match ask(Request::Status)? {
        Payload::Status(status) => (status.tunnel_drops, status.tunnel_gro),
        _ => (BTreeMap::new(), TunnelGro::default()),
    };
    Ok(Scrape {
        ports,
        networks,
        conntrack,
        threads: crate::sys::thread_cpu::cpu_seconds(),
        tunnel_drops,
        tunnel_gro,
        rules,
    })
}

/// Serves `/metrics` on `listener` until the process ends (run it on a
/// thread of its own).
pub fn serve(listener: TcpListener, control: Arc<Mutex<Control>>) {
    let server = match tiny_http::Server::from_listener(listener, None) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "cannot serve metrics");
            return;
        }
    };
    for request in server.incoming_requests() {
        let response = if request.url() != "/metrics" {
            tiny_http::Response::from_string("not found: metrics are at /metrics\n")
                .with_status_code(404)
        } else {
            match scrape(&control) {
                Ok(scrape) => {
                    let header = tiny_http::Header::from_bytes(
                        "Content-Type",
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(render(&scrape)).with_header(header)
                }
                Err(error) => {
                    tiny_http::Response::from_string(format!("{error}\n")).with_status_code(500)
                }
            }
        };
        if let Err(error) = request.respond(response) {
            tracing::debug!(%error, "a metrics scrape went away");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_ctl::api::NetworkSpec;

    fn scrape_of() -> Scrape {
        Scrape {
            ports: vec![PortStats {
                name: "c\"1".into(),
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 2,
                tx_bytes: 200,
                drops: BTreeMap::from([("spoofed-mac".to_string(), 5)]),
            }],
            networks: vec![NetworkInfo {
                spec: NetworkSpec::new("yard0"),
                ports: vec!["c1".into()],
                fdb_entries: 4,
                mac_moves: 1,
                connected: Vec::new(),
                overlay_mtu: None,
            }],
            conntrack: Some(ConntrackStats {
                entries: 7,
                max_entries: 262_144,
                counters: BTreeMap::from([
                    ("gw-forwarded".to_string(), 11),
                    ("inserted".to_string(), 9),
                    ("snat-mappings".to_string(), 2),
                ]),
                snat_share_percent: None,
                by_state: BTreeMap::from([("ESTABLISHED".to_string(), 5)]),
            }),
            threads: vec![("datapath-0".into(), 1.25)],
            tunnel_drops: BTreeMap::from([("bad-checksum".to_string(), 2)]),
            tunnel_gro: TunnelGro {
                frames: 3,
                segments: 40,
            },
            rules: vec![RuleInfo {
                position: 2,
                spec: yard_ctl::api::RuleSpec {
                    net: "yard0".into(),
                    from: None,
                    to: Some(yard_ctl::api::RulePeer::Outside),
                    proto: None,
                    dport: None,
                    action: yard_ctl::api::RuleAction::Deny,
                },
                hits: 6,
            }],
        }
    }

    #[test]
    fn every_family_has_help_type_and_its_samples() {
        let text = render(&scrape_of());
        for line in [
            "# TYPE switchyard_port_receive_packets_total counter",
            "switchyard_port_receive_packets_total{port=\"c\\\"1\"} 3",
            "switchyard_port_transmit_bytes_total{port=\"c\\\"1\"} 200",
            "switchyard_port_drops_total{port=\"c\\\"1\",reason=\"spoofed-mac\"} 5",
            "switchyard_network_fdb_entries{network=\"yard0\"} 4",
            "switchyard_network_mac_moves_total{network=\"yard0\"} 1",
            "switchyard_conntrack_entries 7",
            "switchyard_conntrack_entries_limit 262144",
            "# TYPE switchyard_nat_snat_mappings gauge",
            "switchyard_nat_snat_mappings 2",
            "switchyard_gateway_events_total{event=\"forwarded\"} 11",
            "switchyard_conntrack_events_total{event=\"inserted\"} 9",
            "switchyard_conntrack_entries_by_state{state=\"ESTABLISHED\"} 5",
            "# TYPE switchyard_thread_cpu_seconds_total counter",
            "switchyard_thread_cpu_seconds_total{thread=\"datapath-0\"} 1.25",
            "switchyard_tunnel_drops_total{reason=\"bad-checksum\"} 2",
            "# TYPE switchyard_tunnel_gro_segments_total counter",
            "switchyard_tunnel_gro_segments_total 40",
            "switchyard_tunnel_gro_frames_total 3",
            "# TYPE switchyard_rule_hits_total counter",
            "switchyard_rule_hits_total{network=\"yard0\",position=\"2\",action=\"deny\"} 6",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // Each family is declared once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "{text}");
    }
}
