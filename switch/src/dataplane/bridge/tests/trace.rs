//! The bridge's dry run (`decide_with` a `Trace`, then `trace_delivery`):
//! the same verdicts as forwarding, in words, and nothing learned, sent,
//! counted or charged.

use super::*;
use crate::dataplane::trace::{Outcome, Trace};

/// Traces `bytes` from `port` through the bridge, as the home thread does.
fn trace(lab: &mut Lab, port: PortId, bytes: &[u8]) -> Trace {
    let mut trace = Trace::default();
    lab.frame.fill(Offload::NONE, bytes);
    match lab.bridge.decide_with(port, &mut lab.frame, T0, &mut trace) {
        Ok((net, verdict)) => lab
            .bridge
            .trace_delivery(port, net, verdict, &lab.frame, T0, &mut trace),
        Err(reason) => trace.dropped(reason, lab.bridge.port_name(port)),
    }
    trace
}

fn words(trace: &Trace) -> String {
    trace
        .steps
        .iter()
        .map(|s| format!("{}: {}\n", s.stage.as_str(), s.words))
        .collect()
}

#[test]
fn a_trace_learns_nothing_and_sends_nothing_yet_says_where_the_frame_goes() {
    let mut lab = Lab::new(4096);
    let (a, b, c) = lab.three_ports(300);
    let t = trace(&mut lab, a, &eth(mac(2), mac(1), 46));
    assert_eq!(t.outcome, Outcome::Leaves(vec!["b".into(), "c".into()]));
    assert!(
        words(&t).contains("would be learned on this port"),
        "{}",
        words(&t)
    );
    assert!(lab.bridge.fdb_entries(None, T0).unwrap().is_empty());
    assert!(lab.out(b).is_empty() && lab.out(c).is_empty());
    let counters = &lab.bridge.port(a).unwrap().counters;
    assert_eq!((counters.rx_packets, counters.tx_packets), (0, 0));

    // Forwarding learns; the trace then sees the FDB hit the frame gets.
    lab.send(b, &eth(mac(1), mac(2), 46), T0);
    assert_eq!(
        lab.out(c).len(),
        1,
        "the trace did not learn mac 1: b's frame floods"
    );
    lab.out(a);
    let t = trace(&mut lab, a, &eth(mac(2), mac(1), 46));
    assert_eq!(t.outcome, Outcome::Leaves(vec!["b".into()]));
    assert!(
        words(&t).contains("is behind port b (FDB hit)"),
        "{}",
        words(&t)
    );
    lab.send(a, &eth(mac(2), mac(1), 46), T0);
    assert_eq!(
        lab.out(b).len(),
        1,
        "the real frame goes where the trace said"
    );
    assert!(lab.out(c).is_empty());
}

#[test]
fn a_traced_drop_names_the_counter_the_real_frame_bumps() {
    let mut lab = Lab::new(4096);
    lab.net("iso", false, None, 300);
    let a = lab.access("a", "iso", 1500);
    let b = lab.access("b", "iso", 1500);
    lab.send(b, &eth(MacAddr::BROADCAST, mac(2), 28), T0);
    let t = trace(&mut lab, a, &eth(mac(2), mac(1), 28));
    assert_eq!(
        t.outcome,
        Outcome::Dropped {
            reason: "icc-disabled",
            counted_on: "a".into()
        },
        "{}",
        words(&t)
    );
    assert_eq!(
        lab.drops(a, DropReason::IccDisabled),
        0,
        "a trace counts nothing"
    );
    lab.send(a, &eth(mac(2), mac(1), 28), T0);
    assert_eq!(lab.drops(a, DropReason::IccDisabled), 1);

    let t = trace(&mut lab, a, &tagged(7, &eth(mac(2), mac(1), 28)));
    assert_eq!(
        t.outcome,
        Outcome::Dropped {
            reason: "tagged-on-access-port",
            counted_on: "a".into()
        }
    );
}

#[test]
fn a_frame_for_a_closed_port_is_traced_as_the_port_down_drop_it_gets() {
    let mut lab = Lab::new(4096);
    let (a, b, _) = lab.three_ports(300);
    lab.send(b, &eth(MacAddr::BROADCAST, mac(2), 28), T0);
    lab.bridge.close_port("b").unwrap();
    let t = trace(&mut lab, a, &eth(mac(2), mac(1), 28));
    assert_eq!(
        t.outcome,
        Outcome::Dropped {
            reason: "port-down",
            counted_on: "b".into()
        },
        "{}",
        words(&t)
    );
    lab.send(a, &eth(mac(2), mac(1), 28), T0);
    assert_eq!(lab.drops(b, DropReason::PortDown), 1);
}
