//! A blocking client for yardd's control socket.
//!
//! Contract: [`Client::call`] writes one [`Envelope`] line and reads one
//! [`Reply`] line, waiting at most [`REPLY_TIMEOUT`]. A daemon error
//! (`Reply::Error`) is a successful call: it is returned as a value for the
//! caller to show. [`ClientError`] covers everything else — the socket cannot be
//! reached, the connection broke, or the reply is not one this build
//! understands — and its messages name the socket and the way out.
//!
//! `capture` is the one request whose reply is followed by more bytes: after
//! `Payload::CaptureStarted`, [`Client::into_capture`] hands over the rest of the
//! connection (including whatever was already buffered past the reply line) as
//! a [`CaptureStream`] with no read timeout.
//!
//! This module never prints and never exits; it only talks to the socket.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::{Envelope, Reply, Request, API_VERSION};
use crate::paths;

/// How long a normal request may take; creating a port inside a namespace
/// takes a moment, so this is generous.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest reply line accepted; a larger one means the peer is not yardd.
pub const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;

/// Why a call to yardd did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("cannot reach yardd at {}: {} — {hint}", path.display(), describe(source))]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What connect(2) said.
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// Sending the request or reading the reply failed.
    #[error("lost the connection to yardd at {}: {} — check yardd's log", path.display(), describe(source))]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No reply within [`REPLY_TIMEOUT`].
    #[error("yardd at {} did not answer within {} s — it may be stuck; check its log", path.display(), timeout.as_secs())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// The daemon closed the connection before or during its reply.
    #[error("yardd at {} closed the connection {when} — check yardd's log", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
        /// "without replying" or "in the middle of its reply".
        when: &'static str,
    },
    /// The reply is not a [`Reply`] of this build's API.
    #[error("yardd at {} speaks a different API ({detail}): use yardctl and yardd from the same build", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What could not be understood.
        detail: String,
    },
    /// The reply was longer than [`MAX_REPLY_BYTES`]: the request asked for
    /// too much at once.
    #[error("yardd at {} sent a reply longer than {limit} bytes: ask for less at once (a filter, or one object instead of all)", path.display())]
    ReplyTooLong {
        /// The socket path.
        path: PathBuf,
        /// The limit that was reached.
        limit: u64,
    },
    /// The socket is in the per-user fallback directory, and that directory
    /// is not this user's alone.
    #[error("will not talk to {}: {source}", path.display())]
    PrivateDir {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with its directory.
        source: paths::PrivateDirError,
    },
    /// The request could not be encoded (a bug, not a user error).
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
}

/// An io::Error's text without the "(os error N)" suffix people do not need.
fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

fn connect_hint(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::NotFound => {
            "is yardd running? start it with `yardd &` or point YARD_SOCKET/--socket at its socket"
        }
        io::ErrorKind::ConnectionRefused => {
            "nothing listens on that socket (left over from a yardd that exited?); start yardd \
             with `yardd &` or point YARD_SOCKET/--socket at the live socket"
        }
        io::ErrorKind::PermissionDenied => {
            "the socket is 0660, owned by root and yardd's group: run yardctl as root or as a \
             member of that group, or run your own yardd and point YARD_SOCKET/--socket at it"
        }
        _ => "check the path, or point YARD_SOCKET/--socket at yardd's socket",
    }
}

/// One connection to yardd.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        // The fallback directory under /tmp could be another user's trap.
        let (mode, env) = (paths::current_mode(), paths::PathEnv::current());
        if let Some(dir) = paths::private_dir_of(path, mode, &env).filter(|d| d.exists()) {
            paths::check_private_dir(&dir, nix::unistd::geteuid().as_raw()).map_err(|source| {
                ClientError::PrivateDir {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        }
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            hint: connect_hint(source.kind()),
            source,
        })?;
        let client = Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
        };
        client
            .stream()
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|()| client.stream().set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(|source| client.io_error(source))?;
        Ok(client)
    }

    /// The socket path this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                path: self.path.clone(),
                timeout: REPLY_TIMEOUT,
            },
            _ => ClientError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }

    /// Sends `request` and waits for its reply line.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let envelope = Envelope {
            api_version: API_VERSION,
            request: request.clone(),
        };
        let mut line = serde_json::to_vec(&envelope).map_err(ClientError::Encode)?;
        line.push(b'\n');
        let mut stream = self.stream();
        stream
            .write_all(&line)
            .and_then(|()| stream.flush())
            .map_err(|source| self.io_error(source))?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut line = Vec::new();
        let read = loop {
            match (&mut self.reader)
                .take(MAX_REPLY_BYTES)
                .read_until(b'\n', &mut line)
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        };
        if read == 0 && line.is_empty() {
            return Err(ClientError::Closed {
                path: self.path.clone(),
                when: "without replying",
            });
        }
        if line.last() != Some(&b'\n') {
            if line.len() as u64 >= MAX_REPLY_BYTES {
                return Err(ClientError::ReplyTooLong {
                    path: self.path.clone(),
                    limit: MAX_REPLY_BYTES,
                });
            }
            return Err(ClientError::Closed {
                path: self.path.clone(),
                when: "in the middle of its reply",
            });
        }
        serde_json::from_slice(&line).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            detail: format!("cannot parse its reply: {e}"),
        })
    }

    /// Hands over the rest of the connection after an `EventsStarted`
    /// reply, read without a timeout (nothing may change for a long time).
    pub fn into_events(self) -> Result<EventStream, ClientError> {
        self.stream()
            .set_read_timeout(None)
            .map_err(|source| self.io_error(source))?;
        Ok(EventStream {
            reader: self.reader,
        })
    }

    /// Hands over the rest of the connection after a `CaptureStarted` reply:
    /// the pcap stream, read without a timeout (a quiet port may send nothing
    /// for a long time).
    pub fn into_capture(self) -> Result<CaptureStream, ClientError> {
        self.stream()
            .set_read_timeout(None)
            .map_err(|source| self.io_error(source))?;
        Ok(CaptureStream {
            reader: self.reader,
        })
    }
}

/// The events that follow an `EventsStarted` reply, one JSON line each, up
/// to the daemon closing the connection. Dropping it ends the stream.
#[derive(Debug)]
pub struct EventStream {
    reader: BufReader<UnixStream>,
}

impl EventStream {
    /// The next event; `Ok(None)` when yardd closed the stream.
    pub fn next_event(&mut self) -> io::Result<Option<crate::api::Event>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("an event: {e}")))
    }
}

/// The pcap byte stream that follows a `CaptureStarted` reply, up to the
/// daemon closing the connection. Dropping it closes the connection, which
/// ends the capture in yardd.
#[derive(Debug)]
pub struct CaptureStream {
    reader: BufReader<UnixStream>,
}

impl Read for CaptureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Payload, StatusInfo};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::JoinHandle;

    /// A socket path unique to this test process and call.
    fn socket_path(tag: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("yardctl-{tag}-{}-{n}.sock", std::process::id()))
    }

    /// Serves one connection: reads a request line, sends `reply` bytes, closes.
    /// Returns the request line it read.
    fn serve_once(path: &Path, reply: Vec<u8>) -> JoinHandle<String> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            (&stream).write_all(&reply).unwrap();
            request
        })
    }

    fn status() -> StatusInfo {
        StatusInfo {
            version: "0.1.0".into(),
            api_version: API_VERSION,
            pid: 42,
            uptime_secs: 7,
            socket: "/tmp/s".into(),
            state_dir: "/tmp/state".into(),
            networks: 1,
            ports: 2,
            tunnel_gro: Default::default(),
            tunnel_drops: Default::default(),
            datapath_threads: 1,
            mode: crate::api::DaemonMode::Root,
        }
    }

    #[test]
    fn call_sends_an_envelope_line_and_parses_the_reply() {
        let path = socket_path("call");
        let reply = Reply::Ok(Payload::Status(status()));
        let mut line = serde_json::to_vec(&reply).unwrap();
        line.push(b'\n');
        let server = serve_once(&path, line);
        let mut client = Client::connect(&path).unwrap();
        assert_eq!(client.call(&Request::Status).unwrap(), reply);
        let request = server.join().unwrap();
        assert_eq!(
            request,
            format!("{{\"api_version\":{API_VERSION},\"request\":{{\"cmd\":\"status\"}}}}\n")
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn capture_bytes_after_the_reply_arrive_intact() {
        let path = socket_path("capture");
        let mut bytes =
            serde_json::to_vec(&Reply::Ok(Payload::CaptureStarted { port: "c1".into() })).unwrap();
        bytes.push(b'\n');
        let mut pcap = crate::pcap::file_header().to_vec();
        for len in [60usize, 1514, 9000] {
            pcap.extend(crate::pcap::record_header(std::time::UNIX_EPOCH, len));
            pcap.extend((0..len).map(|i| (i % 251) as u8));
        }
        bytes.extend(&pcap);
        let server = serve_once(&path, bytes);
        let mut client = Client::connect(&path).unwrap();
        let reply = client
            .call(&Request::Capture {
                port: "c1".into(),
                count: Some(3),
            })
            .unwrap();
        assert_eq!(
            reply,
            Reply::Ok(Payload::CaptureStarted { port: "c1".into() })
        );
        let mut got = Vec::new();
        client
            .into_capture()
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, pcap);
        assert!(server.join().unwrap().contains("\"cmd\":\"capture\""));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_missing_socket_says_how_to_start_yardd() {
        let path = socket_path("missing");
        let err = Client::connect(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cannot reach yardd at "), "{text}");
        assert!(
            text.contains("No such file or directory — is yardd running?"),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
    }

    #[test]
    fn a_foreign_reply_names_the_api_mismatch() {
        let path = socket_path("foreign");
        let server = serve_once(&path, b"{\"result\":\"v2-shape\"}\n".to_vec());
        let err = Client::connect(&path)
            .unwrap()
            .call(&Request::NetLs)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("speaks a different API ("), "{text}");
        assert!(
            text.ends_with("use yardctl and yardd from the same build"),
            "{text}"
        );
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_reply_too_long_says_so_not_that_the_api_differs() {
        let path = socket_path("long");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            let chunk = vec![b'x'; 1 << 20];
            // The client hangs up once it has read the limit.
            for _ in 0..=MAX_REPLY_BYTES >> 20 {
                if (&stream).write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let err = Client::connect(&path)
            .unwrap()
            .call(&Request::NetLs)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sent a reply longer than 67108864 bytes: ask for less at once"),
            "{text}"
        );
        assert!(!text.contains("different API"), "{text}");
        drop(err);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn closing_without_a_reply_or_mid_reply_is_reported() {
        let path = socket_path("closed");
        let server = serve_once(&path, Vec::new());
        let err = Client::connect(&path)
            .unwrap()
            .call(&Request::Status)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("closed the connection without replying"));
        server.join().unwrap();

        let server = serve_once(&path, b"{\"ok\":".to_vec());
        let err = Client::connect(&path)
            .unwrap()
            .call(&Request::Status)
            .unwrap_err();
        assert!(err.to_string().contains("in the middle of its reply"));
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
