//! A QEMU VM's NIC over `-netdev stream`: yardd listens on a Unix stream
//! socket and the VM's QEMU connects to it (`server=off`).
//!
//! Contract:
//! - One VM at a time. A connection that arrives while one is up is
//!   accepted and closed at once (QEMU reports it closed); so is one from a
//!   process whose uid is neither yardd's nor root's (`SO_PEERCRED`), on top
//!   of the socket file's mode 0600.
//! - When the VM's connection ends (QEMU stopped, or it sent a length above
//!   [`MAX_QEMU_FRAME`], counted as `oversize-frame`), the port stays and
//!   waits for the next one; meanwhile frames to it are refused as
//!   `NotConnected` (`port-down`). Its [`LinkStatus`] says which.
//! - Receiving: the port polls its own `mio::Poll` holding the listener and
//!   the connection, and hands the datapath that poll's fd, so the
//!   datapath's one registration per port covers both and never changes.
//!   Bytes are read into the port's [`StreamReassembly`] and each frame
//!   copied into a pool frame (no allocation per frame). A frame longer than
//!   a pool frame holds (longer than any MTU allows) is dropped as `too-big`.
//! - Sending: the length is written into the frame's headroom and sent with
//!   the frame in one `write(2)`. A stream must get whole frames in order,
//!   so the handles of every datapath thread send under one mutex (never
//!   contended with one thread). When the socket takes only part of a frame,
//!   the rest is kept in the port's pending buffer (allocated once) and sent
//!   before anything else — when the socket is writable again (the poll
//!   watches for that only while something is kept, so a VM reading what it
//!   is sent wakes nobody) or at the next send; while it is kept, further
//!   frames are refused as `WouldBlock` (`tx-queue-full`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use yard_wire::offload::Offload;

use super::framing::{StreamReassembly, LEN_PREFIX};
use super::{LinkStatus, MAX_QEMU_FRAME};
use crate::dataplane::frame::{Frame, MAX_FRAME_LEN};
use crate::dataplane::port::{Port, PortCounters};
use crate::dataplane::verdict::DropReason;
use crate::sys;

const LISTENER: Token = Token(0);
const CONNECTION: Token = Token(1);

/// The sending side, shared by the port's handles on every thread.
struct Writer {
    /// The VM's connection (a duplicate of the reader's fd), when one is up.
    conn: Option<OwnedFd>,
    /// The reader's poll, and the fd the connection is registered under
    /// there (the reader's), to watch for room while a frame is kept.
    registry: Registry,
    watched: Option<RawFd>,
    /// The rest of a frame the socket took only part of:
    /// `pending[sent..len]`.
    pending: Box<[u8]>,
    sent: usize,
    len: usize,
}

impl Writer {
    /// Sends what is kept of a partly sent frame. `Ok(true)` when nothing
    /// is kept any more.
    fn flush(&mut self) -> io::Result<bool> {
        let Some(conn) = &self.conn else {
            return Ok(true);
        };
        if self.sent == self.len {
            return Ok(true);
        }
        while self.sent < self.len {
            match sys::write_fd(conn.as_fd(), &self.pending[self.sent..self.len]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.sent = 0;
        self.len = 0;
        self.watch_room(false);
        Ok(true)
    }

    /// Keeps `rest`, the part of a frame the socket did not take, and has
    /// the poll report when there is room for it.
    fn keep(&mut self, rest: &[u8]) {
        self.pending[..rest.len()].copy_from_slice(rest);
        self.sent = 0;
        self.len = rest.len();
        self.watch_room(true);
    }

    /// Watches the connection for room to write (`true`) or only for data.
    fn watch_room(&self, room: bool) {
        let Some(fd) = self.watched else {
            return;
        };
        let interest = if room {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // Failing leaves the kept rest to the next send or read.
        let _ = self
            .registry
            .reregister(&mut SourceFd(&fd), CONNECTION, interest);
    }

    /// Forgets the connection and anything kept for it.
    fn reset(&mut self) {
        self.conn = None;
        self.watched = None;
        self.sent = 0;
        self.len = 0;
    }
}

/// The receiving side: only the handle of the thread that reads the port.
struct Reader {
    poll: Poll,
    events: Events,
    listener: UnixListener,
    conn: Option<UnixStream>,
    framing: StreamReassembly,
    /// Who may connect besides root: yardd's own uid.
    own_uid: u32,
    /// The socket's path, for the status.
    path: String,
    link: Arc<LinkStatus>,
    /// Drops decided here, handed to the bridge by [`Port::take_drops`].
    drops: PortCounters,
}

/// A `-netdev stream` port.
pub struct QemuStreamPort {
    /// `None` on the handles other threads send through.
    reader: Option<Box<Reader>>,
    writer: Arc<Mutex<Writer>>,
}

fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the status says while no VM is connected to `path`.
pub fn waiting_detail(path: &str, why: &str) -> String {
    format!("{why}; waiting for QEMU to connect to {path}")
}

impl QemuStreamPort {
    /// A port serving `listener` (bound at `path`, non-blocking), which
    /// processes of `own_uid` (and root) may connect to; `link` is its
    /// status, which starts as waiting.
    pub fn new(
        listener: UnixListener,
        path: &str,
        own_uid: u32,
        link: Arc<LinkStatus>,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let reader = Reader {
            poll,
            events: Events::with_capacity(4),
            listener,
            conn: None,
            framing: StreamReassembly::new(),
            own_uid,
            path: path.to_string(),
            link,
            drops: PortCounters::default(),
        };
        Ok(QemuStreamPort {
            reader: Some(Box::new(reader)),
            writer: Arc::new(Mutex::new(Writer {
                conn: None,
                registry,
                watched: None,
                pending: vec![0; LEN_PREFIX + MAX_FRAME_LEN].into_boxed_slice(),
                sent: 0,
                len: 0,
            })),
        })
    }
}

impl Reader {
    /// Takes the connections waiting on the listener: the first becomes
    /// the VM's when none is up, every other is closed.
    fn accept_waiting(&mut self, writer: &Mutex<Writer>) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(path = %self.path, error = %e, "cannot accept a QEMU connection");
                    return;
                }
            };
            if let Err(why) = self.take(stream, writer) {
                tracing::warn!(path = %self.path, "QEMU connection refused: {why}");
            }
        }
    }

    /// Makes `stream` the VM's connection, or says why it is refused (it
    /// is closed when dropped).
    fn take(&mut self, stream: UnixStream, writer: &Mutex<Writer>) -> Result<(), String> {
        if self.conn.is_some() {
            return Err("a VM is already connected (one at a time)".into());
        }
        let (pid, uid, _) = sys::peer_credentials(stream.as_fd()).map_err(|e| e.to_string())?;
        if uid != 0 && uid != self.own_uid {
            return Err(format!(
                "pid {pid} runs as uid {uid}; only yardd's uid {} and root may connect",
                self.own_uid
            ));
        }
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let dup = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        self.poll
            .registry()
            .register(
                &mut SourceFd(&stream.as_raw_fd()),
                CONNECTION,
                Interest::READABLE,
            )
            .map_err(|e| e.to_string())?;
        self.framing.clear();
        let mut w = lock(writer);
        w.reset();
        w.conn = Some(dup);
        w.watched = Some(stream.as_raw_fd());
        drop(w);
        self.conn = Some(stream);
        tracing::info!(path = %self.path, pid, "QEMU connected");
        self.link.set(true, format!("QEMU pid {pid} connected"));
        Ok(())
    }

    /// Ends the VM's connection for `why`; the port waits for the next.
    fn disconnect(&mut self, writer: &Mutex<Writer>, why: &str) {
        // The writer first: no sender may use the fd number once closed.
        lock(writer).reset();
        if let Some(conn) = self.conn.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&conn.as_raw_fd()));
        }
        self.framing.clear();
        tracing::info!(path = %self.path, "QEMU connection ended: {why}");
        self.link.set(false, waiting_detail(&self.path, why));
    }
}

impl Port for QemuStreamPort {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        let (n, result) = self.recv_batch(std::slice::from_mut(frame));
        result.map(|()| n == 1)
    }

    fn recv_batch(&mut self, frames: &mut [Frame]) -> (usize, io::Result<()>) {
        let Some(reader) = self.reader.as_deref_mut() else {
            return (0, Ok(()));
        };
        // The poll's readiness is edge-triggered: empty it so the next
        // event on the listener or the connection wakes the datapath again.
        let _ = reader.poll.poll(&mut reader.events, Some(Duration::ZERO));
        let knocked = reader.events.iter().any(|e| e.token() == LISTENER);
        let flushed = lock(&self.writer).flush();
        if let Err(e) = flushed {
            reader.disconnect(&self.writer, &format!("sending to QEMU failed: {e}"));
        }
        if knocked || reader.conn.is_none() {
            reader.accept_waiting(&self.writer);
        }
        let mut n = 0;
        while n < frames.len() {
            let Some(conn) = reader.conn.as_ref() else {
                break;
            };
            match reader.framing.next_frame() {
                Ok(Some(bytes)) if bytes.len() > MAX_FRAME_LEN => {
                    reader.drops.drop_frame(DropReason::TooBig);
                    continue;
                }
                Ok(Some(bytes)) => {
                    frames[n].fill(Offload::NONE, bytes);
                    n += 1;
                    continue;
                }
                Ok(None) => {}
                Err(too_long) => {
                    reader.drops.drop_frame(DropReason::OversizeFrame);
                    reader.disconnect(&self.writer, &too_long.to_string());
                    reader.accept_waiting(&self.writer);
                    continue;
                }
            }
            match sys::read_fd(conn.as_fd(), reader.framing.spare()) {
                Ok(0) => {
                    reader.disconnect(&self.writer, "QEMU closed the connection");
                    reader.accept_waiting(&self.writer);
                }
                Ok(k) => reader.framing.filled(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    reader.disconnect(&self.writer, &format!("reading from QEMU failed: {e}"));
                    reader.accept_waiting(&self.writer);
                }
            }
        }
        (n, Ok(()))
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        let len = frame.len();
        if len > MAX_QEMU_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame longer than QEMU takes",
            ));
        }
        let mut w = lock(&self.writer);
        if w.conn.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        match w.flush() {
            Ok(true) => {}
            Ok(false) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(_) => {
                // The reader sees the connection end and reports it.
                w.reset();
                return Err(io::ErrorKind::NotConnected.into());
            }
        }
        // The length goes into the headroom, just before the frame.
        let start = frame.start();
        let raw = frame.raw_mut();
        raw[start - LEN_PREFIX..start].copy_from_slice(&(len as u32).to_be_bytes());
        let bytes = &raw[start - LEN_PREFIX..start + len];
        let Some(conn) = w.conn.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        match sys::write_fd(conn.as_fd(), bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => {
                w.keep(&bytes[n..]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(_) => {
                w.reset();
                Err(io::ErrorKind::NotConnected.into())
            }
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.reader.as_ref().map(|r| r.poll.as_raw_fd())
    }

    fn share(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(QemuStreamPort {
            reader: None,
            writer: self.writer.clone(),
        }))
    }

    fn take_drops(&mut self, counters: &mut PortCounters) {
        if let Some(reader) = self.reader.as_deref_mut() {
            counters.add(&reader.drops);
            reader.drops = PortCounters::default();
        }
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
    use std::io::{Read, Write};

    use super::*;
    use crate::dataplane::threads::BATCH;

    struct Setup {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        port: QemuStreamPort,
        link: Arc<LinkStatus>,
        frames: Vec<Frame>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let link = Arc::new(LinkStatus::waiting("waiting".into()));
        let own = nix::unistd::geteuid().as_raw();
        let port =
            QemuStreamPort::new(listener, &path.display().to_string(), own, link.clone()).unwrap();
        Setup {
            _dir: dir,
            path,
            port,
            link,
            frames: (0..BATCH).map(|_| Frame::new()).collect(),
        }
    }

    impl Setup {
        /// A client connected and taken by the port.
        fn connect(&mut self) -> UnixStream {
            let client = UnixStream::connect(&self.path).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            self.port.recv_batch(&mut self.frames).1.unwrap();
            client
        }

        /// The frames the port hands in until `want` came (at most 5 s).
        fn receive(&mut self, want: usize) -> Vec<Vec<u8>> {
            self.receive_within(want, Duration::from_secs(5))
        }

        /// The frames the port hands in until `want` came or `within` passed.
        fn receive_within(&mut self, want: usize, within: Duration) -> Vec<Vec<u8>> {
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + within;
            while got.len() < want && std::time::Instant::now() < deadline {
                let (n, result) = self.port.recv_batch(&mut self.frames);
                result.unwrap();
                got.extend(self.frames[..n].iter().map(|f| f.data().to_vec()));
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            got
        }

        fn drops(&mut self) -> PortCounters {
            let mut counters = PortCounters::default();
            self.port.take_drops(&mut counters);
            counters
        }
    }

    fn prefixed(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8) ^ seed).collect()
    }

    /// Reads one length-prefixed frame from `client`.
    fn read_frame(client: &mut UnixStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        client.read_exact(&mut len).unwrap();
        let mut data = vec![0; u32::from_be_bytes(len) as usize];
        client.read_exact(&mut data).unwrap();
        data
    }

    #[test]
    fn frames_in_pieces_and_in_bunches_arrive_whole_and_replies_carry_their_length() {
        let mut s = setup();
        assert!(!s.link.get().up);
        let mut client = s.connect();
        assert!(s.link.get().up, "{:?}", s.link.get());
        let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(60 + i * 37, i as u8)).collect();
        let bytes = prefixed(&frames);
        // Split mid-length and mid-frame, then the rest at once (more than
        // one batch of frames in one read).
        client.write_all(&bytes[..2]).unwrap();
        assert!(s.receive_within(1, Duration::from_millis(200)).is_empty());
        client.write_all(&bytes[2..101]).unwrap();
        let mut got = s.receive(1);
        client.write_all(&bytes[101..]).unwrap();
        got.extend(s.receive(frames.len() - got.len()));
        assert_eq!(got, frames);

        let mut reply = Frame::new();
        reply.fill(Offload::NONE, &frame(1514, 0xaa));
        s.port.send(&mut reply).unwrap();
        assert_eq!(read_frame(&mut client), frame(1514, 0xaa));
    }

    #[test]
    fn an_oversize_length_drops_the_connection_counted_and_the_port_takes_the_next() {
        let mut s = setup();
        let mut client = s.connect();
        let mut bytes = prefixed(&[frame(100, 1)]);
        bytes.extend_from_slice(&(MAX_QEMU_FRAME as u32 + 1).to_be_bytes());
        client.write_all(&bytes).unwrap();
        // Written at once, both are read at once: the frame, then the
        // length that ends the connection.
        assert_eq!(
            s.receive_within(2, Duration::from_millis(300)),
            vec![frame(100, 1)]
        );
        assert_eq!(s.drops().drops[DropReason::OversizeFrame.index()], 1);
        let state = s.link.get();
        assert!(!state.up && state.detail.contains("69632"), "{state:?}");
        // The port closed its end: the client reads end of stream.
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        let mut reply = Frame::new();
        reply.fill(Offload::NONE, &frame(60, 2));
        let refused = s.port.send(&mut reply).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::NotConnected);

        let mut next = s.connect();
        next.write_all(&prefixed(&[frame(64, 3)])).unwrap();
        assert_eq!(s.receive(1), vec![frame(64, 3)]);
        s.port.send(&mut reply).unwrap();
        assert_eq!(read_frame(&mut next), frame(60, 2));
    }

    #[test]
    fn a_zero_length_frame_is_handed_in_empty_and_the_next_follows() {
        let mut s = setup();
        let mut client = s.connect();
        client
            .write_all(&prefixed(&[Vec::new(), frame(60, 4)]))
            .unwrap();
        assert_eq!(s.receive(2), vec![Vec::new(), frame(60, 4)]);
        assert!(s.link.get().up);
    }

    #[test]
    fn a_second_vm_is_refused_and_the_first_keeps_its_connection() {
        let mut s = setup();
        let mut first = s.connect();
        let mut second = s.connect();
        let mut rest = Vec::new();
        second.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the second connection is closed");
        first.write_all(&prefixed(&[frame(70, 5)])).unwrap();
        assert_eq!(s.receive(1), vec![frame(70, 5)]);
    }

    #[test]
    fn when_qemu_goes_the_port_waits_and_frames_to_it_are_refused() {
        let mut s = setup();
        let client = s.connect();
        drop(client);
        assert!(s.receive_within(1, Duration::from_millis(200)).is_empty());
        let state = s.link.get();
        assert!(
            !state.up && state.detail.contains("QEMU closed the connection"),
            "{state:?}"
        );
        let mut f = Frame::new();
        f.fill(Offload::NONE, &frame(60, 6));
        assert_eq!(
            s.port.send(&mut f).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        // Another handle (a second datapath thread's) refuses too.
        let mut other = s.port.share().unwrap();
        assert_eq!(
            other.send(&mut f).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
    }

    #[test]
    fn a_frame_the_socket_takes_in_part_is_finished_before_the_next() {
        let mut s = setup();
        let mut client = s.connect();
        // A small send buffer: a 9000-byte frame then goes out in several
        // pieces, and the socket fills with one of them in part.
        let conn = s.port.reader.as_ref().unwrap().conn.as_ref().unwrap();
        nix::sys::socket::setsockopt(conn, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let size = |i: usize| 9000 + (i % 7) * 100;
        let mut sent = 0usize;
        loop {
            let mut f = Frame::new();
            f.fill(Offload::NONE, &frame(size(sent), sent as u8));
            match s.port.send(&mut f) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
            assert!(sent < 1000, "the socket never filled");
        }
        assert!(
            lock(&s.port.writer).len > 0,
            "no frame went out in part ({sent} whole)"
        );
        // The datapath's view: the port's fd in a poll of its own.
        let mut datapath = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let port_fd = s.port.raw_fd().unwrap();
        s.port.recv_batch(&mut s.frames).1.unwrap();
        datapath
            .registry()
            .register(&mut SourceFd(&port_fd), Token(7), Interest::READABLE)
            .unwrap();
        // The VM reads every frame the port accepted: the last needs the
        // kept rest, so it reads on until the port sends that.
        let reader = std::thread::spawn(move || {
            (0..sent)
                .map(|_| read_frame(&mut client))
                .collect::<Vec<_>>()
        });
        // Room for the rest wakes the datapath, which need not wait for the
        // VM to send something.
        datapath
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "no wake-up when the socket had room");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && std::time::Instant::now() < deadline {
            s.port.recv_batch(&mut s.frames).1.unwrap();
            let _ = datapath.poll(&mut events, Some(Duration::from_millis(100)));
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), sent);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(*f, frame(size(i), i as u8), "frame {i}");
        }
        assert_eq!(lock(&s.port.writer).len, 0, "the rest was sent");
    }
}
