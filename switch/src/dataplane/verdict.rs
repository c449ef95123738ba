//! What the pipeline decides for a frame, and why frames are dropped.
//!
//! A verdict is a value: the same decision code forwards frames, will answer
//! `yardctl trace`, and runs in tests. Drops are results, not errors: each one
//! bumps a per-port, per-reason counter and is never logged per frame.

use crate::dataplane::port::PortId;

/// Why a frame was dropped. The names are what `port stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Malformed,
    /// Source MAC is a group address or all zeroes.
    BadSourceMac,
    /// A VLAN-tagged frame on an access port (containers may not pick VLANs).
    TaggedOnAccess,
    /// An untagged frame on a trunk port.
    UntaggedOnTrunk,
    /// A tag whose VLAN id no network on this trunk carries.
    VlanNotAllowed,
    /// Both ends are ports of a `--no-icc` network.
    IccDisabled,
    /// The destination lives behind the port the frame came from.
    DestinationIsSource,
    /// Larger than the port's MTU (and not a GSO frame).
    TooBig,
    /// The port's transmit queue was full.
    TxQueueFull,
    /// The port refused the frame for another reason.
    TxError,
    /// The frame was discarded because the port is detached.
    PortDown,
    /// A GSO frame or partial checksum for a port that cannot take it (a
    /// tunnel), which software could not segment or complete either: its
    /// virtio-net header does not match its headers, or it is not TCP/UDP
    /// over IP ([`yard_wire::offload::OffloadError`]).
    BadOffload,
    /// A frame for the gateway found the gateway's datapath thread too far
    /// behind to take it (`yardd --threads` above 1).
    GatewayBusy,
    /// Port security: a source MAC the port may not use (another port's,
    /// or one a secured port does not own).
    SpoofedMac,
    /// Port security: an IPv4 source that is not the port's address nor
    /// an allowed one.
    SpoofedIp,
    /// Port security: an ARP packet whose sender address or MAC is not the
    /// port's (a forged reply, a gratuitous ARP for another address).
    SpoofedArp,
    /// The network's gateway address as an IPv4 source or ARP sender from
    /// a port: only yardd's gateway may use it.
    GatewayClaim,
    /// A flood from the port would have exceeded its flood limit (storm
    /// control, [`crate::dataplane::bridge::storm`]).
    FloodLimit,
    /// A QEMU stream announced a frame longer than QEMU itself ever sends
    /// (69,632 bytes): the stream is out of step, so yardd closed the
    /// connection (as QEMU does) and waits for the next one. One per
    /// connection closed so.
    OversizeFrame,
    /// A new connection a firewall rule of the network denies
    /// (`rule add … deny`; [`crate::dataplane::bridge::rules`]).
    RuleDeny,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 20] = [
        DropReason::Malformed,
        DropReason::BadSourceMac,
        DropReason::TaggedOnAccess,
        DropReason::UntaggedOnTrunk,
        DropReason::VlanNotAllowed,
        DropReason::IccDisabled,
        DropReason::DestinationIsSource,
        DropReason::TooBig,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::PortDown,
        DropReason::BadOffload,
        DropReason::GatewayBusy,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::GatewayClaim,
        DropReason::FloodLimit,
        DropReason::OversizeFrame,
        DropReason::RuleDeny,
    ];

    /// Number of reasons: the size of a per-port counter array.
    pub const COUNT: usize = Self::ALL.len();

    /// The counter index of this reason.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadSourceMac => "bad-source-mac",
            DropReason::TaggedOnAccess => "tagged-on-access-port",
            DropReason::UntaggedOnTrunk => "untagged-on-trunk",
            DropReason::VlanNotAllowed => "vlan-not-allowed",
            DropReason::IccDisabled => "icc-disabled",
            DropReason::DestinationIsSource => "destination-is-source",
            DropReason::TooBig => "too-big",
            DropReason::TxQueueFull => "tx-queue-full",
            DropReason::TxError => "tx-error",
            DropReason::PortDown => "port-down",
            DropReason::BadOffload => "bad-offload",
            DropReason::GatewayBusy => "gateway-busy",
            DropReason::SpoofedMac => "spoofed-mac",
            DropReason::SpoofedIp => "spoofed-ip",
            DropReason::SpoofedArp => "spoofed-arp",
            DropReason::GatewayClaim => "gateway-claim",
            DropReason::FloodLimit => "flood-limit",
            DropReason::OversizeFrame => "oversize-frame",
            DropReason::RuleDeny => "rule-deny",
        }
    }
}

/// The pipeline's decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send to this one port.
    Forward(PortId),
    /// Send to every port of the frame's network but the in-port (and, on a
    /// `--no-icc` network, only to ports the in-port may reach; a multicast
    /// frame only to the ports multicast snooping says listen to its group).
    Flood,
    /// Hand to the network's gateway (the frame is addressed to its MAC).
    Gateway,
    /// Drop, counted on the in-port.
    Drop(DropReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_table() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{}", reason.as_str());
        }
    }
}
