//! Least-privilege labs: the control socket's bounds (connections at once,
//! idle time), the capabilities yardd keeps after setup, and which network
//! namespaces a client that is not root may attach into.
//!
//! Needs root; without it each test prints why and returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use yard_tests::cmd::poll;
use yard_tests::{require, Lab};

/// A connection to yardd's socket with bounded reads and writes.
fn connect(lab: &Lab) -> UnixStream {
    let stream = UnixStream::connect(lab.socket()).expect("connect to yardd");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

/// Reads one reply line, parsed; panics with the log if none comes.
fn reply_line(lab: &Lab, stream: &UnixStream) -> serde_json::Value {
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .unwrap_or_else(|e| panic!("no reply line from yardd: {e}\n{}", lab.log_tail()));
    serde_json::from_str(&reply).unwrap_or_else(|e| {
        panic!(
            "yardd's reply is not a JSON line ({e}): {reply:?}\n{}",
            lab.log_tail()
        )
    })
}

fn status_line() -> Vec<u8> {
    format!(
        "{{\"api_version\":{},\"request\":{{\"cmd\":\"status\"}}}}\n",
        yard_ctl::API_VERSION
    )
    .into_bytes()
}

/// Whether `stream` was closed by yardd: a read returns end of stream.
fn closed_by_yardd(stream: &mut UnixStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}

#[test]
fn connections_beyond_the_limit_are_refused_and_status_still_answers() {
    if !require(&[]) {
        return;
    }
    const LIMIT: usize = 8;
    let lab = Lab::with_args(&["--control-max-connections", "8"]);

    // LIMIT clients that connect and say nothing hold every slot.
    let mut idle: Vec<UnixStream> = (0..LIMIT).map(|_| connect(&lab)).collect();
    // Each is being served: a request on the last one is answered.
    let last = idle.last_mut().unwrap();
    last.write_all(&status_line()).unwrap();
    let reply = reply_line(&lab, last);
    assert_eq!(
        reply["ok"]["type"], "status",
        "status on a held slot: {reply}"
    );

    // One more is refused at once, with a line that names the limit.
    let mut extra = connect(&lab);
    let reply = reply_line(&lab, &extra);
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("8 control connections") && message.contains("refused"),
        "connection {} of a limit of {LIMIT}: expected a refusal naming the limit, got {reply}\n{}",
        LIMIT + 1,
        lab.log_tail()
    );
    assert!(
        closed_by_yardd(&mut extra),
        "the refused connection stays open"
    );

    // Once one client goes, yardd answers status again; the daemon is fine.
    drop(idle.pop());
    let answered = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        lab.ctl(&["status"]).status.success()
    });
    assert!(
        answered,
        "no status after a slot was freed\n{}",
        lab.log_tail()
    );
    drop(idle);
    // Every slot comes back when the clients go.
    let all_back = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let held: Vec<UnixStream> = (0..LIMIT).map(|_| connect(&lab)).collect();
        let mut probe = held.last().unwrap().try_clone().unwrap();
        probe.write_all(&status_line()).is_ok()
            && reply_line(&lab, &probe)["ok"]["type"] == "status"
    });
    assert!(all_back, "slots were not given back\n{}", lab.log_tail());
}

#[test]
fn a_connection_without_a_complete_request_is_closed_after_the_idle_timeout() {
    if !require(&[]) {
        return;
    }
    let lab = Lab::with_args(&["--control-idle-timeout", "2"]);

    // A request trickled in a byte a second never completes: yardd closes
    // the connection with an error line once the timeout has passed since
    // the connection opened, not since the last byte.
    let mut slow = connect(&lab);
    let started = Instant::now();
    let mut reply = String::new();
    let mut reader = BufReader::new(slow.try_clone().unwrap());
    let trickle = std::thread::spawn(move || {
        for byte in b"{\"api_version\":" {
            if slow.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    reader
        .read_line(&mut reply)
        .unwrap_or_else(|e| panic!("no line from yardd: {e}\n{}", lab.log_tail()));
    let waited = started.elapsed();
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON line");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no complete request within 2 s"),
        "trickled request: expected the idle-timeout error line, got {reply}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "closed only after {waited:?} though the request was never complete"
    );
    let mut rest = Vec::new();
    assert!(
        reader.read_to_end(&mut rest).is_ok(),
        "the connection stayed open after the idle-timeout line"
    );
    trickle.join().unwrap();

    // A client that sends requests in time keeps its connection across
    // several timeouts' worth of requests.
    let mut busy = connect(&lab);
    for _ in 0..5 {
        busy.write_all(&status_line()).unwrap();
        let reply = reply_line(&lab, &busy);
        assert_eq!(reply["ok"]["type"], "status", "status: {reply}");
        std::thread::sleep(Duration::from_millis(1000));
    }
    lab.ctl_ok(&["status"]);
}
