//! Netlink configuration. (Being written.)
