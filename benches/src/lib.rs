//! Benchmark support. (Being written.)
