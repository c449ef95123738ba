//! The `trace` command on the home thread: one frame through the bridge's
//! decision code and the gateway's, run dry, each decision in words (see
//! [`crate::dataplane::trace`]).
//!
//! Contract: nothing changes — the bridge decides with a [`Trace`] (no
//! learning, no snooping, no flood budget spent), delivery and the way out
//! are described by the read-only checks the sending code uses
//! ([`way_out_fit`], the bridge's `trace_delivery` and `trace_inject`), and
//! the gateway's part is its own dry run on a copy
//! (`Gateway::trace`). It runs on the home thread, which owns the gateway;
//! its FDB holds what every thread learned (threads announce what they
//! learn to each other).

use yard_nat::classify::{flow_of, PacketFlow};
use yard_nat::conntrack::{Dir, Entry};
use yard_nat::flow::{FlowKey, Proto};
use yard_nat::gateway::{Action, GatewayTrace, Side};
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::icmp;
use yard_wire::ip::protocol;
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::Offload;

use super::router::{way_out_fit, WayOutFit};
use super::{Datapath, DatapathError};
use crate::dataplane::bridge::NetId;
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::offload;
use crate::dataplane::trace::{Outcome, Stage, Trace, Tracer};
use crate::dataplane::verdict::Verdict;

impl Datapath {
    /// What the pipeline would do with `bytes`, an Ethernet frame arriving
    /// on port `in_port` (or on the uplink, when `in_port` is its name);
    /// nothing changes.
    pub(super) fn trace(&mut self, in_port: &str, bytes: &[u8]) -> Result<Trace, DatapathError> {
        let now = self.now();
        let mut frame = Frame::new();
        frame.fill(Offload::NONE, bytes);
        let mut trace = Trace::default();
        if self.uplink.as_ref().is_some_and(|u| u.name == in_port) {
            // The uplink talks to the gateway alone.
            trace.note(Stage::Ingress, || {
                format!(
                    "{} enters by uplink {in_port} ({} bytes): to the gateway",
                    describe(frame.data()),
                    frame.len()
                )
            });
            self.trace_gateway(Side::Uplink, &frame, now, &mut trace, true);
            return Ok(trace);
        }
        let id = self.bridge.port_id(in_port)?;
        trace.note(Stage::Ingress, || {
            format!(
                "{} enters by port {in_port} ({} bytes)",
                describe(frame.data()),
                frame.len()
            )
        });
        match self.bridge.decide_with(id, &mut frame, now, &mut trace) {
            Err(reason) => trace.dropped(reason, in_port),
            Ok((net, verdict)) => {
                self.bridge
                    .trace_delivery(id, net, verdict, &frame, now, &mut trace);
                let to_gateway = verdict == Verdict::Gateway;
                if to_gateway || self.bridge.gateway_hears(net, verdict, &frame) {
                    if !to_gateway {
                        trace.note(Stage::Gateway, || {
                            "a broadcast ARP: the gateway hears it too".into()
                        });
                    }
                    self.trace_gateway(Side::Net(net.0), &frame, now, &mut trace, to_gateway);
                }
            }
        }
        Ok(trace)
    }

    /// The gateway's part: its dry run, worded. `decides`: the frame is
    /// the gateway's alone (not a flood it also hears), so its drop is the
    /// frame's outcome.
    fn trace_gateway(
        &self,
        side: Side,
        frame: &Frame,
        now: Millis,
        trace: &mut Trace,
        decides: bool,
    ) {
        let gt = self.gateway.trace(side, frame.data(), frame.offload, now.0);
        let answered =
            matches!(gt.action, Action::Send { .. }) && is_answer(frame.data(), &gt.frame);
        if let Some(f) = &gt.ipv4 {
            trace.note(Stage::Gateway, || {
                if f.source_fits {
                    format!(
                        "source {} belongs on {} (reverse-path check)",
                        f.src,
                        self.side_name(side)
                    )
                } else {
                    format!(
                        "source {} does not belong on {} (reverse-path check)",
                        f.src,
                        self.side_name(side)
                    )
                }
            });
            if f.source_fits && !answered {
                if let Some((rule, addr, port)) = f.published {
                    trace.note(Stage::Nat, || {
                        format!(
                            "published port (rule {}): destination becomes {addr}:{port}",
                            rule.0
                        )
                    });
                }
                trace.note(Stage::Route, || match f.route {
                    Some((out, hop)) if hop != f.published.map_or(f.dst, |p| p.1) => {
                        format!("routed to {} via {hop}", self.side_name(out))
                    }
                    Some((out, _)) => format!("routed to {}", self.side_name(out)),
                    None => "no route to the destination".into(),
                });
                if let Some(m) = f.rule {
                    trace.note(Stage::Rules, || {
                        let verdict = match m.action {
                            yard_nat::rules::RuleAction::Allow => "allows",
                            yard_nat::rules::RuleAction::Deny => "denies",
                        };
                        format!("a new connection: rule #{} {verdict} it", m.position)
                    });
                }
                match (&f.established, &f.created) {
                    (Some((e, dir)), _) => trace.note(Stage::Conntrack, || {
                        format!(
                            "rides an established connection ({} direction, {}): {}",
                            dir_name(*dir),
                            e.state_name(),
                            tuples(e)
                        )
                    }),
                    (None, Some(e)) => trace.note(Stage::Conntrack, || {
                        format!(
                            "new connection, would be tracked as {} (not made by a trace)",
                            tuples(e)
                        )
                    }),
                    (None, None) => {}
                }
            }
        }
        self.word_gateway_action(&gt, trace, decides, answered);
        for made in &gt.made {
            trace.note(Stage::Gateway, || {
                format!(
                    "would also send {} to {}",
                    describe(&made.bytes),
                    self.side_name(made.side)
                )
            });
        }
        if let Action::Send { side: out, .. } = gt.action {
            let mut leaving = Frame::new();
            leaving.fill(frame.offload, &gt.frame);
            if answered {
                // The gateway answers (ARP, echo): the answer's way back is
                // described, but the frame itself ends at the gateway.
                let before = std::mem::take(&mut trace.outcome);
                self.trace_way_out(out, &mut leaving, now, trace);
                trace.outcome = if decides {
                    Outcome::Kept(format!("answered by the gateway: {}", describe(&gt.frame)))
                } else {
                    before
                };
            } else {
                self.trace_way_out(out, &mut leaving, now, trace);
            }
        }
    }

    /// Words the gateway's action, and a rewrite when there was one.
    fn word_gateway_action(
        &self,
        gt: &GatewayTrace,
        trace: &mut Trace,
        decides: bool,
        answered: bool,
    ) {
        match gt.action {
            Action::Drop(reason) => {
                trace.note(Stage::Gateway, || {
                    format!(
                        "the gateway drops it ({}, in conntrack stats)",
                        reason.as_str()
                    )
                });
                if decides {
                    trace.dropped_as(reason.as_str(), "gateway".into());
                }
            }
            Action::Consumed if gt.held_for_arp => {
                let hop = gt.ipv4.as_ref().and_then(|f| f.route).map(|(_, hop)| hop);
                let hop = hop.map_or("the next hop".to_string(), |h| h.to_string());
                trace.note(Stage::Arp, || {
                    format!("would resolve {hop} by ARP, not known yet: the packet waits for the answer")
                });
                trace.outcome =
                    Outcome::Kept(format!("held by the gateway until {hop} answers ARP"));
            }
            Action::Consumed => {
                trace.note(Stage::Gateway, || "the gateway takes it".into());
                if decides {
                    trace.outcome = Outcome::Kept("taken by the gateway".into());
                }
            }
            Action::Send { .. } if answered => {
                trace.note(Stage::Gateway, || {
                    format!("the gateway answers it itself: {}", describe(&gt.frame))
                });
            }
            Action::Send { .. } => {
                let before = gt.ipv4.as_ref().and_then(|f| f.key);
                let after = Ipv4Packet::new_checked(
                    gt.frame.get(ethernet::HEADER_LEN..).unwrap_or_default(),
                )
                .ok()
                .and_then(|ip| match flow_of(ip.as_bytes()) {
                    Ok(PacketFlow::Transport { key, .. }) => Some(key),
                    _ => None,
                });
                match (before, after) {
                    (Some(b), Some(a))
                        if b.src != a.src
                            || b.dst != a.dst
                            || b.sport != a.sport
                            || b.dport != a.dport =>
                    {
                        let (b, a) = (flow_words(&b), flow_words(&a));
                        trace.note(Stage::Nat, || format!("rewritten: {b} becomes {a}"));
                    }
                    (Some(_), Some(_)) => {
                        trace.note(Stage::Nat, || "no address translation".into())
                    }
                    _ => {}
                }
                trace.note(Stage::Gateway, || {
                    format!("the gateway sends {}", describe(&gt.frame))
                });
            }
        }
    }

    /// The way out of the gateway to `side`: made to fit its MTU as
    /// [`Router::send`](super::router::Router::send) does, then into the
    /// network or out of the uplink.
    fn trace_way_out(&self, side: Side, frame: &mut Frame, now: Millis, trace: &mut Trace) {
        let mtu = match side {
            Side::Host => {
                trace.note(Stage::Egress, || {
                    "handed to the host uplink's relay: yardd's own sockets send it".into()
                });
                trace.leaves("host".into());
                return;
            }
            Side::Net(net) => self.bridge.network(NetId(net)).map(|n| n.mtu),
            Side::Uplink => self.uplink.as_ref().map(|u| u.mtu),
        };
        let payload = frame.len().saturating_sub(ethernet::HEADER_LEN);
        if let Some(mtu) = mtu {
            match way_out_fit(frame, mtu) {
                WayOutFit::Fits => {}
                WayOutFit::Gso => trace.note(Stage::Mtu, || {
                    format!("a GSO frame: its segment size is made to fit MTU {mtu}")
                }),
                WayOutFit::Refuse => {
                    trace.note(Stage::Mtu, || {
                        format!(
                            "{payload} bytes with don't-fragment exceed MTU {mtu} of {}: the sender \
                             gets ICMP fragmentation-needed (MTU {mtu})",
                            self.side_name(side)
                        )
                    });
                    let counted_on = match (side, &self.uplink) {
                        (Side::Uplink, Some(u)) => format!("uplink {}", u.name),
                        _ => "nowhere (an ICMP error is the answer)".into(),
                    };
                    trace.dropped_as("too-big", counted_on);
                    return;
                }
                WayOutFit::Fragment => {
                    let mut whole = Frame::new();
                    whole.fill(frame.offload, frame.data());
                    let mut pieces = Frame::new();
                    let mut first: Option<Vec<u8>> = None;
                    let mut n = 0;
                    let cut = offload::complete_checksum(&mut whole).is_ok()
                        && offload::fragment_ipv4(&whole, mtu, &mut pieces, |piece| {
                            n += 1;
                            first.get_or_insert_with(|| piece.data().to_vec());
                        })
                        .is_ok();
                    if let (true, Some(first)) = (cut, first) {
                        trace.note(Stage::Fragmentation, || {
                            format!("{payload} bytes exceed MTU {mtu} of {} and may be fragmented: cut into {n} IP fragments", self.side_name(side))
                        });
                        frame.fill(Offload::NONE, &first);
                    }
                }
            }
        }
        match side {
            Side::Net(net) => self.bridge.trace_inject(NetId(net), frame, now, trace),
            Side::Uplink => {
                let name = self.uplink.as_ref().map_or("", |u| u.name.as_str());
                trace.note(Stage::Egress, || format!("leaves by uplink {name}"));
                trace.leaves(format!("uplink {name}"));
            }
            Side::Host => {}
        }
    }

    /// A side in words.
    fn side_name(&self, side: Side) -> String {
        match side {
            Side::Net(id) => self
                .bridge
                .network(NetId(id))
                .map_or(format!("network #{id}"), |n| format!("network {}", n.name)),
            Side::Uplink => match &self.uplink {
                Some(u) => format!("uplink {}", u.name),
                None => "the uplink".into(),
            },
            Side::Host => "the host uplink".into(),
        }
    }
}

/// Whether `sent`, what the gateway sent for `received`, is an answer to
/// it (an ARP reply, an echo reply) rather than `received` routed on.
fn is_answer(received: &[u8], sent: &[u8]) -> bool {
    let ethertype_of = |f: &[u8]| EthernetFrame::new_checked(f).map(|e| e.ethertype()).ok();
    if ethertype_of(sent) == Some(ethertype::ARP) {
        return true;
    }
    let ip_of = |f: &[u8]| {
        Ipv4Packet::new_checked(f.get(ethernet::HEADER_LEN..)?)
            .ok()
            .map(|ip| {
                (
                    ip.src(),
                    ip.dst(),
                    ip.protocol(),
                    ip.payload().first().copied(),
                )
            })
    };
    match (ip_of(received), ip_of(sent)) {
        (Some((src, dst, ..)), Some((back_src, back_dst, proto, first))) => {
            proto == protocol::ICMP
                && first == Some(icmp::ECHO_REPLY)
                && back_src == dst
                && back_dst == src
        }
        _ => false,
    }
}

fn dir_name(dir: Dir) -> &'static str {
    match dir {
        Dir::Original => "original",
        Dir::Reply => "reply",
    }
}

/// An entry's two tuples, as `conntrack ls` has them.
fn tuples(e: &Entry) -> String {
    format!(
        "original {}, reply {}",
        flow_words(&e.original),
        flow_words(&e.reply)
    )
}

/// A flow as `conntrack ls` writes it: ports, or an echo's identifier.
fn flow_words(key: &FlowKey) -> String {
    match key.proto {
        Proto::Icmp => format!("icmp {} -> {} id {}", key.src, key.dst, key.sport),
        _ => key.to_string(),
    }
}

/// A frame in a few words: its protocol and addresses.
fn describe(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return "a runt frame".into();
    };
    let macs = format!("{} > {}", mac(eth.src()), mac(eth.dst()));
    let Some(rest) = frame.get(ethernet::HEADER_LEN..) else {
        return macs;
    };
    match eth.ethertype() {
        ethertype::ARP => match yard_wire::arp::ArpPacket::new_checked(rest) {
            Ok(a) if a.op() == yard_wire::arp::ArpOp::Reply => format!(
                "ARP reply {} is-at {} ({macs})",
                a.sender_proto(),
                mac(a.sender_hw())
            ),
            Ok(a) => format!(
                "ARP request who-has {} tell {} ({macs})",
                a.target_proto(),
                a.sender_proto()
            ),
            Err(_) => format!("a malformed ARP packet ({macs})"),
        },
        ethertype::IPV4 => match Ipv4Packet::new_checked(rest) {
            Ok(ip) => match flow_of(ip.as_bytes()) {
                Ok(PacketFlow::Transport { key, .. }) => format!("{} ({macs})", flow_words(&key)),
                Ok(PacketFlow::IcmpError { .. }) => {
                    format!("an ICMP error {} -> {} ({macs})", ip.src(), ip.dst())
                }
                _ => format!(
                    "IPv4 {} -> {} protocol {} ({macs})",
                    ip.src(),
                    ip.dst(),
                    ip.protocol()
                ),
            },
            Err(_) => format!("a malformed IPv4 packet ({macs})"),
        },
        other => format!("ethertype {other:#06x} ({macs})"),
    }
}

fn mac(m: [u8; 6]) -> String {
    yard_ctl::MacAddr(m).to_string()
}
