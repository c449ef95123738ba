//! Where a client that is not root may attach: only into network namespaces
//! its own user owns.
//!
//! A member of `--group` must not be able to make yardd (root) put a TAP, an
//! address and a default route into the host's namespace or anyone else's.
//! So for a client whose uid is neither 0 nor yardd's own, a TAP port or TAP
//! uplink is accepted only in a namespace whose owning user namespace
//! belongs to the client's uid (`NS_GET_USERNS` + `NS_GET_OWNER_UID`), never
//! in yardd's own namespace; interfaces of yardd's namespace (`--iface`,
//! `--trunk`, an `--iface` uplink) are root's. Tunnel ports open sockets
//! only and stay allowed.
//!
//! Contract: a pure check before the request is handled; it opens the
//! namespace file once and closes it. A non-root client must name the
//! namespace as `/proc/PID/ns/net` (or `/proc/PID/task/TID/ns/net`) or by a
//! name under `/run/netns`: every component of those paths is the kernel's
//! or root's, so the namespace checked is the one attached unless the pid
//! is reused in between — a path elsewhere (a symlink of the client's)
//! could be swapped between the check and the attach.

use yard_ctl::api::{PortKind, Request, UplinkKind};

use crate::control::Object;
use crate::sys::netns::{NetnsError, NetnsRef, NETNS_RUN_DIR};
use crate::sys::nsowner::{netns_owner, own_netns_id};

/// Why a client that is not root may not attach where it asked.
#[derive(Debug, thiserror::Error)]
pub enum NetnsAccessError {
    /// A TAP in yardd's own namespace (no `--netns`, or one that is yardd's).
    #[error(
        "{owner}: uid {uid} is not root and may not attach into yardd's own network namespace{} — create the port in a namespace your user owns (`unshare -r -n` makes one; pass --netns /proc/PID/ns/net), or run yardctl as root",
        .netns.as_deref().map(|ns| format!(" (netns {ns})")).unwrap_or_default()
    )]
    OwnNamespace {
        /// The port or uplink.
        owner: Object,
        /// The namespace as written, if one was.
        netns: Option<String>,
        /// The client's uid.
        uid: u32,
    },
    /// A namespace another user owns.
    #[error(
        "{owner}: netns {netns} belongs to uid {owner_uid}, not to uid {uid}: a client that is not root may attach only into network namespaces its own user owns — or run yardctl as root"
    )]
    NotOwned {
        /// The port or uplink.
        owner: Object,
        /// The namespace as written.
        netns: String,
        /// The uid owning its user namespace.
        owner_uid: u32,
        /// The client's uid.
        uid: u32,
    },
    /// An interface of yardd's own namespace.
    #[error(
        "{owner}: uid {uid} is not root and may not attach interface {iface} of yardd's own network namespace — run yardctl as root"
    )]
    HostInterface {
        /// The port or uplink.
        owner: Object,
        /// The interface.
        iface: String,
        /// The client's uid.
        uid: u32,
    },
    /// A QEMU socket port asked for by a client that is neither root nor
    /// yardd's own uid.
    #[error(
        "{owner}: QEMU socket ports are files yardd creates (and replaces when stale) as its own user, so only root or yardd's own user (not uid {uid}) may add them: run your own yardd for your VMs"
    )]
    QemuSocket {
        /// The port.
        owner: Object,
        /// The client's uid.
        uid: u32,
    },
    /// The host uplink: yardd's own sockets and addresses.
    #[error(
        "{owner}: uid {uid} is not root and may not make yardd's own network namespace the uplink (--host) — run yardctl as root"
    )]
    HostUplink {
        /// The uplink.
        owner: Object,
        /// The client's uid.
        uid: u32,
    },
    /// A namespace path a non-root client may not use.
    #[error(
        "{owner}: netns {netns}: a client that is not root names a namespace as /proc/PID/ns/net or by its name under {NETNS_RUN_DIR} — a path elsewhere could change between the check and the attach"
    )]
    PathForm {
        /// The port or uplink.
        owner: Object,
        /// The namespace as written.
        netns: String,
    },
    /// The namespace could not be opened or asked for its owner.
    #[error("{owner}: {error}")]
    Netns {
        /// The port or uplink.
        owner: Object,
        /// What failed (it names the namespace).
        error: NetnsError,
    },
}

/// Refuses `request` when it would attach a client that is neither root nor
/// yardd's own uid anywhere but a network namespace that client owns.
pub fn check_attach(request: &Request, uid: u32, own_uid: u32) -> Result<(), NetnsAccessError> {
    if uid == 0 || uid == own_uid {
        return Ok(());
    }
    match request {
        Request::PortAdd(spec) => {
            let owner = Object::Port(spec.name.clone());
            match &spec.kind {
                PortKind::Tap { netns, .. } => check_netns(owner, netns.as_deref(), uid),
                PortKind::Iface { iface, .. }
                | PortKind::Trunk { iface, .. }
                | PortKind::Veth { ifname: iface, .. } => Err(NetnsAccessError::HostInterface {
                    owner,
                    iface: iface.clone(),
                    uid,
                }),
                PortKind::Gre { .. } | PortKind::GreUdp { .. } => Ok(()),
                PortKind::QemuStream { .. } | PortKind::QemuDgram { .. } => {
                    Err(NetnsAccessError::QemuSocket { owner, uid })
                }
            }
        }
        Request::UplinkAdd(spec) => {
            let owner = Object::Uplink(spec.name.clone());
            match &spec.kind {
                UplinkKind::Tap { netns, .. } => check_netns(owner, netns.as_deref(), uid),
                UplinkKind::Iface { iface } => Err(NetnsAccessError::HostInterface {
                    owner,
                    iface: iface.clone(),
                    uid,
                }),
                UplinkKind::Host => Err(NetnsAccessError::HostUplink { owner, uid }),
            }
        }
        _ => Ok(()),
    }
}

/// Whether `written` is `/proc/PID/ns/net` or `/proc/PID/task/TID/ns/net`
/// with decimal ids, or a plain name (under `/run/netns`).
fn path_form_ok(written: &str) -> bool {
    if !written.contains('/') {
        return written != "." && written != "..";
    }
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = written.split('/').collect();
    match parts.as_slice() {
        ["", "proc", pid, "ns", "net"] => number(pid),
        ["", "proc", pid, "task", tid, "ns", "net"] => number(pid) && number(tid),
        _ => false,
    }
}

fn check_netns(owner: Object, netns: Option<&str>, uid: u32) -> Result<(), NetnsAccessError> {
    let Some(written) = netns else {
        return Err(NetnsAccessError::OwnNamespace {
            owner,
            netns: None,
            uid,
        });
    };
    if !path_form_ok(written) {
        return Err(NetnsAccessError::PathForm {
            owner,
            netns: written.to_string(),
        });
    }
    let found = match netns_owner(&NetnsRef::parse(written)) {
        Ok(found) => found,
        Err(error) => return Err(NetnsAccessError::Netns { owner, error }),
    };
    if own_netns_id().is_ok_and(|own| own == found.id) {
        return Err(NetnsAccessError::OwnNamespace {
            owner,
            netns: Some(written.to_string()),
            uid,
        });
    }
    if found.owner_uid != uid {
        return Err(NetnsAccessError::NotOwned {
            owner,
            netns: written.to_string(),
            owner_uid: found.owner_uid,
            uid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_ctl::api::PortSpec;

    fn tap(netns: Option<&str>) -> Request {
        Request::PortAdd(PortSpec {
            name: "c1".into(),
            kind: PortKind::tap("yard0", netns, None),
        })
    }

    #[test]
    fn root_and_yardds_own_uid_are_unrestricted() {
        let host = tap(Some("/proc/1/ns/net"));
        assert!(check_attach(&host, 0, 0).is_ok());
        assert!(check_attach(&host, 1000, 1000).is_ok());
        assert!(check_attach(&tap(None), 1000, 1000).is_ok());
    }

    #[test]
    fn a_tap_in_yardds_own_namespace_is_refused_to_others() {
        let err = check_attach(&tap(None), 1000, 0).unwrap_err();
        assert!(
            matches!(err, NetnsAccessError::OwnNamespace { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(
            "port c1: uid 1000 is not root and may not attach into yardd's own network namespace — "
        ));
    }

    #[test]
    fn the_host_namespace_is_refused_to_others() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the_host_namespace_is_refused_to_others: needs root");
            return;
        }
        // This process runs in the host's namespace, as yardd does: named
        // through any process in it, it is refused by identity.
        let host = format!("/proc/{}/ns/net", std::process::id());
        let err = check_attach(&tap(Some(&host)), 1000, 0).unwrap_err();
        assert!(
            matches!(err, NetnsAccessError::OwnNamespace { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "port c1: uid 1000 is not root and may not attach into yardd's own network namespace (netns {host}) — "
            )),
            "{err}"
        );
        // So is pid 1's, whatever stops it: yardd's own, root's, or one
        // yardd cannot even open.
        assert!(check_attach(&tap(Some("/proc/1/ns/net")), 1000, 0).is_err());
    }

    #[test]
    fn paths_a_client_could_swap_are_refused() {
        for path in [
            "/tmp/ns",
            "/proc/self/ns/net",
            "/proc/1/../1/ns/net",
            "/proc/1/ns/net/",
            "..",
        ] {
            let err = check_attach(&tap(Some(path)), 1000, 0).unwrap_err();
            assert!(
                matches!(err, NetnsAccessError::PathForm { .. }),
                "{path}: {err:?}"
            );
        }
        assert!(path_form_ok("c1"));
        assert!(path_form_ok("/proc/42/ns/net"));
        assert!(path_form_ok("/proc/42/task/43/ns/net"));
    }

    #[test]
    fn host_interfaces_are_refused_and_tunnels_allowed() {
        let iface = Request::PortAdd(PortSpec {
            name: "v1".into(),
            kind: PortKind::Iface {
                net: "yard0".into(),
                iface: "eth0".into(),
            },
        });
        let err = check_attach(&iface, 1000, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "port v1: uid 1000 is not root and may not attach interface eth0 of yardd's own network namespace — run yardctl as root"
        );
        assert!(check_attach(&Request::Status, 1000, 0).is_ok());
    }

    #[test]
    fn uplinks_follow_the_same_rules() {
        use yard_ctl::api::UplinkSpec;
        let uplink = |kind| {
            Request::UplinkAdd(UplinkSpec {
                name: "up0".into(),
                kind,
                ip: Some("192.0.2.2/24".parse().unwrap()),
                gateway: None,
            })
        };
        let iface = uplink(UplinkKind::Iface {
            iface: "eth0".into(),
        });
        let err = check_attach(&iface, 1000, 0).unwrap_err();
        assert!(
            matches!(err, NetnsAccessError::HostInterface { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("uplink up0: uid 1000"), "{err}");
        let own_tap = uplink(UplinkKind::Tap {
            netns: None,
            ifname: "up0".into(),
        });
        let err = check_attach(&own_tap, 1000, 0).unwrap_err();
        assert!(
            matches!(err, NetnsAccessError::OwnNamespace { .. }),
            "{err:?}"
        );
        assert!(check_attach(&iface, 0, 0).is_ok());
        let host = uplink(UplinkKind::Host);
        let err = check_attach(&host, 1000, 0).unwrap_err();
        assert!(
            matches!(err, NetnsAccessError::HostUplink { .. }),
            "{err:?}"
        );
        assert!(check_attach(&host, 0, 0).is_ok());
    }
}
