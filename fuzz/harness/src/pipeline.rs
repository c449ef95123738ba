//! The `pipeline` target: frames into the in-memory ports of one whole
//! datapath thread of yardd ([`MemoryPipeline`]: bridge, router, gateway,
//! uplink), whatever comes out.
//!
//! The switch (fixed): network `web` ([`WEB_SUBNET`], VLAN 10 on trunks)
//! with access ports `a` and `b`; network `db` ([`DB_SUBNET`],
//! `--internal`, VLAN 20); port `t`, a trunk of both; the uplink
//! ([`UPLINK`], router [`ROUTER`]); TCP port 8080 on the uplink address
//! published to [`C1`]:80. SNAT ports come from a fixed seed.
//!
//! Input: records, each a control byte, an optional 10-byte virtio-net
//! header and a frame (16-bit length, then the bytes). The control byte:
//! bits 0–1 the port it arrives on (`a`, `b`, `t`, the uplink); bit 2 "fix
//! up" — the destination MAC becomes the gateway's (`web`'s, the uplink's
//! from the uplink) and a well-formed IPv4 header gets its checksum
//! filled; bits 3–4 how far the clock moves first (0, 10 ms, 1.5 s,
//! 400 s, the last two also aging the FDB and running the gateway's
//! timers); bit 5 an offload header follows. Besides "no panic": every
//! frame that leaves a port is at least an Ethernet header long, no frame
//! leaves an access port with a VLAN tag, and nothing that came from `web`
//! or the uplink reaches `db` (not connected, `--internal`).

use std::net::Ipv4Addr;

use yard_ctl::api::NetworkSpec;
use yard_nat::conntrack::RuleId;
use yard_nat::flow::Proto;
use yard_nat::gateway::{PublishRule, UplinkConfig};
use yard_switch::control::nat_api::{gateway_mac, net_config};
use yard_switch::dataplane::threads::{Membership, MemoryPipeline};
use yard_wire::ethernet::{ethertype, EthernetFrame};
use yard_wire::vlan::VlanPacket;

use crate::input::{fix_up, Input};

/// `web`'s subnet; its gateway is the first host.
pub const WEB_SUBNET: &str = "172.30.0.0/16";
/// `db`'s subnet (`--internal`).
pub const DB_SUBNET: &str = "10.2.0.0/24";
/// `db`'s VLAN on the trunk.
pub const DB_VLAN: u16 = 20;
/// A container on `web`, the published port's target.
pub const C1: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
/// The uplink's address.
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The uplink's MAC.
pub const UPLINK_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
/// The uplink's router.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The ports, in the order the side bits pick them (then the uplink).
pub const PORTS: [&str; 3] = ["a", "b", "t"];
/// Access ports: frames leaving them must be untagged.
const ACCESS: [&str; 2] = ["a", "b"];

/// The control byte's bits (see the module documentation).
pub mod control {
    pub use crate::input::control::*;
    /// Mask of the port: `a`, `b`, `t`, then the uplink.
    pub const PORT: u8 = 0b11;
}

/// `web`'s gateway MAC, which frames for the gateway are sent to.
pub fn web_gateway_mac() -> [u8; 6] {
    gateway_mac("web").0
}

/// The switch described in the module documentation.
pub fn switch() -> MemoryPipeline {
    let mut pipeline = MemoryPipeline::new(4096).expect("a poll instance");
    for (name, subnet, vlan, internal) in [
        ("web", WEB_SUBNET, 10, false),
        ("db", DB_SUBNET, DB_VLAN, true),
    ] {
        let mut spec = NetworkSpec::new(name);
        spec.subnet = Some(subnet.parse().expect("the lab's subnets parse"));
        spec.vlan = Some(vlan);
        spec.internal = internal;
        spec.masquerade = !internal;
        pipeline
            .add_network(&spec, net_config(&spec))
            .expect("the lab's networks");
    }
    for port in ACCESS {
        pipeline
            .add_port(port, Membership::Access("web".into()), 1500)
            .expect("the lab's access ports");
    }
    pipeline
        .add_port(
            "t",
            Membership::Trunk(vec!["web".into(), "db".into()]),
            1500,
        )
        .expect("the lab's trunk");
    pipeline
        .set_uplink(
            UplinkConfig {
                addr: (UPLINK, 24),
                mac: UPLINK_MAC,
                gateway: Some(ROUTER),
            },
            1500,
        )
        .expect("the lab's uplink");
    pipeline
        .add_publish(PublishRule {
            id: RuleId(1),
            proto: Proto::Tcp,
            host_addr: None,
            host_ports: (8080, 8080),
            target: C1,
            target_ports: (80, 80),
        })
        .expect("the lab's published port");
    pipeline
}

/// Runs one input (see the module documentation for its layout).
pub fn run(data: &[u8]) {
    let mut pipeline = switch();
    let web_mac = web_gateway_mac();
    let mut input = Input::new(data);
    let mut frame = Vec::new();
    while let Some(record) = input.record() {
        match record.clock_step() {
            0 => {}
            1 => pipeline.advance(10),
            2 => pipeline.advance(1_500),
            _ => pipeline.advance(400_000),
        }
        // What the timers released belongs to earlier frames.
        for name in PORTS.iter().chain([&MemoryPipeline::UPLINK]) {
            pipeline.take_sent(name);
        }
        let port = usize::from(record.bits & control::PORT);
        frame.clear();
        frame.extend_from_slice(record.frame);
        if record.fix_up() {
            fix_up(&mut frame, if port == 3 { UPLINK_MAC } else { web_mac });
        }
        match PORTS.get(port) {
            Some(name) => pipeline.receive(name, record.offload, &frame),
            None => pipeline.receive_uplink(record.offload, &frame),
        }
        check_sent(&mut pipeline, port != 2);
    }
    let _ = pipeline.port_stats();
}

/// What left the ports since the last call: at least an Ethernet header
/// each, and untagged on access ports; and, for a frame that did not come
/// from the trunk (`outside_db`), nothing into `db` — `web` is not
/// connected to it and it is `--internal`.
fn check_sent(pipeline: &mut MemoryPipeline, outside_db: bool) {
    for name in PORTS.iter().chain([&MemoryPipeline::UPLINK]) {
        for (_, sent) in pipeline.take_sent(name) {
            let Ok(eth) = EthernetFrame::new_checked(&sent[..]) else {
                panic!("port {name} sent a {}-byte frame", sent.len());
            };
            if outside_db && *name == "t" && eth.ethertype() == 0x8100 {
                let vid = VlanPacket::new_checked(eth.payload()).map(|tag| tag.vid());
                assert_ne!(
                    vid,
                    Ok(DB_VLAN),
                    "a frame from web or the uplink reached db"
                );
            }
            if ACCESS.contains(name) {
                assert!(
                    !ethertype::is_vlan_tag(eth.ethertype()),
                    "access port {name} sent a frame tagged {:#06x}",
                    eth.ethertype()
                );
            }
        }
    }
}
