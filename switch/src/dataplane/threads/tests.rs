//! The datapath threads end to end, without privileges: ports are datagram
//! socket pairs framed like a TAP (virtio-net header, then the frame), the
//! threads run for real, and the test talks to them through the same
//! [`DatapathHandle`] the control thread uses.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use yard_ctl::api::NetworkSpec;
use yard_ctl::MacAddr;
use yard_wire::arp::ArpFrame;

use super::*;
use crate::dataplane::port::fd::FdPort;
use crate::sys::VNET_HDR_LEN;
use yard_wire::offload::Offload;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn eth(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // local experimental
    f.extend(std::iter::repeat_n(tag, 46));
    f
}

/// A switch with `threads` datapath threads, stopped and joined on drop.
struct Switch {
    handle: DatapathHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Switch {
    fn new(threads: usize) -> Switch {
        Switch::polling(threads, Duration::ZERO, "")
    }

    /// A switch whose threads busy-poll for `window` after each frame
    /// ([`Datapath::set_busy_poll`]), named `name` (for `/proc`).
    fn polling(threads: usize, window: Duration, name: &str) -> Switch {
        let (datapaths, handle) = Datapath::new(4096, threads).unwrap();
        let threads = datapaths
            .into_iter()
            .map(|mut d| {
                d.set_busy_poll(window);
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(move || d.run())
                    .unwrap()
            })
            .collect();
        Switch { handle, threads }
    }

    fn network(&self, name: &str, subnet: Option<&str>) {
        self.network_mtu(name, subnet, 1500);
    }

    fn network_mtu(&self, name: &str, subnet: Option<&str>, mtu: u32) {
        let mut spec = NetworkSpec::new(name);
        spec.subnet = subnet.map(|s| s.parse().unwrap());
        spec.mtu = mtu;
        let gateway = crate::control::nat_api::net_config(&spec);
        self.handle.add_network(spec, gateway).unwrap();
    }

    /// Adds a port; returns the container's end of it.
    fn port(&self, name: &str, net: &str) -> UnixDatagram {
        self.port_mtu(name, net, 1500)
    }

    fn port_mtu(&self, name: &str, net: &str, mtu: u32) -> UnixDatagram {
        self.port_with(name, net, mtu, |fd| Box::new(FdPort::new(fd)))
    }

    /// Adds a port that, like a tunnel, takes no offloads: the bridge
    /// segments GSO frames and finishes checksums for it.
    fn plain_port(&self, name: &str, net: &str) -> UnixDatagram {
        self.port_with(name, net, 1500, |fd| Box::new(Plain(FdPort::new(fd))))
    }

    fn port_with(
        &self,
        name: &str,
        net: &str,
        mtu: u32,
        port: impl FnOnce(OwnedFd) -> Box<dyn Port>,
    ) -> UnixDatagram {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        self.handle
            .add_port(
                name,
                port(OwnedFd::from(ours)),
                Membership::Access(net.into()),
                mtu,
                None,
                None,
            )
            .unwrap();
        theirs
    }

    fn fdb(&self) -> Vec<(MacAddr, String)> {
        let entries = self.handle.fdb(None).unwrap();
        entries.into_iter().map(|e| (e.mac, e.port)).collect()
    }

    fn stats(&self, port: &str) -> yard_ctl::api::PortStats {
        crate::control::bridge_api::port_stats(&self.handle.port_stats(Some(port)).unwrap()[0])
    }

    /// Asserts that `port` dropped nothing, showing its counters if it did.
    fn assert_no_drops(&self, port: &str) {
        let stats = self.stats(port);
        assert!(stats.drops.is_empty(), "{stats:?}");
    }

    /// The conntrack counters of the home thread, as the API reports them.
    fn conntrack_stats(&self) -> yard_ctl::api::ConntrackStats {
        crate::control::nat_api::stats(&self.handle.conntrack_stats().unwrap())
    }
}

/// A port whose device takes neither GSO frames nor partial checksums.
struct Plain(FdPort);

impl Port for Plain {
    fn recv(&mut self, frame: &mut Frame) -> io::Result<bool> {
        self.0.recv(frame)
    }
    fn send(&mut self, frame: &mut Frame) -> io::Result<()> {
        self.0.send(frame)
    }
    fn has_queued(&self) -> bool {
        self.0.has_queued()
    }
    fn flush(&mut self) {
        self.0.flush()
    }
    fn take_drops(&mut self, counters: &mut crate::dataplane::port::PortCounters) {
        self.0.take_drops(counters)
    }
    fn raw_fd(&self) -> Option<RawFd> {
        self.0.raw_fd()
    }
    fn share(&self) -> io::Result<Box<dyn Port>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn accepts_gso(&self) -> bool {
        false
    }
    fn accepts_partial_csum(&self) -> bool {
        false
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn send(end: &UnixDatagram, frame: &[u8]) {
    let mut wire = vec![0u8; VNET_HDR_LEN];
    wire.extend_from_slice(frame);
    end.send(&wire).unwrap();
}

/// Frames that reach `end` within `wait`.
fn received(end: &UnixDatagram, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < deadline {
        if let Ok(n) = end.recv(&mut buf) {
            out.push(buf[VNET_HDR_LEN..n].to_vec());
        }
    }
    out
}

/// How long a test waits for something the threads should do: far more
/// than they need, so a loaded machine does not fail a test (a wait ends as
/// soon as its condition holds).
const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `end` receives a frame `wanted` accepts; panics after
/// [`PATIENCE`].
fn expect(end: &UnixDatagram, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < deadline {
        if let Ok(n) = end.recv(&mut buf) {
            let frame = &buf[VNET_HDR_LEN..n];
            if wanted(frame) {
                return frame.to_vec();
            }
        }
    }
    panic!("no {what} arrived within {PATIENCE:?}");
}

/// Sends `frame` from `from` to `to` again until `bystander` no longer
/// gets a flooded copy: the sender's thread has learned where the
/// destination is. `what` names the frame at `to`; panics with `never` if
/// that does not happen within [`PATIENCE`].
fn send_until_unicast(
    (from, to, bystander): (&UnixDatagram, &UnixDatagram, &UnixDatagram),
    frame: &[u8],
    what: &str,
    never: &str,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        send(from, frame);
        expect(to, what, |f| f == frame);
        if received(bystander, Duration::from_millis(50)).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{never}");
    }
}

#[test]
fn ports_spread_over_threads_and_learning_crosses_them() {
    let switch = Switch::new(2);
    switch.network("n", None);
    let a = switch.port("a", "n");
    let b = switch.port("b", "n");
    let c = switch.port("c", "n");
    let readers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|p| switch.handle.reader_of(p).unwrap())
        .collect();
    assert_eq!(
        readers,
        vec![1, 0, 1],
        "least loaded; home counts its gateway"
    );

    // a (thread 1) floods; b (thread 0) answers, unicast to a.
    let hello = eth(MacAddr::BROADCAST, mac(1), 1);
    send(&a, &hello);
    expect(&b, "flood at b", |f| f == hello);
    expect(&c, "flood at c", |f| f == hello);
    // Thread 0 hears of mac 1 soon; until then b's frames to it flood.
    let reply = eth(mac(1), mac(2), 2);
    send_until_unicast(
        (&b, &a, &c),
        &reply,
        "b's frame at a",
        "thread 0 never learned mac 1",
    );
    // And thread 1 heard of mac 2 from thread 0: a to b is unicast too.
    let frame = eth(mac(2), mac(1), 3);
    send_until_unicast(
        (&a, &b, &c),
        &frame,
        "a's frame at b",
        "thread 1 never learned mac 2",
    );

    assert_eq!(
        switch.fdb(),
        vec![(mac(1), "a".to_string()), (mac(2), "b".to_string())],
        "each address once, on its port"
    );
    // Thread 1 reads a and sends to b; thread 0 the other way round: each
    // port's counters are the two threads' sums.
    let (sa, sb) = (switch.stats("a"), switch.stats("b"));
    assert!(sa.rx_packets >= 2 && sa.tx_packets >= 1, "{sa:?}");
    assert!(sb.rx_packets >= 1 && sb.tx_packets >= 2, "{sb:?}");

    switch.handle.remove_port("a").unwrap();
    assert_eq!(switch.fdb(), vec![(mac(2), "b".to_string())]);
    let a2 = switch.port("a2", "n");
    assert_eq!(switch.handle.reader_of("a2"), Some(1));
    let frame = eth(mac(2), mac(7), 4);
    send(&a2, &frame);
    expect(&b, "a2's frame at b", |f| f == frame);
}

/// The scheduler states (`/proc/self/task/*/stat`, third field) of this
/// process's threads named `name`.
fn thread_states(name: &str) -> Vec<char> {
    let mut states = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last ')'.
        if let Some(state) = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.trim().chars().next())
        {
            states.push(state);
        }
    }
    states
}

#[test]
fn a_busy_polling_thread_forwards_every_frame_and_sleeps_again_when_traffic_stops() {
    let name = format!("ybp{}", std::process::id() % 100_000);
    let switch = Switch::polling(1, Duration::from_millis(1), &name);
    switch.network("n", None);
    let a = switch.port("a", "n");
    let b = switch.port("b", "n");
    send(&a, &eth(MacAddr::BROADCAST, mac(1), 0));
    expect(&b, "a's hello at b", |f| f[6..12] == mac(1).0);
    send(&b, &eth(mac(1), mac(2), 0));
    expect(&a, "b's hello at a", |f| f[6..12] == mac(2).0);
    // A ping-pong: each frame answered at once, so the thread keeps polling
    // between them.
    for round in 1..=200u8 {
        let ping = eth(mac(2), mac(1), round);
        send(&a, &ping);
        expect(&b, "ping at b", |f| f == ping);
        let pong = eth(mac(1), mac(2), round);
        send(&b, &pong);
        expect(&a, "pong at a", |f| f == pong);
    }
    // Traffic over: after its 1 ms window the thread sleeps in epoll_wait
    // again (asked for at most 5 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states = thread_states(&name);
        assert_eq!(states.len(), 1, "one datapath thread named {name}");
        if states == ['S'] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle datapath thread never went back to sleep: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sa, sb) = (switch.stats("a"), switch.stats("b"));
    assert_eq!((sa.rx_packets, sa.tx_packets), (201, 201), "{sa:?}");
    assert_eq!((sb.rx_packets, sb.tx_packets), (201, 201), "{sb:?}");
}

#[test]
fn frames_for_the_gateway_reach_it_from_every_thread() {
    let switch = Switch::new(2);
    switch.network("n", Some("10.77.0.0/24"));
    let gateway = "10.77.0.1".parse().unwrap();
    let ends = [switch.port("a", "n"), switch.port("b", "n")];
    for (i, end) in ends.iter().enumerate() {
        let me = mac(10 + i as u8);
        let ip = std::net::Ipv4Addr::new(10, 77, 0, 10 + i as u8);
        let mut request = vec![0u8; 60];
        ArpFrame::request(me.0, ip, gateway)
            .emit(&mut request)
            .unwrap();
        send(end, &request);
        let reply = expect(end, "ARP reply from the gateway", |f| {
            f.len() >= 42 && f[..6] == me.0 && f[12..14] == [0x08, 0x06] && f[21] == 2
        });
        assert_eq!(&reply[28..32], &[10, 77, 0, 1], "sender is the gateway");
    }
    assert!(switch.stats("a").drops.is_empty());
    assert!(switch.stats("b").drops.is_empty());
}

#[test]
fn one_thread_is_the_default_switch() {
    let switch = Switch::new(1);
    switch.network("n", None);
    let a = switch.port("a", "n");
    let b = switch.port("b", "n");
    assert_eq!(switch.handle.threads(), 1);
    assert_eq!(switch.handle.reader_of("b"), Some(0));
    let frame = eth(MacAddr::BROADCAST, mac(1), 9);
    send(&a, &frame);
    expect(&b, "flood at b", |f| f == frame);
    assert_eq!(switch.fdb(), vec![(mac(1), "a".to_string())]);
}

#[test]
fn a_capture_lists_a_frame_before_the_answer_another_thread_receives() {
    let switch = Switch::new(2);
    switch.network("n", None);
    let a = switch.port("a", "n");
    let b = switch.port("b", "n");
    assert_ne!(switch.handle.reader_of("a"), switch.handle.reader_of("b"));
    let (copies, captured) = crossbeam_channel::bounded(crate::dataplane::capture::CAPTURE_QUEUE);
    switch
        .handle
        .capture("b", crate::dataplane::capture::CaptureTap::new(copies))
        .unwrap();
    // a's thread sends each request out of b; b answers at once, and b's own
    // thread receives the answer. The capture of b must list each request
    // before its answer (the next request may come between them).
    for round in 0..100u8 {
        let request = eth(mac(2), mac(1), round);
        send(&a, &request);
        expect(&b, "the request at b", |f| f == request);
        send(&b, &eth(mac(1), mac(2), round));
    }
    let mut order = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while order.len() < 200 && Instant::now() < deadline {
        if let Ok(copy) = captured.recv_timeout(Duration::from_millis(50)) {
            order.push((copy.bytes[6..12].to_vec(), copy.bytes[20]));
        }
    }
    assert_eq!(order.len(), 200, "every request and answer captured");
    for round in 0..100u8 {
        let at = |who: u8| {
            order
                .iter()
                .position(|c| *c == (mac(who).0.to_vec(), round))
        };
        let (request, answer) = (at(1), at(2));
        assert!(
            request.is_some() && answer.is_some() && request < answer,
            "round {round}: request at {request:?}, its answer at {answer:?}"
        );
    }
}

/// Sends `frame` with virtio-net header `vnet`.
fn send_with(end: &UnixDatagram, vnet: Offload, frame: &[u8]) {
    let mut wire = vnet.to_header().to_vec();
    wire.extend_from_slice(frame);
    end.send(&wire).unwrap();
}

/// One thread; network n1 (10.77.0.0/24, MTU `n1_mtu`) connected to n2
/// (10.78.0.0/24, 1500); port a in n1 at n1's MTU, port b in n2; a (mac 1,
/// 10.77.0.10) has asked its gateway for its MAC, so the gateway knows a.
fn routed_pair(n1_mtu: u32) -> (Switch, UnixDatagram, UnixDatagram) {
    routed(n1_mtu, false)
}

/// [`routed_pair`], with b a [`Plain`] port when `plain_b`.
fn routed(n1_mtu: u32, plain_b: bool) -> (Switch, UnixDatagram, UnixDatagram) {
    let switch = Switch::new(1);
    switch.network_mtu("n1", Some("10.77.0.0/24"), n1_mtu);
    switch.network("n2", Some("10.78.0.0/24"));
    switch.handle.connect("n1", "n2").unwrap();
    let a = switch.port_mtu("a", "n1", n1_mtu);
    let b = if plain_b {
        switch.plain_port("b", "n2")
    } else {
        switch.port("b", "n2")
    };
    arp_gateway(&a, mac(1), [10, 77, 0, 10], "10.77.0.1");
    (switch, a, b)
}

/// Waits for the gateway's ARP request for 10.78.0.20 at b and answers it
/// from b (mac 2).
fn answer_arp_for_b(b: &UnixDatagram) {
    let asked = expect(b, "the gateway's ARP request for b", |f| {
        f[12..14] == [0x08, 0x06] && f[38..42] == [10, 78, 0, 20]
    });
    let mut reply = vec![0u8; 60];
    let question = yard_wire::arp::ArpPacket::new_checked(&asked[14..42]).unwrap();
    ArpFrame::reply_to(&question, mac(2).0)
        .emit(&mut reply)
        .unwrap();
    send(b, &reply);
}

#[test]
fn a_tso_frame_that_waited_for_arp_leaves_as_a_tso_frame() {
    let (switch, a, b) = routed_pair(1500);

    // A 20000-byte TCP payload as a TAP with TSO hands it over: one frame,
    // GSO TCPv4 with 1448-byte segments, partial checksum. Conntrack admits
    // a new connection only on a SYN, so this is the SYN, carrying data as
    // TCP Fast Open does.
    let payload = pattern(20_000);
    let (packet, tso) = gso_frame(syn(40_000, 20_000, false), 1448);

    // b is unknown: the gateway holds the frame and asks for b. Released,
    // it reaches b whole, the TSO frame it was: its segment size (which
    // fits b's 1500-byte MTU) and partial checksum kept.
    let (vnet, frame) = released_after_arp(&a, &b, tso, &packet);
    assert_eq!(&frame[54..], &payload[..]);
    assert_eq!(vnet.gso_type, yard_wire::vnet::GSO_TCPV4);
    assert_eq!(vnet.gso_size, 1448, "the sender's, not guessed again");
    assert_eq!(vnet.flags, yard_wire::vnet::F_NEEDS_CSUM);
    assert_eq!((vnet.csum_start, vnet.csum_offset), (34, 16));
    switch.assert_no_drops("b");
}

/// Asks the gateway `gateway` for its MAC from `end` (`mac`, `ip`), so it
/// learns the sender; waits for the answer.
fn arp_gateway(end: &UnixDatagram, me: MacAddr, ip: [u8; 4], gateway: &str) {
    let mut request = vec![0u8; 60];
    ArpFrame::request(me.0, ip.into(), gateway.parse().unwrap())
        .emit(&mut request)
        .unwrap();
    send(end, &request);
    expect(end, "the gateway's ARP reply", |f| {
        f[12..14] == [0x08, 0x06]
    });
}

/// `len` payload bytes counting up from 0 (wrapping at 256).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// An IPv4 TCP SYN from 10.77.0.10 to 10.78.0.20 carrying `len` bytes (as
/// TCP Fast Open may), DF set, addressed to network n1's gateway.
fn big_syn(port: u16, len: usize) -> Vec<u8> {
    syn(port, len, true)
}

/// [`big_syn`], with DF set only when `df`.
fn syn(port: u16, len: usize, df: bool) -> Vec<u8> {
    let mut packet = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1).0, crate::control::nat_api::gateway_mac("n1").0)
        .ipv4([10, 77, 0, 10], [10, 78, 0, 20], 64)
        .tcp(port, 80, 1, 64_000)
        .syn()
        .write(&mut packet, &pattern(len))
        .unwrap();
    if df {
        packet[20] |= 0x40; // DF
        let check = !yard_wire::checksum::ones_sum(&{
            let mut h = packet[14..34].to_vec();
            h[10..12].copy_from_slice(&[0, 0]);
            h
        });
        packet[24..26].copy_from_slice(&check.to_be_bytes());
    }
    packet
}

#[test]
fn routed_packets_fit_the_mtu_of_their_way_out() {
    // n1 with jumbo frames, connected to n2 at 1500.
    let (_switch, a, b) = routed_pair(9000);
    arp_gateway(&b, mac(2), [10, 78, 0, 20], "10.78.0.1");

    // A 4000-byte DF packet does not fit n2: a hears fragmentation-needed
    // with n2's MTU from its gateway, b gets nothing.
    send(&a, &big_syn(40_000, 3960));
    let error = expect(&a, "ICMP fragmentation-needed", |f| {
        f.len() > 38 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == 3 && f[35] == 4
    });
    assert_eq!(&error[26..30], &[10, 77, 0, 1], "from a's gateway");
    assert_eq!(
        u16::from_be_bytes([error[40], error[41]]),
        1500,
        "next-hop MTU"
    );
    assert!(
        received(&b, Duration::from_millis(100))
            .iter()
            .all(|f| f[12..14] != [0x08, 0x00]),
        "the big packet went on to b"
    );

    // A TSO frame cut for n1's MTU is cut for n2's instead.
    let (packet, tso) = gso_frame(big_syn(40_001, 30_000), 8960);
    send_with(&a, tso, &packet);
    let deadline = Instant::now() + PATIENCE;
    let (vnet, frame) = next_ipv4(&b, deadline, "the TSO frame never reached b");
    assert_eq!(frame.len(), packet.len(), "the frame arrived whole");
    assert_eq!(vnet.gso_size, 1460, "1500 - 20 (IPv4) - 20 (TCP)");
}

/// A UDP datagram of `len` bytes from 10.77.0.10 to 10.78.0.20, without
/// DF, addressed to network n1's gateway.
fn big_udp(port: u16, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
    let mut packet = Vec::new();
    let mut ip = etherparse::Ipv4Header::new(
        0,
        64,
        etherparse::IpNumber::UDP,
        [10, 77, 0, 10],
        [10, 78, 0, 20],
    )
    .unwrap();
    ip.dont_fragment = false;
    etherparse::PacketBuilder::ethernet2(mac(1).0, crate::control::nat_api::gateway_mac("n1").0)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(port, 9999)
        .write(&mut packet, &payload)
        .unwrap();
    packet
}

/// Waits for the IPv4 fragments of one datagram at `end` and puts their
/// data back together, checking each fits `mtu` and has a good header
/// checksum.
fn reassembled(end: &UnixDatagram, mtu: usize) -> (Vec<u8>, usize) {
    let deadline = Instant::now() + PATIENCE;
    let mut data = Vec::new();
    let mut count = 0;
    loop {
        let (_, frame) = next_ipv4(end, deadline, "not every fragment reached b");
        assert!(frame.len() - 14 <= mtu, "a {}-byte frame", frame.len());
        let (ip, body) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(ip.time_to_live, 63, "TTL decremented by the gateway");
        assert_eq!(usize::from(ip.fragment_offset.value()) * 8, data.len());
        data.extend_from_slice(body);
        count += 1;
        if !ip.more_fragments {
            return (data, count);
        }
    }
}

#[test]
fn routed_packets_without_df_are_fragmented_to_fit_their_way_out() {
    // n1 with jumbo frames, connected to n2 at 1500.
    let (switch, a, b) = routed_pair(9000);

    // b is unknown: the gateway holds the datagram, asks for b and, told,
    // sends it on in fragments.
    let first = big_udp(50_000, 4000);
    send(&a, &first);
    answer_arp_for_b(&b);
    let (data, count) = reassembled(&b, 1500);
    assert_eq!(count, 3, "4008 bytes in 1480-byte pieces");
    assert_eq!(data, first[34..], "the datagram, checksum included");

    // b known: a datagram with a partial checksum (as a TAP hands it over)
    // is finished before it is cut.
    let mut second = big_udp(50_001, 6000);
    let whole_checksum = second[40..42].to_vec();
    let partial = partial_checksum(&mut second);
    send_with(&a, partial, &second);
    let (data, count) = reassembled(&b, 1500);
    assert_eq!(count, 5);
    assert_eq!(data[6..8], whole_checksum[..], "the UDP checksum, finished");
    assert_eq!(data[8..], second[42..]);

    let stats = switch.conntrack_stats();
    assert_eq!(stats.counters["gw-fragmented"], 2);
    switch.assert_no_drops("b");
}

/// `packet`, a TCP segment (from [`syn`]) or UDP datagram (from
/// [`big_udp`]), made the GSO frame a TAP with TSO or USO hands over: its
/// payload in `size`-byte segments or datagrams, partial checksum.
fn gso_frame(mut packet: Vec<u8>, size: u16) -> (Vec<u8>, Offload) {
    let (gso_type, hdr_len) = if packet[23] == 6 {
        (yard_wire::vnet::GSO_TCPV4, 54)
    } else {
        (yard_wire::vnet::GSO_UDP_L4, 42)
    };
    let gso = Offload {
        gso_type,
        hdr_len,
        gso_size: size,
        ..partial_checksum(&mut packet)
    };
    (packet, gso)
}

/// Leaves the TCP or UDP checksum of `packet` (untagged IPv4, no options)
/// partial, as a TAP hands it over: only the pseudo-header's sum, to be
/// finished from byte 34 on. Returns the virtio-net header that says so.
fn partial_checksum(packet: &mut [u8]) -> Offload {
    use yard_wire::checksum::{add, ones_sum};
    let proto = packet[23];
    let csum_offset = if proto == 6 { 16 } else { 6 };
    let pseudo = add(
        add(ones_sum(&packet[26..34]), u16::from(proto)),
        (packet.len() - 34) as u16,
    );
    let at = 34 + usize::from(csum_offset);
    packet[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    Offload {
        flags: yard_wire::vnet::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset,
        ..Offload::NONE
    }
}

/// Waits until `deadline` for the next IPv4 frame at `end`, passing over
/// others (ARP); returns its virtio-net header and the frame. Panics with
/// `what` once the deadline has passed.
fn next_ipv4(end: &UnixDatagram, deadline: Instant, what: &str) -> (Offload, Vec<u8>) {
    let mut buf = vec![0u8; 70_000];
    loop {
        assert!(Instant::now() < deadline, "{what}");
        let Ok(n) = end.recv(&mut buf) else { continue };
        let frame = &buf[VNET_HDR_LEN..n];
        if frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let vnet = Offload::from_header(buf[..VNET_HDR_LEN].try_into().unwrap());
        return (vnet, frame.to_vec());
    }
}

/// Sends `packet` with `offload` from a while the gateway does not know b,
/// answers the gateway's ARP request from b, and returns what b receives
/// then, checked to be the whole frame with its TTL decremented.
fn released_after_arp(
    a: &UnixDatagram,
    b: &UnixDatagram,
    offload: Offload,
    packet: &[u8],
) -> (Offload, Vec<u8>) {
    send_with(a, offload, packet);
    answer_arp_for_b(b);
    let deadline = Instant::now() + PATIENCE;
    let (vnet, frame) = next_ipv4(b, deadline, "the held frame never reached b");
    assert_eq!(frame.len(), packet.len(), "the frame arrived whole");
    assert_eq!(frame[22], 63, "TTL decremented by the gateway");
    (vnet, frame)
}

#[test]
fn a_udp_gso_frame_that_waited_for_arp_leaves_as_a_udp_gso_frame() {
    let (switch, a, b) = routed_pair(1500);
    // 3 datagrams of 1000 bytes in one frame, as a TAP with USO hands over.
    let (packet, uso) = gso_frame(big_udp(50_002, 3 * 1000), 1000);
    // b is unknown: the frame waits, with its GSO state, and is released
    // as the 3 datagrams it is, not as one 3008-byte datagram.
    let (vnet, frame) = released_after_arp(&a, &b, uso, &packet);
    assert_eq!(&frame[42..], &packet[42..]);
    assert_eq!(vnet, uso, "its offload state, as it came");
    let stats = switch.conntrack_stats();
    assert_eq!(stats.counters["gw-held-for-arp"], 1);
    switch.assert_no_drops("b");
}

/// Whether the TCP or UDP checksum of `frame` (untagged IPv4, no options)
/// is right.
fn l4_checksum_holds(frame: &[u8]) -> bool {
    use yard_wire::checksum::{add, ones_sum, pseudo_header_sum};
    let (ip, _) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
    let l4 = &frame[34..14 + usize::from(ip.total_len)];
    let pseudo = pseudo_header_sum(
        ip.source.into(),
        ip.destination.into(),
        ip.protocol.0,
        l4.len() as u16,
    );
    add(pseudo, ones_sum(l4)) == 0xffff
}

#[test]
fn held_gso_frames_are_segmented_after_the_arp_answer_for_a_port_without_offloads() {
    // b takes no offloads (like a tunnel): a TCP and a UDP GSO frame that
    // waited for b's MAC are cut into plain packets with full checksums
    // when they are released.
    let (switch, a, b) = routed(1500, true);
    let (tcp, tso) = gso_frame(big_syn(40_002, 20_000), 1448);
    send_with(&a, tso, &tcp);
    let (udp, uso) = gso_frame(big_udp(50_003, 3 * 1000), 1000);
    send_with(&a, uso, &udp);
    answer_arp_for_b(&b);

    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < 14 + 3 {
        let what = format!("{} packets reached b", got.len());
        let (vnet, frame) = next_ipv4(&b, deadline, &what);
        assert_eq!(vnet, Offload::NONE, "plain packets only");
        assert!(frame.len() <= 1514, "a {}-byte frame", frame.len());
        assert_eq!(frame[22], 63, "TTL decremented by the gateway");
        assert!(l4_checksum_holds(&frame), "packet {} checksum", got.len());
        got.push(frame);
    }
    // In the order they waited: 14 TCP segments carrying the payload in
    // order (20000 bytes in 1448-byte pieces), then the 3 datagrams.
    let (segments, datagrams) = got.split_at(14);
    let mut payload = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s[23], 6, "TCP");
        let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
        assert_eq!(seq as usize, 1 + i * 1448, "segment {i}");
        payload.extend_from_slice(&s[54..]);
    }
    assert_eq!(payload, tcp[54..]);
    for (i, d) in datagrams.iter().enumerate() {
        assert_eq!(d[23], 17, "UDP");
        assert_eq!(d.len(), 42 + 1000);
        assert_eq!(u16::from_be_bytes([d[38], d[39]]), 8 + 1000, "UDP length");
        assert_eq!(d[42..], udp[42 + i * 1000..42 + (i + 1) * 1000]);
    }
    let stats = switch.conntrack_stats();
    assert_eq!(stats.counters["gw-held-for-arp"], 2);
    switch.assert_no_drops("b");
}

#[test]
fn conntrack_commands_list_change_and_flush_the_home_threads_table() {
    use crate::control::nat_api::{self, ConntrackChange};
    use yard_ctl::api::{ConntrackFilter, ConntrackSettings};
    let (switch, a, b) = routed_pair(1500);
    send(&a, &big_syn(40_001, 100));
    answer_arp_for_b(&b);
    expect(&b, "the SYN at b", |f| f[12..14] == [0x08, 0x00]);

    let all = nat_api::filter_of(&ConntrackFilter::default()).unwrap();
    let listed = nat_api::entry_infos(&switch.handle.conntrack(all, None, usize::MAX).unwrap());
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    assert_eq!(entry.proto, "tcp");
    assert_eq!(
        (
            entry.original.src,
            entry.original.sport,
            entry.original.dport
        ),
        ("10.77.0.10".parse().unwrap(), 40_001, 80)
    );
    assert_eq!(entry.packets_original, 1);
    assert!(
        entry.timeout_secs > 0 && entry.timeout_secs <= 240,
        "{entry:?}"
    );

    let settings = ConntrackSettings {
        max_entries: Some(1000),
        timeouts: [("udp-replied".to_string(), 600)].into(),
        snat_share_percent: Some(10),
    };
    let change = ConntrackChange::parse(&settings).unwrap();
    let applied = switch
        .handle
        .set_conntrack(move |config| change.apply(config))
        .unwrap();
    let shown = nat_api::settings(&applied);
    assert_eq!(shown.max_entries, Some(1000));
    assert_eq!(shown.timeouts["udp-replied"], 600);
    assert_eq!(
        shown.timeouts["tcp-established"],
        5 * 24 * 3600,
        "unchanged"
    );
    assert_eq!(shown.snat_share_percent, Some(10));
    let stats = switch.conntrack_stats();
    assert_eq!((stats.entries, stats.max_entries), (1, 1000));
    assert_eq!(
        stats.snat_share_percent,
        Some(10),
        "the datapath's table has it"
    );

    let udp = ConntrackFilter {
        proto: Some("udp".into()),
        ..ConntrackFilter::default()
    };
    let udp = nat_api::filter_of(&udp).unwrap();
    assert_eq!(switch.handle.conntrack_flush(udp).unwrap(), 0);
    assert_eq!(switch.handle.conntrack_flush(all).unwrap(), 1);
    assert!(switch
        .handle
        .conntrack(all, None, usize::MAX)
        .unwrap()
        .entries
        .is_empty());
}

/// Whether `frame` is an MLD query from the gateway's link-local address
/// (an IPv6 packet with the hop-by-hop header, then ICMPv6 type 130).
fn is_mld_query(frame: &[u8]) -> bool {
    frame.len() >= 14 + 40 + 8 + 28
        && frame[12..14] == [0x86, 0xdd]
        && frame[14 + 6] == 0
        && frame[14 + 8..14 + 10] == [0xfe, 0x80]
        && frame[14 + 48] == 130
}

#[test]
fn a_solicited_node_ns_reaches_only_the_port_that_joined_its_group() {
    solicited_node_ns_reaches_only_its_port(1);
}

#[test]
fn with_two_threads_each_hears_the_groups_the_other_snooped() {
    solicited_node_ns_reaches_only_its_port(2);
}

/// With `threads` datapath threads, ports a, b, c on a network with a
/// gateway: an NS from a for b's address reaches b alone once b and c have
/// reported their solicited-node groups (with two threads, b is read by
/// thread 0 and a and c by thread 1: each thread forwards by what the
/// other heard).
fn solicited_node_ns_reaches_only_its_port(threads: usize) {
    use crate::dataplane::bridge::multicast::tests::{
        host6, mld_join, neighbor_solicitation, solicited_node,
    };
    let switch = Switch::new(threads);
    switch.network("n", Some("10.77.0.0/24"));
    let a = switch.port("a", "n");
    let b = switch.port("b", "n");
    let c = switch.port("c", "n");
    if threads == 2 {
        let readers: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|p| switch.handle.reader_of(p).unwrap())
            .collect();
        assert_eq!(readers, vec![1, 0, 1]);
    }
    // The gateway asks each new port which groups it listens to (one
    // thread asks, so once); b and c answer with their addresses'
    // solicited-node groups.
    for end in [&a, &b, &c] {
        expect(end, "the MLD query a new port gets", is_mld_query);
    }
    let again = received(&a, Duration::from_millis(1500));
    assert!(!again.iter().any(|f| is_mld_query(f)), "asked twice");
    send(
        &b,
        &mld_join(mac(2).0, host6(2), &[solicited_node(host6(2))]),
    );
    send(
        &c,
        &mld_join(mac(3).0, host6(3), &[solicited_node(host6(3))]),
    );
    // a resolves b: once b and c have had time to answer (they get every
    // group until then), the NS reaches b and no longer c.
    let ns = neighbor_solicitation(mac(1).0, host6(1), host6(2));
    send_until_unicast(
        (&a, &b, &c),
        &ns,
        "the NS for b's address at b",
        "c still gets the NS for b's address",
    );
    for _ in 0..3 {
        send(&a, &ns);
        expect(&b, "the NS for b's address at b", |f| f == ns);
    }
    assert!(received(&c, Duration::from_millis(200)).is_empty());
    // Duplicate address detection for an address nobody holds reaches
    // nobody; c's own NS still reaches c.
    let dad = neighbor_solicitation(mac(1).0, std::net::Ipv6Addr::UNSPECIFIED, host6(9));
    send(&a, &dad);
    let ns_c = neighbor_solicitation(mac(1).0, host6(1), host6(3));
    send(&a, &ns_c);
    expect(&c, "the NS for c's address at c", |f| f == ns_c);
    assert!(received(&b, Duration::from_millis(200)).is_empty());
    // b resolves c: b's thread forwards by what c's thread heard. (What a
    // got while it was new — b's and c's reports — is drained first.)
    received(&a, Duration::from_millis(50));
    let ns_bc = neighbor_solicitation(mac(2).0, host6(2), host6(3));
    send(&b, &ns_bc);
    expect(&c, "b's NS for c's address at c", |f| f == ns_bc);
    let at_a = received(&a, Duration::from_millis(200));
    assert!(at_a.is_empty(), "{at_a:02x?}");
    for port in ["a", "b", "c"] {
        switch.assert_no_drops(port);
    }
}
