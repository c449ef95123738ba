//! Lab harness. (Being written.)
