//! Docker with Switchyard's network driver: a private dockerd (its own data
//! root, exec root and socket, `--iptables=false --bridge=none
//! --storage-driver=vfs`) finds `yard-docker` under /run/docker/plugins by a
//! unique driver name, and a local image made from busybox-static's binary
//! (there is no registry) runs on the networks it creates.
//!
//! Covered: `docker network create -d` makes a yardd network from Docker's
//! IPAM data; two containers ping each other by address and by name
//! (Docker's embedded DNS) and the gateway, and reach an outside namespace
//! through SNAT; `-p 8080:80` serves a client in the outside namespace,
//! which the server sees with its own address, and `docker stop` closes it;
//! `docker restart`, a yardd restart under running containers, `docker rm
//! -f` and `docker network rm` leave no ghost port or network;
//! `enable_icc=false` keeps containers apart, and `yardctl link add` opens
//! one pair on one port (kept across a yardd restart) until `link rm`;
//! `yardctl rule add` denies on a Docker network stop a container's new
//! connections to another container and to 169.254.169.254 outside, and
//! `rule ls` counts the hits.
//!
//! Needs root, dockerd and busybox-static; under `CI=true` missing ones
//! fail the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;
use yard_tests::bins::bins;
use yard_tests::cmd::{describe, end_child, output, poll, run, stdout, timed};
use yard_tests::image::{busybox_tar, BUSYBOX};
use yard_tests::nat::{tcp_peer_server, NatLab, OUTSIDE_IP, UPLINK_IP};
use yard_tests::netns::unique_name;
use yard_tests::require;

/// Where dockerd looks for plugins (fixed).
const PLUGIN_DIR: &str = "/run/docker/plugins";

/// A private dockerd and the driver it uses, under a unique driver name.
/// `Drop` removes the containers and networks, stops both by the pids
/// spawned and removes the driver's socket.
struct Docker {
    dir: TempDir,
    dockerd: Option<Child>,
    driver: Option<Child>,
    /// The driver's name for `docker network create -d`.
    name: String,
    image: String,
}

impl Docker {
    fn start(yardd_socket: &Path) -> Docker {
        let dir = tempfile::Builder::new()
            .prefix("yard-docker-")
            .tempdir()
            .expect("temp dir for dockerd");
        let name = unique_name("yd");
        let plugin = PathBuf::from(PLUGIN_DIR).join(format!("{name}.sock"));
        let driver = Command::new(&bins().yard_docker)
            .arg("--plugin-socket")
            .arg(&plugin)
            .arg("--socket")
            .arg(yardd_socket)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("driver.log")).unwrap())
            .spawn()
            .expect("start yard-docker");
        let root = dir.path();
        let dockerd = Command::new("dockerd")
            .arg("-H")
            .arg(format!("unix://{}", root.join("docker.sock").display()))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
                "--default-ulimit",
                "nofile=20000:20000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd");
        let docker = Docker {
            dir,
            dockerd: Some(dockerd),
            driver: Some(driver),
            name,
            image: format!("{}:test", unique_name("ybox")),
        };
        let up = poll(Duration::from_secs(30), Duration::from_millis(200), || {
            docker.run(&["info"]).status.success() && plugin.exists()
        });
        assert!(
            up,
            "dockerd or the driver did not come up:\n{}",
            docker.logs()
        );
        let tar = busybox_tar(docker.dir.path());
        docker.ok(&["import", &tar.display().to_string(), &docker.image.clone()]);
        docker
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        format!(
            "--- dockerd.log ---\n{}\n--- driver.log ---\n{}",
            tail(read("dockerd.log")),
            tail(read("driver.log"))
        )
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = timed(120, "docker");
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.path().join("docker.sock").display()),
        )
        .args(args);
        output(&mut cmd)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}\n{}",
            describe(&format!("docker {}", args.join(" ")), &out),
            self.logs()
        );
        stdout(&out).trim().to_string()
    }

    /// `docker run -d` on `net`; returns the container id.
    fn start_container(&self, name: &str, net: &str, extra: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name, "--network", net];
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    fn ping_ok(&self, from: &str, to: &str) {
        let out = self.run(&["exec", from, "ping", "-c", "2", "-W", "1", "-w", "10", to]);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("docker exec {from} ping {to}"), &out)
        );
    }

    fn ping_fails(&self, from: &str, to: &str) {
        let out = self.run(&["exec", from, "ping", "-c", "2", "-W", "1", "-w", "4", to]);
        assert!(
            !out.status.success(),
            "{from} reached {to}:\n{}",
            stdout(&out)
        );
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = stdout(&self.run(&["ps", "-aq"])).to_string();
        for id in ids.split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        let _ = self.run(&["network", "prune", "-f"]);
        if let Some(child) = self.dockerd.take() {
            end_child(child, Duration::from_secs(15));
        }
        if let Some(child) = self.driver.take() {
            end_child(child, Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(PathBuf::from(PLUGIN_DIR).join(format!("{}.sock", self.name)));
        let exec = self.dir.path().join("exec");
        let _ = run(&["umount", "-R", "-l", &exec.display().to_string()]);
    }
}

fn docker_ports(lab: &NatLab) -> Vec<String> {
    lab.port_names()
        .into_iter()
        .filter(|p| p.starts_with("docker-"))
        .collect()
}

fn docker_networks(lab: &NatLab) -> Vec<String> {
    lab.ctl_json(&["net", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("docker-"))
        .collect()
}

fn ready() -> bool {
    if !require(&["dockerd", "docker", "socat", "curl"]) {
        return false;
    }
    if !Path::new(BUSYBOX).is_file() {
        let why = format!("{BUSYBOX} is missing (busybox-static)");
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
        println!("skipped: {why}");
        return false;
    }
    true
}

#[test]
fn docker_containers_on_a_switchyard_network() {
    if !ready() {
        return;
    }
    let mut lab = NatLab::new();
    let docker = Docker::start(lab.socket());
    let net = unique_name("ydnet");
    let id = docker.ok(&[
        "network",
        "create",
        "-d",
        &docker.name,
        "--subnet",
        "10.91.0.0/24",
        &net,
    ]);
    let yard_net = format!("docker-{}", &id[..12]);
    let inspect = lab.ctl_json(&["net", "inspect", &yard_net]);
    assert_eq!(
        (inspect["subnet"].as_str(), inspect["gateway"].as_str()),
        (Some("10.91.0.0/24"), Some("10.91.0.1")),
        "{inspect:#}"
    );

    let (a1, a2) = (unique_name("yda"), unique_name("yda"));
    docker.start_container(&a1, &net, &[], &["sleep", "600"]);
    docker.start_container(&a2, &net, &[], &["sleep", "600"]);
    assert_eq!(docker_ports(&lab).len(), 2, "{:?}", lab.port_names());
    docker.ping_ok(&a1, &a2);
    docker.ping_ok(&a2, &a1);
    docker.ping_ok(&a1, "10.91.0.1");

    // Out through SNAT: the outside sees the uplink's address.
    lab.assert_outside_sees_the_uplink(|args| {
        let mut full = vec!["exec", &a1];
        full.extend_from_slice(args);
        docker.ok(&full)
    });

    // -p 8080:80 from the outside; the server sees the client's address.
    let web = unique_name("ydw");
    docker.start_container(
        &web,
        &net,
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let url = format!("http://{UPLINK_IP}:8080/cgi-bin/peer");
    assert_eq!(
        lab.web_peer_from_outside(&url),
        Some(OUTSIDE_IP),
        "the server behind {url} did not see the outside client"
    );
    // docker stop closes it again: no published port, no port.
    docker.ok(&["stop", "-t", "0", &web]);
    assert_eq!(lab.ctl_json(&["publish", "ls"]), serde_json::json!([]));
    assert_eq!(docker_ports(&lab).len(), 2, "{:?}", lab.port_names());
    docker.ok(&["rm", &web]);

    // docker restart: back on the network, nothing left of the old endpoint.
    docker.ok(&["restart", "-t", "0", &a2]);
    assert_eq!(docker_ports(&lab).len(), 2, "{:?}", lab.port_names());
    docker.ping_ok(&a1, &a2);

    // A yardd restart under running containers keeps them on the network.
    lab.stop(Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    docker.ping_ok(&a1, &a2);
    docker.ping_ok(&a2, "10.91.0.1");

    // docker rm -f and docker network rm leave nothing behind.
    let veths: Vec<String> = lab
        .ctl_json(&["port", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "veth")
        .flat_map(|p| {
            let end = |key: &str| p[key].as_str().unwrap().to_string();
            [end("ifname"), end("peer")]
        })
        .collect();
    assert_eq!(veths.len(), 4, "two containers' veth pairs");
    docker.ok(&["rm", "-f", &a1, &a2]);
    assert!(docker_ports(&lab).is_empty(), "{:?}", lab.port_names());
    docker.ok(&["network", "rm", &net]);
    assert!(
        docker_networks(&lab).is_empty(),
        "{:?}",
        docker_networks(&lab)
    );
    for ifname in &veths {
        let out = run(&["ip", "link", "show", ifname]);
        assert!(!out.status.success(), "veth {ifname} left behind");
    }
}

#[test]
fn an_icc_false_network_keeps_its_containers_apart_until_linked() {
    if !ready() {
        return;
    }
    let mut lab = NatLab::new();
    let docker = Docker::start(lab.socket());
    let net = unique_name("ydicc");
    docker.ok(&[
        "network",
        "create",
        "-d",
        &docker.name,
        "--subnet",
        "10.92.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        &net,
    ]);
    let (b1, b2) = (unique_name("ydb"), unique_name("ydb"));
    docker.start_container(&b1, &net, &[], &["sleep", "600"]);
    docker.start_container(&b2, &net, &[], &["sleep", "600"]);
    let inspect = lab.ctl_json(&["net", "ls"]);
    let yard_net = inspect
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["subnet"] == "10.92.0.0/24")
        .unwrap_or_else(|| panic!("no yardd network for {net}: {inspect:#}"));
    assert_eq!(yard_net["icc"], false, "{yard_net:#}");
    docker.ping_fails(&b1, &b2);
    // Each still reaches its gateway.
    docker.ping_ok(&b1, "10.92.0.1");

    // yardctl link add: b1 reaches b2's web server (80/tcp), and only that.
    docker.ok(&["exec", "-d", &b2, "httpd", "-p", "80", "-h", "/www"]);
    docker.ok(&["exec", "-d", &b1, "httpd", "-p", "80", "-h", "/www"]);
    let (p1, p2) = (port_of(&lab, &docker, &b1), port_of(&lab, &docker, &b2));
    let ip2 = docker.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &b2,
    ]);
    let ip1 = docker.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &b1,
    ]);
    // busybox's nc, not its wget (which crashes in the static build).
    let fetch = |from: &str, ip: &str| {
        let get = format!("printf 'GET /cgi-bin/peer HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80");
        let out = docker.run(&["exec", from, "sh", "-c", &get]);
        stdout(&out).contains("200 OK")
    };
    assert!(!fetch(&b1, &ip2), "b1 reached b2 before any link");
    lab.ctl_ok(&["link", "add", &p1, &p2, "--ports", "80/tcp"]);
    let links = lab.ctl_json(&["link", "ls"]);
    assert_eq!(links[0]["ports"][0]["port"], 80, "{links:#}");
    assert!(fetch(&b1, &ip2), "the link does not let b1 reach b2:80");
    assert!(!fetch(&b2, &ip1), "the link let b2 reach b1");
    docker.ping_fails(&b1, &b2);
    // Kept across a yardd restart.
    lab.stop(Signal::SIGTERM);
    lab.start();
    lab.wait_ports_up(Duration::from_secs(15));
    assert!(fetch(&b1, &ip2), "the link was lost in a restart");
    // link rm isolates them again.
    lab.ctl_ok(&["link", "rm", &p2, &p1]);
    assert!(!fetch(&b1, &ip2), "b1 still reaches b2 after link rm");
}

#[test]
fn rules_on_a_docker_network_stop_new_connections_and_count_hits() {
    if !ready() {
        return;
    }
    let lab = NatLab::new();
    lab.add_outside_address(std::net::Ipv4Addr::new(169, 254, 169, 254));
    let _metadata = tcp_peer_server(&lab.outside, None, 80);
    let docker = Docker::start(lab.socket());
    let net = unique_name("ydrule");
    let id = docker.ok(&[
        "network",
        "create",
        "-d",
        &docker.name,
        "--subnet",
        "10.93.0.0/24",
        &net,
    ]);
    let yard_net = format!("docker-{}", &id[..12]);
    let (d1, d2) = (unique_name("ydr"), unique_name("ydr"));
    docker.start_container(&d1, &net, &[], &["sleep", "600"]);
    docker.start_container(&d2, &net, &[], &["sleep", "600"]);
    docker.ok(&["exec", "-d", &d2, "httpd", "-p", "80", "-h", "/www"]);
    let p2 = port_of(&lab, &docker, &d2);
    let ip2 = docker.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &d2,
    ]);
    // busybox's nc: an answer from the server, within 3 s.
    let answered = |ip: &str, request: &str| {
        let ask = format!("printf '{request}' | nc -w 3 {ip} 80");
        let out = docker.run(&["exec", &d1, "sh", "-c", &ask]);
        !stdout(&out).trim().is_empty()
    };
    let web = "GET /cgi-bin/peer HTTP/1.0\\r\\n\\r\\n";
    assert!(answered(&ip2, web), "d1 does not reach d2's web server");
    assert!(
        answered("169.254.169.254", ""),
        "d1 does not reach 169.254.169.254"
    );

    lab.ctl_ok(&["rule", "add", &yard_net, "--to", "169.254.169.254", "deny"]);
    lab.ctl_ok(&[
        "rule", "add", &yard_net, "--to", &p2, "--proto", "tcp", "--dport", "80", "deny",
    ]);
    assert!(!answered(&ip2, web), "d1 reached d2:80 through a deny");
    assert!(
        !answered("169.254.169.254", ""),
        "d1 reached 169.254.169.254 through a deny"
    );
    docker.ping_ok(&d1, &d2);
    let rules = lab.ctl_json(&["rule", "ls", &yard_net]);
    for rule in rules.as_array().unwrap() {
        assert!(rule["hits"].as_u64().unwrap() >= 1, "{rules:#}");
    }
    let drops = lab.stats(&port_of(&lab, &docker, &d1)).drops;
    assert!(drops.get("rule-deny").is_some_and(|n| *n > 0), "{drops:?}");
}

/// The yardd port of container `name` (Docker's endpoint), found by its address.
fn port_of(lab: &NatLab, docker: &Docker, name: &str) -> String {
    let ip = docker.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    let ports = lab.ctl_json(&["port", "ls"]);
    ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["ip"]
                .as_str()
                .is_some_and(|a| a.split('/').next() == Some(ip.as_str()))
        })
        .unwrap_or_else(|| panic!("no port has {name}'s address {ip}: {ports:#}"))["name"]
        .as_str()
        .unwrap()
        .to_string()
}
