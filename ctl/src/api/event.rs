//! Events: what changed in yardd, streamed to `yardctl events` (one JSON
//! object per line after the `events-started` reply) and logged at info
//! level with the requesting user.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// `net create`.
    NetworkAdded,
    /// `net rm`.
    NetworkRemoved,
    /// `net connect`.
    NetworksConnected,
    /// `net disconnect`.
    NetworksDisconnected,
    /// `port add`.
    PortAdded,
    /// `port rm`, or a port removed with its namespace (`--auto-remove`).
    PortRemoved,
    /// A port went down; `detail` says why (namespace gone, veth gone).
    PortDown,
    /// `uplink add`.
    UplinkAdded,
    /// `uplink rm`.
    UplinkRemoved,
    /// `publish add`.
    PublishAdded,
    /// `publish rm`.
    PublishRemoved,
    /// `link add`.
    LinkAdded,
    /// `link rm`.
    LinkRemoved,
    /// `rule add`: the object is the network and the rule.
    RuleAdded,
    /// `rule rm`: the object is the network and the rule's position.
    RuleRemoved,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// When, in UTC (RFC 3339, seconds).
    pub time: String,
    /// What happened.
    pub kind: EventKind,
    /// What it happened to: a network, port, uplink, published port,
    /// link (`A B`) or rule (`NET from … to … deny`, `NET rule 2`).
    pub object: String,
    /// Why, when it was not asked for (a port down: `namespace gone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The uid whose request made it; `None` when yardd did it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
}
