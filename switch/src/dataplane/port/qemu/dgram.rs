//! A QEMU VM's NIC over `-netdev dgram`: one Ethernet frame per datagram on
//! a Unix datagram socket or a loopback UDP socket that yardd binds and the
//! VM's QEMU sends to.
//!
//! Contract:
//! - yardd answers the latest sender: when a datagram comes from another
//!   address than before (a VM restarted elsewhere), that address is the
//!   VM's from then on. Until the first datagram, frames to the port are
//!   refused as `NotConnected` (`port-down`); so are they after a send found
//!   nobody at the VM's address any more (a Unix socket gone: the port waits
//!   for the next sender). Over UDP a VM that went away is not noticed:
//!   datagrams to it are lost, as UDP is.
//! - A Unix sender must have bound its own socket (QEMU's `local.path`),
//!   else there is no address to answer: its frames are taken, and the
//!   status says so.
//! - The address is shared by the port's handles on every datapath thread
//!   without a lock per frame: the reader publishes a change under a mutex
//!   and bumps a generation; each handle checks the generation (one atomic
//!   load) before sending and copies the address only when it moved.
//! - Received datagrams land directly in a pool frame; nothing allocates
//!   per frame.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::LinkStatus;
use crate::dataplane::frame::Frame;
use crate::dataplane::port::Port;

/// The socket yardd bound.
pub enum DgramSocket {
    /// A Unix datagram socket at a path.
    Unix(UnixDatagram),
    /// A UDP socket on loopback.
    Udp(UdpSocket),
}

/// Where the VM's datagrams come from, and so where yardd sends.
#[derive(Debug, Clone)]
enum Peer {
    Unix(UnixAddr),
    Udp(SocketAddr),
}

impl Peer {
    fn same(&self, other: &Peer) -> bool {
        match (self, other) {
            (Peer::Unix(a), Peer::Unix(b)) => a.as_pathname() == b.as_pathname(),
            (Peer::Udp(a), Peer::Udp(b)) => a == b,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Peer::Unix(a) => a
                .as_pathname()
                .map_or("an unnamed socket".to_string(), |p| p.display().to_string()),
            Peer::Udp(a) => a.to_string(),
        }
    }
}

/// The VM's address as the reader last saw it, for every handle.
struct Shared {
    generation: AtomicU64,
    peer: Mutex<Option<Peer>>,
    link: Arc<LinkStatus>,
    /// The bound address, for the status.
    local: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Option<Peer>> {
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the status says while no VM is known at `local`.
pub fn waiting_detail(local: &str, why: &str) -> String {
    format!("{why}; waiting for QEMU to send to {local}")
}

/// A `-netdev dgram` port.
pub struct QemuDgramPort {
    socket: Arc<DgramSocket>,
    shared: Arc<Shared>,
    /// This handle's copy of the VM's address and the generation it is of.
    generation: u64,
    peer: Option<Peer>,
    /// The status already says the sender is unnamed.
    told_unnamed: bool,
}

impl QemuDgramPort {
    /// A port over `socket` (bound at `local`), whose status is `link`.
    pub fn new(socket: DgramSocket, local: &str, link: Arc<LinkStatus>) -> io::Result<Self> {
        match &socket {
            DgramSocket::Unix(s) => s.set_nonblocking(true)?,
            DgramSocket::Udp(s) => s.set_nonblocking(true)?,
        }
        Ok(QemuDgramPort {
            socket: Arc::new(socket),
            shared: Arc::new(Shared {
                generation: AtomicU64::new(0),
                peer: Mutex::new(None),
                link,
                local: local.to_string(),
            }),
            generation: 0,
            peer: None,
            told_unnamed: false,
        })
    }

    /// Brings this handle's copy of the VM's address up to date.
    fn refresh(&mut self) {
        let now = self.shared.generation.load(Ordering::Acquire);
        if now != self.generation {
            let peer = self.shared.lock();
            self.peer = peer.clone();
            self.generation = self.shared.generation.load(Ordering::Acquire);
        }
    }

    /// Publishes `peer` as the VM's address (slow path: it changed).
    fn publish(&mut self, peer: Option<Peer>, detail: String, up: bool) {
        let mut shared = self.shared.lock();
        *shared = peer.clone();
        self.generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        drop(shared);
        self.peer = peer;
        tracing::info!(local = %self.shared.local, "{detail}");
        self.shared.link.set(up, detail);
    }

    /// Notes the sender of a datagram just received.
    fn heard_from(&mut self, from: Peer) {
        self.refresh();
        if self.peer.as_ref().is_some_and(|p| p.same(&from)) {
            return;
        }
        if let Peer::Unix(addr) = &from {
            if addr.as_pathname().is_none() {
                if self.peer.is_some() || !self.told_unnamed {
                    let detail = waiting_detail(
                        &self.shared.local,
                        "QEMU sends from an unnamed socket, which cannot be answered: give \
                         its -netdev dgram a local.path",
                    );
                    self.publish(None, detail, false);
                    self.told_unnamed = true;
                }
                return;
            }
        }
        self.told_unnamed = false;
        let detail = format!("QEMU at {}", from.describe());
        self.publish(Some(from), detail, true);
    }
}

impl Port for QemuDgramPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        loop {
            let buf = frame.build_buf();
            let received = match &*self.socket {
                DgramSocket::Unix(s) => s.recv_from(buf).map(|(n, a)| (n, Peer::Unix(a))),
                DgramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Peer::Udp(a))),
            };
            match received {
                Ok((n, from)) => {
                    self.heard_from(from);
                    return Ok(frame.set_built(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        self.refresh();
        let sent = match (&*self.socket, &self.peer) {
            (_, None) => return Err(io::ErrorKind::NotConnected.into()),
            (DgramSocket::Unix(s), Some(Peer::Unix(to))) => s.send_to_addr(frame.data(), to),
            (DgramSocket::Udp(s), Some(Peer::Udp(to))) => s.send_to(frame.data(), to),
            _ => return Err(io::ErrorKind::NotConnected.into()),
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                // Nobody is bound at the VM's address any more.
                let gone = self.peer.as_ref().map(Peer::describe).unwrap_or_default();
                let detail =
                    waiting_detail(&self.shared.local, &format!("QEMU at {gone} went away"));
                self.publish(None, detail, false);
                Err(io::ErrorKind::NotConnected.into())
            }
            Err(e) => Err(e),
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(match &*self.socket {
            DgramSocket::Unix(s) => s.as_raw_fd(),
            DgramSocket::Udp(s) => s.as_raw_fd(),
        })
    }

    fn share(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(QemuDgramPort {
            socket: self.socket.clone(),
            shared: self.shared.clone(),
            generation: 0,
            peer: None,
            told_unnamed: false,
        }))
    }

    fn accepts_gso(&self) -> bool {
        false
    }

    fn accepts_partial_csum(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use yard_wire::offload::Offload;

    use super::*;

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut f = Frame::new();
        f.fill(Offload::NONE, bytes);
        f
    }

    /// The next frame the port hands in (at most 5 s).
    fn receive(port: &mut QemuDgramPort) -> Vec<u8> {
        let mut f = Frame::new();
        for _ in 0..500 {
            if port.recv(&mut f).unwrap() {
                return f.data().to_vec();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no frame within 5 s");
    }

    #[test]
    fn udp_frames_come_in_and_replies_go_to_the_latest_sender() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let link = Arc::new(LinkStatus::waiting("waiting".into()));
        let mut port =
            QemuDgramPort::new(DgramSocket::Udp(socket), &local.to_string(), link.clone()).unwrap();
        let mut other_thread = port.share().unwrap();
        let mut reply = frame_of(&[7; 60]);
        assert_eq!(
            port.send(&mut reply).unwrap_err().kind(),
            io::ErrorKind::NotConnected,
            "nobody to send to before the first datagram"
        );

        let vm = UdpSocket::bind("127.0.0.1:0").unwrap();
        vm.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        vm.send_to(&[1; 1514], local).unwrap();
        assert_eq!(receive(&mut port), vec![1; 1514]);
        assert!(link.get().up, "{:?}", link.get());
        port.send(&mut reply).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = vm.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[7u8; 60][..], local));
        // Another thread's handle learns the address without being told.
        other_thread.send(&mut reply).unwrap();
        assert_eq!(vm.recv(&mut buf).unwrap(), 60);

        // A VM restarted on another port: replies follow it.
        let vm2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        vm2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        vm2.send_to(&[2; 64], local).unwrap();
        assert_eq!(receive(&mut port), vec![2; 64]);
        other_thread.send(&mut reply).unwrap();
        assert_eq!(vm2.recv(&mut buf).unwrap(), 60);
    }

    #[test]
    fn a_unix_vm_is_answered_at_its_path_and_waited_for_when_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yard.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let link = Arc::new(LinkStatus::waiting("waiting".into()));
        let local = path.display().to_string();
        let mut port = QemuDgramPort::new(DgramSocket::Unix(socket), &local, link.clone()).unwrap();

        // An unnamed sender's frames are taken, but it cannot be answered.
        let anonymous = UnixDatagram::unbound().unwrap();
        anonymous.send_to(&[3; 60], &path).unwrap();
        assert_eq!(receive(&mut port), vec![3; 60]);
        let state = link.get();
        assert!(
            !state.up && state.detail.contains("local.path"),
            "{state:?}"
        );

        let vm_path = dir.path().join("vm.sock");
        let vm = UnixDatagram::bind(&vm_path).unwrap();
        vm.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        vm.send_to(&[4; 1514], &path).unwrap();
        assert_eq!(receive(&mut port), vec![4; 1514]);
        assert!(link.get().up);
        let mut reply = frame_of(&[5; 100]);
        port.send(&mut reply).unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(vm.recv(&mut buf).unwrap(), 100);

        drop(vm);
        std::fs::remove_file(&vm_path).unwrap();
        assert_eq!(
            port.send(&mut reply).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        let state = link.get();
        assert!(!state.up && state.detail.contains("went away"), "{state:?}");
    }
}
