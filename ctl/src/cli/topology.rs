//! `yardctl topology [--dot]`: what is connected to what — networks, their
//! ports (TAPs, veths, interfaces, trunks, tunnels, QEMU VMs), the uplink,
//! routing between networks and links — as an indented listing, or as a
//! Graphviz graph (`yardctl topology --dot | dot -Tsvg > net.svg`).
//!
//! Contract: built only from the listings yardctl already has (`net ls`,
//! `port ls`, `uplink ls`, `link ls`); nothing here talks to yardd, so the
//! rendering is a pure function of those replies.

use std::fmt::Write as _;

use crate::api::{LinkInfo, NetworkInfo, PortInfo, PortKind, PortState, UplinkInfo};

/// The listings a topology is drawn from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `net ls`.
    pub networks: Vec<NetworkInfo>,
    /// `port ls`.
    pub ports: Vec<PortInfo>,
    /// `uplink ls`.
    pub uplinks: Vec<UplinkInfo>,
    /// `link ls`.
    pub links: Vec<LinkInfo>,
}

/// One line describing a port: its kind and where it leads.
fn port_detail(port: &PortInfo) -> String {
    let address = port
        .spec
        .kind
        .address()
        .map(|ip| format!(" {ip}"))
        .unwrap_or_default();
    let place = match &port.spec.kind {
        PortKind::Tap { netns, ifname, .. } => match netns {
            Some(ns) => format!("tap {ifname} in {ns}"),
            None => format!("tap {ifname}"),
        },
        PortKind::Veth { ifname, peer, .. } => format!("veth {ifname} (peer {peer})"),
        PortKind::Iface { iface, .. } => format!("iface {iface}"),
        PortKind::Trunk { iface, .. } => format!("trunk {iface}"),
        PortKind::Gre { remote, key, .. } => format!("gre to {remote}{}", key_text(*key)),
        PortKind::GreUdp { remote, key, .. } => {
            format!("gre-udp to {remote}{}", key_text(*key))
        }
        PortKind::QemuStream { path, .. } => format!("qemu stream {path}"),
        PortKind::QemuDgram { addr, .. } => format!("qemu dgram {addr}"),
    };
    let state = match &port.state {
        PortState::Up => String::new(),
        PortState::Down(reason) => format!(" [down: {reason}]"),
    };
    format!("{place}{address}{state}")
}

fn key_text(key: Option<u32>) -> String {
    key.map(|k| format!(" key {k}")).unwrap_or_default()
}

fn network_detail(net: &NetworkInfo) -> String {
    let spec = &net.spec;
    let mut parts = Vec::new();
    if let Some(subnet) = spec.subnet {
        parts.push(subnet.to_string());
    }
    if let Some(gw) = spec.gateway {
        parts.push(format!("gw {gw}"));
    }
    if let Some(vlan) = spec.vlan {
        parts.push(format!("vlan {vlan}"));
    }
    if !spec.icc {
        parts.push("no icc".into());
    }
    if spec.internal {
        parts.push("internal".into());
    }
    parts.join(", ")
}

/// Whether network `net` routes to the uplinks: a subnet, not internal.
fn reaches_uplink(net: &NetworkInfo) -> bool {
    net.spec.subnet.is_some() && !net.spec.internal
}

/// The indented listing.
pub fn text(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for net in &snapshot.networks {
        let _ = writeln!(out, "{} ({})", net.spec.name, network_detail(net));
        for port in snapshot
            .ports
            .iter()
            .filter(|p| p.spec.nets().contains(&net.spec.name.as_str()))
        {
            let _ = writeln!(out, "  {}: {}", port.spec.name, port_detail(port));
        }
        for other in &net.connected {
            let _ = writeln!(out, "  routes to network {other}");
        }
        if reaches_uplink(net) {
            for uplink in &snapshot.uplinks {
                let _ = writeln!(out, "  routes to uplink {}", uplink.spec.name);
            }
        }
    }
    for link in &snapshot.links {
        let ports: Vec<String> = link.spec.ports.iter().map(ToString::to_string).collect();
        let on = if ports.is_empty() {
            "all".to_string()
        } else {
            ports.join(",")
        };
        let _ = writeln!(out, "link {} -> {} ({on})", link.spec.a, link.spec.b);
    }
    out
}

/// `s` as a quoted DOT string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The Graphviz graph: a box per network, a node per port (shaped by kind),
/// a house per uplink; routed ways dashed, links dotted.
pub fn dot(snapshot: &Snapshot) -> String {
    let mut out = String::from(
        "graph switchyard {\n  rankdir=LR;\n  node [fontname=\"sans-serif\", fontsize=10];\n  edge [fontname=\"sans-serif\", fontsize=9];\n",
    );
    for net in &snapshot.networks {
        let label = format!("{}\n{}", net.spec.name, network_detail(net));
        let _ = writeln!(
            out,
            "  {} [shape=box, style=\"rounded,filled\", fillcolor=\"#dbe9f6\", label={}];",
            quoted(&format!("net:{}", net.spec.name)),
            quoted(&label)
        );
    }
    for uplink in &snapshot.uplinks {
        let _ = writeln!(
            out,
            "  {} [shape=house, label={}];",
            quoted(&format!("uplink:{}", uplink.spec.name)),
            quoted(&format!("uplink {}", uplink.spec.name))
        );
    }
    for port in &snapshot.ports {
        let shape = match &port.spec.kind {
            PortKind::Gre { .. } | PortKind::GreUdp { .. } => "hexagon",
            PortKind::Trunk { .. } => "trapezium",
            PortKind::QemuStream { .. } | PortKind::QemuDgram { .. } => "component",
            _ => "ellipse",
        };
        let style = match port.state {
            PortState::Up => "solid",
            PortState::Down(_) => "dashed",
        };
        let id = quoted(&format!("port:{}", port.spec.name));
        let label = format!("{}\n{}", port.spec.name, port_detail(port));
        let _ = writeln!(
            out,
            "  {id} [shape={shape}, style={style}, label={}];",
            quoted(&label)
        );
        for net in port.spec.nets() {
            let vlan = match &port.spec.kind {
                PortKind::Trunk { .. } => snapshot
                    .networks
                    .iter()
                    .find(|n| n.spec.name == net)
                    .and_then(|n| n.spec.vlan)
                    .map(|v| format!(" [label={}]", quoted(&format!("vlan {v}"))))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {} -- {id}{vlan};", quoted(&format!("net:{net}")));
        }
    }
    for net in &snapshot.networks {
        for other in net.connected.iter().filter(|o| **o > net.spec.name) {
            let _ = writeln!(
                out,
                "  {} -- {} [style=dashed, label=\"routed\"];",
                quoted(&format!("net:{}", net.spec.name)),
                quoted(&format!("net:{other}"))
            );
        }
        if reaches_uplink(net) {
            for uplink in &snapshot.uplinks {
                let _ = writeln!(
                    out,
                    "  {} -- {} [style=dashed];",
                    quoted(&format!("net:{}", net.spec.name)),
                    quoted(&format!("uplink:{}", uplink.spec.name))
                );
            }
        }
    }
    for link in &snapshot.links {
        let ports: Vec<String> = link.spec.ports.iter().map(ToString::to_string).collect();
        let label = if ports.is_empty() {
            "link".to_string()
        } else {
            format!("link {}", ports.join(","))
        };
        let _ = writeln!(
            out,
            "  {} -- {} [style=dotted, dir=forward, label={}];",
            quoted(&format!("port:{}", link.spec.a)),
            quoted(&format!("port:{}", link.spec.b)),
            quoted(&label)
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LinkSpec, NetworkSpec, PortSpec, UplinkKind, UplinkSpec};

    fn network(name: &str, subnet: Option<&str>, icc: bool, connected: &[&str]) -> NetworkInfo {
        let mut spec = NetworkSpec::new(name);
        spec.subnet = subnet.map(|s| s.parse().unwrap());
        spec.gateway = spec.subnet.map(|s| {
            let [a, b, c, d] = s.addr.octets();
            std::net::Ipv4Addr::new(a, b, c, d + 1)
        });
        spec.icc = icc;
        NetworkInfo {
            spec,
            ports: Vec::new(),
            fdb_entries: 0,
            mac_moves: 0,
            connected: connected.iter().map(|s| s.to_string()).collect(),
            overlay_mtu: None,
        }
    }

    fn port(name: &str, kind: PortKind, state: PortState) -> PortInfo {
        PortInfo {
            spec: PortSpec {
                name: name.into(),
                kind,
            },
            mac: None,
            mtu: 1500,
            state,
            thread: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            networks: vec![
                network("web", Some("10.1.0.0/24"), false, &["db"]),
                network("db", Some("10.2.0.0/24"), true, &["web"]),
            ],
            ports: vec![
                port(
                    "c1",
                    PortKind::tap("web", Some("c1"), Some("10.1.0.2/24".parse().unwrap())),
                    PortState::Up,
                ),
                port(
                    "c2",
                    PortKind::tap("web", Some("c2"), None),
                    PortState::Down("namespace gone".into()),
                ),
                port(
                    "t1",
                    PortKind::GreUdp {
                        net: "db".into(),
                        remote: "192.168.50.2:4754".parse().unwrap(),
                        local: None,
                        key: Some(7),
                        csum: false,
                        seq: false,
                    },
                    PortState::Up,
                ),
            ],
            uplinks: vec![UplinkInfo {
                spec: UplinkSpec {
                    name: "up0".into(),
                    kind: UplinkKind::Iface {
                        iface: "eth9".into(),
                    },
                    ip: Some("10.9.0.2/24".parse().unwrap()),
                    gateway: None,
                },
                mac: None,
                mtu: 1500,
                state: PortState::Up,
            }],
            links: vec![LinkInfo {
                spec: LinkSpec {
                    a: "c1".into(),
                    b: "c2".into(),
                    ports: vec!["80".parse().unwrap()],
                },
                net: "web".into(),
            }],
        }
    }

    #[test]
    fn the_listing_names_every_network_port_route_and_link() {
        let text = text(&snapshot());
        for line in [
            "web (10.1.0.0/24, gw 10.1.0.1, no icc)",
            "  c1: tap eth0 in c1 10.1.0.2/24",
            "  c2: tap eth0 in c2 [down: namespace gone]",
            "  routes to network db",
            "  routes to uplink up0",
            "  t1: gre-udp to 192.168.50.2:4754 key 7",
            "link c1 -> c2 (80/tcp)",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn the_graph_has_a_node_per_object_and_an_edge_per_connection() {
        let dot = dot(&snapshot());
        assert!(dot.starts_with("graph switchyard {") && dot.ends_with("}\n"));
        for needle in [
            "\"net:web\" [shape=box",
            "\"uplink:up0\" [shape=house",
            "\"port:t1\" [shape=hexagon",
            "\"port:c2\" [shape=ellipse, style=dashed",
            "\"net:web\" -- \"port:c1\";",
            "\"net:db\" -- \"port:t1\";",
            "\"net:db\" -- \"net:web\" [style=dashed, label=\"routed\"];",
            "\"net:web\" -- \"uplink:up0\" [style=dashed];",
            "\"port:c1\" -- \"port:c2\" [style=dotted, dir=forward, label=\"link 80/tcp\"];",
        ] {
            assert!(dot.contains(needle), "missing {needle:?} in:\n{dot}");
        }
        // One routed edge per pair, not one from each side.
        assert_eq!(dot.matches("label=\"routed\"").count(), 1);
    }

    #[test]
    fn quotes_in_names_are_escaped() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
