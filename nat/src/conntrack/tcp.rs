//! The TCP connection state machine conntrack keeps per entry.
//!
//! Contract: [`TcpTracker::update`] is a pure function of the current
//! tracker, the packet's direction and its [`TcpSegment`] summary; it never
//! looks at packet bytes, clocks or the table. It is a simplified model of
//! Linux nf_conntrack's TCP tracker, written from the TCP specification:
//!
//! - Opening: an original-direction SYN starts in [`TcpState::SynSent`]; the
//!   reply's SYN/ACK moves to [`TcpState::SynRecv`]; the original's ACK to
//!   [`TcpState::Established`]. Simultaneous open (a bare SYN in the reply
//!   direction while in `SynSent`) also moves to `SynRecv`, where SYN/ACKs are
//!   accepted from both sides and an ACK from either side establishes. Linux
//!   has a separate `SYN_SENT2` for this; one state is enough here because
//!   `SynRecv` already means "both SYNs seen, handshake not complete".
//! - Closing: the first FIN (from either side) moves to
//!   [`TcpState::FinWait`]; the peer's ACK of that FIN to
//!   [`TcpState::CloseWait`]; the peer's own FIN (from `FinWait` or
//!   `CloseWait`, covering simultaneous close) to [`TcpState::LastAck`]; the
//!   first closer's ACK of that FIN to [`TcpState::TimeWait`].
//! - RST moves any state to [`TcpState::Close`], but only when it is
//!   plausibly in window, so a stray or spoofed RST far out of sequence
//!   cannot kill a flow. The check is deliberately simple: the RST's
//!   sequence number must lie within the receiver's largest advertised
//!   window (at least 64 KiB) of the next sequence number the sender is
//!   known to use. A RST from a side that has sent nothing yet (the answer
//!   to a SYN) must carry an ACK of the SYN instead.
//! - A new original-direction SYN in `TimeWait` or `Close` reopens the entry
//!   (port reuse) in `SynSent`.
//! - A new original-direction SYN while the connection looks open
//!   (`Established` to `LastAck`: the inside host restarted and reused the
//!   port, say) passes without changing the state, and is remembered. If
//!   the peer answers it — a SYN/ACK or a RST acknowledging it — the peer
//!   has no connection left, and the entry starts over from that SYN (or
//!   closes, and the SYN's retransmission reopens it). If the peer still
//!   has the old connection, its challenge ACK (RFC 5961) draws a RST from
//!   the new host that closes the entry the usual way. Linux's tracker
//!   lets such a SYN through ("ignore") in the same way.
//! - In `SynSent`, a bare ACK from the reply side is the peer's challenge ACK
//!   (RFC 5961 §4): it still holds an older connection on this 4-tuple,
//!   which the tracker no longer knows (its entry was removed with the
//!   container that had it). It passes, and its acknowledgment number is
//!   remembered: the originator's RST with that sequence number, which ends
//!   the peer's old connection, passes too and closes the entry; the SYN's
//!   retransmission then reopens it. Linux ignores such an ACK and accepts
//!   that RST in the same way.
//!
//! - Mid-stream pickup: a bare ACK (no SYN, FIN or RST) with no entry opens
//!   one in `Established` ([`TcpTracker::first`]), as Linux's default
//!   `nf_conntrack_tcp_loose` does, so connections that were open when the
//!   table was lost (yardd restarted) go on once their inside end sends. Until
//!   the other side is heard from, any RST from it is accepted (its numbers
//!   are unknown).
//!
//! Packets the model rejects leave the state untouched and are reported as
//! [`Invalid`]; the caller decides whether to forward them (Linux forwards
//! INVALID unless a rule drops it). Such packets must not refresh the timer.

use yard_wire::tcp::TcpFlags;

use super::Dir;

/// What the tracker needs from one TCP segment (the packet layer fills it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSegment {
    /// The header flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `flags` has ACK).
    pub ack: u32,
    /// Advertised window, unscaled as on the wire.
    pub window: u16,
    /// TCP payload length in bytes.
    pub payload_len: u32,
    /// Window scale option, if this segment is a SYN carrying one.
    pub wscale: Option<u8>,
}

impl TcpSegment {
    /// A segment with just these flags and zero numbers (handy in tests).
    pub fn flags(flags: TcpFlags) -> TcpSegment {
        TcpSegment {
            flags,
            ..TcpSegment::default()
        }
    }

    /// The sequence number just past this segment (SYN and FIN count one).
    fn end(&self) -> u32 {
        let mut len = self.payload_len;
        if self.flags.contains(TcpFlags::SYN) {
            len = len.wrapping_add(1);
        }
        if self.flags.contains(TcpFlags::FIN) {
            len = len.wrapping_add(1);
        }
        self.seq.wrapping_add(len)
    }
}

/// TCP connection states, after Linux nf_conntrack (`SYN_SENT2` folded into
/// `SynRecv`, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// The original direction sent a SYN.
    SynSent,
    /// Both sides sent a SYN; waiting for the final ACK.
    SynRecv,
    /// Handshake complete.
    Established,
    /// One side sent a FIN, not yet acknowledged.
    FinWait,
    /// The first FIN was acknowledged; the other side may still send.
    CloseWait,
    /// Both sides sent a FIN; waiting for the last ACK.
    LastAck,
    /// Both FINs acknowledged; waiting out stray segments.
    TimeWait,
    /// Ended by an accepted RST: kept for a short timeout (10 s) so late
    /// segments of the connection are recognised.
    Close,
}

impl TcpState {
    /// Upper-case name as `conntrack ls` shows it (Linux spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

/// Why the tracker rejected a segment (state unchanged, timer not refreshed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// A RST whose sequence number is far outside the window.
    RstOutOfWindow,
    /// A segment that makes no sense in this state (e.g. an ACK before the
    /// SYN/ACK, a FIN in `SynSent`, a SYN/ACK from the originator first).
    UnexpectedInState,
    /// The first packet of a TCP flow is neither a bare SYN nor a bare ACK
    /// (mid-stream pickup).
    NotSyn,
}

/// Per-direction sequence tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Side {
    /// Whether this side has sent anything yet.
    seen: bool,
    /// The highest sequence number end this side sent.
    end: u32,
    /// The largest window this side advertised, scaled.
    max_win: u32,
    /// The window scale this side announced on its SYN, if any.
    wscale: Option<u8>,
    /// This side sent a FIN ending at `fin_end`.
    fin: bool,
    /// Sequence number just past this side's FIN.
    fin_end: u32,
}

/// A TCP connection's tracking state: the [`TcpState`] plus enough sequence
/// information to judge RSTs and FIN acknowledgments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTracker {
    state: TcpState,
    sides: [Side; 2],
    /// The last bare SYN the originator sent while the connection looked
    /// open: the entry starts over from it if the peer answers it.
    new_syn: Option<TcpSegment>,
    /// The acknowledgment number of the peer's challenge ACK in `SynSent`:
    /// the sequence number of the originator's RST that answers it.
    challenge_ack: Option<u32>,
    /// Opened mid-stream by an ACK: the reply side's numbers are unknown.
    picked_up: bool,
}

/// Smallest window assumed when judging a RST, so a peer that advertised a
/// tiny window does not make legitimate RSTs look out of window.
const MIN_RST_WINDOW: u32 = 65_535;

/// `a` is after `b` in sequence space.
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a` is at or after `b` in sequence space.
fn seq_at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl TcpTracker {
    /// A tracker for a flow whose first (original-direction) segment is
    /// `seg`: a bare SYN opens it in `SynSent`, a bare ACK picks it up in
    /// the middle, in `Established` (see the module documentation); anything
    /// else is `NotSyn`, and the caller must not create an entry for it.
    pub fn first(seg: &TcpSegment) -> Result<TcpTracker, Invalid> {
        let f = seg.flags;
        let bare_ack = f.contains(TcpFlags::ACK)
            && !f.contains(TcpFlags::SYN)
            && !f.contains(TcpFlags::FIN)
            && !f.contains(TcpFlags::RST);
        if !bare_ack {
            return TcpTracker::open(seg);
        }
        let mut t = TcpTracker::blank(TcpState::Established);
        t.picked_up = true;
        t.record(Dir::Original, seg);
        Ok(t)
    }

    /// A tracker for a flow that starts with `seg`, which must be a bare
    /// SYN; anything else is `NotSyn`.
    pub fn open(seg: &TcpSegment) -> Result<TcpTracker, Invalid> {
        if !seg.flags.contains(TcpFlags::SYN)
            || seg.flags.contains(TcpFlags::ACK)
            || seg.flags.contains(TcpFlags::RST)
        {
            return Err(Invalid::NotSyn);
        }
        let mut t = TcpTracker::blank(TcpState::SynSent);
        t.record(Dir::Original, seg);
        Ok(t)
    }

    fn blank(state: TcpState) -> TcpTracker {
        TcpTracker {
            state,
            sides: [Side::default(); 2],
            new_syn: None,
            challenge_ack: None,
            picked_up: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    fn record(&mut self, dir: Dir, seg: &TcpSegment) {
        let i = dir.index();
        let is_syn = seg.flags.contains(TcpFlags::SYN);
        if is_syn {
            self.sides[i].wscale = seg.wscale;
        }
        let end = seg.end();
        let side = &mut self.sides[i];
        if !side.seen || seq_after(end, side.end) {
            side.end = end;
        }
        side.seen = true;
        // Window scaling applies only once both SYNs carried the option, and
        // never to the window field of a SYN itself (RFC 7323).
        let both_scale = self.sides[0].wscale.is_some() && self.sides[1].wscale.is_some();
        let shift = if both_scale && !is_syn {
            u32::from(self.sides[i].wscale.unwrap_or(0).min(14))
        } else {
            0
        };
        let win = u32::from(seg.window) << shift;
        let side = &mut self.sides[i];
        if win > side.max_win {
            side.max_win = win;
        }
        if seg.flags.contains(TcpFlags::FIN) {
            side.fin = true;
            side.fin_end = end;
        }
    }

    fn rst_in_window(&self, dir: Dir, seg: &TcpSegment) -> bool {
        let me = &self.sides[dir.index()];
        let peer = &self.sides[dir.other().index()];
        if !me.seen {
            // Picked up mid-stream: this side's numbers are unknown. Else
            // the answer to a SYN: acceptable only if it acknowledges it.
            return self.picked_up
                || (seg.flags.contains(TcpFlags::ACK) && peer.seen && seg.ack == peer.end);
        }
        let win = peer.max_win.max(MIN_RST_WINDOW);
        let dist = seg.seq.wrapping_sub(me.end) as i32;
        dist.unsigned_abs() <= win
    }

    /// `seg` (from the reply side) acknowledges the new SYN the originator
    /// sent while the connection looked open.
    fn answers_new_syn(&self, seg: &TcpSegment) -> bool {
        self.new_syn
            .is_some_and(|syn| seg.flags.contains(TcpFlags::ACK) && seg.ack == syn.end())
    }

    /// The peer of `dir` acknowledged `dir`'s FIN with this segment from the peer.
    fn acks_fin_of(&self, fin_side: Dir, seg: &TcpSegment) -> bool {
        let s = &self.sides[fin_side.index()];
        s.fin && seg.flags.contains(TcpFlags::ACK) && seq_at_or_after(seg.ack, s.fin_end)
    }

    /// Feed one segment seen in direction `dir`. On `Ok` the state may have
    /// moved (the new state is returned); on `Err` nothing changed.
    pub fn update(&mut self, dir: Dir, seg: &TcpSegment) -> Result<TcpState, Invalid> {
        let f = seg.flags;
        let syn = f.contains(TcpFlags::SYN);
        let ack = f.contains(TcpFlags::ACK);
        let fin = f.contains(TcpFlags::FIN);

        if f.contains(TcpFlags::RST) {
            let answers_challenge = dir == Dir::Original && self.challenge_ack == Some(seg.seq);
            if answers_challenge || (dir == Dir::Reply && self.answers_new_syn(seg)) {
                // The old connection ends at the peer (the originator reset
                // it), or the peer refused the new one: either way the
                // entry starts again with the next SYN.
                self.new_syn = None;
                self.challenge_ack = None;
                self.state = TcpState::Close;
                return Ok(self.state);
            }
            if !self.rst_in_window(dir, seg) {
                return Err(Invalid::RstOutOfWindow);
            }
            self.record(dir, seg);
            self.state = TcpState::Close;
            return Ok(self.state);
        }

        use TcpState::*;
        let next = match (self.state, dir, syn, ack) {
            // Port reuse: a fresh SYN from the originator restarts the entry.
            (TimeWait | Close, Dir::Original, true, false) => {
                *self = TcpTracker::open(seg)?;
                return Ok(self.state);
            }
            (SynSent, Dir::Original, true, false) => SynSent, // retransmission
            (SynSent, Dir::Reply, true, _) => SynRecv,        // SYN/ACK, or simultaneous open
            (SynSent, Dir::Reply, false, true) if !fin => {
                // A challenge ACK: pass it, without taking its numbers.
                self.challenge_ack = Some(seg.ack);
                return Ok(SynSent);
            }
            (SynSent, _, _, _) => return Err(Invalid::UnexpectedInState),
            (SynRecv, _, true, _) => SynRecv, // retransmissions, simultaneous SYN/ACKs
            (SynRecv, _, false, true) if fin => FinWait,
            (SynRecv, _, false, true) => Established,
            (SynRecv, _, false, false) => return Err(Invalid::UnexpectedInState),
            // A new connection on a 4-tuple that looks open: pass, remember.
            (Established | FinWait | CloseWait | LastAck, Dir::Original, true, false) => {
                self.new_syn = Some(*seg);
                return Ok(self.state);
            }
            // The peer accepted it: start over from that SYN.
            (Established | FinWait | CloseWait | LastAck, Dir::Reply, true, true)
                if self.answers_new_syn(seg) =>
            {
                let syn = self.new_syn.take().unwrap_or_default();
                *self = TcpTracker::open(&syn)?;
                return self.update(dir, seg);
            }
            (_, _, true, _) => return Err(Invalid::UnexpectedInState),
            (Established, _, false, _) if fin => FinWait,
            (Established, _, false, _) => Established,
            (FinWait, d, false, _) => {
                let first = if self.sides[Dir::Original.index()].fin {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                if d != first && fin {
                    LastAck
                } else if d != first && self.acks_fin_of(first, seg) {
                    CloseWait
                } else {
                    FinWait
                }
            }
            (CloseWait, d, false, _) => {
                let first = if self.sides[Dir::Original.index()].fin {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                if d != first && fin {
                    LastAck
                } else {
                    CloseWait
                }
            }
            (LastAck, d, false, _) => {
                // Both sides have sent FIN; TIME_WAIT once both are acked:
                // that is, this segment acks the FIN of the other side and
                // our own FIN was acked earlier or is being acked now.
                let other = d.other();
                if self.acks_fin_of(other, seg) && self.sides[other.index()].fin {
                    self.record(d, seg);
                    self.state = TimeWait;
                    return Ok(TimeWait);
                }
                LastAck
            }
            (TimeWait, _, false, _) => TimeWait,
            (Close, _, false, _) => Close,
        };
        self.record(dir, seg);
        self.state = next;
        Ok(next)
    }
}
