//! `yard-fuzz`: the entry points of Switchyard's fuzz targets, as ordinary
//! functions on stable Rust.
//!
//! Contract: each target is one function from arbitrary bytes to nothing
//! ([`Target::run`]) that must not panic on any input — a panic, an
//! overflow in a debug build or a broken invariant asserted here is a bug
//! in the code under test. The libFuzzer binaries in `fuzz/fuzz_targets/`
//! (nightly flags, see `fuzz/run.sh`) only call these functions, and the
//! tests in `tests/replay.rs` run every saved crash input in
//! `fuzz/regressions/<target>/` and every seed through the same functions
//! in the normal `cargo test --workspace`. Every target is deterministic
//! (fixed configuration, fixed SNAT port seed, time taken from the input)
//! and bounded: one input allocates at most a few times its own length.
//!
//! - [`wire`]: every `yard_wire` view on one frame, the builders'
//!   round trips, checksums, GSO segmentation and IPv4 fragmentation.
//! - [`gateway`]: frames into a `yard_nat` gateway with two networks, an
//!   uplink and published ports; verdicts and the outbox out.
//! - [`gre`]: `yard_tunnel`'s GRE decapsulation, and re-encapsulation of
//!   what it accepts.
//! - [`pipeline`]: frames on the in-memory ports of one whole datapath
//!   thread of yardd (bridge, router, gateway, uplink).
//! - [`seeds`]: the first corpus of each target, built like the unit
//!   tests' fixtures.

pub mod gateway;
pub mod gre;
mod input;
pub mod pipeline;
pub mod seeds;
pub mod wire;

/// A fuzz target: its name (the directory under `fuzz/corpus/` and
/// `fuzz/regressions/`, and the cargo-fuzz binary) and its entry function.
#[derive(Clone, Copy)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input; panics only on a bug.
    pub run: fn(&[u8]),
    /// The seed inputs of its corpus.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "wire",
        run: wire::run,
        seeds: seeds::wire,
    },
    Target {
        name: "gateway",
        run: gateway::run,
        seeds: seeds::gateway,
    },
    Target {
        name: "gre",
        run: gre::run,
        seeds: seeds::gre,
    },
    Target {
        name: "pipeline",
        run: pipeline::run,
        seeds: seeds::pipeline,
    },
];
