//! The ICMP error builder at the path the daemon's L2 bridge still imports
//! it from (`yard_nat::wire`). The packet views and builders live in
//! `yard_wire`; this module only re-exports those three items and goes away
//! once the bridge imports them from there.

pub use yard_wire::icmp;
pub use yard_wire::icmp::{build_icmp_error, IcmpErrorKind};
