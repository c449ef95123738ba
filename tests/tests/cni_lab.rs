//! `yard-cni` driven the way container runtimes drive it: `CNI_*` in the
//! environment, the network configuration on stdin, the result or an error
//! object on stdout. ADD puts a working TAP in the namespace with the
//! address it reports, CHECK verifies it, DEL removes it (and its published
//! ports) and succeeds a second time, VERSION lists the versions; the error
//! cases carry the spec's codes. With an `ipam` section the address comes
//! from the host-local plugin (containernetworking-plugins).
//!
//! Needs root; without it each test prints why and returns.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use yard_tests::bins::bins;
use yard_tests::cmd::{in_ns_ok, run_ok};
use yard_tests::{require, Container, Lab};

/// Where Debian's containernetworking-plugins puts host-local.
const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// One invocation's answer.
#[derive(Debug)]
struct Answer {
    exit: i32,
    stdout: Option<Value>,
}

impl Answer {
    fn ok(self) -> Option<Value> {
        assert_eq!(self.exit, 0, "yard-cni failed: {:?}", self.stdout);
        self.stdout
    }

    /// The error object's code and message, after asserting a failure.
    fn error(&self) -> (u64, String) {
        assert_ne!(self.exit, 0, "yard-cni succeeded: {:?}", self.stdout);
        let out = self.stdout.as_ref().expect("an error object on stdout");
        (
            out["code"].as_u64().expect("a code"),
            out["msg"].as_str().expect("a msg").to_string(),
        )
    }
}

/// Runs the plugin as a runtime does: a clean environment with `CNI_*`.
fn cni(command: &str, id: &str, netns: &str, ifname: &str, conf: &Value) -> Answer {
    cni_raw(command, id, netns, ifname, conf.to_string().as_bytes())
}

fn cni_raw(command: &str, id: &str, netns: &str, ifname: &str, stdin: &[u8]) -> Answer {
    let mut child = Command::new(&bins().yard_cni)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_PLUGIN_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run yard-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write the configuration");
    let out = child.wait_with_output().expect("wait for yard-cni");
    let text = String::from_utf8_lossy(&out.stdout);
    Answer {
        exit: out.status.code().unwrap_or(-1),
        stdout: (!text.trim().is_empty()).then(|| {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        }),
    }
}

fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

fn conf(lab: &Lab, version: &str, extra: Value) -> Value {
    let mut conf = json!({
        "cniVersion": version,
        "name": "cninet",
        "type": "yard-cni",
        "socket": lab.socket(),
        "subnet": "10.81.0.0/24",
        "ipMasq": true,
    });
    for (k, v) in extra.as_object().expect("an object").clone() {
        conf[k] = v;
    }
    conf
}

fn container(ns: &str, result: &Value) -> Container {
    let address = result["ips"][0]["address"].as_str().expect("an address");
    Container {
        port: String::new(),
        ns: ns.to_string(),
        ifname: result["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string(),
        ip: address.split('/').next().unwrap().parse().unwrap(),
    }
}

#[test]
fn add_check_del_and_version_as_a_runtime_runs_them() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    let (ns1, ns2) = (lab.netns(), lab.netns());
    let conf = conf(&lab, "1.0.0", json!({}));

    let r1 = cni("ADD", "c0ffee01", &netns_path(&ns1), "eth0", &conf)
        .ok()
        .expect("ADD prints a result");
    // The spec's result: the interface in its sandbox, the address from
    // yardd's IPAM, the default route via the network's gateway.
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], netns_path(&ns1));
    assert_eq!(
        r1["ips"][0],
        json!({"address": "10.81.0.2/24", "gateway": "10.81.0.1", "interface": 0})
    );
    assert_eq!(
        r1["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.81.0.1"}])
    );
    let c1 = container(&ns1, &r1);
    assert_eq!(
        c1.mac().to_string(),
        r1["interfaces"][0]["mac"].as_str().unwrap(),
        "the reported MAC is the container's"
    );
    // The network was created on first use, as configured.
    let net = lab.ctl_json(&["net", "inspect", "cninet"]);
    assert_eq!(
        (net["subnet"].as_str(), net["masquerade"].as_bool()),
        (Some("10.81.0.0/24"), Some(true))
    );

    // A second container, in 0.4.0: the result carries the IP version.
    let conf04 = {
        let mut c = conf.clone();
        c["cniVersion"] = json!("0.4.0");
        c
    };
    let r2 = cni("ADD", "c0ffee02", &netns_path(&ns2), "eth0", &conf04)
        .ok()
        .unwrap();
    assert_eq!(r2["cniVersion"], "0.4.0");
    assert_eq!(r2["ips"][0]["version"], "4");
    assert_eq!(r2["ips"][0]["address"], "10.81.0.3/24");
    let c2 = container(&ns2, &r2);
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c2, Ipv4Addr::new(10, 81, 0, 1));

    // CHECK with ADD's result passes; with another address it fails.
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    assert!(cni("CHECK", "c0ffee01", &netns_path(&ns1), "eth0", &check)
        .ok()
        .is_none());
    let mut wrong = check.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.81.0.9/24");
    let (code, msg) = cni("CHECK", "c0ffee01", &netns_path(&ns1), "eth0", &wrong).error();
    assert_eq!(code, 101, "{msg}");
    assert!(
        msg.contains("has address 10.81.0.2/24, prevResult says 10.81.0.9/24"),
        "{msg}"
    );

    // DEL removes the port and its address; a second DEL still succeeds.
    let mut del = conf.clone();
    del["prevResult"] = r1.clone();
    cni("DEL", "c0ffee01", &netns_path(&ns1), "eth0", &del).ok();
    assert!(!lab.port_names().iter().any(|p| p.contains("c0ffee01")));
    let out = in_ns_ok(&ns1, &["ip", "-o", "link"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("eth0"));
    cni("DEL", "c0ffee01", &netns_path(&ns1), "eth0", &del).ok();
    let (code, _) = cni("CHECK", "c0ffee01", &netns_path(&ns1), "eth0", &check).error();
    assert_eq!(code, 101);
    // The address is free again.
    let r3 = cni("ADD", "c0ffee03", &netns_path(&ns1), "eth0", &conf)
        .ok()
        .unwrap();
    assert_eq!(r3["ips"][0]["address"], "10.81.0.2/24");

    // DEL after the namespace is gone still succeeds and removes the port.
    run_ok(&["ip", "netns", "del", &ns2]);
    cni("DEL", "c0ffee02", &netns_path(&ns2), "eth0", &conf04).ok();
    assert!(!lab.port_names().iter().any(|p| p.contains("c0ffee02")));

    let version = cni_raw("VERSION", "", "", "", br#"{"cniVersion":"1.0.0"}"#)
        .ok()
        .unwrap();
    assert_eq!(version["cniVersion"], "1.0.0");
    let supported = version["supportedVersions"].as_array().unwrap();
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(supported.contains(&json!(v)), "{version}");
    }
}

#[test]
fn failures_are_cni_error_objects_with_the_spec_codes() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    let good = conf(&lab, "1.0.0", json!({}));
    let path = netns_path(&ns);

    let (code, msg) = cni("ADD", "e1", "/run/netns/yard-cni-no-such-ns", "eth0", &good).error();
    assert_eq!(code, 3, "{msg}");
    assert!(
        msg.contains("/run/netns/yard-cni-no-such-ns does not exist"),
        "{msg}"
    );

    let (code, msg) = cni_raw("ADD", "e1", &path, "eth0", b"{\"cniVersion\": ").error();
    assert_eq!(code, 6, "{msg}");

    let mut future = good.clone();
    future["cniVersion"] = json!("2.0.0");
    let (code, msg) = cni("ADD", "e1", &path, "eth0", &future).error();
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("CNI version 2.0.0 is not supported"), "{msg}");

    let mut no_vlan = good.clone();
    no_vlan["vlan"] = json!("ten");
    assert_eq!(cni("ADD", "e1", &path, "eth0", &no_vlan).error().0, 7);

    // Nothing was created by the refused calls.
    assert!(lab.port_names().is_empty(), "{:?}", lab.port_names());

    // yardd not running: the message names the socket tried; DEL too fails
    // (the runtime retries), nothing is guessed.
    let socket = lab.socket().to_path_buf();
    lab.stop(nix::sys::signal::Signal::SIGTERM);
    let (code, msg) = cni("ADD", "e1", &path, "eth0", &good).error();
    assert_eq!(code, 11, "{msg}");
    assert!(
        msg.contains(&format!("yardd is not reachable at {}", socket.display())),
        "{msg}"
    );
    assert_eq!(cni("DEL", "e1", &path, "eth0", &good).error().0, 11);
    assert_eq!(cni("STATUS", "", "", "", &good).error().0, 50);
    lab.start();
    assert!(cni("STATUS", "", "", "", &good).ok().is_none());
}

#[test]
fn port_mappings_are_published_and_removed_on_del() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    let mut conf = conf(
        &lab,
        "1.0.0",
        json!({"capabilities": {"portMappings": true}}),
    );
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""}
    ]});
    cni("ADD", "web1", &netns_path(&ns), "eth0", &conf)
        .ok()
        .unwrap();
    let rules = lab.ctl_json(&["publish", "ls"]);
    let mut listed: Vec<String> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        ["5353:cni-web1-eth0:53/udp", "8080:cni-web1-eth0:80/tcp"]
    );
    // A mapping yardd refuses (the host port is taken) undoes the ADD.
    let ns2 = lab.netns();
    let (code, msg) = cni("ADD", "web2", &netns_path(&ns2), "eth0", &conf).error();
    assert_eq!(code, 100, "{msg}");
    assert!(!lab.port_names().contains(&"cni-web2-eth0".to_string()));

    cni("DEL", "web1", &netns_path(&ns), "eth0", &conf).ok();
    assert_eq!(lab.ctl_json(&["publish", "ls"]), json!([]));
    assert!(lab.port_names().is_empty());
}

#[test]
fn delegated_ipam_with_host_local() {
    if !require(&[]) {
        return;
    }
    let host_local = Path::new(CNI_PLUGIN_DIR).join("host-local");
    if !host_local.is_file() {
        let why = format!(
            "{} is not installed (containernetworking-plugins)",
            host_local.display()
        );
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::new();
    let (ns1, ns2) = (lab.netns(), lab.netns());
    let data: PathBuf = lab.dir().join("host-local");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "delegated",
        "type": "yard-cni",
        "socket": lab.socket(),
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.82.0.0/24", "gateway": "10.82.0.1"}]],
            "dataDir": data,
        },
        "dns": {"nameservers": ["10.82.0.1"]},
    });
    let r1 = cni("ADD", "d1", &netns_path(&ns1), "eth0", &conf)
        .ok()
        .unwrap();
    let r2 = cni("ADD", "d2", &netns_path(&ns2), "eth0", &conf)
        .ok()
        .unwrap();
    assert_eq!(r1["ips"][0]["address"], "10.82.0.2/24");
    assert_eq!(r2["ips"][0]["address"], "10.82.0.3/24");
    assert_eq!(r1["dns"]["nameservers"], json!(["10.82.0.1"]));
    // yardd's network was created from what host-local gave.
    let net = lab.ctl_json(&["net", "inspect", "delegated"]);
    assert_eq!(
        (net["subnet"].as_str(), net["gateway"].as_str()),
        (Some("10.82.0.0/24"), Some("10.82.0.1"))
    );
    let lease = data.join("delegated").join("10.82.0.2");
    assert!(
        lease.is_file(),
        "host-local holds no lease at {}",
        lease.display()
    );
    lab.ping_ok(&container(&ns1, &r1), Ipv4Addr::new(10, 82, 0, 3));
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    cni("CHECK", "d1", &netns_path(&ns1), "eth0", &check).ok();
    // DEL releases host-local's lease too.
    cni("DEL", "d1", &netns_path(&ns1), "eth0", &check).ok();
    assert!(!lease.exists(), "host-local's lease survived DEL");
    cni("DEL", "d1", &netns_path(&ns1), "eth0", &check).ok();
}

/// The plugin entry of a configuration list as a runtime hands it over:
/// the list's `name` and `cniVersion` added.
fn plugin_conf(list: &Value, index: usize) -> Value {
    let mut conf = list["plugins"][index].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf
}

#[test]
fn the_example_conflist_works_as_is() {
    if !require(&["ping"]) {
        return;
    }
    let path = yard_tests::bins::workspace_root().join("cni/switchyard.conflist");
    let text = std::fs::read_to_string(&path).expect("cni/switchyard.conflist exists");
    let list: Value = serde_json::from_str(&text).expect("the example is JSON");
    assert_eq!(list["plugins"][0]["type"], "yard-cni");
    assert_eq!(list["plugins"][0]["capabilities"]["portMappings"], true);
    // As is, except for the socket: this lab's yardd is not on the default one.
    assert!(list["plugins"][0].get("socket").is_none());
    let mut lab = Lab::new();
    let mut conf = plugin_conf(&list, 0);
    conf["socket"] = json!(lab.socket());
    let mut published = conf.clone();
    published["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]});
    let (ns1, ns2) = (lab.netns(), lab.netns());
    let r1 = cni("ADD", "ex1", &netns_path(&ns1), "eth0", &published)
        .ok()
        .unwrap();
    let r2 = cni("ADD", "ex2", &netns_path(&ns2), "eth0", &conf)
        .ok()
        .unwrap();
    // yardd's default network yard0, with its own addresses.
    assert_eq!(r1["ips"][0]["address"], "172.30.0.2/16");
    assert_eq!(r1["ips"][0]["gateway"], "172.30.0.1");
    lab.ping_ok(&container(&ns1, &r1), container(&ns2, &r2).ip);
    assert_eq!(
        lab.ctl_json(&["publish", "ls"])[0]["rule"],
        "8081:cni-ex1-eth0:80/tcp"
    );
    cni("DEL", "ex1", &netns_path(&ns1), "eth0", &conf).ok();
    cni("DEL", "ex2", &netns_path(&ns2), "eth0", &conf).ok();
    assert!(lab.port_names().is_empty());
}

#[test]
fn gc_removes_only_attachments_the_runtime_forgot() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let (ns1, ns2) = (lab.netns(), lab.netns());
    let conf = conf(&lab, "1.1.0", json!({}));
    cni("ADD", "keep1", &netns_path(&ns1), "eth0", &conf).ok();
    cni("ADD", "gone1", &netns_path(&ns2), "eth0", &conf).ok();
    // A port of the same network not made by the plugin is never touched.
    let ns3 = lab.netns();
    lab.ctl_ok(&[
        "port", "add", "manual", "--net", "cninet", "--tap", "--netns", &ns3,
    ]);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep1", "ifname": "eth0"}]);
    cni_raw("GC", "", "", "", gc.to_string().as_bytes()).ok();
    let mut ports = lab.port_names();
    ports.sort();
    assert_eq!(ports, ["cni-keep1-eth0", "manual"]);
}

#[test]
fn a_port_whose_namespace_goes_before_del_is_removed_and_del_still_succeeds() {
    if !require(&[]) {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.netns();
    let conf = conf(&lab, "1.0.0", json!({}));
    let result = cni("ADD", "dead0001", &netns_path(&ns), "eth0", &conf)
        .ok()
        .expect("ADD prints a result");
    assert_eq!(result["ips"][0]["address"], "10.81.0.2/24");
    assert!(lab.port_names().iter().any(|p| p.contains("dead0001")));

    // The runtime tears the sandbox down before it runs DEL (or crashed and
    // never will): the engine's port goes with the namespace, not down.
    run_ok(&["ip", "netns", "del", &ns]);
    let gone = yard_tests::cmd::poll(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || !lab.port_names().iter().any(|p| p.contains("dead0001")),
    );
    assert!(
        gone,
        "the plugin's port outlived its namespace: {:#}",
        lab.ctl_json(&["port", "ls"])
    );
    let mut del = conf.clone();
    del["prevResult"] = result;
    cni("DEL", "dead0001", &netns_path(&ns), "eth0", &del).ok();
    // Its address is free again.
    let ns2 = lab.netns();
    let again = cni("ADD", "dead0002", &netns_path(&ns2), "eth0", &conf)
        .ok()
        .expect("ADD prints a result");
    assert_eq!(again["ips"][0]["address"], "10.81.0.2/24");
}
