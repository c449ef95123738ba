//! TAPs that outlive yardd: made persistent when created, re-adopted when
//! yardd starts again, destroyed only when their port (or uplink) is
//! removed.
//!
//! A TAP yardd creates is marked with the alias `switchyard port NAME` (or
//! `switchyard uplink NAME`) and made persistent, so it stays in its
//! namespace while yardd is down (SIGTERM or `kill -9`): the container keeps
//! its interface, with carrier off and its frames dropped, and keeps every
//! address and route it added itself. When yardd restores a port it
//! re-adopts the TAP of that name in that namespace ([`TapMode::CreateOrAdopt`])
//! instead of making a new one, but only a TAP it could have made: kind
//! `tun`, type TAP, yardd's flags (vnet header, no packet information, one
//! queue), persistent, no owner or group, no fd attached, and the alias of
//! that very port. Anything else of that name is refused with an
//! [`AdoptError`] that says what it is, and left alone.
//!
//! Contract: the control plane holds a [`KeptTap`] (a second fd on the
//! same TAP) for every TAP it created or adopted; [`KeptTap::destroy`] is
//! the only way a persistent TAP is deleted by yardd (it clears persistence,
//! and the TAP goes when the datapath's fd closes too). Dropping a
//! [`KeptTap`] — or yardd exiting — keeps the TAP. A TAP whose setup failed
//! is never left persistent: persistence is the last step of creation.
//! Nothing here runs per frame.

use std::io;
use std::os::fd::OwnedFd;

use crate::control::netns_helper::{self, NetnsTask, TaskDone};
use crate::control::Object;
use crate::sys;
use crate::sys::netconf::{self, LinkFacts, NetconfError};
use crate::sys::netns::{run_in_netns, NetnsRef};
use crate::sys::TapOpened;

/// Whether an existing TAP may be taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TapMode {
    /// A new TAP; an existing interface of that name is an error
    /// (`port add`, `uplink add`).
    Create,
    /// Re-adopt yardd's own persistent TAP of that name, or create one when
    /// there is none (restoring the saved configuration at start).
    CreateOrAdopt,
}

/// Why an existing interface was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The interface is not a TUN/TAP device at all.
    #[error("interface {ifname} exists and is not a TAP (kind {kind}); yardd leaves it alone: delete or rename it in that namespace (`ip link del {ifname}`), then `yardctl {} rm {}` and add it again", .owner.kind(), .owner.name())]
    NotTap {
        /// The port or uplink.
        owner: Object,
        /// The interface.
        ifname: String,
        /// Its link kind, or `none`.
        kind: String,
    },
    /// The TAP is not one yardd made for this port: another alias, another
    /// owner, or other flags.
    #[error("TAP {ifname} exists but was not made by yardd for this {} ({why}); yardd leaves it alone: delete it in that namespace (`ip link del {ifname}`), then `yardctl {} rm {}` and add it again", .owner.kind(), .owner.kind(), .owner.name())]
    NotOurs {
        /// The port or uplink.
        owner: Object,
        /// The interface.
        ifname: String,
        /// What differs.
        why: String,
    },
    /// The TAP is ours but a process has it open (another yardd on another
    /// state directory, or a leftover).
    #[error("TAP {ifname} is open in another process; yardd leaves it alone: find it with `fuser -v /dev/net/tun`, stop it, then restart yardd")]
    InUse {
        /// The interface.
        ifname: String,
    },
    /// The kernel refused or the link could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The link could not be read or marked over netlink.
    #[error("{0}")]
    Netconf(#[from] NetconfError),
}

/// The alias that marks a TAP yardd made for `owner`:
/// `switchyard port NAME` or `switchyard uplink NAME`.
pub fn marker(owner: &Object) -> String {
    format!("switchyard {} {}", owner.kind(), owner.name())
}

/// Checks that `facts`, read from existing interface `ifname`, describe a
/// TAP yardd made for `owner` and that nothing has open.
pub fn check_adoptable(owner: &Object, ifname: &str, facts: &LinkFacts) -> Result<(), AdoptError> {
    let not_ours = |why: String| AdoptError::NotOurs {
        owner: owner.clone(),
        ifname: ifname.to_string(),
        why,
    };
    let tun = match (&facts.kind, &facts.tun) {
        (Some(kind), Some(tun)) if kind == "tun" => tun,
        (kind, _) => {
            return Err(AdoptError::NotTap {
                owner: owner.clone(),
                ifname: ifname.to_string(),
                kind: kind.clone().unwrap_or_else(|| "none".into()),
            })
        }
    };
    if !tun.tap {
        return Err(AdoptError::NotTap {
            owner: owner.clone(),
            ifname: ifname.to_string(),
            kind: "tun (layer 3)".into(),
        });
    }
    let wanted = marker(owner);
    if facts.alias.as_deref() != Some(wanted.as_str()) {
        return Err(not_ours(match &facts.alias {
            Some(alias) => format!("its alias is {alias:?}, not {wanted:?}"),
            None => format!("it has no alias {wanted:?}"),
        }));
    }
    if let Some(uid) = tun.owner {
        return Err(not_ours(format!("it belongs to uid {uid}")));
    }
    if let Some(gid) = tun.group {
        return Err(not_ours(format!("it belongs to gid {gid}")));
    }
    if tun.pi || !tun.vnet_hdr || tun.multi_queue || !tun.persist {
        return Err(not_ours(format!(
            "its flags differ: pi {}, vnet_hdr {}, multi_queue {}, persist {}",
            tun.pi, tun.vnet_hdr, tun.multi_queue, tun.persist
        )));
    }
    if facts.carrier || tun.queues.is_some_and(|q| q > 0) {
        return Err(AdoptError::InUse {
            ifname: ifname.to_string(),
        });
    }
    Ok(())
}

/// Opens TAP `ifname` for `owner` in the current thread's network
/// namespace: a new one, or with [`TapMode::CreateOrAdopt`] yardd's own
/// existing one after [`check_adoptable`]. A new TAP is not persistent yet
/// (see [`mark_persistent`]).
pub fn open_owned_tap(
    owner: &Object,
    ifname: &str,
    mode: TapMode,
) -> Result<(OwnedFd, TapOpened), AdoptError> {
    if mode == TapMode::CreateOrAdopt {
        if let Some(facts) = netconf::link_facts(ifname)? {
            check_adoptable(owner, ifname, &facts)?;
            return match sys::adopt_tap(ifname) {
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => Err(AdoptError::InUse {
                    ifname: ifname.to_string(),
                }),
                other => Ok(other?),
            };
        }
    }
    Ok((sys::open_tap(ifname)?, TapOpened::Created))
}

/// The control plane's own fd on a persistent TAP: what lets `port rm`
/// delete a device that otherwise outlives yardd.
#[derive(Debug)]
pub struct KeptTap {
    fd: OwnedFd,
    ifname: String,
}

/// Marks the newly created, configured TAP behind `fd` as `owner`'s (its
/// alias) and makes it persistent, as the last step of creating it (in the
/// TAP's namespace): a failure here leaves it non-persistent, so it goes
/// with its fds.
pub fn mark_persistent(owner: &Object, ifname: &str, fd: &OwnedFd) -> Result<(), AdoptError> {
    netconf::set_alias(ifname, &marker(owner))?;
    sys::set_persist(fd, ifname, true)?;
    Ok(())
}

/// The control plane's fd on a TAP yardd made persistent or adopted: a
/// second fd on it, taken in any namespace.
pub fn kept(ifname: &str, fd: &OwnedFd) -> io::Result<KeptTap> {
    Ok(KeptTap {
        fd: fd.try_clone()?,
        ifname: ifname.to_string(),
    })
}

impl KeptTap {
    /// Deletes the TAP: clears persistence, so it goes as soon as the
    /// datapath's fd is closed too (at once if it is already).
    pub fn destroy(self) -> io::Result<()> {
        sys::set_persist(&self.fd, &self.ifname, false)
    }
}

/// Deletes `owner`'s persistent TAP `ifname` in `netns` that no fd holds
/// (a port that is down, whose TAP was left from before yardd restarted).
/// Returns whether there was one; an interface that is not yardd's TAP for
/// `owner` is left alone, and a namespace that is gone (or that a rootless
/// yardd's helper cannot enter) means there is nothing to delete.
pub fn destroy_left_tap(
    owner: &Object,
    netns: Option<&str>,
    ifname: &str,
) -> Result<bool, AdoptError> {
    let Some(ns) = netns else {
        return destroy_left_tap_here(owner, ifname);
    };
    let ns = NetnsRef::parse(ns);
    if netns_helper::needed() {
        let task = NetnsTask::DestroyLeftTap {
            owner: owner.clone(),
            ifname: ifname.to_string(),
        };
        return Ok(matches!(
            netns_helper::run(&ns, task),
            Ok((TaskDone::Destroyed(true), _))
        ));
    }
    let (owner, ifname) = (owner.clone(), ifname.to_string());
    run_in_netns(&ns, move || destroy_left_tap_here(&owner, &ifname)).unwrap_or(Ok(false))
}

/// [`destroy_left_tap`] in the current thread's namespace.
pub fn destroy_left_tap_here(owner: &Object, ifname: &str) -> Result<bool, AdoptError> {
    let Some(facts) = netconf::link_facts(ifname)? else {
        return Ok(false);
    };
    if check_adoptable(owner, ifname, &facts).is_err() {
        return Ok(false);
    }
    let (fd, _) = sys::adopt_tap(ifname)?;
    sys::set_persist(&fd, ifname, false)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netconf::TunFacts;

    fn ours(name: &str) -> LinkFacts {
        LinkFacts {
            kind: Some("tun".into()),
            alias: Some(format!("switchyard port {name}")),
            tun: Some(TunFacts {
                tap: true,
                pi: false,
                vnet_hdr: true,
                persist: true,
                multi_queue: false,
                owner: None,
                group: None,
                queues: Some(0),
            }),
            carrier: false,
        }
    }

    fn refusal(facts: &LinkFacts) -> String {
        check_adoptable(&Object::Port("c1".into()), "eth0", facts)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn marker_names_the_owner() {
        assert_eq!(marker(&Object::Port("c1".into())), "switchyard port c1");
        assert_eq!(
            marker(&Object::Uplink("up0".into())),
            "switchyard uplink up0"
        );
    }

    #[test]
    fn only_yardds_idle_tap_for_the_same_port_is_adopted() {
        check_adoptable(&Object::Port("c1".into()), "eth0", &ours("c1")).unwrap();

        let veth = LinkFacts {
            kind: Some("veth".into()),
            ..LinkFacts::default()
        };
        assert_eq!(
            refusal(&veth),
            "interface eth0 exists and is not a TAP (kind veth); yardd leaves it alone: delete or rename it in that namespace (`ip link del eth0`), then `yardctl port rm c1` and add it again"
        );
        assert!(refusal(&LinkFacts::default()).contains("(kind none)"));

        let mut tun = ours("c1");
        tun.tun.as_mut().unwrap().tap = false;
        assert!(refusal(&tun).contains("not a TAP (kind tun (layer 3))"));

        let other_port = ours("c2");
        assert_eq!(
            refusal(&other_port),
            "TAP eth0 exists but was not made by yardd for this port (its alias is \"switchyard port c2\", not \"switchyard port c1\"); yardd leaves it alone: delete it in that namespace (`ip link del eth0`), then `yardctl port rm c1` and add it again"
        );
        let mut foreign = ours("c1");
        foreign.alias = None;
        assert!(refusal(&foreign).contains("it has no alias"));

        let mut owned = ours("c1");
        owned.tun.as_mut().unwrap().owner = Some(1000);
        assert!(refusal(&owned).contains("belongs to uid 1000"));
        let mut grouped = ours("c1");
        grouped.tun.as_mut().unwrap().group = Some(100);
        assert!(refusal(&grouped).contains("belongs to gid 100"));

        for change in [
            |t: &mut TunFacts| t.pi = true,
            |t: &mut TunFacts| t.vnet_hdr = false,
            |t: &mut TunFacts| t.multi_queue = true,
            |t: &mut TunFacts| t.persist = false,
        ] {
            let mut facts = ours("c1");
            change(facts.tun.as_mut().unwrap());
            assert!(refusal(&facts).contains("its flags differ"), "{facts:?}");
        }

        let mut busy = ours("c1");
        busy.carrier = true;
        assert!(refusal(&busy).starts_with("TAP eth0 is open in another process"));
        let mut busy = ours("c1");
        busy.tun.as_mut().unwrap().queues = Some(1);
        assert!(refusal(&busy).starts_with("TAP eth0 is open in another process"));
    }
}
