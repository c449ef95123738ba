//! Firewall rules on switched traffic: each network's [`RuleSet`] and the
//! [`FlowTable`] of what it allowed, consulted for IPv4 frames the bridge
//! forwards or floods between ports (frames for the gateway are the
//! gateway's to judge, see `yard_nat::gateway`).
//!
//! Contract: a network without rules costs nothing. With rules, a packet
//! of a tracked flow (either direction) passes; a new flow is judged
//! (first match wins, default allow) and, when allowed, recorded — so its
//! replies pass even where a rule would deny that direction — and, with
//! several datapath threads, announced at once to the other threads
//! ([`FlowLink`]) before the frame is sent on. A thread about to deny what
//! looks like a new flow first takes in the announcements waiting for it
//! and looks again: the reply cannot have been read before its flow's
//! announcement was queued. A live flow is announced again every
//! [`yard_nat::rules::flows::REANNOUNCE_MS`], since a full queue drops.
//! Denied frames count as `rule-deny` on their in-port; every decision
//! counts a hit on the deciding rule.
//!
//! Judged: TCP, UDP and ICMP echo by their flow; an ICMP error passes when
//! the flow it quotes is tracked, else it is judged (not recorded) as a
//! packet of that flow's reverse. Passed unjudged: non-IPv4 frames (ARP,
//! IPv6), later IP fragments (their first fragment was judged), other IP
//! protocols, and broadcast or multicast destinations. Nothing allocates
//! per frame: the flow table is allocated whole when a network gets rules.

use crossbeam_channel::{Receiver, Sender};
use yard_nat::classify::{flow_of, PacketFlow};
use yard_nat::conntrack::Timeouts;
use yard_nat::flow::FlowKey;
use yard_nat::rules::flows::FlowTable;
use yard_nat::rules::{NewFlow, Rule, RuleAction, RuleId, RuleMatch, RuleSet};
use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::tcp::TcpFlags;

use super::NetId;
use crate::dataplane::clock::Millis;

/// The flows one bridge's network may track: past it, new flows pass
/// unrecorded (their replies are judged as new).
pub const FLOW_LIMIT: usize = 16 * 1024;

/// A flow one thread allowed, for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowNews {
    /// The network.
    pub net: NetId,
    /// The flow, as its first packet travelled.
    pub key: FlowKey,
}

/// One thread's end of the flow announcements: queues to every other
/// thread and its own.
pub struct FlowLink {
    others: Vec<Sender<FlowNews>>,
    inbox: Receiver<FlowNews>,
}

impl FlowLink {
    /// A link sending to `others` and hearing `inbox`.
    pub fn new(others: Vec<Sender<FlowNews>>, inbox: Receiver<FlowNews>) -> FlowLink {
        FlowLink { others, inbox }
    }

    fn announce(&self, news: FlowNews) {
        for tx in &self.others {
            let _ = tx.try_send(news);
        }
    }
}

/// One network's rules and the flows they allowed.
#[derive(Debug, Default)]
pub struct NetRules {
    rules: RuleSet,
    flows: Option<FlowTable>,
}

/// What the rules say of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not judged, or a tracked flow's: pass.
    Pass,
    /// A flow to announce when sharing: new and allowed (recorded, unless
    /// the table is full), or tracked and due to be announced again.
    Allowed(FlowKey),
    /// Denied, unless another thread has since announced its flow.
    Denied(FlowKey),
}

/// What the rules would say of a frame, looked at without side effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The network has no rules, or the frame is not judged (not IPv4
    /// TCP/UDP/ICMP, a later fragment, a broadcast or multicast
    /// destination): it passes.
    NotJudged,
    /// A packet of a flow already allowed: it passes.
    Tracked,
    /// A new flow: the rule that decides it (`position`, `action`), or
    /// `None` for the default, allow. A deny stands unless another thread
    /// has announced the flow meanwhile.
    New(Option<RuleMatch>),
}

impl NetRules {
    /// Replaces the rules (hits follow rule ids). The flow table is made
    /// with the first rules and dropped with the last.
    pub fn set(&mut self, rules: Vec<Rule>) {
        if rules.is_empty() {
            self.flows = None;
        } else if self.flows.is_none() {
            self.flows = Some(FlowTable::new(FLOW_LIMIT, Timeouts::default()));
        }
        self.rules.replace(rules);
    }

    /// Each rule's id and the switched connections it decided here.
    pub fn hits(&self) -> impl Iterator<Item = (RuleId, u64)> + '_ {
        self.rules.hits()
    }

    /// What [`NetRules::admit`] would make of `frame` (Ethernet,
    /// untagged), changing nothing — no hit, no flow recorded or
    /// refreshed, no announcement taken in (for `yardctl trace`).
    pub fn look(&self, frame: &[u8]) -> Look {
        let Some(flows) = self.flows.as_ref() else {
            return Look::NotJudged;
        };
        let Some((judged, _)) = judged_flow(frame) else {
            return Look::NotJudged;
        };
        if flows.contains(&judged.key) {
            return Look::Tracked;
        }
        Look::New(self.rules.first_match(&judged))
    }

    /// Looks at a frame being switched: see [`Admission`]. Denies count
    /// their hit only in [`NetRules::deny`], after the recheck.
    pub fn admit(&mut self, frame: &[u8], now: Millis) -> Admission {
        let Some(flows) = self.flows.as_mut() else {
            return Admission::Pass;
        };
        let Some((judged, packet)) = judged_flow(frame) else {
            return Admission::Pass;
        };
        match packet {
            Packet::Flow { closing } => match flows.touch(&judged.key, closing, now.0) {
                Some(true) => return Admission::Allowed(judged.key),
                Some(false) => return Admission::Pass,
                None => {}
            },
            Packet::IcmpError => {
                if flows.contains(&judged.key) {
                    return Admission::Pass;
                }
            }
        }
        let deny = self
            .rules
            .first_match(&judged)
            .is_some_and(|m| m.action == RuleAction::Deny);
        if deny {
            return Admission::Denied(judged.key);
        }
        self.rules.judge(&judged);
        match packet {
            Packet::Flow { .. } => {
                // A full table records no more; the frame passes anyway.
                flows.insert(judged.key, now.0);
                Admission::Allowed(judged.key)
            }
            Packet::IcmpError => Admission::Pass,
        }
    }

    /// After [`Admission::Denied`] and the announcements heard: whether
    /// the flow is tracked now (pass), else the deny's hit is counted.
    pub fn deny(&mut self, frame: &[u8], key: &FlowKey) -> bool {
        if self.flows.as_ref().is_some_and(|f| f.contains(key)) {
            return false;
        }
        if let Some((judged, _)) = judged_flow(frame) {
            self.rules.judge(&judged);
        }
        true
    }

    /// Records a flow another thread allowed.
    pub fn hear(&mut self, key: FlowKey, now: Millis) {
        if let Some(flows) = self.flows.as_mut() {
            flows.insert(key, now.0);
        }
    }

    /// Forgets flows idle past their timeout.
    pub fn expire(&mut self, now: Millis) {
        if let Some(flows) = self.flows.as_mut() {
            flows.expire(now.0);
        }
    }
}

/// Sends `news` to the other threads, if this bridge shares flows.
pub fn announce(link: Option<&FlowLink>, news: FlowNews) {
    if let Some(link) = link {
        link.announce(news);
    }
}

/// The announcements waiting for this thread, at most one queue's worth.
pub fn heard(link: Option<&FlowLink>) -> impl Iterator<Item = FlowNews> + '_ {
    link.into_iter()
        .flat_map(|l| l.inbox.try_iter().take(l.inbox.capacity().unwrap_or(0)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packet {
    /// A packet of its own flow; `closing`: a TCP FIN or RST.
    Flow { closing: bool },
    /// An ICMP error about the flow.
    IcmpError,
}

/// The flow a frame is judged as, or `None` when it passes unjudged.
fn judged_flow(frame: &[u8]) -> Option<(NewFlow, Packet)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let (key, packet) = match flow_of(eth.payload()).ok()? {
        PacketFlow::Transport { key, tcp_flags, .. } => {
            let closing = tcp_flags.contains(TcpFlags::FIN) || tcp_flags.contains(TcpFlags::RST);
            (key, Packet::Flow { closing })
        }
        PacketFlow::IcmpError { quoted, .. } => (quoted.reversed(), Packet::IcmpError),
        PacketFlow::LaterFragment(_) => return None,
    };
    if key.dst.is_broadcast() || key.dst.is_multicast() {
        return None;
    }
    Some((
        NewFlow {
            key,
            outside: false,
        },
        packet,
    ))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use yard_nat::rules::Endpoint;
    use yard_wire::cidr::Ipv4Cidr;

    use super::*;

    const A: [u8; 4] = [10, 0, 0, 2];
    const B: [u8; 4] = [10, 0, 0, 3];

    fn rule(id: u64, from: [u8; 4], to: [u8; 4], action: RuleAction) -> Rule {
        let host = |a: [u8; 4]| Endpoint::Prefix(Ipv4Cidr::host(Ipv4Addr::from(a)));
        Rule {
            id: RuleId(id),
            from: host(from),
            to: host(to),
            proto: None,
            dports: None,
            action,
        }
    }

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut bytes, b"x")
            .unwrap();
        bytes
    }

    fn tcp_fin(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1024)
            .fin()
            .write(&mut bytes, b"")
            .unwrap();
        bytes
    }

    fn hits(rules: &NetRules) -> Vec<u64> {
        rules.hits().map(|(_, h)| h).collect()
    }

    #[test]
    fn no_rules_judge_nothing() {
        let mut rules = NetRules::default();
        assert_eq!(rules.admit(&udp(A, 1, B, 2), Millis(0)), Admission::Pass);
        assert_eq!(rules.look(&udp(A, 1, B, 2)), Look::NotJudged);
    }

    #[test]
    fn replies_of_an_allowed_flow_pass_a_deny_for_their_direction() {
        let mut rules = NetRules::default();
        rules.set(vec![
            rule(1, A, B, RuleAction::Allow),
            rule(2, B, A, RuleAction::Deny),
        ]);
        let now = Millis(0);
        assert!(matches!(
            rules.admit(&udp(A, 5000, B, 53), now),
            Admission::Allowed(_)
        ));
        assert_eq!(rules.admit(&udp(B, 53, A, 5000), now), Admission::Pass);
        assert_eq!(rules.admit(&udp(A, 5000, B, 53), now), Admission::Pass);
        let opened = udp(B, 53, A, 6000);
        let Admission::Denied(key) = rules.admit(&opened, now) else {
            panic!("B opening to A is denied");
        };
        assert!(rules.deny(&opened, &key));
        assert_eq!(hits(&rules), vec![1, 1]);
        assert!(
            matches!(rules.look(&opened), Look::New(Some(m)) if m.position == 2),
            "trace's look finds rule 2"
        );
        assert_eq!(rules.look(&udp(B, 53, A, 5000)), Look::Tracked);
        assert_eq!(rules.look(&udp(B, 54, B, 5000)), Look::New(None));
        assert_eq!(hits(&rules), vec![1, 1], "looking counts nothing");
    }

    #[test]
    fn a_flow_another_thread_announced_is_not_denied() {
        let mut rules = NetRules::default();
        rules.set(vec![rule(1, B, A, RuleAction::Deny)]);
        let reply = udp(B, 53, A, 5000);
        let Admission::Denied(key) = rules.admit(&reply, Millis(0)) else {
            panic!("looks new");
        };
        rules.hear(key.reversed(), Millis(0));
        assert!(!rules.deny(&reply, &key));
        assert_eq!(hits(&rules), vec![0]);
        assert_eq!(rules.admit(&reply, Millis(1)), Admission::Pass);
    }

    #[test]
    fn a_closed_tcp_flow_expires_and_is_judged_again() {
        let mut rules = NetRules::default();
        rules.set(vec![rule(1, B, A, RuleAction::Deny)]);
        let t = Timeouts::default();
        assert!(matches!(
            rules.admit(&tcp_fin(A, 4000, B, 80), Millis(0)),
            Admission::Allowed(_)
        ));
        assert_eq!(
            rules.admit(&tcp_fin(B, 80, A, 4000), Millis(1)),
            Admission::Pass
        );
        rules.expire(Millis(t.tcp_close + 1));
        assert!(matches!(
            rules.admit(&tcp_fin(B, 80, A, 4000), Millis(t.tcp_close + 2)),
            Admission::Denied(_)
        ));
    }
}
