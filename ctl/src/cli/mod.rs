//! The `yardctl` command-line tool, as a library so it can be tested without
//! a process: [`args`] maps the command line to a request, [`output`] renders
//! replies, [`table`] lays out columns, and [`run`] ties them to a [`Client`].
//!
//! Contract of [`run`]: it sends one request (checked locally first; `conntrack
//! ls` sends one per page, joined into one listing before anything is printed),
//! writes results to the given stdout and messages to the given stderr, never
//! panics on any input or reply, and returns the exit status:
//! [`EXIT_OK`]; [`EXIT_FAILURE`] when yardd refused the request or could not be
//! reached (message `yardctl: …` on stderr, and with `--json` also
//! `{"error": "…"}` on stdout); [`EXIT_USAGE`] for a command line that cannot be
//! sent (like clap's own usage errors, these print to stderr only).
//!
//! `run` is the exception: it starts the command in its own namespaces and
//! returns the command's exit status ([`crate::container`]).
//!
//! `capture` copies the pcap bytes that follow yardd's reply verbatim to the
//! `-w` file or stdout, flushing after every read, until yardd closes the
//! connection. A reader that goes away (`yardctl capture c1 | head -c 100`)
//! ends the capture quietly with [`EXIT_OK`].

pub mod args;
pub mod output;
pub mod table;
pub mod topology;

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use args::Cli;

use crate::api::{ConntrackPage, ConntrackQuery, Payload, Reply, Request};
use crate::client::{CaptureStream, Client, ClientError};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: yardd refused the request, or could not be reached.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;

/// Where [`run`] writes.
pub struct Io<'a> {
    /// Results: tables, JSON, the pcap stream when no `-w` is given.
    pub stdout: &'a mut dyn Write,
    /// Messages for the user.
    pub stderr: &'a mut dyn Write,
    /// Whether stdout is a terminal (a pcap stream is never written to one).
    pub stdout_is_terminal: bool,
}

/// Connects to yardd, trying again every 100 ms for up to `wait` while
/// the socket is missing or refuses (yardd starting); the last error
/// otherwise.
fn connect_within(socket: &std::path::Path, wait: Duration) -> Result<Client, ClientError> {
    let deadline = Instant::now() + wait;
    loop {
        match Client::connect(socket) {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `yardctl topology`: the four listings it is drawn from, then the
/// drawing (or, with `--json`, the listings themselves).
fn run_topology(cli: &Cli, io: &mut Io<'_>, as_dot: bool) -> u8 {
    let mut client = match Client::connect(&cli.socket) {
        Ok(client) => client,
        Err(e) => return fail(cli, io, &e.to_string()),
    };
    let mut snapshot = topology::Snapshot::default();
    for request in [
        Request::NetLs,
        Request::PortLs,
        Request::UplinkLs,
        Request::LinkLs,
    ] {
        match call(&mut client, &request) {
            Ok(Payload::Networks(nets)) => snapshot.networks = nets,
            Ok(Payload::Ports(ports)) => snapshot.ports = ports,
            Ok(Payload::Uplinks(uplinks)) => snapshot.uplinks = uplinks,
            Ok(Payload::Links(links)) => snapshot.links = links,
            Ok(other) => {
                let message = format!(
                    "yardd answered {request:?} with {}: use yardctl and yardd from the same build",
                    payload_name(&other)
                );
                return fail(cli, io, &message);
            }
            Err(message) => return fail(cli, io, &message),
        }
    }
    let written = if cli.json {
        let value = json!({
            "networks": snapshot.networks,
            "ports": snapshot.ports,
            "uplinks": snapshot.uplinks,
            "links": snapshot.links,
        });
        write_json(io.stdout, &value)
    } else if as_dot {
        io.stdout.write_all(topology::dot(&snapshot).as_bytes())
    } else {
        io.stdout.write_all(topology::text(&snapshot).as_bytes())
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => fail(cli, io, &format!("cannot write the output: {e}")),
    }
}

/// Runs one parsed command line and returns the process exit status.
pub fn run(cli: &Cli, io: &mut Io<'_>) -> u8 {
    if let args::Command::Run(run) = &cli.command {
        return match run.to_spec() {
            Ok(spec) => crate::container::run(&cli.socket, &spec, io.stderr),
            Err(e) => {
                let _ = writeln!(
                    io.stderr,
                    "yardctl: {e}\nSee `yardctl run --help` for usage."
                );
                EXIT_USAGE
            }
        };
    }
    if let args::Command::Topology { dot } = &cli.command {
        return run_topology(cli, io, *dot);
    }
    let request = match cli.command.to_request() {
        Ok(request) => request,
        Err(e) => {
            let topic = e.help_topic(&cli.command);
            let help = if topic.is_empty() {
                "yardctl --help".to_string()
            } else {
                format!("yardctl {topic} --help")
            };
            let _ = writeln!(io.stderr, "yardctl: {e}\nSee `{help}` for usage.");
            return EXIT_USAGE;
        }
    };
    if let args::Command::Capture(capture) = &cli.command {
        if capture.output_file().is_none() && io.stdout_is_terminal {
            let _ = writeln!(
                io.stderr,
                "yardctl: refusing to write a binary pcap stream to a terminal: use -w FILE, \
                 or pipe it, e.g. `yardctl capture {} | tcpdump -nr -`",
                capture.port
            );
            return EXIT_USAGE;
        }
    }

    let wait = match &cli.command {
        args::Command::Status { wait: Some(secs) } => Duration::from_secs(*secs),
        _ => Duration::ZERO,
    };
    let mut client = match connect_within(&cli.socket, wait) {
        Ok(client) => client,
        Err(e) => return fail(cli, io, &e.to_string()),
    };
    let payload = match call(&mut client, &request) {
        Ok(payload) => payload,
        Err(message) => return fail(cli, io, &message),
    };
    let payload = match (&request, payload) {
        (Request::ConntrackLs(query), Payload::Conntrack(first)) => {
            match rest_of_listing(&mut client, query, first) {
                Ok(all) => Payload::Conntrack(all),
                Err(message) => return fail(cli, io, &message),
            }
        }
        (_, payload) => payload,
    };

    if let args::Command::Capture(capture) = &cli.command {
        if !matches!(payload, Payload::CaptureStarted { .. }) {
            let message = format!(
                "yardd at {} answered capture with {}, not a pcap stream — \
                 use yardctl and yardd from the same build",
                cli.socket.display(),
                payload_name(&payload)
            );
            return fail(cli, io, &message);
        }
        return match client.into_capture() {
            Ok(stream) => run_capture(cli, capture, stream, io),
            Err(e) => fail(cli, io, &e.to_string()),
        };
    }

    if let args::Command::Events = &cli.command {
        if !matches!(payload, Payload::EventsStarted) {
            let message = format!(
                "yardd at {} answered events with {} — use yardctl and yardd from the same build",
                cli.socket.display(),
                payload_name(&payload)
            );
            return fail(cli, io, &message);
        }
        return match client.into_events() {
            Ok(stream) => run_events(cli, stream, io),
            Err(e) => fail(cli, io, &e.to_string()),
        };
    }

    let written = if cli.json {
        write_json(io.stdout, &output::render_json(&payload))
    } else {
        output::render_human(&request, &payload, io.stdout).and_then(|()| io.stdout.flush())
    };
    match written {
        Ok(()) => EXIT_OK,
        // A closed pipe (`yardctl port ls | head -1`) is the reader's choice.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            let _ = writeln!(io.stderr, "yardctl: cannot write output: {e}");
            EXIT_FAILURE
        }
    }
}

/// Prints each event as it comes (a line of text, or of JSON with
/// `--json`) until yardd closes the stream or the output goes away.
fn run_events(cli: &Cli, mut stream: crate::client::EventStream, io: &mut Io<'_>) -> u8 {
    loop {
        let event = match stream.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return EXIT_OK,
            Err(e) => return fail(cli, io, &format!("the event stream broke: {e}")),
        };
        let written = if cli.json {
            serde_json::to_string(&event)
                .map_err(io::Error::other)
                .and_then(|line| writeln!(io.stdout, "{line}"))
        } else {
            writeln!(io.stdout, "{}", output::event_line(&event))
        };
        match written.and_then(|()| io.stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return EXIT_OK,
            Err(e) => return fail(cli, io, &format!("cannot write output: {e}")),
        }
    }
}

/// Sends `request`; its payload, or what to tell the user.
fn call(client: &mut Client, request: &Request) -> Result<Payload, String> {
    match client.call(request) {
        Ok(Reply::Ok(payload)) => Ok(payload),
        Ok(Reply::Error(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

/// `conntrack ls` replies a page at a time: asks for the pages after
/// `first` until yardd says none is left, and joins them into one.
fn rest_of_listing(
    client: &mut Client,
    query: &ConntrackQuery,
    first: ConntrackPage,
) -> Result<ConntrackPage, String> {
    let mut all = first;
    while let Some(after) = all.next.take() {
        let next = ConntrackQuery {
            after: Some(after.clone()),
            ..query.clone()
        };
        match call(client, &Request::ConntrackLs(next))? {
            // A cursor that does not move would ask for the same page forever.
            Payload::Conntrack(page) if page.next.as_ref() == Some(&after) => {
                return Err(format!(
                    "yardd answered conntrack ls with the same page twice (after {} {}:{}): \
                     use yardctl and yardd from the same build",
                    after.proto, after.original.src, after.original.sport
                ))
            }
            Payload::Conntrack(page) => {
                all.entries.extend(page.entries);
                all.next = page.next;
            }
            other => {
                return Err(format!(
                    "yardd answered the next page of conntrack ls with {}: \
                     use yardctl and yardd from the same build",
                    payload_name(&other)
                ))
            }
        }
    }
    Ok(all)
}

/// Reports a failure: `yardctl: message` on stderr and, with `--json`,
/// `{"error": message}` on stdout.
fn fail(cli: &Cli, io: &mut Io<'_>, message: &str) -> u8 {
    let _ = writeln!(io.stderr, "yardctl: {message}");
    if cli.json {
        let _ = write_json(io.stdout, &json!({ "error": message }));
    }
    EXIT_FAILURE
}

fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    writeln!(out, "{text}")?;
    out.flush()
}

fn payload_name(payload: &Payload) -> &'static str {
    match payload {
        Payload::Done => "done",
        Payload::Status(_) => "a status",
        Payload::Network(_) => "a network",
        Payload::Networks(_) => "a network list",
        Payload::Port(_) => "a port",
        Payload::Ports(_) => "a port list",
        Payload::PortStats(_) => "port counters",
        Payload::Fdb(_) => "FDB entries",
        Payload::Mdb(_) => "multicast table entries",
        Payload::Uplink(_) => "an uplink",
        Payload::Uplinks(_) => "an uplink list",
        Payload::Publish(_) => "a published port",
        Payload::Publishes(_) => "a published port list",
        Payload::Link(_) => "a link",
        Payload::Links(_) => "a link list",
        Payload::Rule(_) => "a rule",
        Payload::Rules(_) => "a rule list",
        Payload::Conntrack(_) => "conntrack entries",
        Payload::Flushed { .. } => "a flush count",
        Payload::ConntrackStats(_) => "conntrack counters",
        Payload::ConntrackSettings(_) => "conntrack settings",
        Payload::Trace(_) => "a trace",
        Payload::CaptureStarted { .. } => "capture-started",
        Payload::EventsStarted => "events-started",
    }
}

/// Copies the pcap stream to the `-w` file or stdout until yardd closes it.
fn run_capture(
    cli: &Cli,
    capture: &args::CaptureArgs,
    mut stream: CaptureStream,
    io: &mut Io<'_>,
) -> u8 {
    let mut file = match capture.output_file() {
        Some(path) => match File::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                let message = format!("cannot write capture file {}: {e}", path.display());
                return fail(cli, io, &message);
            }
        },
        None => None,
    };
    let target = capture
        .output_file()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    if !cli.json {
        let until = capture.count.map_or("until interrupted".to_string(), |n| {
            format!("for {n} frames")
        });
        let _ = writeln!(
            io.stderr,
            "capturing on port {} {until}, writing pcap to {target}",
            capture.port
        );
    }

    // The JSON error document must not be mixed into a pcap stream on stdout.
    let to_stdout = file.is_none();
    let fail_capture = |io: &mut Io<'_>, message: String| {
        if to_stdout {
            let _ = writeln!(io.stderr, "yardctl: {message}");
            EXIT_FAILURE
        } else {
            fail(cli, io, &message)
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let message = format!(
                    "capture on port {} broke off after {total} bytes: {e} — check yardd's log",
                    capture.port
                );
                return fail_capture(io, message);
            }
        };
        let out: &mut dyn Write = match file.as_mut() {
            Some(f) => f,
            None => &mut *io.stdout,
        };
        match out.write_all(&buf[..n]).and_then(|()| out.flush()) {
            Ok(()) => total += n as u64,
            // The reader (tcpdump, head) has gone: the capture is over.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return EXIT_OK,
            Err(e) => {
                let message = format!("cannot write capture to {target}: {e}");
                return fail_capture(io, message);
            }
        }
    }
    if let Some(f) = file.as_mut() {
        if let Err(e) = f.sync_all() {
            return fail(cli, io, &format!("cannot write capture to {target}: {e}"));
        }
    }
    if !cli.json {
        let _ = writeln!(
            io.stderr,
            "capture on port {} ended: {total} bytes written to {target}",
            capture.port
        );
    }
    EXIT_OK
}

#[cfg(test)]
mod tests;
