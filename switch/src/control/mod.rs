//! The control plane: what yardd is asked to do, and what it remembers.
//!
//! How the control plane fits the rest of yardd: `docs/ARCHITECTURE.md`.
//!
//! Contract: every change is validated against the [`config`] first, then
//! applied to the data plane through its handle, then persisted by
//! [`state`]; a change refused at any step leaves all three as they were.
//! Nothing here runs per frame.
//!
//! - [`server`]: the Unix socket, who may use it, and what each request does;
//! - [`config`]: networks, ports and L3 rules as the user asked for them, and
//!   the checks a change must pass;
//! - [`state`]: the state file, written atomically after every change;
//! - [`attach`]: turning a port spec into a live device (slow path);
//! - [`adopt`]: TAPs that outlive yardd: made persistent, re-adopted at
//!   start, destroyed only with their port;
//! - [`netns_helper`]: the single-threaded helper process through which a
//!   rootless yardd works inside namespaces its user owns;
//! - [`default_route`]: handing a namespace's default route to another of
//!   its ports when the one that carried it goes;
//! - [`nat_api`]: translating between the control API's types and
//!   `yard-nat`'s, and building the L3 replies from what the datapath
//!   reports;
//! - [`bridge_api`]: building the L2 replies from what the datapath reports;
//! - [`trace`]: a `trace` request's frame (built from a description or
//!   decoded) and its reply;
//! - [`ControlError`], [`SocketError`], [`AccessError`]: what can go wrong,
//!   each naming the [`Object`] concerned and the way out.
//!
//! The datapath answers in its own types; every API reply is built here.

pub mod adopt;
pub mod attach;
pub mod bridge_api;
pub mod config;
pub mod default_route;
mod error;
pub mod events;
pub mod metrics;
pub mod nat_api;
pub mod netns_helper;
pub mod qemu;
pub mod resolv;
pub mod server;
pub mod state;
pub mod trace;

pub use error::{AccessError, ControlError, Object, Removed, SocketError};
pub use server::{bind_socket, serve, watch_namespaces, Control, ControlOptions};
