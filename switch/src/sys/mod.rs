//! Unsafe system interfaces. (Being written.)
