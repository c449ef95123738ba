//! `yardctl trace`: what the pipeline decided for one frame, in words, and
//! the switch between forwarding a frame and only describing it.
//!
//! Contract: the bridge's decision code ([`Bridge::decide_with`]) is
//! generic over a [`Tracer`]. Forwarding passes [`Forwarding`]: not a dry
//! run, and notes that are empty inline functions whose words are never
//! built — the forwarding code compiles to what it was, with no branch and
//! no allocation per frame. A trace passes a [`Trace`]: a dry run, so
//! nothing is learned, snooped or charged, and every decision is noted as
//! a [`Step`]. What comes after the decision (delivery, the gateway, the
//! way out) is described by read-only functions that share their checks
//! with the sending code, and the gateway's part by the gateway's own dry
//! run (`yard_nat::gateway::Gateway::trace`). A trace runs on the home
//! datapath thread, between batches, like any command: slow path.
//!
//! [`Bridge::decide_with`]: crate::dataplane::bridge::Bridge::decide_with

use crate::dataplane::verdict::DropReason;

/// Receives the pipeline's decisions; see the module documentation.
pub trait Tracer {
    /// True: change nothing (learn no address, hear no multicast report,
    /// spend no flood budget).
    const DRY_RUN: bool;
    /// Notes one decision; `words` are built only when kept.
    fn note(&mut self, stage: Stage, words: impl FnOnce() -> String);
}

/// Forwarding: decisions are taken and acted on, not noted.
pub struct Forwarding;

impl Tracer for Forwarding {
    const DRY_RUN: bool = false;
    #[inline(always)]
    fn note(&mut self, _stage: Stage, _words: impl FnOnce() -> String) {}
}

/// Where in the pipeline a decision is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The frame as it enters, and the in-port.
    Ingress,
    /// Access or trunk: the VLAN and so the network.
    Vlan,
    /// The size against an MTU.
    Mtu,
    /// The source checks of port security.
    PortSecurity,
    /// Learning the source MAC.
    Learning,
    /// Multicast snooping.
    Multicast,
    /// The destination MAC in the FDB.
    Fdb,
    /// `--no-icc` isolation and links.
    Isolation,
    /// Firewall rules (`rule add`) on a new flow.
    Rules,
    /// Flooding: to which ports.
    Flood,
    /// The gateway: the source check, what it answers, its drops.
    Gateway,
    /// Where the gateway routes the destination.
    Route,
    /// The connection a packet rides or makes.
    Conntrack,
    /// The address and port rewrite.
    Nat,
    /// Resolving the next hop.
    Arp,
    /// Cutting a packet into IP fragments.
    Fragmentation,
    /// Encapsulation by a tunnel port.
    Tunnel,
    /// Leaving by a port.
    Egress,
}

impl Stage {
    /// The stage's name in `yardctl trace` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingress => "ingress",
            Stage::Vlan => "vlan",
            Stage::Mtu => "mtu",
            Stage::PortSecurity => "port-security",
            Stage::Learning => "learning",
            Stage::Multicast => "multicast",
            Stage::Fdb => "fdb",
            Stage::Isolation => "isolation",
            Stage::Rules => "rules",
            Stage::Flood => "flood",
            Stage::Gateway => "gateway",
            Stage::Route => "route",
            Stage::Conntrack => "conntrack",
            Stage::Nat => "nat",
            Stage::Arp => "arp",
            Stage::Fragmentation => "fragmentation",
            Stage::Tunnel => "tunnel",
            Stage::Egress => "egress",
        }
    }
}

/// One decision, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Where it was taken.
    pub stage: Stage,
    /// What was decided and why.
    pub words: String,
}

/// Where the frame ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Nothing decided yet (a trace always ends with another outcome).
    #[default]
    Undecided,
    /// It leaves by these ports (a port name, or `uplink NAME`, or `host`);
    /// none when a flood found no other port in the network.
    Leaves(Vec<String>),
    /// It is dropped, counted as `reason` (the `port stats` or `conntrack
    /// stats` name) on `counted_on` (a port, or `gateway`).
    Dropped {
        /// The counter's name.
        reason: &'static str,
        /// Where it is counted.
        counted_on: String,
    },
    /// The gateway keeps it: answers it, or holds it for ARP.
    Kept(String),
}

/// A dry run's record: the decisions in order and the outcome.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The decisions, in pipeline order.
    pub steps: Vec<Step>,
    /// Where the frame ends.
    pub outcome: Outcome,
}

impl Tracer for Trace {
    const DRY_RUN: bool = true;
    fn note(&mut self, stage: Stage, words: impl FnOnce() -> String) {
        self.steps.push(Step {
            stage,
            words: words(),
        });
    }
}

impl Trace {
    /// Records that the frame leaves by `port` (more may follow: a flood).
    pub fn leaves(&mut self, port: String) {
        match &mut self.outcome {
            Outcome::Leaves(ports) => ports.push(port),
            _ => self.outcome = Outcome::Leaves(vec![port]),
        }
    }

    /// Records that a flood found no port to go to (nothing is counted),
    /// unless something was decided already.
    pub fn goes_nowhere(&mut self) {
        if self.outcome == Outcome::Undecided {
            self.outcome = Outcome::Leaves(Vec::new());
        }
    }

    /// Records a drop on `port`, unless the frame leaves by another port
    /// already (one copy of a flood dropped).
    pub fn dropped(&mut self, reason: DropReason, port: &str) {
        self.dropped_as(reason.as_str(), port.to_string());
    }

    /// Records a drop counted as `reason` on `counted_on`, unless the frame
    /// leaves by a port already.
    pub fn dropped_as(&mut self, reason: &'static str, counted_on: String) {
        if !matches!(self.outcome, Outcome::Leaves(_)) {
            self.outcome = Outcome::Dropped { reason, counted_on };
        }
    }
}
