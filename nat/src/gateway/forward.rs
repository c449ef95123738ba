//! The datapath: [`Gateway::handle`] and what it calls — ARP, ICMP echo,
//! the source check, tracked packets, ICMP errors in transit, fragments,
//! and output through the neighbour cache.
//!
//! Contract: `handle` rewrites the frame in place and returns an
//! [`Action`]; frames it makes besides go to the outbox. No IPv4 packet
//! whose source does not fit its side ([`Gateway::source_fits`]) gets
//! further than the check, and a packet rides a conntrack entry only if it
//! came in from the side the entry recorded for its direction and leaves to
//! the side recorded for the other. Fast path (a tracked connection to a
//! resolved neighbour): the source check, one conntrack lookup and touch,
//! an in-place rewrite with incremental checksums, a TTL decrement, a
//! neighbour lookup and an Ethernet header rewrite — no allocation. Every
//! other path (new connections, ARP, held frames, generated ICMP errors,
//! fragments) is slow path and may allocate. Nothing here panics on any
//! input: every view is checked before use.

use std::net::Ipv4Addr;

use super::neighbour::{Held, Hold};
use super::{Action, Gateway, GatewayDrop, IcmpErrors, OutFrame, Side};
use crate::classify::{flow_of, FlowError, FragmentInfo, PacketFlow};
use crate::conntrack::{tcp::TcpSegment, Dir, Entry, Ingress, Packet};
use crate::flow::{FlowKey, Proto};
use crate::frag::{FragKey, Later};
use crate::rewrite::{self, RewriteError};
use yard_wire::arp::{self, build_arp_reply, build_arp_request, ArpOp, ArpPacket};
use yard_wire::checksum::L4Checksum;
use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::icmp::{self, echo_reply_in_place, IcmpErrorKind, IcmpPacket};
use yard_wire::ipv4::Ipv4Packet;
use yard_wire::offload::{self, Offload};
use yard_wire::tcp::TcpPacket;

/// Ethernet header length: where the IP packet starts in a frame.
pub(super) const ETH: usize = ethernet::HEADER_LEN;
/// TTL of packets the gateway originates.
const OWN_TTL: u8 = icmp::DEFAULT_TTL;

/// The translation of one packet: its new source and destination endpoint
/// (address, port or echo identifier), derived from a conntrack entry and
/// the packet's direction, and the side it must leave to. Also the plan
/// recorded for a fragmented datagram (later fragments take only the
/// addresses and the way out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xlate {
    src: Option<(Ipv4Addr, u16)>,
    dst: Option<(Ipv4Addr, u16)>,
    /// The side the other direction of the connection comes in from, the
    /// only one this packet may go out to.
    out: Ingress,
}

impl Xlate {
    /// What a packet of `e` in direction `dir` becomes.
    pub(super) fn of(e: &Entry, dir: Dir) -> Xlate {
        let out = e.ingress[dir.other().index()];
        match dir {
            Dir::Original => Xlate {
                src: e.nat.snat,
                dst: e.nat.dnat,
                out,
            },
            Dir::Reply => Xlate {
                src: e.nat.dnat.map(|_| (e.original.dst, e.original.dport)),
                dst: e.nat.snat.map(|_| (e.original.src, e.original.sport)),
                out,
            },
        }
    }

    /// Rewrites the IPv4 packet `ip` in place. The destination first: for
    /// ICMP echo both endpoints write the identifier, and the source's
    /// (masquerade) value must win in the original direction.
    fn apply(&self, ip: &mut [u8], mode: L4Checksum) -> Result<(), RewriteError> {
        if let Some((a, p)) = self.dst {
            rewrite::rewrite_dst(ip, a, p, mode)?;
        }
        if let Some((a, p)) = self.src {
            rewrite::rewrite_src(ip, a, p, mode)?;
        }
        Ok(())
    }
}

impl Gateway {
    /// Handles one Ethernet frame that arrived on `side` (see the module
    /// documentation of [`crate::gateway`] for what the switch hands over),
    /// rewriting it in place. `offload` is the frame's offload state (what
    /// its virtio-net header said).
    pub fn handle(
        &mut self,
        side: Side,
        frame: &mut [u8],
        offload: Offload,
        now_ms: u64,
    ) -> Action {
        let action = self.dispatch(side, frame, offload, now_ms);
        if let Action::Drop(reason) = action {
            self.counters.drops[reason.index()] += 1;
        }
        action
    }

    fn dispatch(&mut self, side: Side, frame: &mut [u8], offload: Offload, now: u64) -> Action {
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Action::Drop(GatewayDrop::Malformed);
        };
        let Some((_, mac, _)) = self.side_addr(side) else {
            return Action::Drop(GatewayDrop::NotForGateway);
        };
        let (dst_mac, ethertype) = (eth.dst(), eth.ethertype());
        let to_us = dst_mac == mac;
        match ethertype {
            ethertype::ARP if to_us || dst_mac == ethernet::BROADCAST => {
                self.handle_arp(side, frame, now)
            }
            ethertype::IPV4 if to_us => self.handle_ipv4(side, frame, offload, now),
            _ if !to_us && dst_mac != ethernet::BROADCAST => {
                Action::Drop(GatewayDrop::NotForGateway)
            }
            ethertype::IPV4 => Action::Drop(GatewayDrop::NotForGateway),
            _ => Action::Drop(GatewayDrop::UnsupportedEthertype),
        }
    }

    /// (address, MAC, subnet) of the gateway on `side`.
    pub(super) fn side_addr(&self, side: Side) -> Option<(Ipv4Addr, [u8; 6], (Ipv4Addr, u8))> {
        match side {
            Side::Net(id) => self
                .nets
                .iter()
                .find(|n| n.id == id)
                .map(|n| (n.gateway, n.mac, n.subnet)),
            Side::Uplink => self.uplink.as_ref().map(|u| (u.addr.0, u.mac, u.addr)),
            Side::Host => None,
        }
    }

    fn handle_arp(&mut self, side: Side, frame: &mut [u8], now: u64) -> Action {
        let Some((our_ip, our_mac, subnet)) = self.side_addr(side) else {
            return Action::Drop(GatewayDrop::NotForGateway);
        };
        let Some(bytes) = frame.get(ETH..ETH + arp::PACKET_LEN) else {
            return Action::Drop(GatewayDrop::Malformed);
        };
        // A copy on the stack, so the reply can be written over the frame.
        let mut copy = [0u8; arp::PACKET_LEN];
        copy.copy_from_slice(bytes);
        let Ok(req) = ArpPacket::new_checked(&copy[..]) else {
            return Action::Drop(GatewayDrop::Malformed);
        };
        let (sender_ip, sender_mac) = (req.sender_proto(), req.sender_hw());
        let learnable = sender_ip != our_ip
            && super::in_subnet(sender_ip, subnet)
            && sender_mac[0] & 1 == 0
            && sender_mac != [0; 6];
        match req.op() {
            ArpOp::Request if req.target_proto() == our_ip => {
                if learnable {
                    self.learn(side, sender_ip, sender_mac, now);
                }
                match build_arp_reply(frame, &req, our_mac) {
                    Ok(len) => {
                        self.counters.arp_replies_sent += 1;
                        Action::Send { side, len }
                    }
                    Err(_) => Action::Drop(GatewayDrop::Malformed),
                }
            }
            ArpOp::Reply => {
                if learnable {
                    self.learn(side, sender_ip, sender_mac, now);
                }
                Action::Consumed
            }
            _ => {
                // RFC 826: update an entry we have, add none.
                if learnable && self.neighbours.is_known(side, sender_ip) {
                    self.learn(side, sender_ip, sender_mac, now);
                }
                Action::Drop(GatewayDrop::NotForGateway)
            }
        }
    }

    /// Records a neighbour and sends the frames that waited for it, each
    /// with the offload state it waited with.
    fn learn(&mut self, side: Side, ip: Ipv4Addr, mac: [u8; 6], now: u64) {
        for Held { mut bytes, offload } in self.neighbours.learn(side, ip, mac, now) {
            EthernetFrame::new_unchecked(&mut bytes[..]).set_dst(mac);
            self.counters.forwarded += 1;
            self.outbox.push_back(OutFrame {
                side,
                bytes,
                offload,
            });
        }
    }

    pub(super) fn handle_ipv4(
        &mut self,
        side: Side,
        frame: &mut [u8],
        offload: Offload,
        now: u64,
    ) -> Action {
        let end = match Ipv4Packet::new_checked(&frame[ETH..]) {
            Ok(ip) if ip.verify_checksum() => ETH + usize::from(ip.total_len()),
            _ => return Action::Drop(GatewayDrop::Malformed),
        };
        let (src, dst, ttl) = {
            let ip = Ipv4Packet::new_unchecked(&frame[ETH..end]);
            (ip.src(), ip.dst(), ip.ttl())
        };
        // Before anything answers, tracks or routes it: a source that does
        // not belong where the packet came from is a spoof, and answering
        // it (even with an ICMP error) would reflect to someone else.
        if !self.source_fits(side, src) {
            return Action::Drop(GatewayDrop::BadSource);
        }
        if self.is_broadcast(dst) {
            return Action::Drop(GatewayDrop::NotForGateway);
        }
        let flow = match flow_of(&frame[ETH..end]) {
            Ok(f) => f,
            Err(FlowError::UntrackedProtocol(_)) if !self.is_our_addr(dst) => {
                return Action::Drop(GatewayDrop::UnsupportedProtocol)
            }
            Err(FlowError::UntrackedProtocol(_) | FlowError::UntrackedIcmp { .. }) => {
                return Action::Drop(if self.is_our_addr(dst) {
                    GatewayDrop::NotForGateway
                } else {
                    GatewayDrop::UnsupportedProtocol
                })
            }
            Err(_) => return Action::Drop(GatewayDrop::Malformed),
        };
        match flow {
            PacketFlow::Transport { key, fragment, .. } => {
                if key.proto == Proto::Icmp
                    && self.is_local(side, dst)
                    && is_echo_request(frame, end)
                {
                    return self.echo_reply(side, frame, end);
                }
                if ttl <= 1 {
                    self.send_icmp_error(
                        IcmpErrorKind::TimeExceeded(0),
                        &frame[ETH..end],
                        false,
                        now,
                    );
                    return Action::Consumed;
                }
                self.transport(side, frame, end, key, fragment, offload, now)
            }
            PacketFlow::IcmpError {
                quoted, fragment, ..
            } => {
                if ttl <= 1 {
                    // No error about an error.
                    return Action::Consumed;
                }
                // RFC 5508 REQ-3, REQ-3a. A fragment of an error cannot be
                // summed whole; a partial checksum is the device's to finish.
                if fragment.is_none()
                    && offload.l4_checksum() == L4Checksum::Full
                    && !icmp_error_checksums_hold(&frame[ETH..end])
                {
                    return Action::Drop(GatewayDrop::Malformed);
                }
                self.icmp_error(side, frame, end, quoted, offload, now)
            }
            PacketFlow::LaterFragment(fi) => self.later_fragment(frame, end, fi, offload, now),
        }
    }

    fn echo_reply(&mut self, side: Side, frame: &mut [u8], end: usize) -> Action {
        let Some((_, mac, _)) = self.side_addr(side) else {
            return Action::Drop(GatewayDrop::NotForGateway);
        };
        if echo_reply_in_place(&mut frame[ETH..end], OWN_TTL).is_err() {
            return Action::Drop(GatewayDrop::Malformed);
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        let peer = eth.src();
        eth.set_dst(peer);
        eth.set_src(mac);
        self.counters.echo_replies += 1;
        Action::Send {
            side,
            len: frame.len(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        side: Side,
        frame: &mut [u8],
        end: usize,
        key: FlowKey,
        fragment: Option<FragmentInfo>,
        offload: Offload,
        now: u64,
    ) -> Action {
        let pkt = summary(&frame[ETH..end], key.proto);
        let xlate = match self.ct.lookup(0, &key, now) {
            Some((h, dir)) => {
                let Some(e) = self.ct.get(h) else {
                    return Action::Drop(GatewayDrop::ConntrackStale);
                };
                // Checked before the touch: a packet from elsewhere must
                // not refresh, advance or close the connection either.
                if e.ingress[dir.index()] != side.ingress() {
                    return Action::Drop(GatewayDrop::WrongSide);
                }
                let xlate = Xlate::of(e, dir);
                match self.ct.touch(h, dir, &pkt, now) {
                    Ok(touch) if touch.invalid.is_some() => {
                        return Action::Drop(GatewayDrop::InvalidTcp)
                    }
                    Ok(_) => xlate,
                    Err(_) => return Action::Drop(GatewayDrop::ConntrackStale),
                }
            }
            None => match self.new_connection(side, &frame[ETH..end], key, &pkt, now) {
                Ok(x) => x,
                Err(reason) => {
                    // RFC 5508 REQ-8: an inside host whose connection is
                    // refused by policy or for want of resources hears so
                    // (destination unreachable, communication
                    // administratively prohibited) instead of timing out.
                    // Unsolicited packets from outside stay unanswered.
                    // The table's other refusals are answered as a full
                    // table is: the connection cannot be made either way.
                    let refused = matches!(
                        reason,
                        GatewayDrop::Internal
                            | GatewayDrop::NetworksNotConnected
                            | GatewayDrop::Icc
                            | GatewayDrop::NoSnatPort
                            | GatewayDrop::ConntrackFull
                            | GatewayDrop::ConntrackExists
                            | GatewayDrop::ConntrackClash
                            | GatewayDrop::ConntrackStale
                    );
                    if refused && matches!(side, Side::Net(_)) {
                        let kind = IcmpErrorKind::DestUnreachable(13);
                        self.send_icmp_error(kind, &frame[ETH..end], false, now);
                    }
                    return Action::Drop(reason);
                }
            },
        };
        if let Some(fi) = fragment {
            for held in self.frags.first(frag_key(&fi), xlate, now) {
                self.forward_owned(held, xlate, now);
            }
        }
        self.forward(frame, end, xlate, offload, now)
    }

    /// Translates, routes and outputs the frame (TTL already checked) — to
    /// the side the translation allows only.
    fn forward(
        &mut self,
        frame: &mut [u8],
        end: usize,
        x: Xlate,
        offload: Offload,
        now: u64,
    ) -> Action {
        if x.apply(&mut frame[ETH..end], offload.l4_checksum())
            .is_err()
        {
            return Action::Drop(GatewayDrop::Malformed);
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH..end]);
        let Some((out, next_hop)) = self.route(ip.dst()) else {
            return Action::Drop(GatewayDrop::NoRoute);
        };
        if out.ingress() != x.out {
            return Action::Drop(GatewayDrop::WrongSide);
        }
        let ttl = ip.ttl();
        ip.set_ttl(ttl.saturating_sub(1));
        if out == Side::Host {
            // An IPv4 packet for the relay: no link, no neighbour.
            self.counters.forwarded += 1;
            return Action::Send {
                side: out,
                len: end,
            };
        }
        self.output(out, next_hop, frame, offload, now)
    }

    /// [`Gateway::forward`] for a frame released from the fragment cache:
    /// sent through the outbox, dropped silently when it cannot go.
    fn forward_owned(&mut self, mut frame: Vec<u8>, x: Xlate, now: u64) {
        let ttl_ok = Ipv4Packet::new_checked(&frame[ETH..]).is_ok_and(|ip| ip.ttl() > 1);
        if !ttl_ok {
            return;
        }
        let end = frame.len();
        if let Action::Send { side, len } = self.forward(&mut frame, end, x, Offload::NONE, now) {
            frame.truncate(len);
            self.outbox.push_back(OutFrame::made(side, frame));
        }
    }

    /// Sends the frame to `next_hop` on `side`: at once if its MAC is
    /// known, else holds a copy with its offload state and resolves it. The
    /// held copy leaves through the outbox as it came — a GSO frame still
    /// one, a partial checksum still partial — for the switch to finish
    /// like any frame with that state.
    fn output(
        &mut self,
        side: Side,
        next_hop: Ipv4Addr,
        frame: &mut [u8],
        offload: Offload,
        now: u64,
    ) -> Action {
        let Some((our_ip, mac, _)) = self.side_addr(side) else {
            return Action::Drop(GatewayDrop::NoRoute);
        };
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_src(mac);
        if let Some((dst_mac, refresh)) = self.neighbours.lookup_in_use(side, next_hop, now) {
            eth.set_dst(dst_mac);
            self.counters.forwarded += 1;
            if refresh {
                self.send_arp_request(side, mac, our_ip, next_hop);
            }
            return Action::Send {
                side,
                len: frame.len(),
            };
        }
        match self.neighbours.hold(side, next_hop, frame, offload, now) {
            Hold::Full => Action::Drop(GatewayDrop::ArpQueueFull),
            Hold::Queued { new_hop } => {
                self.counters.held_for_arp += 1;
                if new_hop {
                    self.send_arp_request(side, mac, our_ip, next_hop);
                }
                Action::Consumed
            }
        }
    }

    /// Outputs a frame the gateway owns (an ICMP error) through the outbox.
    fn output_owned(&mut self, side: Side, next_hop: Ipv4Addr, mut frame: Vec<u8>, now: u64) {
        if let Action::Send { side, len } =
            self.output(side, next_hop, &mut frame, Offload::NONE, now)
        {
            frame.truncate(len);
            self.outbox.push_back(OutFrame::made(side, frame));
        }
    }

    fn send_arp_request(&mut self, side: Side, mac: [u8; 6], our_ip: Ipv4Addr, target: Ipv4Addr) {
        let mut f = vec![0u8; arp::FRAME_LEN];
        if build_arp_request(&mut f, mac, our_ip, target).is_ok() {
            self.counters.arp_requests_sent += 1;
            self.outbox.push_back(OutFrame::made(side, f));
        }
    }

    /// ARP retries and timeouts (from [`Gateway::tick`]).
    pub(super) fn arp_tick(&mut self, now: u64) {
        let due = self.neighbours.due(now);
        for (side, target) in due.retry {
            if let Some((our_ip, mac, _)) = self.side_addr(side) {
                self.send_arp_request(side, mac, our_ip, target);
            }
        }
        for (_, _, frames) in due.failed {
            self.counters.arp_timeouts += frames.len() as u64;
            if let Some(Held {
                mut bytes,
                mut offload,
            }) = frames.into_iter().next()
            {
                // The error quotes the packet with the transport checksum
                // its sender's device was to finish (if it can be).
                let _ = offload::complete_checksum(&mut bytes, &mut offload);
                if let Some(ip) = bytes.get(ETH..) {
                    let kind = IcmpErrorKind::DestUnreachable(1);
                    self.send_icmp_error(kind, ip, true, now);
                }
            }
        }
    }

    /// Sends an ICMP error about `original` (an IPv4 packet) to its sender,
    /// from the gateway's address on the side toward the sender.
    /// `translated`: `original` was already translated (it waited for ARP
    /// on its way out), so the quote is translated back through conntrack
    /// as an error arriving from its destination would be.
    pub(super) fn send_icmp_error(
        &mut self,
        kind: IcmpErrorKind,
        original: &[u8],
        translated: bool,
        now: u64,
    ) {
        if !self.icmp_errors.admit(now) {
            return;
        }
        let mut buf = vec![0u8; ETH + icmp::MAX_ERROR_LEN];
        self.icmp_ident = self.icmp_ident.wrapping_add(1);
        let ident = self.icmp_ident;
        let error = icmp::IcmpErrorRepr {
            src: Ipv4Addr::UNSPECIFIED,
            ident,
            kind,
        };
        let Ok(n) = IcmpErrors::write(&mut buf, error, original) else {
            return;
        };
        buf.truncate(n);
        if translated {
            if let Ok(PacketFlow::IcmpError { quoted, .. }) = flow_of(&buf[ETH..]) {
                if let Some(Quote { key: target, .. }) = self.untranslated_quote(&quoted, now) {
                    let m = L4Checksum::Full;
                    if rewrite::rewrite_icmp_error_for_inside(&mut buf[ETH..], &target, m).is_err()
                    {
                        return;
                    }
                }
            }
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH..]);
        let Some((side, next_hop)) = self.route(ip.dst()) else {
            return;
        };
        let Some((our_ip, _, _)) = self.side_addr(side) else {
            return;
        };
        ip.set_src(our_ip);
        self.counters.icmp_errors_sent += 1;
        self.output_owned(side, next_hop, buf, now);
    }

    /// What conntrack knows of the packet an ICMP error quotes: the quote
    /// is a packet of direction `d` as it left the gateway (its reverse is
    /// what conntrack knows), so it becomes `d`'s key as it arrived.
    fn untranslated_quote(&self, quoted: &FlowKey, now: u64) -> Option<Quote> {
        let (h, d) = self.ct.lookup(0, &quoted.reversed(), now)?;
        let e = self.ct.get(h)?;
        let key = match d {
            Dir::Reply => e.original,
            Dir::Original => e.reply,
        };
        Some(Quote {
            key,
            from: e.ingress[d.index()],
            to: e.ingress[d.other().index()],
        })
    }

    /// An ICMP error in transit (RFC 5508): translated like the packet it
    /// quotes, never creating or refreshing a connection; only from the
    /// side that packet went to, and only back to the side it came from.
    fn icmp_error(
        &mut self,
        side: Side,
        frame: &mut [u8],
        end: usize,
        quoted: FlowKey,
        offload: Offload,
        now: u64,
    ) -> Action {
        let Some(Quote {
            key: target,
            from,
            to,
        }) = self.untranslated_quote(&quoted, now)
        else {
            return Action::Drop(GatewayDrop::UntrackedIcmpError);
        };
        if from != side.ingress() {
            return Action::Drop(GatewayDrop::WrongSide);
        }
        let Some((out, next_hop)) = self.route(target.src) else {
            return Action::Drop(GatewayDrop::NoRoute);
        };
        if out.ingress() != to {
            return Action::Drop(GatewayDrop::WrongSide);
        }
        let ip = &mut frame[ETH..end];
        let r = match out {
            Side::Net(_) => {
                rewrite::rewrite_icmp_error_for_inside(ip, &target, offload.l4_checksum())
            }
            Side::Uplink => {
                rewrite::rewrite_icmp_error_for_outside(ip, &target, offload.l4_checksum())
            }
            // The relay ends the flow on the host: an error about it is
            // the host socket's to see, not a packet to relay.
            Side::Host => return Action::Drop(GatewayDrop::NoRoute),
        };
        if r.is_err() {
            return Action::Drop(GatewayDrop::Malformed);
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH..end]);
        let ttl = ip.ttl();
        ip.set_ttl(ttl - 1);
        self.output(out, next_hop, frame, offload, now)
    }

    fn later_fragment(
        &mut self,
        frame: &mut [u8],
        end: usize,
        fi: FragmentInfo,
        offload: Offload,
        now: u64,
    ) -> Action {
        match self.frags.later(frag_key(&fi), &frame[..end], now) {
            Later::Translate(x) => {
                let ttl = Ipv4Packet::new_unchecked(&frame[ETH..end]).ttl();
                if ttl <= 1 {
                    // No ICMP error about a non-first fragment.
                    return Action::Consumed;
                }
                self.forward(frame, end, x, offload, now)
            }
            Later::Held => Action::Consumed,
            Later::Dropped(_) => Action::Drop(GatewayDrop::FragmentDropped),
        }
    }
}

/// The connection an ICMP error quotes, as [`Gateway::untranslated_quote`]
/// finds it.
struct Quote {
    /// The quoted packet's key as its sender sent it.
    key: FlowKey,
    /// The side errors about that packet come in from: where it went.
    from: Ingress,
    /// The side the error goes back to: where the packet came from.
    to: Ingress,
}

fn frag_key(fi: &FragmentInfo) -> FragKey {
    FragKey {
        src: fi.src,
        dst: fi.dst,
        proto: fi.protocol,
        id: fi.ident,
    }
}

fn is_echo_request(frame: &[u8], end: usize) -> bool {
    let ip = Ipv4Packet::new_unchecked(&frame[ETH..end]);
    ip.payload().first() == Some(&icmp::ECHO_REQUEST)
}

/// What conntrack needs to know about a packet: its length and, for TCP,
/// the segment summary (window scale only on SYNs, as RFC 7323 allows).
fn summary(ip: &[u8], proto: Proto) -> Packet {
    let ip = Ipv4Packet::new_unchecked(ip);
    let bytes = u32::from(ip.total_len());
    if proto != Proto::Tcp {
        return Packet::other(bytes);
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return Packet::other(bytes);
    };
    let flags = tcp.flags();
    let seg = TcpSegment {
        flags,
        seq: tcp.seq(),
        ack: tcp.ack(),
        window: tcp.window(),
        payload_len: tcp.payload().len() as u32,
        wscale: if flags.syn() {
            tcp.window_scale()
        } else {
            None
        },
    };
    Packet::tcp(bytes, seg)
}

/// Whether the ICMP error in IPv4 packet `ip` (checked by the classifier:
/// a complete header, an ICMP header and a quoted IP header with 8 bytes
/// after it) has a correct ICMP checksum, and the IP header it quotes a
/// correct header checksum (RFC 5508 REQ-3 and REQ-3a: drop it otherwise).
fn icmp_error_checksums_hold(ip: &[u8]) -> bool {
    let ip = Ipv4Packet::new_unchecked(ip);
    let Ok(icmp) = IcmpPacket::new_checked(ip.payload()) else {
        return false;
    };
    icmp.verify_checksum()
        && Ipv4Packet::new_quoted(icmp.data()).is_ok_and(|quote| quote.verify_checksum())
}
