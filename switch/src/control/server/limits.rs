//! Bounds on the control socket: how many connections are served at once and
//! how long one may take to send a request.
//!
//! Contract: a connection beyond [`ServeLimits::max_connections`] is answered
//! with one error line naming the limit and closed, without a thread of its
//! own; a connection that has not sent a complete request line within
//! [`ServeLimits::idle_timeout`] of connecting (or of its previous reply) is
//! answered with one error line and closed, however slowly it trickles bytes.
//! A capture stream is exempt while it streams: it has sent its request.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default bound on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default time a connection may take to send a complete request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many control connections are served at once, and how long each may
/// stay silent.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; the next one is refused.
    pub max_connections: usize,
    /// Time from connecting (or from the previous reply) to a complete
    /// request line, after which the connection is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The count of connections being served, shared by the accept loop and
/// the connection threads.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Takes a slot when fewer than `max` are taken; the slot is given back
    /// when the returned guard is dropped.
    pub fn try_take(&self, max: usize) -> Option<ConnectionSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.0.clone()))
    }

    /// Connections being served now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One connection's place among those served at once.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A control connection read against a deadline: every read waits at most
/// until the deadline, so a request must be complete by then however its
/// bytes trickle in.
#[derive(Debug)]
pub struct DeadlineStream {
    stream: UnixStream,
    deadline: Option<Instant>,
}

impl DeadlineStream {
    /// Wraps `stream` with no deadline yet.
    pub fn new(stream: UnixStream) -> Self {
        DeadlineStream {
            stream,
            deadline: None,
        }
    }

    /// The next request must be complete within `timeout` from now.
    pub fn expect_request_within(&mut self, timeout: Duration) {
        self.deadline = Some(Instant::now() + timeout);
    }

    /// Reads without a deadline (a capture stream watching for a hang-up).
    pub fn clear_deadline(&mut self) {
        self.deadline = None;
    }

    /// The connection itself.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = match self.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
            None => None,
        };
        self.stream.set_read_timeout(wait)?;
        match (&self.stream).read(buf) {
            // A read timeout shows as WouldBlock on Unix sockets.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && wait.is_some() => {
                Err(io::ErrorKind::TimedOut.into())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn slots_are_bounded_and_given_back() {
        let count = ConnectionCount::default();
        let a = count.try_take(2).expect("first slot");
        let _b = count.try_take(2).expect("second slot");
        assert!(count.try_take(2).is_none(), "a third slot beyond 2");
        assert_eq!(count.current(), 2);
        drop(a);
        assert_eq!(count.current(), 1);
        assert!(count.try_take(2).is_some(), "a slot freed by a drop");
    }

    #[test]
    fn a_trickled_request_times_out_at_the_deadline() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut reader = BufReader::new(DeadlineStream::new(ours));
        reader
            .get_mut()
            .expect_request_within(Duration::from_millis(300));
        let writer = std::thread::spawn(move || {
            // One byte every 100 ms never completes a line; each byte
            // alone would reset a plain per-read timeout.
            for _ in 0..8 {
                if theirs.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            theirs
        });
        let mut line = Vec::new();
        let err = reader.read_until(b'\n', &mut line).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_complete_request_within_the_deadline_is_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut reader = BufReader::new(DeadlineStream::new(ours));
        reader
            .get_mut()
            .expect_request_within(Duration::from_secs(5));
        theirs.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        assert_eq!(line, b"{\"cmd\":\"status\"}\n");
    }
}
