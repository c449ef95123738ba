//! podman with its CNI backend putting containers on a yardd network
//! through `yard-cni`: a private `containers.conf` (CNI backend, the plugin
//! under test first on the plugin path, a private network configuration
//! directory), a private storage root in a temp dir, and a local image made
//! from busybox-static's binary (there is no registry).
//!
//! Covered: `podman network ls` lists the plugin's network; two containers
//! ping each other and the gateway by address and reach an outside
//! namespace through SNAT (the outside sees the uplink's address); `-p
//! 8080:80` reaches a server in a container from the outside with the
//! client's own address seen; `podman stop` and `podman rm` remove the
//! ports (CNI DEL), `podman restart` gives a working port again; restarting
//! yardd while containers run keeps them on the network.
//!
//! Needs root, podman, runc and busybox-static (`/bin/busybox`); without
//! them it prints why and returns (under `CI=true` it fails instead).

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tempfile::TempDir;
use yard_tests::bins::bins;
use yard_tests::cmd::{describe, output, stdout, timed};
use yard_tests::image::{busybox_tar, BUSYBOX};
use yard_tests::nat::{NatLab, OUTSIDE_IP, UPLINK_IP, WEB_GATEWAY};
use yard_tests::netns::unique_name;
use yard_tests::require;

/// A private podman: its own configuration, storage and network directory.
/// `Drop` removes every container it made (which runs CNI DEL), then the
/// image and the directories.
struct Podman {
    dir: TempDir,
    image: String,
}

impl Podman {
    /// Writes `containers.conf`, puts `yard-cni` on the plugin path and
    /// imports the busybox image.
    fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("yard-podman-")
            .tempdir()
            .expect("temp dir for podman");
        let root = dir.path();
        let plugins = root.join("plugins");
        for sub in ["plugins", "net.d", "root", "run", "tmp"] {
            fs::create_dir_all(root.join(sub)).expect("podman dir");
        }
        symlink(&bins().yard_cni, plugins.join("yard-cni")).expect("link yard-cni");
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{plugins}\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{netd}\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
            plugins = plugins.display(),
            netd = root.join("net.d").display(),
        );
        fs::write(root.join("containers.conf"), conf).expect("write containers.conf");
        let mut podman = Podman {
            dir,
            image: format!("localhost/{}:test", unique_name("ybox")),
        };
        podman.import_busybox();
        podman
    }

    fn command(&self, args: &[&str]) -> Command {
        let root = self.dir.path();
        let mut cmd = timed(120, "podman");
        cmd.env("CONTAINERS_CONF", root.join("containers.conf"))
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .arg("--tmpdir")
            .arg(root.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        output(&mut self.command(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("podman {}", args.join(" ")), &out)
        );
        stdout(&out).trim().to_string()
    }

    /// Imports the busybox image.
    fn import_busybox(&mut self) {
        let tar = busybox_tar(self.dir.path());
        self.ok(&["import", &tar.display().to_string(), &self.image]);
    }

    /// Writes the network's configuration list for the plugin.
    fn add_network(&self, name: &str, plugin: Value) {
        let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]});
        fs::write(
            self.dir
                .path()
                .join("net.d")
                .join(format!("{name}.conflist")),
            serde_json::to_string_pretty(&list).unwrap(),
        )
        .expect("write the conflist");
    }

    /// `podman run -d` on `net` with `extra` options; returns the id.
    fn start(&self, name: &str, net: &str, extra: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name, "--network", net];
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    /// The address the container's `eth0` has, read inside it.
    fn address(&self, name: &str) -> Ipv4Addr {
        let text = self.ok(&["exec", name, "ip", "addr", "show", "eth0"]);
        let cidr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address on {name}'s eth0: {text}"));
        cidr.split('/')
            .next()
            .unwrap()
            .parse()
            .expect("an IPv4 address")
    }

    fn ping_ok(&self, from: &str, to: Ipv4Addr) {
        let out = self.run(&[
            "exec",
            from,
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-w",
            "10",
            &to.to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("podman exec {from} ping {to}"), &out)
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Removing the containers runs CNI DEL; the image goes with the
        // storage directory.
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["rmi", "-af"]);
    }
}

/// The yardd port of a container's `eth0`, as yard-cni names it.
fn port_of(id: &str) -> String {
    format!("cni-{}-eth0", &id[..16])
}

/// Whether `tool` is an executable file or on PATH.
fn have(tool: &str) -> bool {
    Path::new(tool).is_file() || yard_tests::cmd::have(tool)
}

#[test]
fn podman_containers_on_a_yardd_network() {
    if !require(&["podman", "runc", "socat", "curl"]) {
        return;
    }
    if !have(BUSYBOX) {
        let why = format!("{BUSYBOX} is missing (busybox-static)");
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
        println!("skipped: {why}");
        return;
    }
    // NatLab: an outside namespace behind the uplink, and network `web`
    // (masquerade on) that the containers join.
    let mut lab = NatLab::new();
    let podman = Podman::new();
    let net = unique_name("ypod");
    podman.add_network(
        &net,
        json!({
            "type": "yard-cni",
            "socket": lab.socket(),
            "network": "web",
            "capabilities": {"portMappings": true},
        }),
    );
    let listed = podman.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        listed.lines().any(|l| l == net),
        "podman network ls: {listed}"
    );

    let c1 = unique_name("yc");
    let c2 = unique_name("yc");
    let id1 = podman.start(&c1, &net, &[], &["sleep", "600"]);
    let id2 = podman.start(&c2, &net, &[], &["sleep", "600"]);
    let ports = lab.port_names();
    assert!(
        ports.contains(&port_of(&id1)) && ports.contains(&port_of(&id2)),
        "{ports:?}"
    );
    let (ip1, ip2) = (podman.address(&c1), podman.address(&c2));
    podman.ping_ok(&c1, ip2);
    podman.ping_ok(&c2, ip1);
    podman.ping_ok(&c1, WEB_GATEWAY);

    // Out through SNAT: the outside sees the uplink's address.
    lab.assert_outside_sees_the_uplink(|args| {
        let mut full = vec!["exec", &c1];
        full.extend_from_slice(args);
        podman.ok(&full)
    });

    // -p 8080:80 reaches a server in a container, which sees the client.
    let web = unique_name("yc");
    let web_id = podman.start(
        &web,
        &net,
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let rules = lab.ctl_json(&["publish", "ls"]);
    assert_eq!(
        rules[0]["rule"],
        format!("8080:{}:80/tcp", port_of(&web_id)),
        "{rules:#}"
    );
    let url = format!("http://{UPLINK_IP}:8080/cgi-bin/peer");
    assert_eq!(
        lab.web_peer_from_outside(&url),
        Some(OUTSIDE_IP),
        "the server behind {url} did not see the outside client"
    );

    // podman stop: CNI DEL removes the port and the published port.
    podman.ok(&["stop", "-t", "0", &web]);
    assert!(!lab.port_names().contains(&port_of(&web_id)));
    assert_eq!(lab.ctl_json(&["publish", "ls"]), json!([]));
    podman.ok(&["rm", &web]);

    // podman restart: a working port again.
    podman.ok(&["restart", "-t", "0", &c2]);
    assert!(lab.port_names().contains(&port_of(&id2)));
    let ip2 = podman.address(&c2);
    podman.ping_ok(&c1, ip2);

    // Restarting yardd while the containers run keeps them on the network.
    lab.stop(Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    podman.ping_ok(&c1, ip2);
    podman.ping_ok(&c2, WEB_GATEWAY);

    // podman rm removes the ports.
    podman.ok(&["rm", "-f", "-t", "0", &c1, &c2]);
    let left: Vec<String> = lab
        .port_names()
        .into_iter()
        .filter(|p| p.starts_with("cni-"))
        .collect();
    assert!(left.is_empty(), "ports left after podman rm: {left:?}");
}
