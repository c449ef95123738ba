//! Per-protocol, per-state idle timeouts and the RFC reasoning behind the
//! defaults.
//!
//! Linux nf_conntrack's defaults are the starting point. Where one of them is
//! below the minimum a NAT RFC requires, the RFC minimum wins:
//!
//! | timer | Linux | here | why |
//! |---|---|---|---|
//! | TCP ESTABLISHED | 5 days | 5 days | RFC 5382 REQ-5: ≥ 2 h 4 min |
//! | TCP SYN_SENT | 120 s | 240 s | RFC 5382 REQ-5: transitory ≥ 4 min |
//! | TCP SYN_RECV | 60 s | 240 s | transitory (partially open) |
//! | TCP FIN_WAIT | 120 s | 240 s | transitory (partially closed) |
//! | TCP CLOSE_WAIT | 60 s | 240 s | transitory (partially closed) |
//! | TCP LAST_ACK | 30 s | 240 s | transitory (partially closed) |
//! | TCP TIME_WAIT | 120 s | 240 s | treated as transitory: the close is not done until 2 MSL (RFC 9293: MSL 2 min) |
//! | TCP CLOSE (after RST) | 10 s | 10 s | the connection is gone, not idle; RFC 5382 sets no minimum |
//! | UDP unreplied | 30 s | 120 s | RFC 4787 REQ-5: ≥ 2 min |
//! | UDP replied | 120 s (stream 180 s) | 300 s | RFC 4787 REQ-5c: 5 min RECOMMENDED |
//! | ICMP query | 30 s | 60 s | RFC 5508 REQ-1: ≥ 60 s |
//!
//! UDP uses 2 min until a reply is seen, so scans and floods of one-way
//! flows age out sooner while the RFC minimum still holds; once replied, the
//! recommended 5 min.

use super::tcp::TcpState;

const SEC: u64 = 1000;

/// Idle timeouts in milliseconds. Every field is settable; see the module doc
/// for the defaults and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP `SYN_SENT`.
    pub tcp_syn_sent: u64,
    /// TCP `SYN_RECV`.
    pub tcp_syn_recv: u64,
    /// TCP `ESTABLISHED`.
    pub tcp_established: u64,
    /// TCP `FIN_WAIT`.
    pub tcp_fin_wait: u64,
    /// TCP `CLOSE_WAIT`.
    pub tcp_close_wait: u64,
    /// TCP `LAST_ACK`.
    pub tcp_last_ack: u64,
    /// TCP `TIME_WAIT`.
    pub tcp_time_wait: u64,
    /// TCP `CLOSE` (after a RST).
    pub tcp_close: u64,
    /// UDP before any reply was seen.
    pub udp_unreplied: u64,
    /// UDP once a reply was seen.
    pub udp_replied: u64,
    /// ICMP echo (query) flows.
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 240 * SEC,
            tcp_syn_recv: 240 * SEC,
            tcp_established: 5 * 24 * 3600 * SEC,
            tcp_fin_wait: 240 * SEC,
            tcp_close_wait: 240 * SEC,
            tcp_last_ack: 240 * SEC,
            tcp_time_wait: 240 * SEC,
            tcp_close: 10 * SEC,
            udp_unreplied: 120 * SEC,
            udp_replied: 300 * SEC,
            icmp: 60 * SEC,
        }
    }
}

impl Timeouts {
    /// Linux nf_conntrack's defaults, some of which are below the RFC
    /// minimums (for comparison and for users who want Linux behaviour).
    pub fn linux() -> Timeouts {
        Timeouts {
            tcp_syn_sent: 120 * SEC,
            tcp_syn_recv: 60 * SEC,
            tcp_established: 5 * 24 * 3600 * SEC,
            tcp_fin_wait: 120 * SEC,
            tcp_close_wait: 60 * SEC,
            tcp_last_ack: 30 * SEC,
            tcp_time_wait: 120 * SEC,
            tcp_close: 10 * SEC,
            udp_unreplied: 30 * SEC,
            udp_replied: 120 * SEC,
            icmp: 30 * SEC,
        }
    }

    /// The timeout for a TCP state.
    pub fn tcp(&self, state: TcpState) -> u64 {
        match state {
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}
