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
        }
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
    /// its error and tag.
    pub fn flush(
        &mut self,
        fd: BorrowedFd<'_>,
        to: Option<SocketAddrV4>,
        mut refused: impl FnMut(io::Error, u32),
    ) {
        let queued = std::mem::take(&mut self.queued);
        if queued == 0 {
            return;
        }
        let mut addr = to.map(sockaddr_in);
        // SAFETY: all-zero is a valid `iovec` and `mmsghdr` (null pointers,
        // zero lengths); every one used is filled in below.
        let mut iovs: [libc::iovec; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; SEND_SLOTS] = unsafe { std::mem::zeroed() };
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
        for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()).take(queued) {
            if let Some(addr) = addr.as_mut() {
                msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
                msg.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut next = 0;
        // Each call sends at least one datagram or skips one refused: at most
        // `queued` calls.
        while next < queued {
            // SAFETY: `msgs[next..queued]` point at `addr`, `iovs` and the
            // slots, all live and unchanged for the whole call; the count
            // passed is exactly that many headers.
            let sent = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs[next..].as_mut_ptr(),
                    (queued - next) as libc::c_uint,
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
            // The first datagram left was refused: report it, go on after it.
            refused(error, self.tags[next]);
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn queued_datagrams_arrive_in_order_and_a_refused_one_is_reported_and_skipped() {
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
}
