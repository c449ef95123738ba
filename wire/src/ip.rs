//! What IPv4 and IPv6 share: the protocol numbers (IPv4's protocol field,
//! IPv6's next header) of the payloads the project reads or writes.
//!
//! Contract: constants only. Each IP version's header view lives in its own
//! module ([`crate::ipv4`], [`crate::ipv6`]), and both use these.

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub mod protocol {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IGMP (RFC 3376).
    pub const IGMP: u8 = 2;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// GRE (RFC 2784).
    pub const GRE: u8 = 47;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 hop-by-hop options extension header (RFC 8200 §4.3).
    pub const IPV6_HOP_BY_HOP: u8 = 0;
    /// IPv6 routing extension header (RFC 8200 §4.4).
    pub const IPV6_ROUTING: u8 = 43;
    /// IPv6 destination options extension header (RFC 8200 §4.6).
    pub const IPV6_DEST_OPTS: u8 = 60;
}
