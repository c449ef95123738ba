//! Benchmark support shared by the criterion benches: a global allocator
//! that counts allocations, so each bench can report allocations per frame
//! beside nanoseconds (the fast path's figure is 0).
//!
//! The lab benchmark, which runs real traffic through yardd and its peers, is
//! `lab_bench.py` beside this crate (see README.md).

pub mod sys;

pub use sys::CountingAlloc;

/// Runs `f` `iterations` times and returns the allocations it made per call.
pub fn allocations_per_call(iterations: u64, mut f: impl FnMut()) -> f64 {
    let before = CountingAlloc::allocations();
    for _ in 0..iterations {
        f();
    }
    (CountingAlloc::allocations() - before) as f64 / iterations as f64
}
