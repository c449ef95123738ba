//! Port security labs: an attacker container forges frames with scapy (run
//! inside its own namespace with `ip netns exec`) and its neighbours' traffic
//! must not notice. MAC theft, ARP to the gateway claiming a neighbour's
//! address, a forged ARP reply claiming the gateway's address; and the two
//! ways to widen it: `--allowed-address` and `--no-port-security`.
//!
//! Every forged frame is sent a bounded number of times, only out of the
//! attacker's own TAP, inside namespaces the lab made.
//!
//! Needs root, `ping` and python3 with scapy (Debian: python3-scapy);
//! without them each test prints why and returns (under CI=true it fails).

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::Duration;

use yard_ctl::api::PortStats;
use yard_ctl::MacAddr;
use yard_tests::cmd::{describe, in_ns_ok, output, stdout, timed};
use yard_tests::hosts::{pcap_count, Tcpdump};
use yard_tests::{require, Container, Lab};

/// The default network and its gateway.
const NET: &str = "yard0";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

/// A python3 that imports scapy: the one on PATH, else the system's (a
/// pyenv or venv python on PATH may lack the Debian package's modules).
fn scapy_python() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        ["python3", "/usr/bin/python3"].into_iter().find(|python| {
            output(timed(60, python).args(["-c", "import scapy.all"]))
                .status
                .success()
        })
    })
}

/// [`require`] plus a python3 with scapy; under CI=true a missing scapy
/// fails the test instead of skipping it.
fn require_scapy(tools: &[&str]) -> bool {
    if !require(&[&["python3"], tools].concat()) {
        return false;
    }
    if scapy_python().is_some() {
        return true;
    }
    let why = "skipped: python3 cannot import scapy (install python3-scapy)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("lab test cannot run under CI=true: {why}");
    }
    println!("{why}");
    false
}

/// Sends `count` copies of the scapy frame `frame` (an expression such as
/// `Ether(...)/ARP(...)`) out of `from`'s interface, 50 ms apart.
fn forge(from: &Container, frame: &str, count: u32) {
    let python = scapy_python().expect("checked by require_scapy");
    let script = format!(
        "from scapy.all import *\n\
         conf.verb = 0\n\
         sendp({frame}, iface='{}', count={count}, inter=0.05, verbose=False)\n",
        from.ifname
    );
    in_ns_ok(&from.ns, &[python, "-c", &script]);
}

fn mac_text(mac: MacAddr) -> String {
    mac.to_string()
}

/// The MAC `c` has for `ip` in its neighbour table, if any.
fn neighbour(c: &Container, ip: Ipv4Addr) -> Option<MacAddr> {
    let out = in_ns_ok(
        &c.ns,
        &[
            "ip",
            "-j",
            "neigh",
            "show",
            &ip.to_string(),
            "dev",
            &c.ifname,
        ],
    );
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    entries
        .as_array()?
        .iter()
        .find_map(|e| e["lladdr"].as_str()?.parse().ok())
}

/// The gateway's MAC as `c` resolved it (by pinging it).
fn gateway_mac(lab: &Lab, c: &Container) -> MacAddr {
    lab.ping_ok(c, GATEWAY);
    neighbour(c, GATEWAY).unwrap_or_else(|| panic!("{} did not resolve the gateway", c.port))
}

fn drops(stats: &PortStats, reason: &str) -> u64 {
    stats.drops.get(reason).copied().unwrap_or(0)
}

/// The port `mac` is learned on in network `net`, if any.
fn learned_on(lab: &Lab, net: &str, mac: MacAddr) -> Option<String> {
    lab.fdb(Some(net))
        .into_iter()
        .find(|e| e.mac == mac)
        .map(|e| e.port)
}

#[test]
fn a_frame_with_a_neighbours_mac_does_not_divert_its_traffic() {
    mac_theft(&[]);
}

/// With two datapath threads the victim and the attacker are read by
/// different threads (the least loaded one takes each new port), whose
/// bridges must both know who owns the victim's MAC.
#[test]
fn a_frame_with_a_neighbours_mac_does_not_divert_its_traffic_with_two_threads() {
    mac_theft(&["--threads", "2"]);
}

fn mac_theft(yardd_args: &[&str]) {
    if !require_scapy(&["ping"]) {
        return;
    }
    let mut lab = Lab::with_args(yardd_args);
    let victim = lab.tap("victim", NET, "172.30.0.2/16", &[]);
    let attacker = lab.tap("attacker", NET, "172.30.0.3/16", &[]);
    let sender = lab.tap("sender", NET, "172.30.0.4/16", &[]);
    // Everyone knows everyone: from now on the victim stays quiet unless
    // spoken to, so whoever holds its MAC in the FDB gets its traffic.
    lab.ping_ok(&sender, victim.ip);
    let (victim_mac, sender_mac) = (victim.mac(), sender.mac());
    assert_eq!(learned_on(&lab, NET, victim_mac).as_deref(), Some("victim"));

    // The attacker sends as the victim (source MAC and address).
    let forged = 5;
    forge(
        &attacker,
        &format!(
            "Ether(src='{}', dst='{}')/IP(src='{}', dst='{}')/UDP(sport=4000, dport=4000)/b'x'",
            mac_text(victim_mac),
            mac_text(sender_mac),
            victim.ip,
            sender.ip
        ),
        forged,
    );

    assert_eq!(
        learned_on(&lab, NET, victim_mac).as_deref(),
        Some("victim"),
        "the victim's MAC moved: {:#?}",
        lab.fdb(Some(NET))
    );
    // The sender's traffic still reaches the victim, which answers.
    lab.ping_ok(&sender, victim.ip);
    let stats = lab.stats("attacker");
    assert_eq!(
        drops(&stats, "spoofed-mac"),
        u64::from(forged),
        "each forged frame is counted: {stats:?}"
    );
}

#[test]
fn arp_to_the_gateway_claiming_a_neighbours_address_does_not_divert_routed_traffic() {
    if !require_scapy(&["ping", "tcpdump", "tshark"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "far", "--subnet", "10.77.0.0/24"]);
    lab.ctl_ok(&["net", "connect", NET, "far"]);
    let victim = lab.tap("victim", NET, "172.30.0.2/16", &[]);
    let attacker = lab.tap("attacker", NET, "172.30.0.3/16", &[]);
    let far = lab.tap("far1", "far", "10.77.0.2/24", &[]);
    // Routed through the gateway, which resolves the victim with ARP.
    lab.ping_ok(&far, victim.ip);
    let gw_mac = gateway_mac(&lab, &attacker);
    let attacker_mac = attacker.mac();

    // "172.30.0.2 is at the attacker": as a request to the gateway's address
    // (which a host learns its sender from) and as an unsolicited reply.
    forge(
        &attacker,
        &format!(
            "[Ether(src='{a}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{a}', psrc='{v}', pdst='{g}'), \
              Ether(src='{a}', dst='{gm}')/ARP(op=2, hwsrc='{a}', psrc='{v}', hwdst='{gm}', pdst='{g}')]",
            a = mac_text(attacker_mac),
            v = victim.ip,
            g = GATEWAY,
            gm = mac_text(gw_mac),
        ),
        3,
    );

    // The victim's inbound traffic goes to the victim, none to the attacker
    // (which would drop it: echo requests not for its address).
    let dir = tempfile::tempdir().expect("temp dir");
    let diverted = Tcpdump::start(
        &attacker.ns,
        &attacker.ifname,
        &format!("icmp and dst host {}", victim.ip),
        None,
        30,
        dir.path(),
        "attacker",
    );
    let out = lab.ping(&far, victim.ip, 5, 5, &[]);
    diverted.stop();
    let seen = pcap_count(&dir.path().join("attacker.pcap"), None);
    assert!(
        out.status.success() && seen == 0,
        "the victim's traffic was diverted: the attacker captured {seen} echo requests for it\n{}",
        describe(&format!("ping -c 5 {}", victim.ip), &out)
    );
    let stats = lab.stats("attacker");
    assert_eq!(
        drops(&stats, "spoofed-arp"),
        6,
        "each forged ARP is counted: {stats:?}"
    );
}

#[test]
fn a_forged_arp_reply_claiming_the_gateway_does_not_poison_a_neighbour() {
    if !require_scapy(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let victim = lab.tap("victim", NET, "172.30.0.2/16", &[]);
    // One attacker with port security, one without: neither may claim the
    // gateway's address.
    let secured = lab.tap("secured", NET, "172.30.0.3/16", &[]);
    let open = lab.tap("open", NET, "172.30.0.4/16", &["--no-port-security"]);
    let gw_mac = gateway_mac(&lab, &victim);

    for attacker in [&secured, &open] {
        // Past the kernel's ARP lock time (1 s), so a reply would be taken.
        sleep(Duration::from_millis(1200));
        let a = mac_text(attacker.mac());
        forge(
            attacker,
            &format!(
                "[Ether(src='{a}', dst='{vm}')/ARP(op=2, hwsrc='{a}', psrc='{g}', hwdst='{vm}', pdst='{v}'), \
                  Ether(src='{a}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{a}', psrc='{g}', pdst='{g}')]",
                vm = mac_text(victim.mac()),
                g = GATEWAY,
                v = victim.ip,
            ),
            3,
        );
        assert_eq!(
            neighbour(&victim, GATEWAY),
            Some(gw_mac),
            "{} poisoned the victim's ARP entry for the gateway",
            attacker.port
        );
        lab.ping_ok(&victim, GATEWAY);
        let stats = lab.stats(&attacker.port);
        assert_eq!(
            drops(&stats, "gateway-claim"),
            6,
            "{}: each claim is counted: {stats:?}",
            attacker.port
        );
    }
}

/// Adds `cidr` as a second address of `c`'s interface (`replace`: a no-op
/// when it is there already).
fn add_address(c: &Container, cidr: &str) {
    in_ns_ok(&c.ns, &["ip", "addr", "replace", cidr, "dev", &c.ifname]);
}

/// Pings `to` from `from`, bounded, and returns whether a reply came.
fn answers(lab: &Lab, from: &Container, to: Ipv4Addr) -> (bool, String) {
    let out = lab.ping(from, to, 2, 4, &[]);
    let text = describe(&format!("ping {to}"), &out);
    (out.status.success(), text)
}

#[test]
fn an_allowed_address_passes_and_an_unlisted_one_does_not() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let sender = lab.tap("sender", NET, "172.30.0.4/16", &[]);
    let router = lab.tap(
        "router",
        NET,
        "172.30.0.5/16",
        &["--allowed-address", "172.30.0.50"],
    );
    let plain = lab.tap("plain", NET, "172.30.0.6/16", &[]);
    add_address(&router, "172.30.0.50/16");
    add_address(&plain, "172.30.0.60/16");

    let (ok, text) = answers(&lab, &sender, Ipv4Addr::new(172, 30, 0, 50));
    assert!(ok, "the allowed second address does not answer:\n{text}");
    let (ok, text) = answers(&lab, &sender, Ipv4Addr::new(172, 30, 0, 60));
    assert!(
        !ok,
        "an address port security does not know answered:\n{text}"
    );
    let stats = lab.stats("plain");
    assert!(
        drops(&stats, "spoofed-arp") > 0,
        "plain's ARP replies for 172.30.0.60 are dropped and counted: {stats:?}"
    );
    // The first address of each still works.
    lab.ping_ok(&sender, router.ip);
    lab.ping_ok(&sender, plain.ip);

    // port ls says which port has extra addresses.
    let ls = lab.ctl(&["port", "ls"]);
    let text = stdout(&ls);
    assert!(
        text.contains("SECURITY") && text.contains("on +172.30.0.50/32"),
        "{text}"
    );
    let json = lab.ctl_json(&["port", "ls"]);
    let router_json = json
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "router"))
        .unwrap_or_else(|| panic!("router missing: {json:#}"));
    assert_eq!(router_json["port_security"], true, "{router_json:#}");
    assert_eq!(
        router_json["allowed_addresses"],
        serde_json::json!(["172.30.0.50/32"]),
        "{router_json:#}"
    );
}

#[test]
fn no_port_security_restores_the_old_behaviour_and_both_choices_survive_a_restart() {
    if !require_scapy(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let sender = lab.tap("sender", NET, "172.30.0.4/16", &[]);
    let open = lab.tap("open", NET, "172.30.0.7/16", &["--no-port-security"]);
    let other = lab.tap("other", NET, "172.30.0.8/16", &["--no-port-security"]);
    add_address(&open, "172.30.0.70/16");
    let (ok, text) = answers(&lab, &sender, Ipv4Addr::new(172, 30, 0, 70));
    assert!(ok, "a --no-port-security port may use any address:\n{text}");

    // It may even take another unsecured port's MAC, as on any switch.
    lab.ping_ok(&sender, other.ip);
    let other_mac = other.mac();
    forge(
        &open,
        &format!(
            "Ether(src='{}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{}', dst='{}')/UDP(dport=4000)/b'x'",
            mac_text(other_mac),
            other.ip,
            sender.ip
        ),
        1,
    );
    assert_eq!(
        learned_on(&lab, NET, other_mac).as_deref(),
        Some("open"),
        "an unsecured port's MAC moved as before: {:#?}",
        lab.fdb(Some(NET))
    );
    let stats = lab.stats("open");
    assert_eq!(stats.drops.values().sum::<u64>(), 0, "{stats:?}");

    // The choice is kept across a restart.
    lab.daemon.stop(nix::sys::signal::Signal::SIGTERM);
    lab.daemon.start();
    lab.wait_ports_up(Duration::from_secs(10));
    let ports = lab.ctl_json(&["port", "ls"]);
    let security: Vec<(String, bool)> = ports
        .as_array()
        .expect("port ls --json is a list")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["port_security"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert!(
        security.contains(&("open".to_string(), false))
            && security.contains(&("sender".to_string(), true)),
        "{security:?}"
    );
    // The restored TAPs: the open one still may, the secured one still may
    // not. (A TAP made again on restart may have lost the address the
    // container added itself.)
    add_address(&open, "172.30.0.70/16");
    let (ok, text) = answers(&lab, &sender, Ipv4Addr::new(172, 30, 0, 70));
    assert!(ok, "after the restart:\n{text}");
    forge(
        &sender,
        &format!(
            "Ether(src='{}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{}', dst='{}')/UDP(dport=4000)/b'x'",
            mac_text(sender.mac()),
            open.ip,
            other.ip
        ),
        2,
    );
    let stats = lab.stats("sender");
    assert_eq!(drops(&stats, "spoofed-ip"), 2, "{stats:?}");
}
