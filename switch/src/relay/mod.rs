//! The host uplink's relay: the containers' flows to the outside carried
//! through yardd's own host sockets (see `docs/ARCHITECTURE.md`, "The host
//! uplink"), all on the home datapath thread.
//!
//! - [`flows`]: pure — what a packet asks of the host, and the packets that
//!   carry the answers back;
//! - [`tcp`]: each container connection ended in smoltcp and carried on
//!   through a host stream;
//! - [`host`]: [`HostRelay`], the owner of every host socket, which the
//!   home thread polls and feeds;
//! - [`frames`]: the datapath frames the relay builds its packets in, so
//!   they reach a container's TAP without a copy of ours;
//! - [`published`]: published ports' listening host sockets.

pub mod flows;
pub mod frames;
pub mod host;
pub mod published;
pub mod tcp;

use yard_nat::conntrack::RuleId;

pub use host::HostRelay;

/// Orders about published ports' listening sockets.
pub enum Listening {
    /// Serve these (a rule published, or the host uplink set).
    Start(published::HostSockets),
    /// Close rule's sockets (unpublished).
    Stop(RuleId),
    /// Close them all (the host uplink went).
    StopAll,
}
