//! The querier yardd runs on networks with a gateway: each tick it ages
//! the snooping tables and sends the IGMPv3 and MLDv2 queries due — a
//! general query with a short response time to each port added since the
//! last tick, a group-specific one after a leave, and every
//! [`QUERY_INTERVAL_MS`] a general query to every access port. Queries go
//! from the gateway's MAC (IGMP from 0.0.0.0, as the Linux bridge sends
//! them by default; MLD from the MAC's EUI-64 link-local address, since
//! hosts drop MLD queries from any other kind of address), never out of a
//! trunk or tunnel, whose other side has its own querier. Built in the
//! bridge's reply frame: no allocation. Slow path: once a second.

use std::net::{Ipv4Addr, Ipv6Addr};

use yard_wire::ethernet::{self, ethertype, EthernetFrame};
use yard_wire::igmp::{self, IgmpQueryRepr};
use yard_wire::mld::{self, MldQueryRepr};
use yard_wire::WireError;

use super::{
    is_static_router, Group, QUERY_INTERVAL_MS, QUERY_RESPONSE_MS, ROBUSTNESS, SHORT_RESPONSE_MS,
};
use crate::dataplane::bridge::{Bridge, NetId};
use crate::dataplane::clock::Millis;
use crate::dataplane::frame::Frame;
use crate::dataplane::port::PortId;

/// A query the tick sends out of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedQuery {
    /// The port it goes out of.
    pub port: PortId,
    /// `None`: a general query (IGMP and MLD); else about this group.
    pub group: Option<Group>,
    /// The response time it gives hosts.
    pub response_ms: u64,
}

impl PlannedQuery {
    /// A query with the short response time new ports and leaves get.
    pub(in crate::dataplane::bridge) fn short(port: PortId, group: Option<Group>) -> Self {
        PlannedQuery {
            port,
            group,
            response_ms: SHORT_RESPONSE_MS,
        }
    }
}

impl Bridge {
    /// Ages every network's snooping table and sends the queries due: to
    /// ports added since the last call, after leaves, and every
    /// [`QUERY_INTERVAL_MS`] to every access port, on networks with a
    /// gateway. Called once a second with the FDB's aging.
    pub(in crate::dataplane::bridge) fn multicast_tick(&mut self, now: Millis) {
        let mut planned = std::mem::take(&mut self.planned_queries);
        let sends_queries = self.sends_queries;
        for index in 0..self.networks.len() {
            let net = NetId(index as u16);
            planned.clear();
            let Some(network) = self.network_mut(net) else {
                continue;
            };
            let gateway_mac = network.gateway_mac.filter(|_| sends_queries);
            let general_due = network
                .multicast
                .tick(gateway_mac.is_some(), &mut planned, now);
            let Some(mac) = gateway_mac else {
                continue;
            };
            if general_due {
                if let Some(network) = self.network(net) {
                    planned.extend(network.members.iter().map(|&port| PlannedQuery {
                        port,
                        group: None,
                        response_ms: QUERY_RESPONSE_MS,
                    }));
                }
            }
            self.send_queries(net, mac.0, &planned, now);
        }
        self.planned_queries = planned;
    }

    /// Sends `queries` into network `net` from the gateway's MAC `mac`.
    fn send_queries(&mut self, net: NetId, mac: [u8; 6], queries: &[PlannedQuery], now: Millis) {
        let Some(mut frame) = self.reply_scratch.take() else {
            return;
        };
        for query in queries {
            // A trunk or tunnel has another switch behind it, with its own
            // querier; and a port that has gone is not asked.
            if self.port(query.port).is_none_or(is_static_router) {
                continue;
            }
            let (v4, v6) = match query.group {
                None => (true, true),
                Some(Group::V4(_)) => (true, false),
                Some(Group::V6(_)) => (false, true),
            };
            if v4 && build_igmp_query(&mut frame, mac, query) {
                self.transmit(query.port, net, &mut frame, None, now);
            }
            if v6 && build_mld_query(&mut frame, mac, query) {
                self.transmit(query.port, net, &mut frame, None, now);
            }
        }
        self.reply_scratch = Some(frame);
    }
}

/// Builds in `frame` an Ethernet frame from `src` to `dst` of `kind`
/// whose payload `emit` writes (returning its length); false if it cannot.
fn build_frame(
    frame: &mut Frame,
    dst: [u8; 6],
    src: [u8; 6],
    kind: u16,
    emit: impl FnOnce(&mut [u8]) -> Result<usize, WireError>,
) -> bool {
    let buf = frame.build_buf();
    let (header, payload) = buf.split_at_mut(ethernet::HEADER_LEN);
    let mut eth = EthernetFrame::new_unchecked(header);
    eth.set_dst(dst);
    eth.set_src(src);
    eth.set_ethertype(kind);
    match emit(payload) {
        Ok(len) => frame.set_built(ethernet::HEADER_LEN + len),
        Err(_) => false,
    }
}

/// Builds the IGMPv3 query for `query` in `frame`; false if it cannot.
fn build_igmp_query(frame: &mut Frame, mac: [u8; 6], query: &PlannedQuery) -> bool {
    let group = match query.group {
        Some(Group::V4(group)) => group,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let repr = IgmpQueryRepr {
        src: Ipv4Addr::UNSPECIFIED,
        group,
        max_resp_tenths: (query.response_ms / 100).min(127) as u8,
        robustness: ROBUSTNESS as u8,
        interval_secs: (QUERY_INTERVAL_MS / 1000) as u8,
    };
    let dst = igmp::multicast_mac(repr.dst());
    build_frame(frame, dst, mac, ethertype::IPV4, |buf| repr.emit(buf))
}

/// Builds the MLDv2 query for `query` in `frame`; false if it cannot.
fn build_mld_query(frame: &mut Frame, mac: [u8; 6], query: &PlannedQuery) -> bool {
    let group = match query.group {
        Some(Group::V6(group)) => group,
        _ => Ipv6Addr::UNSPECIFIED,
    };
    let repr = MldQueryRepr {
        src: mld::link_local_from_mac(mac),
        group,
        max_resp_ms: query.response_ms.min(32_767) as u16,
        robustness: ROBUSTNESS as u8,
        interval_secs: (QUERY_INTERVAL_MS / 1000) as u8,
    };
    let dst = mld::multicast_mac(repr.dst());
    build_frame(frame, dst, mac, ethertype::IPV6, |buf| repr.emit(buf))
}
