//! The switch's side of the L3 gateway: translating between the control
//! API's types and `yard-nat`'s — network and uplink configuration, publish
//! rules, conntrack filters, limits and timeouts on the way in; conntrack
//! listings, statistics and settings on the way out. Every request is
//! checked here, on the control thread, before the datapath sees it, and
//! every reply is built here from what the datapath reports
//! ([`GatewayFigures`], [`ConntrackSnapshot`], the conntrack [`Config`]).
//! Slow path only; nothing here runs per frame.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use yard_ctl::api::{
    ConntrackCursor, ConntrackEntry, ConntrackFilter, ConntrackPage, ConntrackQuery,
    ConntrackSettings, ConntrackStats, NetworkSpec, Transport, Tuple, MAX_CONNTRACK_PAGE,
};
use yard_ctl::MacAddr;
use yard_nat::conntrack::{Config, Entry, Filter, Position, Timeouts};
use yard_nat::flow::{FlowKey, Proto};
use yard_nat::gateway::NetConfig;

use crate::dataplane::threads::{ConntrackSnapshot, GatewayFigures};

/// The largest conntrack limit `conntrack set --max` takes.
const MAX_CONNTRACK_LIMIT: u64 = 16 * 1024 * 1024;

/// Why a conntrack request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConntrackRequestError {
    /// A filter names a protocol conntrack does not track.
    #[error("protocol {0} is not tracked: use tcp, udp or icmp")]
    UnknownProtocol(String),
    /// `--timeout NAME=…` names no timeout.
    #[error("unknown timeout {name}: use one of {known}")]
    UnknownTimeout {
        /// The name given.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// A timeout below what the RFCs require of a NAT.
    #[error("timeout {name}={secs} s is below the RFC minimum of {minimum} s")]
    BelowMinimum {
        /// The timeout.
        name: String,
        /// The value given.
        secs: u64,
        /// The smallest value allowed.
        minimum: u64,
    },
    /// A timeout longer than [`MAX_TIMEOUT_SECS`]: past it the value means
    /// nothing any more (and its milliseconds would overflow the clock).
    #[error("timeout {name}={secs} s is above the maximum of {MAX_TIMEOUT_SECS} s (30 days)")]
    AboveMaximum {
        /// The timeout.
        name: String,
        /// The value given.
        secs: u64,
    },
    /// `--max` outside 1 to 16777216.
    #[error("conntrack limit {0} is out of range: use 1 to 16777216")]
    LimitOutOfRange(u64),
    /// `--snat-share` outside 1 to 100 percent.
    #[error("SNAT share {0}% is out of range: use 1 to 100 (percent of each port range)")]
    ShareOutOfRange(u8),
}

/// The gateway's MAC address in network `name`: stable across restarts, so
/// containers' ARP caches stay right.
pub fn gateway_mac(name: &str) -> MacAddr {
    MacAddr::local_from_seed(format!("gateway/{name}").as_bytes())
}

/// The gateway configuration of a network; `None` for a plain L2 network.
/// Its `id` is 0: the datapath sets it to the bridge's id of the network.
pub fn net_config(spec: &NetworkSpec) -> Option<NetConfig> {
    let subnet = spec.subnet?;
    Some(NetConfig {
        id: 0,
        subnet: (subnet.addr, subnet.prefix),
        gateway: spec.gateway.unwrap_or_else(|| subnet.first_host()),
        mac: gateway_mac(&spec.name).0,
        masquerade: spec.masquerade,
        internal: spec.internal,
        icc: spec.icc,
        host_loopback: spec.host_loopback,
    })
}

/// The nat crate's protocol for an API transport.
pub fn proto_of(t: Transport) -> Proto {
    match t {
        Transport::Tcp => Proto::Tcp,
        Transport::Udp => Proto::Udp,
    }
}

/// The conntrack filter an API filter stands for.
pub fn filter_of(f: &ConntrackFilter) -> Result<Filter, ConntrackRequestError> {
    let proto = f.proto.as_deref().map(tracked_proto).transpose()?;
    Ok(Filter {
        zone: None,
        proto,
        addr: f.addr,
        port: f.port,
    })
}

fn tracked_proto(name: &str) -> Result<Proto, ConntrackRequestError> {
    match name {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "icmp" => Ok(Proto::Icmp),
        other => Err(ConntrackRequestError::UnknownProtocol(other.to_string())),
    }
}

/// What a `conntrack ls` page asks the datapath for: the filter, where to
/// start, and how many (at most [`MAX_CONNTRACK_PAGE`]).
pub fn query_of(
    q: &ConntrackQuery,
) -> Result<(Filter, Option<Position>, usize), ConntrackRequestError> {
    let after = match &q.after {
        None => None,
        Some(c) => Some((
            c.zone,
            FlowKey {
                proto: tracked_proto(&c.proto)?,
                src: c.original.src,
                sport: c.original.sport,
                dst: c.original.dst,
                dport: c.original.dport,
            },
        )),
    };
    let limit = q
        .limit
        .unwrap_or(MAX_CONNTRACK_PAGE)
        .clamp(1, MAX_CONNTRACK_PAGE);
    Ok((filter_of(&q.filter)?, after, limit as usize))
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
pub fn entry_info(
    e: &Entry,
    now_ms: u64,
    host: Option<(SocketAddrV4, SocketAddrV4)>,
) -> ConntrackEntry {
    ConntrackEntry {
        proto: e.proto().as_str().to_string(),
        original: tuple(&e.original),
        reply: tuple(&e.reply),
        state: e.state_name().to_string(),
        snat: e.nat.snat.map(endpoint),
        dnat: e.nat.dnat.map(endpoint),
        host: host.map(|(local, remote)| format!("{local}->{remote}")),
        timeout_secs: e.remaining(now_ms) / 1000,
        assured: e.assured,
        packets_original: e.counters[0].packets,
        bytes_original: e.counters[0].bytes,
        packets_reply: e.counters[1].packets,
        bytes_reply: e.counters[1].bytes,
    }
}

/// The listing `conntrack ls` shows of a snapshot.
pub fn entry_infos(snapshot: &ConntrackSnapshot) -> Vec<ConntrackEntry> {
    snapshot
        .entries
        .iter()
        .zip(&snapshot.host_ends)
        .map(|(e, &host)| entry_info(e, snapshot.now_ms, host))
        .collect()
}

/// One `conntrack ls` page, with the cursor of its last entry when more
/// follow.
pub fn page_info(snapshot: &ConntrackSnapshot) -> ConntrackPage {
    ConntrackPage {
        entries: entry_infos(snapshot),
        next: snapshot.next.map(|(zone, key)| ConntrackCursor {
            zone,
            proto: key.proto.as_str().to_string(),
            original: tuple(&key),
        }),
    }
}

/// Conntrack and gateway counters.
pub fn stats(figures: &GatewayFigures) -> ConntrackStats {
    let s = &figures.conntrack;
    let g = &figures.gateway;
    let named = [
        ("inserted", s.inserted),
        ("evicted-unreplied", s.evicted_unreplied),
        ("evicted-other", s.evicted_other),
        ("expired", s.expired),
        ("removed", s.removed),
        ("refused", s.refused),
        ("snat-share-reclaimed", s.snat_share_reclaimed),
        ("snat-pool-reclaimed", s.snat_pool_reclaimed),
        ("snat-share-exhausted", s.snat_share_exhausted),
        ("snat-pool-exhausted", s.snat_pool_exhausted),
        ("snat-mappings", figures.snat_mappings as u64),
        ("table-bytes", figures.table_bytes as u64),
        ("gw-forwarded", g.forwarded),
        ("gw-arp-requests-sent", g.arp_requests_sent),
        ("gw-arp-replies-sent", g.arp_replies_sent),
        ("gw-echo-replies", g.echo_replies),
        ("gw-icmp-errors-sent", g.icmp_errors_sent),
        ("gw-icmp-errors-limited", g.icmp_errors_limited),
        ("gw-held-for-arp", g.held_for_arp),
        ("gw-fragmented", g.fragmented),
        ("gw-arp-timeouts", g.arp_timeouts),
    ];
    let mut counters = BTreeMap::new();
    let relay = figures.relay.iter().copied();
    for (name, value) in named.into_iter().chain(g.drops_by_name()).chain(relay) {
        counters.insert(name.to_string(), value);
    }
    ConntrackStats {
        entries: s.entries as u64,
        max_entries: figures.max_entries as u64,
        counters,
        snat_share_percent: Some(figures.snat_share_percent),
        by_state: figures
            .by_state
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    }
}

const SEC: u64 = 1000;

/// The longest timeout `conntrack set` takes: 30 days, six times Linux's
/// longest default (5 days for an established TCP connection).
pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

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

/// A checked `conntrack set`: the limit, the timeouts and the SNAT share to
/// change, applied to the gateway's conntrack configuration with
/// [`apply`](Self::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackChange {
    max_entries: Option<usize>,
    snat_share_percent: Option<u8>,
    /// `(index into timeout_fields, milliseconds)`.
    timeouts: Vec<(usize, u64)>,
}

impl ConntrackChange {
    /// Checks `settings`: known timeout names, values not below the RFC
    /// minimums (RFC 5382: established ≥ 7440 s, transitory ≥ 240 s;
    /// RFC 4787: UDP ≥ 120 s; RFC 5508: ICMP ≥ 60 s), a limit of 1 to
    /// 16777216, a SNAT share of 1 to 100 percent.
    pub fn parse(settings: &ConntrackSettings) -> Result<Self, ConntrackRequestError> {
        let names = timeout_fields(&mut Timeouts::default()).map(|(n, _)| n);
        let mut timeouts = Vec::with_capacity(settings.timeouts.len());
        for (name, secs) in &settings.timeouts {
            let minimum = match name.as_str() {
                "tcp-established" => 7440,
                "tcp-close" => 1,
                n if n.starts_with("tcp-") => 240,
                n if n.starts_with("udp-") => 120,
                _ => 60,
            };
            let Some(index) = names.iter().position(|n| n == name) else {
                return Err(ConntrackRequestError::UnknownTimeout {
                    name: name.clone(),
                    known: names.join(", "),
                });
            };
            if *secs > MAX_TIMEOUT_SECS {
                return Err(ConntrackRequestError::AboveMaximum {
                    name: name.clone(),
                    secs: *secs,
                });
            }
            if *secs < minimum {
                return Err(ConntrackRequestError::BelowMinimum {
                    name: name.clone(),
                    secs: *secs,
                    minimum,
                });
            }
            timeouts.push((index, secs * SEC));
        }
        let max_entries = match settings.max_entries {
            Some(max) if max == 0 || max > MAX_CONNTRACK_LIMIT => {
                return Err(ConntrackRequestError::LimitOutOfRange(max))
            }
            Some(max) => Some(max as usize),
            None => None,
        };
        let snat_share_percent = match settings.snat_share_percent {
            Some(p) if !(1..=100).contains(&p) => {
                return Err(ConntrackRequestError::ShareOutOfRange(p))
            }
            share => share,
        };
        Ok(ConntrackChange {
            max_entries,
            snat_share_percent,
            timeouts,
        })
    }

    /// Makes the change to `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(max) = self.max_entries {
            config.max_entries = max;
        }
        if let Some(share) = self.snat_share_percent {
            config.snat_share_percent = share;
        }
        let fields = timeout_fields(&mut config.timeouts);
        for &(index, ms) in &self.timeouts {
            *fields[index].1 = ms;
        }
    }
}

/// The settings in force, for a reply.
pub fn settings(config: &Config) -> ConntrackSettings {
    let mut t = config.timeouts;
    ConntrackSettings {
        max_entries: Some(config.max_entries as u64),
        timeouts: timeout_fields(&mut t)
            .iter()
            .map(|(n, v)| (n.to_string(), **v / SEC))
            .collect(),
        snat_share_percent: Some(config.snat_share_percent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_respect_rfc_minimums() {
        let mut changes = BTreeMap::new();
        changes.insert("udp-replied".to_string(), 600);
        let set = |timeouts: &BTreeMap<String, u64>| {
            ConntrackChange::parse(&ConntrackSettings {
                max_entries: None,
                timeouts: timeouts.clone(),
                snat_share_percent: None,
            })
        };
        let mut config = Config::default();
        set(&changes).unwrap().apply(&mut config);
        assert_eq!(config.timeouts.udp_replied, 600_000);
        changes.insert("tcp-established".to_string(), 60);
        assert!(set(&changes)
            .unwrap_err()
            .to_string()
            .contains("RFC minimum of 7440"));
        // The largest u64 once wrapped to an instant expiry: now refused.
        let mut huge = BTreeMap::new();
        huge.insert("udp-unreplied".to_string(), u64::MAX);
        assert_eq!(
            set(&huge).unwrap_err().to_string(),
            "timeout udp-unreplied=18446744073709551615 s is above the maximum of 2592000 s (30 days)"
        );
        huge.insert("udp-unreplied".to_string(), MAX_TIMEOUT_SECS);
        set(&huge).unwrap().apply(&mut config);
        assert_eq!(config.timeouts.udp_unreplied, MAX_TIMEOUT_SECS * 1000);
        let mut bad = BTreeMap::new();
        bad.insert("tcp-nope".to_string(), 600);
        assert!(set(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown timeout"));
        let s = settings(&Config {
            max_entries: 1000,
            ..Config::default()
        });
        assert_eq!(s.timeouts["tcp-established"], 5 * 24 * 3600);
        assert_eq!(s.timeouts["udp-unreplied"], 120);
    }

    #[test]
    fn conntrack_limits_are_checked() {
        let limit = |max| {
            ConntrackChange::parse(&ConntrackSettings {
                max_entries: Some(max),
                timeouts: BTreeMap::new(),
                snat_share_percent: None,
            })
        };
        assert_eq!(limit(0), Err(ConntrackRequestError::LimitOutOfRange(0)));
        assert!(limit(MAX_CONNTRACK_LIMIT + 1).is_err());
        let mut config = Config::default();
        limit(MAX_CONNTRACK_LIMIT).unwrap().apply(&mut config);
        assert_eq!(config.max_entries, 16 * 1024 * 1024);
        assert_eq!(config.timeouts, Timeouts::default(), "timeouts untouched");
    }

    #[test]
    fn the_snat_share_is_a_percentage_and_is_shown() {
        let share = |p| {
            ConntrackChange::parse(&ConntrackSettings {
                snat_share_percent: Some(p),
                ..ConntrackSettings::default()
            })
        };
        for bad in [0, 101, 255] {
            assert_eq!(share(bad), Err(ConntrackRequestError::ShareOutOfRange(bad)));
        }
        assert_eq!(
            share(0).unwrap_err().to_string(),
            "SNAT share 0% is out of range: use 1 to 100 (percent of each port range)"
        );
        let mut config = Config::default();
        assert_eq!(settings(&config).snat_share_percent, Some(25));
        share(10).unwrap().apply(&mut config);
        assert_eq!(config.snat_share_percent, 10);
        assert_eq!(config.max_entries, Config::default().max_entries);
        assert_eq!(settings(&config).snat_share_percent, Some(10));
        // Not named: left as it is.
        ConntrackChange::parse(&ConntrackSettings::default())
            .unwrap()
            .apply(&mut config);
        assert_eq!(config.snat_share_percent, 10);
    }

    #[test]
    fn gateway_macs_are_stable_and_local() {
        assert_eq!(gateway_mac("yard0"), gateway_mac("yard0"));
        assert_ne!(gateway_mac("yard0"), gateway_mac("web"));
        assert!(gateway_mac("yard0").is_valid_source());
    }
}
