//! Malformed-frame barrage: a container that sends 20,000 random and
//! malformed frames (random bytes, cut-short headers, stacked VLAN tags,
//! group source MACs, broken ARP, IPv4 with bad versions, lengths, header
//! lengths and fragments, transport headers of random bytes, IPv6 with
//! random next headers) leaves yardd running and answering `status`, a
//! neighbour's ping still works, and the drops are counted — in the
//! attacker's port stats and the gateway's counters.
//!
//! The frames are written by a Python raw `AF_PACKET` socket in the
//! attacker's namespace, from a fixed random seed, paced and bounded in
//! count and time. Needs root, `ping` and `python3`; without them the test
//! prints why and returns.

use yard_tests::{require, Container, Lab};

/// Frames the attacker sends.
const FRAMES: u32 = 20_000;

/// The attacker: `argv` = interface, count, seed, own MAC, gateway MAC, own
/// IPv4, gateway IPv4. Frames are cut to 1514 bytes (the MTU). Prints
/// `sent=N refused=M` (refused: the kernel would not send it, e.g. shorter
/// than an Ethernet header). Gives up after 60 s.
const BARRAGE: &str = r#"
import random, socket, struct, sys, time

ifname, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
own = bytes.fromhex(sys.argv[4].replace(":", ""))
gw = bytes.fromhex(sys.argv[5].replace(":", ""))
own_ip, gw_ip = socket.inet_aton(sys.argv[6]), socket.inet_aton(sys.argv[7])
rng = random.Random(seed)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))

def rand(n):
    return bytes(rng.getrandbits(8) for _ in range(n))

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return (~t) & 0xffff

def ipv4(payload, proto):
    ihl = rng.choice([5, 5, 5, 0, 1, 4, 6, 15])
    version = rng.choice([4, 4, 4, 4, 0, 6, 15])
    total = rng.choice([20 + len(payload), 20 + len(payload), 0, 19, 65535, rng.randrange(65536)])
    frag = rng.choice([0, 0, 0x4000, 0x2000, 0x2001, 0x1fff, rng.randrange(65536)])
    src = rng.choice([own_ip, own_ip, rand(4)])
    dst = rng.choice([gw_ip, rand(4), b"\xff\xff\xff\xff", b"\xe0\0\0\x01"])
    opts = rand(4 * max(0, ihl - 5)) if ihl <= 15 else b""
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total & 0xffff,
                    rng.randrange(65536), frag, rng.choice([0, 1, 64]), proto, 0, src, dst) + opts
    if rng.random() < 0.7:
        h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload

def transport():
    proto = rng.choice([1, 6, 17, 47, 0, rng.randrange(256)])
    if proto == 1:
        # ICMP: echo, or an error quoting a random (often broken) packet.
        body = bytes([rng.choice([8, 0, 3, 11, 12, 5]), rng.randrange(16), 0, 0]) + rand(4)
        body += ipv4(rand(rng.randrange(0, 16)), rng.choice([6, 17, 1]))[:rng.randrange(0, 40)]
    elif proto == 6:
        off = rng.choice([5, 0, 4, 15, 8]) << 4
        body = rand(12) + bytes([off, rng.randrange(256)]) + rand(6) + rand(rng.randrange(0, 40))
    elif proto == 17:
        body = rand(4) + struct.pack("!H", rng.choice([8, 0, 7, 65535, rng.randrange(65536)])) + rand(rng.randrange(2, 40))
    else:
        body = rand(rng.randrange(0, 64))
    return ipv4(body, proto)

def frame():
    kind = rng.randrange(9)
    src = own if rng.random() < 0.8 else rng.choice([rand(6), b"\x01" + rand(5), b"\0" * 6])
    dst = rng.choice([gw, gw, b"\xff" * 6, rand(6)])
    # The kernel sends nothing shorter than an Ethernet header.
    if kind == 0:
        return rand(rng.randrange(14, 200))
    if kind == 1:
        return dst + src + rand(rng.randrange(2, 6))
    if kind == 2:
        return dst + src + struct.pack("!H", 0x0800) + transport()
    if kind == 3:
        hw = rng.choice([(1, 0x0800, 6, 4), (1, 0x0800, 6, 4), (6, 0x86dd, 8, 16), tuple(rng.randrange(256) for _ in range(4))])
        arp = struct.pack("!HHBBH", hw[0], hw[1], hw[2] & 0xff, hw[3] & 0xff, rng.choice([1, 2, 0, 7]))
        arp += own + rng.choice([own_ip, gw_ip, rand(4)]) + rand(6) + rng.choice([gw_ip, own_ip, rand(4)])
        return rng.choice([b"\xff" * 6, gw]) + src + struct.pack("!H", 0x0806) + arp[:rng.randrange(0, 29)]
    if kind == 4:
        tags = b"".join(struct.pack("!HH", rng.choice([0x8100, 0x88a8]), rng.randrange(65536)) for _ in range(rng.randrange(1, 4)))
        return dst + src + tags + struct.pack("!H", 0x0800) + transport()
    if kind == 5:
        ip6 = struct.pack("!IHBB", 0x60000000, rng.randrange(65536), rng.choice([6, 17, 58, 0, 43, 60, 44]), 64) + rand(32) + rand(rng.randrange(0, 64))
        return dst + src + struct.pack("!H", 0x86dd) + ip6[:rng.randrange(0, len(ip6) + 1)]
    if kind == 6:
        full = dst + src + struct.pack("!H", 0x0800) + transport()
        return full[:rng.randrange(14, len(full) + 1)]
    if kind == 7:
        return dst + src + struct.pack("!H", rng.randrange(65536)) + rand(rng.randrange(0, 100))
    return dst + src + struct.pack("!H", 0x0800) + transport() + rand(rng.randrange(0, 1400))

deadline = time.monotonic() + 60
sent = refused = 0
for i in range(count):
    if time.monotonic() > deadline:
        break
    f = frame()[:1514]
    try:
        s.send(f)
        sent += 1
    except OSError:
        refused += 1
    if i % 200 == 199:
        time.sleep(0.002)
print("sent=%d refused=%d" % (sent, refused))
"#;

/// The gateway's MAC as the container's neighbour table has it, after a
/// ping taught it.
fn gateway_mac(c: &Container, gateway: &str) -> String {
    let out = c.exec(&["ip", "-j", "neigh", "show", gateway]);
    let neigh: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j neigh");
    neigh[0]["lladdr"]
        .as_str()
        .unwrap_or_else(|| panic!("no neighbour entry for {gateway}: {neigh}"))
        .to_string()
}

#[test]
fn a_malformed_frame_barrage_leaves_yardd_serving_and_counts_the_drops() {
    if !require(&["ping", "python3"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "barrage", "--subnet", "10.71.0.0/24"]);
    let attacker = lab.tap("evil", "barrage", "10.71.0.66/24", &[]);
    let v1 = lab.tap("v1", "barrage", "10.71.0.2/24", &[]);
    let v2 = lab.tap("v2", "barrage", "10.71.0.3/24", &[]);
    let gateway = "10.71.0.1";
    lab.ping_ok(&attacker, gateway.parse().unwrap());
    lab.ping_ok(&v1, v2.ip);
    let gw_mac = gateway_mac(&attacker, gateway);
    let own_mac = attacker.mac().to_string();

    let out = attacker.exec(&[
        "timeout",
        "90",
        "python3",
        "-c",
        BARRAGE,
        &attacker.ifname,
        &FRAMES.to_string(),
        "20261204",
        &own_mac,
        &gw_mac,
        &attacker.ip.to_string(),
        gateway,
    ]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the barrage did not run: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: u64 = report
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sent="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in the barrage's report: {report}"));
    assert!(
        sent >= u64::from(FRAMES) * 9 / 10,
        "the kernel refused most of the barrage: {report}"
    );

    // yardd is alive, answers, and still forwards and routes.
    assert!(
        lab.daemon.is_running(),
        "yardd died under the barrage: {}",
        lab.daemon.log_tail()
    );
    lab.ctl_ok(&["status"]);
    lab.ping_ok(&v1, v2.ip);
    lab.ping_ok(&v2, gateway.parse().unwrap());
    lab.ping_ok(&attacker, gateway.parse().unwrap());

    // The frames arrived and what was wrong with them was counted.
    let stats = lab.stats("evil");
    assert!(
        stats.rx_packets >= sent / 2,
        "most of the {sent} frames never reached yardd: {stats:?}"
    );
    for reason in ["bad-source-mac", "tagged-on-access-port"] {
        assert!(
            stats.drops.get(reason).copied().unwrap_or(0) > 0,
            "no {reason} drops counted on the attacker's port: {stats:?}"
        );
    }
    let gw: yard_ctl::api::ConntrackStats = lab.ctl_parse(&["conntrack", "stats"]);
    println!(
        "barrage: {report}\nattacker's port: {stats:?}\ngateway: {:?}",
        gw.counters
    );
    assert!(
        gw.counters.get("gw-malformed").copied().unwrap_or(0) > 0,
        "the gateway counted no malformed packets: {gw:?}"
    );
}
