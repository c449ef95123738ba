//! Lab harness for Switchyard's network-namespace tests.
//!
//! The lab tests in `tests/tests/` run the real `yardd` and `yardctl` against
//! real network namespaces, TAP devices and veth pairs. This crate gives them:
//!
//! - [`bins`]: builds the two binaries once per test process and finds them;
//! - [`cmd`]: runs external commands with a time bound and turns their output
//!   into readable failure messages;
//! - [`netns`]: [`Netns`] and [`Veth`] guards with short, unique names that are
//!   removed on `Drop`, even when a test panics;
//! - [`daemon`]: a [`Daemon`] guard that runs `yardd` on a private socket and
//!   state directory, talks to it through `yardctl`, restarts it, and prints its
//!   log when a test fails;
//! - [`rootless`]: an ordinary user made for the test, yardd and yardctl run
//!   as that user, and `/dev/net/tun` opened to every user meanwhile;
//! - [`lab`]: [`Lab`], a daemon plus the containers (namespaces) attached to it,
//!   with ping and transfer helpers, and [`lab::require`] for the root check;
//! - [`guest`]: QEMU guests (a Debian kernel, a busybox initramfs, TCG) whose
//!   NIC is a socket backend, reporting on their console.
//!
//! Everything here must stay inside what the test created: traffic only between
//! the test's own namespaces, processes stopped by the pid the harness spawned,
//! never by name.

pub mod bins;
pub mod cmd;
pub mod daemon;
pub mod dns;
pub mod guest;
pub mod hosts;
pub mod image;
pub mod lab;
pub mod nat;
pub mod netns;
pub mod rootless;

pub use daemon::Daemon;
pub use lab::{require, Container, Lab};
pub use netns::{Netns, Veth};
