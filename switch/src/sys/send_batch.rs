//! Datagrams to one destination sent together: queued by copying them into
//! slots, sent with one `sendmmsg(2)` per flush (tunnel ports: the GRE or
//! GRE-in-UDP packets a round sends to a remote host; packet-socket ports:
//! the small frames a round sends out of the interface).
//!
//! Contract: [`SendBatch::queue`] copies a datagram of up to
//! [`SEND_SLOT_LEN`] bytes into one of [`SEND_SLOTS`] slots (false when it
//! is larger or the slots are full: flush, then send it directly);
//! [`SendBatch::flush`] sends every queued datagram to the destination, in
//! the order queued, and frees the slots. A datagram the socket refuses is
//! reported with the tag it was queued with and skipped; the ones after it
//! are still sent. Message headers are built on the stack at each flush:
//! nothing here allocates after [`SendBatch::new`].
//!
//! With UDP GSO on ([`SendBatch::set_udp_gso`], for UDP sockets), each run
//! of queued datagrams of one length (the last of a run may be shorter) is
//! one message: its slots as the message's iovecs and a `UDP_SEGMENT`
//! control message with that length, so the kernel takes the run through
//! its stack once and cuts it into the same datagrams. A run the kernel
//! refuses is sent again datagram by datagram; where the kernel refuses
//! UDP GSO itself (`EIO`, `ENOPROTOOPT`, `EOPNOTSUPP`), it stays off and
//! [`SendBatch::flush`] returns the error, for the caller's log line.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::tunnel::sockaddr_in;

/// Datagrams queued at most before a flush.
pub const SEND_SLOTS: usize = 32;
/// The longest datagram that is queued; a longer one is the caller's to
/// send directly.
pub const SEND_SLOT_LEN: usize = 2048;

/// Queued datagrams, with a tag each for the caller.
pub struct SendBatch {
    slots: Box<[u8]>,
    lens: [u32; SEND_SLOTS],
    tags: [u32; SEND_SLOTS],
    queued: usize,
    /// Runs of equal datagrams leave as one UDP GSO message each.
    udp_gso: bool,
}

/// The most bytes one UDP GSO message carries: the largest UDP payload.
const MAX_GSO_BYTES: u32 = 65_507;

/// Room for one control message carrying a `u16` (`CMSG_SPACE(2)`: a
/// 16-byte header and the value padded to 8), 8-byte aligned.
type SegmentCmsg = [u64; 3];

/// What one message of a flush carries: `count` datagrams from `first`.
#[derive(Clone, Copy, Default)]
struct Span {
    first: usize,
    count: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Empty slots (64 KiB), allocated once.
    pub fn new() -> SendBatch {
        SendBatch {
            slots: vec![0u8; SEND_SLOTS * SEND_SLOT_LEN].into_boxed_slice(),
            lens: [0; SEND_SLOTS],
            tags: [0; SEND_SLOTS],
            queued: 0,
            udp_gso: false,
        }
    }

    /// Sends runs of equal datagrams as one UDP GSO message each (for a UDP
    /// socket; see the module documentation).
    pub fn set_udp_gso(&mut self, on: bool) {
        self.udp_gso = on;
    }

    /// Whether runs still go as UDP GSO messages.
    pub fn udp_gso(&self) -> bool {
        self.udp_gso
    }

    /// Copies `datagram` into a free slot with `tag`; false when it is
    /// longer than [`SEND_SLOT_LEN`] or every slot is taken.
    pub fn queue(&mut self, datagram: &[u8], tag: u32) -> bool {
        if datagram.len() > SEND_SLOT_LEN || self.queued == SEND_SLOTS {
            return false;
        }
        let at = self.queued * SEND_SLOT_LEN;
        self.slots[at..at + datagram.len()].copy_from_slice(datagram);
        self.lens[self.queued] = datagram.len() as u32;
        self.tags[self.queued] = tag;
        self.queued += 1;
        true
    }

    /// Datagrams queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Sends the queued datagrams to `to` (or, with `None`, where the socket
    /// is bound: an AF_PACKET socket's interface) on the non-blocking socket
    /// `fd`, in as few `sendmmsg(2)` calls as the socket takes them in, and
    /// frees the slots. `refused` hears of each datagram the socket refused:
    /// its error and tag. Returns the error with which the kernel refused
    /// UDP GSO, which is then off for good; `None` otherwise.
    pub fn flush(
        &mut self,
        fd: BorrowedFd<'_>,
        to: Option<SocketAddrV4>,
        mut refused: impl FnMut(io::Error, u32),
    ) -> Option<io::Error> {
        let queued = std::mem::take(&mut self.queued);
        let mut addr = to.map(sockaddr_in);
        let mut gso_refusal = None;
        // SAFETY: all-zero is a valid `iovec` and `mmsghdr` (null pointers,
        // zero lengths); every one used is filled in below.
        let mut iovs: [libc::iovec; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        for ((iov, slot), &len) in iovs
            .iter_mut()
            .zip(self.slots.chunks_exact_mut(SEND_SLOT_LEN))
            .zip(&self.lens)
            .take(queued)
        {
            *iov = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: len as usize,
            };
        }
        let mut cmsgs: [SegmentCmsg; SEND_SLOTS] = [[0; 3]; SEND_SLOTS];
        let mut spans = [Span::default(); SEND_SLOTS];
        // Datagrams before `start` are sent or reported. Each pass sends
        // the rest; a pass ends early only to send a refused GSO run again
        // without GSO: at most `queued + 1` passes.
        let mut start = 0;
        let mut gso = self.udp_gso;
        while start < queued {
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; SEND_SLOTS] = unsafe { std::mem::zeroed() };
            let count = plan(&self.lens[start..queued], gso, &mut spans);
            for ((msg, span), cmsg) in msgs.iter_mut().zip(&mut spans).zip(&mut cmsgs).take(count) {
                span.first += start;
                if let Some(addr) = addr.as_mut() {
                    msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
                    msg.msg_hdr.msg_namelen =
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                }
                msg.msg_hdr.msg_iov = iovs[span.first..].as_mut_ptr();
                msg.msg_hdr.msg_iovlen = span.count;
                if span.count > 1 {
                    let segment = self.lens[span.first] as u16;
                    fill_segment_cmsg(cmsg, segment);
                    msg.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
                    msg.msg_hdr.msg_controllen = std::mem::size_of::<SegmentCmsg>();
                }
            }
            let mut next = 0;
            start = queued;
            // Each call sends at least one message or handles one refused.
            while next < count {
                // SAFETY: `msgs[next..count]` point at `addr`, `iovs` (which
                // point at the slots) and `cmsgs`, all live and unchanged for
                // the whole call; the count passed is exactly that many
                // headers.
                let sent = unsafe {
                    libc::sendmmsg(
                        fd.as_raw_fd(),
                        msgs[next..].as_mut_ptr(),
                        (count - next) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if sent > 0 {
                    next += sent as usize;
                    continue;
                }
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let span = spans[next];
                if span.count > 1 {
                    // A GSO run refused: send it, and the rest, one by one.
                    if refuses_gso(&error) {
                        self.udp_gso = false;
                        gso_refusal = Some(error);
                    }
                    gso = false;
                    start = span.first;
                    break;
                }
                // The first datagram left was refused: report it, go on
                // after it.
                refused(error, self.tags[span.first]);
                next += 1;
            }
        }
        gso_refusal
    }
}

/// Splits datagrams of lengths `lens` into messages, into `spans` (offsets
/// from the first); returns how many. Without `gso` each datagram is one
/// message; with it, each run of one length, the last of a run possibly
/// shorter, is one message of at most [`MAX_GSO_BYTES`].
fn plan(lens: &[u32], gso: bool, spans: &mut [Span; SEND_SLOTS]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < lens.len() {
        let mut end = i + 1;
        if gso {
            let mut bytes = lens[i];
            let fits = |bytes: u32, len: u32| bytes + len <= MAX_GSO_BYTES;
            while end < lens.len() && lens[end] == lens[i] && fits(bytes, lens[end]) {
                bytes += lens[end];
                end += 1;
            }
            if end < lens.len() && lens[end] < lens[i] && fits(bytes, lens[end]) {
                end += 1;
            }
        }
        spans[count] = Span {
            first: i,
            count: end - i,
        };
        count += 1;
        i = end;
    }
    count
}

/// Writes a `UDP_SEGMENT` control message with segment size `segment` into
/// `cmsg`.
fn fill_segment_cmsg(cmsg: &mut SegmentCmsg, segment: u16) {
    *cmsg = [0; 3];
    let header = libc::cmsghdr {
        // CMSG_LEN(2): the header and the value, unpadded.
        cmsg_len: std::mem::size_of::<libc::cmsghdr>() + 2,
        cmsg_level: libc::SOL_UDP,
        cmsg_type: libc::UDP_SEGMENT,
    };
    // SAFETY: `cmsg` is 24 bytes, 8-aligned: room for the 16-byte header
    // (alignment 8) and the value after it; both writes stay inside.
    unsafe {
        let base = cmsg.as_mut_ptr().cast::<u8>();
        std::ptr::write(base.cast::<libc::cmsghdr>(), header);
        std::ptr::write_unaligned(
            base.add(std::mem::size_of::<libc::cmsghdr>()).cast::<u16>(),
            segment,
        );
    }
}

/// Whether `error` says the kernel cannot do UDP GSO at all (rather than
/// refusing one message).
fn refuses_gso(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::AsFd;

    use super::*;

    /// A receiver on loopback (reads time out after 5 s), its address, and a
    /// non-blocking sender.
    fn loopback_pair() -> (UdpSocket, std::net::SocketAddrV4, UdpSocket) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = match receiver.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        (receiver, to, sender)
    }

    #[test]
    fn queued_datagrams_arrive_in_order_and_a_refused_one_is_reported_and_skipped() {
        let (receiver, to, sender) = loopback_pair();
        let mut batch = SendBatch::new();
        for k in 0..SEND_SLOTS as u32 {
            let datagram = vec![k as u8; 100 + k as usize];
            assert!(batch.queue(&datagram, k));
        }
        assert!(!batch.queue(&[1], 99), "every slot is taken");
        let mut refusals = Vec::new();
        batch.flush(sender.as_fd(), Some(to), |e, tag| {
            refusals.push((e.kind(), tag))
        });
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(batch.queued(), 0);
        let mut buf = [0u8; 4096];
        for k in 0..SEND_SLOTS {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(n, 100 + k, "datagram {k} out of order");
            assert!(buf[..n].iter().all(|&b| b == k as u8));
        }

        // A datagram longer than a slot is not queued; one the socket
        // refuses (to port 0) is reported by its tag.
        assert!(!batch.queue(&vec![0u8; SEND_SLOT_LEN + 1], 7));
        assert!(batch.queue(b"refused", 41));
        let mut refusals = Vec::new();
        batch.flush(
            sender.as_fd(),
            Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            |e, tag| refusals.push((e.kind(), tag)),
        );
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].1, 41);
    }

    fn spans(lens: &[u32], gso: bool) -> Vec<(usize, usize)> {
        let mut spans = [Span::default(); SEND_SLOTS];
        let n = plan(lens, gso, &mut spans);
        spans[..n].iter().map(|s| (s.first, s.count)).collect()
    }

    #[test]
    fn runs_of_one_length_ending_in_a_shorter_one_make_one_gso_message_each() {
        let lens = [1400, 1400, 1400, 900, 1400, 1400, 60, 60, 1400];
        assert_eq!(spans(&lens, true), vec![(0, 4), (4, 3), (7, 1), (8, 1)]);
        assert_eq!(spans(&lens, false).len(), lens.len());
        // A longer datagram starts a new run.
        assert_eq!(spans(&[100, 200, 200], true), vec![(0, 1), (1, 2)]);
        // No message carries more than a UDP payload.
        let big = [2048; SEND_SLOTS];
        let got = spans(&big, true);
        assert!(got.iter().all(|&(_, n)| n as u32 * 2048 <= MAX_GSO_BYTES));
        assert_eq!(got.iter().map(|&(_, n)| n).sum::<usize>(), SEND_SLOTS);
    }

    #[test]
    fn with_udp_gso_the_receiver_gets_the_same_datagrams_in_order() {
        let (receiver, to, sender) = loopback_pair();
        let mut batch = SendBatch::new();
        batch.set_udp_gso(true);
        let lens = [1400, 1400, 1400, 700, 1400, 1400, 1400, 1400, 100, 1500];
        for (k, &len) in lens.iter().enumerate() {
            assert!(batch.queue(&vec![k as u8; len], k as u32));
        }
        let mut refusals = Vec::new();
        let gso_refused = batch.flush(sender.as_fd(), Some(to), |e, tag| {
            refusals.push((e.kind(), tag))
        });
        assert!(refusals.is_empty(), "{refusals:?}");
        // Where the kernel has UDP GSO it stays on; elsewhere the batch
        // fell back and says why.
        assert_eq!(batch.udp_gso(), gso_refused.is_none(), "{gso_refused:?}");
        let mut buf = [0u8; 4096];
        for (k, &len) in lens.iter().enumerate() {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(n, len, "datagram {k}");
            assert!(buf[..n].iter().all(|&b| b == k as u8), "datagram {k}");
        }
    }
}
