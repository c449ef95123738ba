//! `run` end to end against an in-test server thread that answers with canned
//! bytes: what is sent, what is printed where, and the exit status.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use clap::Parser;

use super::*;
use crate::api::{
    ApiError, ConntrackCursor, ConntrackEntry, ConntrackFilter, ConntrackPage, ConntrackQuery,
    Envelope, NetworkInfo, NetworkSpec, TraceOutcome, TracePacket, TraceReport, TraceRequest,
    TraceStep, Tuple, API_VERSION,
};

fn temp_path(tag: &str, ext: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "yardctl-run-{tag}-{}-{n}.{ext}",
        std::process::id()
    ))
}

/// A one-connection fake yardd: reads the request line, writes `reply`, closes.
struct FakeYardd {
    path: PathBuf,
    thread: Option<JoinHandle<String>>,
}

impl FakeYardd {
    fn start(tag: &str, reply: Vec<u8>) -> Self {
        let path = temp_path(tag, "sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            // The client may legitimately hang up first (e.g. a refused -w file).
            let _ = (&stream).write_all(&reply);
            request
        });
        FakeYardd {
            path,
            thread: Some(thread),
        }
    }

    fn replying(tag: &str, reply: &Reply) -> Self {
        let mut line = serde_json::to_vec(reply).unwrap();
        line.push(b'\n');
        Self::start(tag, line)
    }

    /// The request line the server received.
    fn request(mut self) -> String {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for FakeYardd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Outcome {
    code: u8,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_line(socket: &Path, line: &str, stdout_is_terminal: bool) -> Outcome {
    let args = ["yardctl", "--socket", socket.to_str().unwrap()]
        .into_iter()
        .chain(line.split_whitespace());
    let cli = Cli::try_parse_from(args).unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = run(
        &cli,
        &mut Io {
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdout_is_terminal,
        },
    );
    Outcome {
        code,
        stdout,
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

fn web() -> NetworkInfo {
    NetworkInfo {
        spec: NetworkSpec::new("web"),
        ports: vec![],
        fdb_entries: 0,
        mac_moves: 0,
        connected: vec![],
        overlay_mtu: None,
    }
}

#[test]
fn a_query_prints_a_table_or_json() {
    let reply = Reply::Ok(Payload::Networks(vec![web()]));
    let yardd = FakeYardd::replying("ls", &reply);
    let out = run_line(&yardd.path, "net ls", false);
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    assert_eq!(
        text(&out.stdout),
        "NAME   SUBNET   GATEWAY   NAT   VLAN   ICC   MTU    PORTS\n\
         web    -        -         -     -      on    1500   0\n"
    );
    assert_eq!(
        yardd.request(),
        format!("{{\"api_version\":{API_VERSION},\"request\":{{\"cmd\":\"net-ls\"}}}}\n")
    );

    let yardd = FakeYardd::replying("ls-json", &reply);
    let out = run_line(&yardd.path, "net ls --json", false);
    assert_eq!(out.code, EXIT_OK);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value[0]["name"], "web");
    assert_eq!(value[0]["mtu"], 1500);
}

#[test]
fn done_prints_a_confirmation_or_ok_true() {
    let yardd = FakeYardd::replying("rm", &Reply::Ok(Payload::Done));
    let out = run_line(&yardd.path, "port rm c1", false);
    assert_eq!(
        (out.code, text(&out.stdout)),
        (EXIT_OK, "port c1 removed\n")
    );
    assert!(yardd
        .request()
        .contains("\"cmd\":\"port-rm\",\"name\":\"c1\""));

    let yardd = FakeYardd::replying("rm-json", &Reply::Ok(Payload::Done));
    let out = run_line(&yardd.path, "--json port rm c1", false);
    assert_eq!(
        (out.code, text(&out.stdout)),
        (EXIT_OK, "{\n  \"ok\": true\n}\n")
    );
}

#[test]
fn conntrack_flush_sends_its_filter_and_prints_the_count() {
    let reply = Reply::Ok(Payload::Flushed { removed: 3 });
    let yardd = FakeYardd::replying("flush", &reply);
    let out = run_line(&yardd.path, "conntrack flush --proto udp --port 53", false);
    assert_eq!(
        (out.code, text(&out.stdout)),
        (EXIT_OK, "3 entries removed\n")
    );
    assert_eq!(
        yardd.request(),
        format!(
            "{{\"api_version\":{API_VERSION},\"request\":{{\"cmd\":\"conntrack-flush\",\
             \"proto\":\"udp\",\"addr\":null,\"port\":53}}}}\n"
        )
    );

    let yardd = FakeYardd::replying("flush-json", &reply);
    let out = run_line(&yardd.path, "--json conntrack flush", false);
    assert_eq!(
        (out.code, text(&out.stdout)),
        (EXIT_OK, "{\n  \"removed\": 3\n}\n")
    );
}

#[test]
fn a_bad_publish_spec_exits_2_and_points_at_its_help() {
    let missing = temp_path("never-publish", "sock");
    let out = run_line(&missing, "publish add 8080:c1", false);
    assert_eq!(out.code, EXIT_USAGE);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        "yardctl: '8080:c1' is not a published port: wrong number of ':'-separated parts; \
         expected [HOSTIP:]HOSTPORT[-END]:TARGET:PORT[-END][/tcp|/udp], e.g. 8080:c1:80/tcp\n\
         See `yardctl publish add --help` for usage.\n"
    );
}

#[test]
fn a_daemon_error_goes_to_stderr_and_exits_1() {
    let reply = Reply::Error(ApiError {
        message: "network web not found — list networks with `yardctl net ls`".into(),
    });
    let yardd = FakeYardd::replying("err", &reply);
    let out = run_line(&yardd.path, "net inspect web", false);
    assert_eq!(out.code, EXIT_FAILURE);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        "yardctl: network web not found — list networks with `yardctl net ls`\n"
    );

    let yardd = FakeYardd::replying("err-json", &reply);
    let out = run_line(&yardd.path, "net inspect web --json", false);
    assert_eq!(out.code, EXIT_FAILURE);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({ "error": "network web not found — list networks with `yardctl net ls`" })
    );
}

#[test]
fn an_unreachable_daemon_exits_1_with_the_way_out() {
    let missing = temp_path("missing", "sock");
    let out = run_line(&missing, "--json status", false);
    assert_eq!(out.code, EXIT_FAILURE);
    assert!(out.stderr.contains("is yardd running?"), "{}", out.stderr);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(value["error"]
        .as_str()
        .unwrap()
        .starts_with("cannot reach yardd at "));
}

#[test]
fn a_refused_command_line_exits_2_without_connecting() {
    let missing = temp_path("never", "sock");
    let out = run_line(
        &missing,
        "port add c1 --net yard0 --iface e0 --netns c1",
        false,
    );
    assert_eq!(out.code, EXIT_USAGE);
    assert!(out.stdout.is_empty());
    assert!(out
        .stderr
        .starts_with("yardctl: --netns does not apply to iface ports"));
    assert!(
        out.stderr.contains("`yardctl port add --help`"),
        "{}",
        out.stderr
    );
}

fn capture_bytes() -> (Vec<u8>, Vec<u8>) {
    let mut wire =
        serde_json::to_vec(&Reply::Ok(Payload::CaptureStarted { port: "c1".into() })).unwrap();
    wire.push(b'\n');
    let mut pcap = crate::pcap::file_header().to_vec();
    for (i, len) in [42usize, 60, 1514, 65_000, 1].into_iter().enumerate() {
        pcap.extend(crate::pcap::record_header(std::time::UNIX_EPOCH, len));
        pcap.extend((0..len).map(|b| (b * 7 + i) as u8));
    }
    wire.extend(&pcap);
    (wire, pcap)
}

#[test]
fn capture_writes_the_pcap_stream_verbatim_to_a_file() {
    let (wire, pcap) = capture_bytes();
    let yardd = FakeYardd::start("cap-file", wire);
    let file = temp_path("cap", "pcap");
    let out = run_line(
        &yardd.path,
        &format!("capture c1 -c 5 -w {}", file.display()),
        true,
    );
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let written = std::fs::read(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(written, pcap);
    assert!(
        out.stderr.contains("capturing on port c1 for 5 frames"),
        "{}",
        out.stderr
    );
    assert!(out
        .stderr
        .contains(&format!("{} bytes written", pcap.len())));
    assert!(yardd
        .request()
        .contains("{\"cmd\":\"capture\",\"port\":\"c1\",\"count\":5}"));
}

#[test]
fn capture_writes_to_stdout_but_never_to_a_terminal() {
    let (wire, pcap) = capture_bytes();
    let yardd = FakeYardd::start("cap-stdout", wire);
    let out = run_line(&yardd.path, "capture c1 -w -", false);
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    assert_eq!(out.stdout, pcap);

    let never = temp_path("tty", "sock");
    let out = run_line(&never, "capture c1", true);
    assert_eq!(out.code, EXIT_USAGE);
    assert!(out.stdout.is_empty());
    assert!(out
        .stderr
        .contains("refusing to write a binary pcap stream to a terminal"));
}

#[test]
fn capture_refused_by_the_daemon_reports_the_reason() {
    let reply = Reply::Error(ApiError {
        message: "port c9 not found".into(),
    });
    let yardd = FakeYardd::replying("cap-err", &reply);
    let file = temp_path("cap-err", "pcap");
    let out = run_line(
        &yardd.path,
        &format!("capture c9 -w {}", file.display()),
        false,
    );
    assert_eq!(out.code, EXIT_FAILURE);
    assert_eq!(out.stderr, "yardctl: port c9 not found\n");
    assert!(!file.exists(), "no file is created for a refused capture");
}

/// A fake yardd that answers each request line on one connection with the
/// next of `replies`, and returns the request lines it read.
fn serve_pages(tag: &str, replies: Vec<Reply>) -> (PathBuf, JoinHandle<Vec<String>>) {
    let path = temp_path(tag, "sock");
    let listener = UnixListener::bind(&path).unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(&stream);
        let mut requests = Vec::new();
        for reply in replies {
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap() == 0 {
                break;
            }
            requests.push(request);
            let mut line = serde_json::to_vec(&reply).unwrap();
            line.push(b'\n');
            (&stream).write_all(&line).unwrap();
        }
        requests
    });
    (path, thread)
}

fn udp_entry(sport: u16) -> ConntrackEntry {
    let tuple = |src: [u8; 4], sport, dst: [u8; 4], dport| Tuple {
        src: src.into(),
        sport,
        dst: dst.into(),
        dport,
    };
    ConntrackEntry {
        proto: "udp".into(),
        original: tuple([10, 1, 0, 2], sport, [10, 9, 0, 1], 53),
        reply: tuple([10, 9, 0, 1], 53, [10, 1, 0, 2], sport),
        state: "replied".into(),
        snat: None,
        dnat: None,
        host: None,
        timeout_secs: 100,
        assured: true,
        packets_original: 1,
        bytes_original: 60,
        packets_reply: 1,
        bytes_reply: 60,
    }
}

fn cursor_of(e: &ConntrackEntry) -> ConntrackCursor {
    ConntrackCursor {
        zone: 1,
        proto: e.proto.clone(),
        original: e.original,
    }
}

#[test]
fn conntrack_ls_asks_for_every_page_and_prints_one_listing() {
    let (a, b, c) = (udp_entry(1000), udp_entry(1001), udp_entry(1002));
    let pages = vec![
        Reply::Ok(Payload::Conntrack(ConntrackPage {
            entries: vec![a.clone(), b.clone()],
            next: Some(cursor_of(&b)),
        })),
        Reply::Ok(Payload::Conntrack(ConntrackPage {
            entries: vec![c.clone()],
            next: None,
        })),
    ];
    let (path, server) = serve_pages("ct-pages", pages);
    let out = run_line(&path, "--json conntrack ls --proto udp", false);
    let requests = server.join().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    let listed: Vec<ConntrackEntry> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, vec![a, b.clone(), c]);

    // The second request keeps the filter and continues after the first page.
    assert_eq!(requests.len(), 2, "{requests:?}");
    let second: Envelope = serde_json::from_str(&requests[1]).unwrap();
    assert_eq!(
        second.request,
        Request::ConntrackLs(ConntrackQuery {
            filter: ConntrackFilter {
                proto: Some("udp".into()),
                ..ConntrackFilter::default()
            },
            after: Some(cursor_of(&b)),
            limit: None,
        })
    );
}

#[test]
fn a_page_that_does_not_advance_ends_the_listing_with_an_error() {
    let a = udp_entry(1000);
    let stuck = Reply::Ok(Payload::Conntrack(ConntrackPage {
        entries: vec![a.clone()],
        next: Some(cursor_of(&a)),
    }));
    let (path, server) = serve_pages("ct-stuck", vec![stuck.clone(), stuck]);
    let out = run_line(&path, "conntrack ls", false);
    server.join().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.code, EXIT_FAILURE);
    assert!(out.stdout.is_empty(), "nothing half-printed");
    assert!(out.stderr.contains("the same page twice"), "{}", out.stderr);
}

#[test]
fn trace_sends_the_description_and_prints_one_line_per_decision() {
    let report = TraceReport {
        steps: vec![
            TraceStep {
                stage: "fdb".into(),
                words: "02:42:ac:1e:00:03 is behind port c2 (FDB hit)".into(),
            },
            TraceStep {
                stage: "port-security".into(),
                words: "secured port — passes".into(),
            },
        ],
        outcome: TraceOutcome::Leaves {
            ports: vec!["c2".into()],
        },
    };
    let yardd = FakeYardd::replying("trace", &Reply::Ok(Payload::Trace(report)));
    let out = run_line(
        &yardd.path,
        "trace --in c1 --size 100 tcp 172.30.0.2:40000 > 172.30.0.3:80 syn ack",
        false,
    );
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    assert_eq!(
        text(&out.stdout),
        "fdb            02:42:ac:1e:00:03 is behind port c2 (FDB hit)\n\
         port-security  secured port — passes\n\
         verdict        leaves by c2\n"
    );
    let envelope: Envelope = serde_json::from_str(&yardd.request()).unwrap();
    let Request::Trace(request) = envelope.request else {
        panic!("not a trace request: {envelope:?}");
    };
    assert_eq!(request.in_port, "c1");
    let TracePacket::Spec(spec) = request.packet else {
        panic!("not a description: {request:?}");
    };
    assert_eq!((spec.sport, spec.dport, spec.size), (40000, 80, Some(100)));
    assert_eq!(spec.tcp_flags, ["syn", "ack"]);
}

#[test]
fn trace_pcap_sends_the_first_frame_and_a_bad_description_exits_2() {
    let file = temp_path("trace", "pcap");
    let mut bytes = crate::pcap::file_header().to_vec();
    bytes.extend_from_slice(&crate::pcap::record_header(std::time::UNIX_EPOCH, 2));
    bytes.extend_from_slice(&[0xab, 0xcd]);
    std::fs::write(&file, &bytes).unwrap();
    let reply = Reply::Ok(Payload::Trace(TraceReport {
        steps: vec![],
        outcome: TraceOutcome::Dropped {
            reason: "malformed".into(),
            counted_on: "c1".into(),
        },
    }));
    let yardd = FakeYardd::replying("trace-pcap", &reply);
    let line = format!("trace --in c1 --pcap {}", file.display());
    let out = run_line(&yardd.path, &line, false);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.code, EXIT_OK, "{}", out.stderr);
    assert_eq!(
        text(&out.stdout),
        "verdict  dropped: malformed (counted on c1)\n"
    );
    let envelope: Envelope = serde_json::from_str(&yardd.request()).unwrap();
    assert!(
        matches!(&envelope.request, Request::Trace(TraceRequest { packet: TracePacket::Frame { hex }, .. }) if hex == "abcd"),
        "{envelope:?}"
    );

    let missing = temp_path("never-trace", "sock");
    let big = temp_path("trace-big", "pcap");
    let mut bytes = crate::pcap::file_header().to_vec();
    bytes.extend_from_slice(&crate::pcap::record_header(std::time::UNIX_EPOCH, 40_000));
    bytes.extend(std::iter::repeat_n(0u8, 40_000));
    std::fs::write(&big, &bytes).unwrap();
    let out = run_line(
        &missing,
        &format!("trace --in c1 --pcap {}", big.display()),
        false,
    );
    let _ = std::fs::remove_file(&big);
    assert_eq!(out.code, EXIT_USAGE);
    assert!(
        out.stderr.contains("has 40000 bytes, more than the 32256"),
        "{}",
        out.stderr
    );

    let out = run_line(&missing, "trace --in c1 udp 1.2.3.4 > 1.2.3.5:53", false);
    assert_eq!(out.code, EXIT_USAGE);
    assert!(
        out.stderr.contains("'1.2.3.4' needs a port"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`yardctl trace --help`"),
        "{}",
        out.stderr
    );
}
