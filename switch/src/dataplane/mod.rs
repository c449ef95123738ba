//! The data plane: where frames are received, decided on and sent.
//!
//! How the data plane fits the rest of yardd: `docs/ARCHITECTURE.md`.
//!
//! Contract: nothing here blocks on, or reads, anything but its ports and its
//! command queue; nothing on the per-frame path allocates, locks or logs.
//! The control plane reaches it only through
//! [`threads::DatapathHandle`], whose answers are the data plane's own types
//! (counters, FDB records, conntrack entries): it builds no control API
//! reply and depends on nothing in `crate::control`.
//!
//! - [`frame`]: the pooled frame buffer and its offload state;
//! - [`bridge`], [`fdb`], [`verdict`]: the L2 pipeline — learning,
//!   forwarding, flooding, VLANs, isolation — and why frames are dropped;
//! - [`port`]: where frames enter and leave (TAP and AF_PACKET fds, tunnels,
//!   in-memory ports for tests); [`overlay`]: the shared tunnel sockets;
//! - [`offload`]: finishing checksums, cutting GSO frames and IP fragments
//!   for a way out that needs them, in scratch frames (the algorithms are
//!   `yard-wire`'s);
//! - [`capture`]: copies of a port's frames for `yardctl capture`;
//! - [`threads`]: the datapath threads' poll loop, the gateway's router and
//!   the handle the control plane drives them with;
//! - [`clock`]: the datapath's millisecond clock;
//! - [`trace`]: `yardctl trace` — the pipeline's decisions in words, run
//!   dry (nothing learned, made, counted or sent).

pub mod bridge;
pub mod capture;
pub mod clock;
pub mod fdb;
pub mod frame;
pub mod offload;
pub mod overlay;
pub mod port;
pub mod threads;
pub mod trace;
pub mod verdict;
