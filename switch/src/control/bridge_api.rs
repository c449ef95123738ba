//! The switch's side of the L2 replies: building the control API's
//! `PortStats`, `FdbEntry` and `MdbEntry` (and the tunnel drop counts of
//! `status`) from what the datapath reports ([`PortReport`], [`FdbRecord`],
//! [`MdbRecord`]). The datapath
//! never builds API types itself, so the API can change without touching
//! it. Slow path only; nothing here runs per frame.

use std::collections::BTreeMap;

use yard_ctl::api::{FdbEntry, MdbEntry, PortStats};

use crate::dataplane::bridge::multicast::{Group, MdbRecord};
use crate::dataplane::bridge::FdbRecord;
use crate::dataplane::port::PortReport;

/// A port's counters as `port stats` shows them: drops by reason name,
/// reasons that never happened left out.
pub fn port_stats(report: &PortReport) -> PortStats {
    let c = &report.counters;
    PortStats {
        name: report.name.clone(),
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        drops: c
            .drops_by_name()
            .map(|(reason, n)| (reason.to_string(), n))
            .collect(),
    }
}

/// A multicast table entry as `mdb show` shows it.
pub fn mdb_entry(record: MdbRecord) -> MdbEntry {
    MdbEntry {
        net: record.net,
        port: record.port,
        group: record.group.map(|g| match g {
            Group::V4(a) => a.into(),
            Group::V6(a) => a.into(),
        }),
        expires_secs: record.expires_secs,
    }
}

/// An FDB entry as `fdb show` shows it.
pub fn fdb_entry(record: FdbRecord) -> FdbEntry {
    FdbEntry {
        net: record.net,
        mac: record.mac,
        port: record.port,
        is_static: record.is_static,
        age_secs: record.age_secs,
    }
}

/// Counts by reason, with the reasons as owned names for the reply.
pub fn by_name(counts: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(reason, n)| (reason.to_string(), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::port::PortCounters;
    use crate::dataplane::verdict::DropReason;

    #[test]
    fn port_stats_name_their_drops_and_leave_out_zeroes() {
        let mut counters = PortCounters {
            rx_packets: 3,
            rx_bytes: 300,
            tx_packets: 2,
            tx_bytes: 200,
            ..PortCounters::default()
        };
        counters.drop_frame(DropReason::TooBig);
        let stats = port_stats(&PortReport {
            name: "p".into(),
            counters,
        });
        assert_eq!(
            stats,
            PortStats {
                name: "p".into(),
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 2,
                tx_bytes: 200,
                drops: [("too-big".to_string(), 1)].into(),
            }
        );
    }
}
