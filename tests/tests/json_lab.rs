//! `--json` that programs can rely on (docs/JSON.md): every object key of
//! every read command's output, against a yardd with networks, ports, a
//! link, a firewall rule, a published port, tracked connections and a
//! trace, is snake_case
//! (counter names and drop reasons included), and a state is one level —
//! `"state": "up"` or `"state": "down"` with `"reason"` beside it — never
//! an object.
//!
//! Needs root (without it the test prints why and returns).

use yard_tests::{require, Lab};

/// Object keys that break the convention, with their path.
fn bad_keys(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let snake = key.starts_with(|c: char| c.is_ascii_lowercase())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !snake {
                    found.push(format!("{path}.{key}: not snake_case"));
                }
                if key == "state" && !inner.is_string() && !inner.is_null() {
                    found.push(format!("{path}.state: {inner} is not a plain state"));
                }
                bad_keys(inner, &format!("{path}.{key}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                bad_keys(inner, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_listing_has_snake_case_keys_and_flat_states() {
    if !require(&["ping"]) {
        return;
    }
    let mut lab = Lab::new();
    lab.ctl_ok(&["net", "create", "web", "--subnet", "10.91.0.0/24"]);
    lab.ctl_ok(&[
        "net",
        "create",
        "iso",
        "--subnet",
        "10.92.0.0/24",
        "--no-icc",
    ]);
    lab.ctl_ok(&["net", "connect", "web", "iso"]);
    let c1 = lab.tap("c1", "web", "10.91.0.2/24", &[]);
    let c2 = lab.tap("c2", "web", "10.91.0.3/24", &[]);
    let c3 = lab.tap("c3", "iso", "10.92.0.2/24", &[]);
    lab.tap("c4", "iso", "10.92.0.3/24", &[]);
    lab.ctl_ok(&["link", "add", "c3", "c4"]);
    lab.ctl_ok(&[
        "rule", "add", "web", "--to", "outside", "--proto", "tcp", "--dport", "25", "deny",
    ]);
    // No uplink: the published port is down, with its reason.
    lab.ctl_ok(&["publish", "add", "8080:c1:80/tcp"]);
    lab.ping_ok(&c1, c2.ip);
    lab.ping_ok(&c1, c3.ip);

    let mut found = Vec::new();
    let commands: [&[&str]; 16] = [
        &["status"],
        &["net", "ls"],
        &["net", "inspect", "web"],
        &["port", "ls"],
        &["port", "stats"],
        &["fdb", "show"],
        &["mdb", "show"],
        &["uplink", "ls"],
        &["publish", "ls"],
        &["link", "ls"],
        &["rule", "ls"],
        &["conntrack", "ls"],
        &["conntrack", "stats"],
        &["conntrack", "set"],
        &["topology"],
        &["trace", "--in", "c1", "icmp 10.91.0.2 > 10.92.0.2"],
    ];
    for args in commands {
        let json = lab.ctl_json(args);
        bad_keys(
            &json,
            &format!("yardctl --json {}", args.join(" ")),
            &mut found,
        );
    }
    assert!(found.is_empty(), "{}", found.join("\n"));

    // What the checks above rely on was there to check.
    let publish = lab.ctl_json(&["publish", "ls"]);
    assert_eq!(publish[0]["state"], "down", "{publish:#}");
    assert!(publish[0]["reason"].is_string(), "{publish:#}");
    let stats = lab.ctl_json(&["conntrack", "stats"]);
    assert!(
        stats["counters"]["gw_forwarded"].as_u64() > Some(0),
        "{stats:#}"
    );
    assert!(stats["by_state"]["replied"].as_u64() > Some(0), "{stats:#}");
}
