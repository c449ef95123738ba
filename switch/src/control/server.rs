//! The control server: yardd's Unix socket, who may use it, and what each
//! request does.
//!
//! One thread per connection reads request lines (at most
//! [`MAX_REQUEST_BYTES`] each), answers each with one reply line, and keeps the
//! connection open for more. At most [`ServeLimits::max_connections`] are
//! served at once, and each must send a complete request within
//! [`ServeLimits::idle_timeout`] ([`limits`]). Only root, yardd's own uid and
//! the configured group are served (`SO_PEERCRED`); the socket itself is
//! created 0660. A
//! malformed, oversized or unknown request gets an error reply; nothing a client
//! sends stops the daemon.
//!
//! [`Control`] owns the configuration. A change is validated first, then
//! applied to the datapath, then persisted; if a later step fails the earlier
//! ones are undone, so a refused request changes nothing. A refusal is a
//! [`ControlError`], whose message is the error reply.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use yard_ctl::api::{
    ApiError, DaemonMode, Envelope, EventKind, NetworkInfo, NetworkSpec, Payload, PortInfo,
    PortKind, PortSpec, PortState, Reply, Request, StatusInfo, API_VERSION, MAX_REQUEST_BYTES,
};
use yard_ctl::{pcap, MacAddr};

mod gateway;
pub mod limits;
mod links;
pub mod netns_access;
mod rules;
mod trace;

use limits::{ConnectionCount, DeadlineStream, ServeLimits};

use yard_nat::conntrack::RuleId;

use crate::control::adopt::{destroy_left_tap, KeptTap, TapMode};
use crate::control::attach::{attach, destroy_veth, TunnelSockets};
use crate::control::config::{Config, StaticFdb};
use crate::control::default_route;
use crate::control::events::{self, Events};
use crate::control::qemu::QemuLink;
use crate::control::state;
use crate::control::state::StateError;
use crate::control::{
    bridge_api, nat_api, AccessError, ControlError, Object, Removed, SocketError,
};
use crate::dataplane::capture::{CaptureTap, CAPTURE_QUEUE};
use crate::dataplane::threads::{DatapathError, DatapathHandle};
use crate::sys;
use crate::sys::netns::NetnsRef;
use crate::sys::nsidentity::{self, NetnsIdentity, Recheck};

/// Where yardd listens and keeps its state, and who may talk to it.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// The control socket.
    pub socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// A group whose members may use the socket, besides root and yardd's uid.
    pub group: Option<u32>,
    /// Root or rootless: what `status` reports.
    pub mode: DaemonMode,
}

/// What yardd knows of a port beyond its configuration.
#[derive(Debug, Clone)]
struct LivePort {
    mac: Option<MacAddr>,
    mtu: u32,
    state: PortState,
}

/// The configuration and the datapath handle, shared by connection threads.
pub struct Control {
    config: Config,
    live: HashMap<String, LivePort>,
    uplink: Option<LivePort>,
    /// The control plane's fd on each TAP port's device, by port: what
    /// `port rm` destroys the persistent TAP through.
    kept: HashMap<String, KeptTap>,
    /// The same for the uplink's TAP.
    kept_uplink: Option<KeptTap>,
    /// Each QEMU port's status and socket file, by port: dropping it on
    /// `port rm` removes the socket file.
    qemu: HashMap<String, QemuLink>,
    /// Ports that are down because their namespace went away, still in the
    /// datapath with a closed device (their traffic counted as `port-down`)
    /// until `port rm`.
    closed: HashSet<String>,
    /// Sockets shared by tunnel ports.
    tunnels: TunnelSockets,
    /// The gateway's id of each published port, in `config.publish` order.
    rule_ids: Vec<RuleId>,
    next_rule: u32,
    /// Published rules whose host sockets could not be bound, and why.
    publish_down: HashMap<RuleId, String>,
    datapath: DatapathHandle,
    options: ControlOptions,
    started: Instant,
    /// The connections streaming events (`yardctl events`).
    events: Events,
}

type Outcome = Result<Payload, ControlError>;

/// Adds network `spec` to the datapath, with its gateway side when it has
/// a subnet.
fn add_network(datapath: &DatapathHandle, spec: NetworkSpec) -> Result<(), DatapathError> {
    let gateway = nat_api::net_config(&spec);
    datapath.add_network(spec, gateway)
}

/// The reason a port is down when its namespace went away.
pub const NAMESPACE_GONE: &str = "namespace gone";

/// The reason a veth port is down when its pair went away.
pub const VETH_GONE: &str = "veth gone";

/// The namespace a TAP port was asked into, if not yardd's own.
fn tap_netns(spec: &PortSpec) -> Option<NetnsRef> {
    match &spec.kind {
        PortKind::Tap {
            netns: Some(ns), ..
        } => Some(NetnsRef::parse(ns)),
        _ => None,
    }
}

/// Why port's namespace path no longer names the namespace it was put in,
/// or `None` when it still does.
fn namespace_changed(ns: &NetnsRef, recorded: &NetnsIdentity) -> Option<String> {
    match nsidentity::recheck(ns, recorded) {
        Recheck::Same => None,
        Recheck::Gone => Some(format!(
            "{NAMESPACE_GONE}: {ns} no longer exists — `port rm` it, or add it again into the container's new namespace"
        )),
        Recheck::Replaced => Some(format!(
            "namespace replaced: {ns} now names another namespace, which the port is never created in — `port rm` it, or add it again"
        )),
    }
}

/// Once a second, turns down the TAP ports whose namespace nobody but yardd
/// holds any more ([`Control::namespace_gone`]), and the veth ports whose
/// pair is gone ([`Control::veth_gone`]). The checks read `/proc`
/// without holding the lock. Runs until the process ends.
pub fn watch_namespaces(control: Arc<Mutex<Control>>) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let watched = lock(&control).watched_namespaces();
        for (name, ns, identity) in watched {
            let same = nsidentity::recheck(&ns, &identity) == Recheck::Same;
            if !same && !nsidentity::held_elsewhere(&identity) {
                lock(&control).namespace_gone(&name, &identity);
            }
        }
        let veths = lock(&control).watched_veths();
        for (name, ifname) in veths {
            let sysfs = std::path::Path::new("/sys/class/net").join(&ifname);
            if !sysfs.exists() {
                lock(&control).veth_gone(&name);
            }
        }
    }
}

/// Takes back the device a `port add` made when the port could not be
/// added after all: the new TAP (through its kept fd) or veth pair.
fn undo_device(spec: &PortSpec, kept: Option<KeptTap>) {
    destroy_kept(&spec.name, kept);
    if let PortKind::Veth { ifname, .. } = &spec.kind {
        destroy_veth(&spec.name, ifname);
    }
}

/// Deletes a persistent TAP through its kept fd (it goes when the
/// datapath's fd is closed too); `owner` names it in the log if that fails.
fn destroy_kept(owner: &str, kept: Option<KeptTap>) {
    if let Some(Err(error)) = kept.map(KeptTap::destroy) {
        tracing::warn!(%owner, %error, "the TAP could not be deleted");
    }
}

impl Control {
    /// Restores `config` into the datapath: networks, then ports (a port that
    /// cannot be attached stays configured and is reported down), then static
    /// FDB entries.
    pub fn restore(
        config: Config,
        datapath: DatapathHandle,
        options: ControlOptions,
    ) -> Result<Self, ControlError> {
        let mut control = Control {
            config: Config {
                ports: Vec::new(),
                static_fdb: Vec::new(),
                uplink: None,
                publish: Vec::new(),
                connections: Vec::new(),
                links: Vec::new(),
                rules: Vec::new(),
                ..config.clone()
            },
            live: HashMap::new(),
            tunnels: TunnelSockets::default(),
            uplink: None,
            kept: HashMap::new(),
            kept_uplink: None,
            qemu: HashMap::new(),
            closed: HashSet::new(),
            rule_ids: Vec::new(),
            next_rule: 1,
            publish_down: HashMap::new(),
            datapath,
            options,
            started: Instant::now(),
            events: Events::default(),
        };
        for net in &config.networks {
            add_network(&control.datapath, net.clone()).map_err(|error| {
                ControlError::RestoreNetwork {
                    net: net.name.clone(),
                    error,
                }
            })?;
        }
        let mut removed = false;
        for spec in config.ports.clone() {
            if let Some(reason) = control.auto_removed(&spec) {
                tracing::info!(port = %spec.name, %reason, "port removed with its namespace");
                control.config.namespaces.remove(&spec.name);
                removed = true;
                continue;
            }
            let state = control.start_port(&spec);
            if let PortState::Down(reason) = &state.state {
                tracing::warn!(port = %spec.name, %reason, "port could not be re-attached");
            }
            control.live.insert(spec.name.clone(), state);
            control.config.ports.push(spec);
        }
        for entry in config.static_fdb.clone() {
            match control.datapath.fdb_add(&entry.net, entry.mac, &entry.port) {
                Ok(()) => control.config.static_fdb.push(entry),
                Err(e) => {
                    tracing::warn!(mac = %entry.mac, error = %e, "static FDB entry not restored")
                }
            }
        }
        control.restore_links(config.links.clone());
        control.restore_rules(config.rules.clone());
        control.restore_l3(config)?;
        if removed {
            if let Err(error) = control.save() {
                tracing::warn!(%error, "the removal of ports whose namespace is gone could not be saved; they are removed again at the next start");
            }
        }
        Ok(control)
    }

    /// Why `spec`'s namespace path no longer names the namespace the port
    /// was put in (`None` when it does, or nothing was recorded).
    fn namespace_moved(&self, spec: &PortSpec) -> Option<String> {
        let ns = tap_netns(spec)?;
        namespace_changed(&ns, self.config.namespaces.get(&spec.name)?)
    }

    /// For an `--auto-remove` port being restored: why it goes instead of
    /// coming back (its namespace is gone or replaced).
    fn auto_removed(&self, spec: &PortSpec) -> Option<String> {
        spec.kind
            .auto_removes()
            .then(|| self.namespace_moved(spec))
            .flatten()
    }

    /// Attaches a configured port, re-adopting its TAP when it is still
    /// there, and hands it to the datapath.
    fn start_port(&mut self, spec: &PortSpec) -> LivePort {
        if let Some(reason) = self.namespace_moved(spec) {
            return LivePort {
                mac: None,
                mtu: 0,
                state: PortState::Down(reason),
            };
        }
        let netns = tap_netns(spec);
        // A port restored from an older state file is known by its
        // namespace from now on.
        let identity = netns.as_ref().and_then(|ns| nsidentity::identify(ns).ok());
        let overlay = self.overlay_mtu(spec.nets()[0]);
        let mode = TapMode::CreateOrAdopt;
        match attach(spec, &self.config, &mut self.tunnels, overlay, mode) {
            Ok(mut attached) => {
                // Kept even when the datapath refuses the port: the TAP stays
                // the container's interface until `port rm`.
                if let Some(kept) = attached.kept.take() {
                    self.kept.insert(spec.name.clone(), kept);
                }
                if let Some(link) = attached.qemu.take() {
                    self.qemu.insert(spec.name.clone(), link);
                }
                let live = LivePort {
                    mac: attached.mac,
                    mtu: attached.mtu,
                    state: PortState::Up,
                };
                let added = self.datapath.add_port(
                    &spec.name,
                    attached.port,
                    attached.membership,
                    attached.mtu,
                    attached.tunnel,
                    attached.security,
                );
                if let Some(identity) = identity {
                    self.config
                        .namespaces
                        .entry(spec.name.clone())
                        .or_insert(identity);
                }
                match added {
                    Ok(()) => live,
                    Err(e) => LivePort {
                        state: PortState::Down(e.to_string()),
                        ..live
                    },
                }
            }
            Err(error) => LivePort {
                mac: None,
                mtu: 0,
                state: PortState::Down(
                    ControlError::NotAttached {
                        object: Object::Port(spec.name.clone()),
                        error: Box::new(error),
                    }
                    .to_string(),
                ),
            },
        }
    }

    fn save(&self) -> Result<(), StateError> {
        state::save(&self.options.state_dir, &self.config)
    }

    /// Persists the configuration as it is now.
    pub fn persist(&self) -> Result<(), StateError> {
        self.save()
    }

    /// Answers one request of uid `user` (all but `capture` and `events`)
    /// and publishes the event of the change it made.
    pub fn handle_as(&mut self, request: Request, user: u32) -> Outcome {
        let change = events::of_request(&request);
        let outcome = self.handle(request);
        if let (Ok(_), Some((kind, object))) = (&outcome, change) {
            self.events
                .publish(events::event(kind, object, None, Some(user)));
        }
        outcome
    }

    /// A new subscription to the events.
    pub fn subscribe_events(&mut self) -> crossbeam_channel::Receiver<yard_ctl::api::Event> {
        self.events.subscribe()
    }

    /// Publishes a change yardd made by itself (no request).
    fn publish_own(&mut self, kind: EventKind, object: &str, detail: &str) {
        self.events.publish(events::event(
            kind,
            object.to_string(),
            Some(detail.to_string()),
            None,
        ));
    }

    /// Answers one request (all but `capture`).
    pub fn handle(&mut self, request: Request) -> Outcome {
        match request {
            Request::Status => Ok(Payload::Status(StatusInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                api_version: API_VERSION,
                pid: std::process::id(),
                uptime_secs: self.started.elapsed().as_secs(),
                socket: self.options.socket.display().to_string(),
                state_dir: self.options.state_dir.display().to_string(),
                networks: self.config.networks.len(),
                ports: self.config.ports.len(),
                tunnel_drops: bridge_api::by_name(&self.datapath.tunnel_drops()?),
                tunnel_gro: self.datapath.tunnel_gro()?,
                datapath_threads: self.datapath.threads() as u32,
                mode: self.options.mode,
            })),
            Request::NetCreate(spec) => self.net_create(spec),
            Request::NetLs => Ok(Payload::Networks(self.network_infos(None)?)),
            Request::NetInspect { name } => {
                self.known_network(&name)?;
                let mut infos = self.network_infos(Some(&name))?;
                Ok(Payload::Network(infos.remove(0)))
            }
            Request::NetRm { name } => {
                self.config.check_remove_network(&name)?;
                if let Some((a, b)) = self
                    .config
                    .connections
                    .iter()
                    .find(|(a, b)| *a == name || *b == name)
                {
                    return Err(ControlError::NetworkConnected {
                        net: name.clone(),
                        a: a.clone(),
                        b: b.clone(),
                    });
                }
                let spec = self.config.network(&name).cloned();
                self.datapath.remove_network(&name)?;
                let before = self.config.clone();
                self.config.networks.retain(|n| n.name != name);
                self.config.rules.retain(|r| r.spec.net != name);
                self.commit(before, move |dp| {
                    add_network(dp, spec.unwrap_or_else(|| NetworkSpec::new(name)))
                })?;
                Ok(Payload::Done)
            }
            Request::PortAdd(spec) => self.port_add(spec),
            Request::LinkAdd(spec) => self.link_add(spec),
            Request::LinkRm { a, b } => self.link_rm(&a, &b),
            Request::LinkLs => Ok(Payload::Links(self.link_infos())),
            Request::RuleAdd { rule, position } => self.rule_add(rule, position),
            Request::RuleRm { net, position } => self.rule_rm(&net, position),
            Request::RuleLs { net } => self.rule_ls(net.as_deref()),
            Request::PortLs => Ok(Payload::Ports(
                self.config
                    .ports
                    .iter()
                    .map(|p| self.port_info(p))
                    .collect(),
            )),
            Request::PortRm { name } => self.port_rm(&name),
            Request::PortStats { name } => {
                // The uplink is listed with the ports, under its own name.
                let uplink_name = self.config.uplink.as_ref().map(|u| u.name.clone());
                if let Some(name) = &name {
                    if uplink_name.as_ref() == Some(name) {
                        return Ok(Payload::PortStats(
                            self.uplink_stats()?.into_iter().collect(),
                        ));
                    }
                    self.known_port(name)?;
                }
                // Every live port's counters, then the one asked for: a port
                // that is down is not in the datapath, which would not know it.
                let reports = self.datapath.port_stats(None)?;
                let mut stats: Vec<_> = reports
                    .iter()
                    .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
                    .map(bridge_api::port_stats)
                    .collect();
                if name.is_none() {
                    stats.extend(self.uplink_stats()?);
                }
                // Ports that are down are not in the datapath: show zeroes.
                for spec in &self.config.ports {
                    let wanted = name.as_ref().is_none_or(|n| *n == spec.name);
                    if wanted && !stats.iter().any(|s| s.name == spec.name) {
                        stats.push(yard_ctl::api::PortStats {
                            name: spec.name.clone(),
                            ..Default::default()
                        });
                    }
                }
                Ok(Payload::PortStats(stats))
            }
            Request::FdbShow { net } => {
                if let Some(net) = &net {
                    self.known_network(net)?;
                }
                let records = self.datapath.fdb(net.as_deref())?;
                Ok(Payload::Fdb(
                    records.into_iter().map(bridge_api::fdb_entry).collect(),
                ))
            }
            Request::MdbShow { net } => {
                if let Some(net) = &net {
                    self.known_network(net)?;
                }
                let records = self.datapath.mdb(net.as_deref())?;
                Ok(Payload::Mdb(
                    records.into_iter().map(bridge_api::mdb_entry).collect(),
                ))
            }
            Request::FdbAdd { net, mac, port } => {
                self.known_network(&net)?;
                self.known_port(&port)?;
                if !mac.is_valid_source() {
                    return Err(ControlError::GroupMac(mac));
                }
                if !self
                    .config
                    .port(&port)
                    .is_some_and(|p| p.nets().contains(&net.as_str()))
                {
                    return Err(ControlError::NotOnNetwork { port, net });
                }
                if !matches!(self.live.get(&port).map(|l| &l.state), Some(PortState::Up)) {
                    return Err(ControlError::PortDown(port));
                }
                self.datapath.fdb_add(&net, mac, &port)?;
                let before = self.config.clone();
                self.config
                    .static_fdb
                    .retain(|e| !(e.net == net && e.mac == mac));
                self.config.static_fdb.push(StaticFdb {
                    net: net.clone(),
                    mac,
                    port,
                });
                self.commit(before, move |dp| dp.fdb_del(&net, mac).map(drop))?;
                Ok(Payload::Done)
            }
            Request::FdbDel { net, mac } => {
                self.known_network(&net)?;
                if !self.datapath.fdb_del(&net, mac)? {
                    return Err(ControlError::NoFdbEntry { net, mac });
                }
                if self
                    .config
                    .static_fdb
                    .iter()
                    .any(|e| e.net == net && e.mac == mac)
                {
                    self.config
                        .static_fdb
                        .retain(|e| !(e.net == net && e.mac == mac));
                    self.save()?;
                }
                Ok(Payload::Done)
            }
            Request::FdbFlush { net } => {
                if let Some(net) = &net {
                    self.known_network(net)?;
                }
                self.datapath.fdb_flush(net.as_deref())?;
                Ok(Payload::Done)
            }
            Request::NetConnect { a, b } => self.net_connect(&a, &b),
            Request::NetDisconnect { a, b } => self.net_disconnect(&a, &b),
            Request::UplinkAdd(spec) => self.uplink_add(spec),
            Request::UplinkLs => Ok(Payload::Uplinks(self.uplink_infos())),
            Request::UplinkRm { name } => self.uplink_rm(&name),
            Request::PublishAdd(spec) => self.publish_add(spec),
            Request::PublishLs => Ok(Payload::Publishes(self.publish_infos())),
            Request::PublishRm(spec) => self.publish_rm(&spec),
            Request::ConntrackLs(query) => {
                let (filter, after, limit) = nat_api::query_of(&query)?;
                let snapshot = self.datapath.conntrack(filter, after, limit)?;
                Ok(Payload::Conntrack(nat_api::page_info(&snapshot)))
            }
            Request::ConntrackFlush(filter) => {
                let filter = nat_api::filter_of(&filter)?;
                let removed = self.datapath.conntrack_flush(filter)?;
                Ok(Payload::Flushed {
                    removed: removed as u64,
                })
            }
            Request::ConntrackStats => Ok(Payload::ConntrackStats(nat_api::stats(
                &self.datapath.conntrack_stats()?,
            ))),
            Request::ConntrackSet(settings) => self.conntrack_set(settings),
            Request::Trace(request) => self.trace(request),
            Request::Capture { .. } | Request::Events => Err(ControlError::CaptureNotHere),
        }
    }

    /// Persists the configuration; if that fails, restores `before` and undoes
    /// the datapath change with `undo`.
    fn commit(
        &mut self,
        before: Config,
        undo: impl FnOnce(&DatapathHandle) -> Result<(), DatapathError>,
    ) -> Result<(), ControlError> {
        if let Err(e) = self.save() {
            self.config = before;
            let _ = undo(&self.datapath);
            return Err(ControlError::NotSaved(e));
        }
        Ok(())
    }

    fn known_network(&self, name: &str) -> Result<(), ControlError> {
        self.config.existing_network(name)?;
        Ok(())
    }

    fn known_port(&self, name: &str) -> Result<(), ControlError> {
        match self.config.port(name) {
            Some(_) => Ok(()),
            None => Err(ControlError::NoPort(name.to_string())),
        }
    }

    fn net_create(&mut self, spec: NetworkSpec) -> Outcome {
        let spec = self.config.check_new_network(&spec)?;
        add_network(&self.datapath, spec.clone())?;
        let before = self.config.clone();
        self.config.networks.push(spec.clone());
        let name = spec.name.clone();
        self.commit(before, move |dp| dp.remove_network(&name))?;
        let mut infos = self.network_infos(Some(&spec.name))?;
        Ok(Payload::Network(infos.remove(0)))
    }

    fn port_add(&mut self, spec: PortSpec) -> Outcome {
        let spec = self.config.with_address(spec)?;
        self.config.check_new_port(&spec)?;
        // Taken before the TAP is made, so the port is known by the
        // namespace it went into even if the path later names another.
        let identity = tap_netns(&spec).and_then(|ns| nsidentity::identify(&ns).ok());
        let overlay = self.overlay_mtu(spec.nets()[0]);
        let mode = TapMode::Create;
        let (live, kept, qemu) = match attach(&spec, &self.config, &mut self.tunnels, overlay, mode)
        {
            Ok(attached) => {
                let live = LivePort {
                    mac: attached.mac,
                    mtu: attached.mtu,
                    state: PortState::Up,
                };
                let added = self.datapath.add_port(
                    &spec.name,
                    attached.port,
                    attached.membership,
                    attached.mtu,
                    attached.tunnel,
                    attached.security,
                );
                if let Err(e) = added {
                    undo_device(&spec, attached.kept);
                    return Err(e.into());
                }
                (live, attached.kept, attached.qemu)
            }
            Err(reason) => return Err(reason.into()),
        };
        let before = self.config.clone();
        self.config.ports.push(spec.clone());
        if let Some(identity) = identity {
            self.config.namespaces.insert(spec.name.clone(), identity);
        }
        if self.config.takes_default_route(&spec) {
            self.config.claim_default_route(&spec.name);
        }
        let name = spec.name.clone();
        if let Err(e) = self.commit(before, move |dp| dp.remove_port(&name)) {
            undo_device(&spec, kept);
            return Err(e);
        }
        if let Some(kept) = kept {
            self.kept.insert(spec.name.clone(), kept);
        }
        if let Some(link) = qemu {
            self.qemu.insert(spec.name.clone(), link);
        }
        self.live.insert(spec.name.clone(), live);
        self.retarget_publishes(&spec.name);
        self.relink(&spec);
        self.reresolve_rules(&spec.name);
        Ok(Payload::Port(self.port_info(&spec)))
    }

    fn port_rm(&mut self, name: &str) -> Outcome {
        self.known_port(name)?;
        let was_up = matches!(self.live.get(name).map(|l| &l.state), Some(PortState::Up));
        if was_up || self.closed.remove(name) {
            self.datapath.remove_port(name)?;
        }
        self.destroy_port_device(name);
        // Its socket file goes with it.
        drop(self.qemu.remove(name));
        let address = self
            .config
            .port(name)
            .and_then(|p| p.kind.address())
            .map(|ip| ip.addr);
        let route_netns = default_route::carried_by(&self.config, name);
        self.config.ports.retain(|p| p.name != name);
        self.config.namespaces.remove(name);
        self.config.static_fdb.retain(|e| e.port != name);
        self.forget_links(name);
        self.reresolve_rules(name);
        if let Some(netns) = route_netns {
            let up =
                |port: &str| matches!(self.live.get(port), Some(l) if l.state == PortState::Up);
            default_route::hand_over(&self.config, &netns, up);
        }
        self.live.remove(name);
        if let Some(addr) = address {
            // Connections to or from the container's address die with it, so
            // a container recreated behind the same published port (UDP
            // included) is never black-holed by a stale entry.
            self.datapath.forget_address(addr)?;
        }
        // The device is gone; a failed save cannot bring it back, so report it.
        self.save().map_err(|error| ControlError::RemovedNotSaved {
            removed: Removed::Port(name.to_string()),
            error,
        })?;
        Ok(Payload::Done)
    }

    /// The TAP ports that are up in another namespace, with the namespace
    /// they were put in: what [`watch_namespaces`] checks, outside the lock.
    pub fn watched_namespaces(&self) -> Vec<(String, NetnsRef, NetnsIdentity)> {
        self.config
            .ports
            .iter()
            .filter(|p| {
                matches!(
                    self.live.get(&p.name).map(|l| &l.state),
                    Some(PortState::Up)
                )
            })
            .filter_map(|p| {
                let ns = tap_netns(p)?;
                let identity = *self.config.namespaces.get(&p.name)?;
                Some((p.name.clone(), ns, identity))
            })
            .collect()
    }

    /// The veth ports that are up, with yardd's end: what
    /// [`watch_namespaces`] checks for existence, outside the lock.
    pub fn watched_veths(&self) -> Vec<(String, String)> {
        self.config
            .ports
            .iter()
            .filter(|p| matches!(self.live.get(&p.name), Some(l) if l.state == PortState::Up))
            .filter_map(|p| match &p.kind {
                PortKind::Veth { ifname, .. } => Some((p.name.clone(), ifname.clone())),
                _ => None,
            })
            .collect()
    }

    /// Veth port `name`'s pair is gone (the container it was handed to has
    /// gone): the port is down, with a closed device, until `port rm`.
    pub fn veth_gone(&mut self, name: &str) {
        if !matches!(self.live.get(name), Some(l) if l.state == PortState::Up) {
            return;
        }
        match self.datapath.close_port(name) {
            Ok(()) => {
                self.closed.insert(name.to_string());
            }
            Err(error) => {
                tracing::warn!(port = %name, %error, "the device of a port whose veth is gone could not be closed");
            }
        }
        self.publish_own(EventKind::PortDown, name, VETH_GONE);
        if let Some(live) = self.live.get_mut(name) {
            live.state = PortState::Down(VETH_GONE.into());
        }
    }

    /// Port `name`'s namespace is gone (nobody but yardd's TAP fd held it):
    /// yardd lets go of the TAP, so the namespace and the TAP in it go away
    /// and nothing answers at the container's old address. The port stays
    /// configured, down, with the reason, and in the datapath with a closed
    /// device until `port rm` — unless it was added with `--auto-remove`
    /// (yard-cni's ports), which is removed as by `port rm`. Nothing happens
    /// if the port changed meanwhile.
    pub fn namespace_gone(&mut self, name: &str, identity: &NetnsIdentity) {
        let still = self.config.namespaces.get(name) == Some(identity)
            && matches!(self.live.get(name).map(|l| &l.state), Some(PortState::Up));
        if !still {
            return;
        }
        if self
            .config
            .port(name)
            .is_some_and(|p| p.kind.auto_removes())
        {
            match self.port_rm(name) {
                Ok(_) => self.publish_own(EventKind::PortRemoved, name, NAMESPACE_GONE),
                Err(error) => {
                    tracing::warn!(port = %name, %error, "namespace gone: the port could not be removed")
                }
            }
            return;
        }
        // The port stays in the datapath with a closed device, so frames to
        // the container are dropped as `port-down` where `port stats` shows
        // them. Closing yardd's last fds on the TAP releases the namespace.
        match self.datapath.close_port(name) {
            Ok(()) => {
                self.closed.insert(name.to_string());
            }
            Err(error) => {
                tracing::warn!(port = %name, %error, "the device of a port whose namespace is gone could not be closed");
            }
        }
        drop(self.kept.remove(name));
        self.publish_own(EventKind::PortDown, name, NAMESPACE_GONE);
        if let Some(live) = self.live.get_mut(name) {
            live.state = PortState::Down(NAMESPACE_GONE.into());
        }
    }

    /// Deletes the persistent TAP of port `name` (after the datapath let go
    /// of it): through the kept fd, or, for a port that is down, the TAP
    /// yardd left in its namespace, if it is there and still yardd's.
    fn destroy_port_device(&mut self, name: &str) {
        if let Some(kept) = self.kept.remove(name) {
            destroy_kept(name, Some(kept));
            return;
        }
        match self.config.port(name).map(|p| &p.kind) {
            Some(PortKind::Tap { netns, ifname, .. }) => {
                let owner = Object::Port(name.to_string());
                if let Err(error) = destroy_left_tap(&owner, netns.as_deref(), ifname) {
                    tracing::warn!(port = %name, %error, "the port's TAP could not be deleted");
                }
            }
            Some(PortKind::Veth { ifname, .. }) => destroy_veth(name, ifname),
            _ => {}
        }
    }

    fn port_info(&self, spec: &PortSpec) -> PortInfo {
        let live = self.live.get(&spec.name);
        let thread = if self.datapath.threads() > 1 {
            self.datapath.reader_of(&spec.name).map(|t| t as u32)
        } else {
            None
        };
        let mut spec = spec.clone();
        if let PortKind::Tap { mac, mtu, .. } = &mut spec.kind {
            // The values in force are reported below, under the same names.
            *mac = None;
            *mtu = None;
        }
        let mut state = live
            .map(|l| l.state.clone())
            .unwrap_or(PortState::Down("not attached".into()));
        // A QEMU port in the datapath is down while no VM is on it.
        if let (PortState::Up, Some(link)) = (&state, self.qemu.get(&spec.name)) {
            let link = link.status.get();
            if !link.up {
                state = PortState::Down(link.detail);
            }
        }
        PortInfo {
            spec,
            mac: live.and_then(|l| l.mac),
            mtu: live.map(|l| l.mtu).unwrap_or(0),
            state,
            thread,
        }
    }

    /// The uplink's counters, when it is attached.
    fn uplink_stats(&self) -> Result<Option<yard_ctl::api::PortStats>, ControlError> {
        let report = self.datapath.uplink_stats()?;
        Ok(report.as_ref().map(bridge_api::port_stats))
    }

    /// The smallest MTU of the live tunnel ports on network `net`, if any.
    fn overlay_mtu(&self, net: &str) -> Option<u32> {
        self.config
            .ports
            .iter()
            .filter(|p| matches!(p.kind, PortKind::Gre { .. } | PortKind::GreUdp { .. }))
            .filter(|p| p.nets().contains(&net))
            .filter_map(|p| self.live.get(&p.name))
            .filter(|l| l.state == PortState::Up)
            .map(|l| l.mtu)
            .min()
    }

    fn network_infos(&self, only: Option<&str>) -> Result<Vec<NetworkInfo>, ControlError> {
        let figures = self.datapath.net_figures()?;
        Ok(self
            .config
            .networks
            .iter()
            .filter(|n| only.is_none_or(|name| n.name == name))
            .map(|n| {
                let fig = figures.iter().find(|f| f.name == n.name);
                NetworkInfo {
                    spec: n.clone(),
                    ports: self
                        .config
                        .ports
                        .iter()
                        .filter(|p| p.nets().contains(&n.name.as_str()))
                        .map(|p| p.name.clone())
                        .collect(),
                    fdb_entries: fig.map(|f| f.fdb_entries).unwrap_or(0),
                    mac_moves: fig.map(|f| f.mac_moves).unwrap_or(0),
                    overlay_mtu: self.overlay_mtu(&n.name),
                    connected: self
                        .config
                        .connections
                        .iter()
                        .filter_map(|(a, b)| {
                            if *a == n.name {
                                Some(b.clone())
                            } else if *b == n.name {
                                Some(a.clone())
                            } else {
                                None
                            }
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// Creates the control socket: refuses to take over one a running yardd
/// answers on, removes a stale one, and sets mode 0660 (and the group).
pub fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| SocketError::CreateDir {
            dir: dir.to_path_buf(),
            error,
        })?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|error| SocketError::RemoveStale {
            path: path.to_path_buf(),
            error,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|error| SocketError::Listen {
        path: path.to_path_buf(),
        error,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|error| {
        SocketError::Mode {
            path: path.to_path_buf(),
            error,
        }
    })?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|error| SocketError::Group {
            path: path.to_path_buf(),
            gid,
            error,
        })?;
    }
    Ok(listener)
}

/// Serves connections forever, one thread each, at most
/// `limits.max_connections` at once.
pub fn serve(
    listener: UnixListener,
    control: Arc<Mutex<Control>>,
    group: Option<u32>,
    limits: ServeLimits,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let served = ConnectionCount::default();
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = served.try_take(limits.max_connections) else {
            refuse_over_limit(&mut stream, limits.max_connections);
            continue;
        };
        let control = control.clone();
        let spawned = std::thread::Builder::new()
            .name("yardd-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve_connection(stream, &control, own_uid, group, limits) {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a connection thread");
        }
    }
}

/// Answers a connection beyond the limit with one error line, from the accept
/// loop: it never blocks on the client and holds no thread.
fn refuse_over_limit(stream: &mut UnixStream, max: usize) {
    tracing::warn!(max, "refused a control connection: too many open");
    let message = format!(
        "yardd is serving {max} control connections already (its limit): this one is refused — close idle clients and retry"
    );
    if stream.set_nonblocking(true).is_ok() {
        let _ = write_reply(stream, &error_reply(message));
    }
}

fn lock(control: &Mutex<Control>) -> MutexGuard<'_, Control> {
    control
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_reply(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

fn error_reply(message: impl Into<String>) -> Reply {
    Reply::Error(ApiError {
        message: message.into(),
    })
}

/// Whether the peer may use the socket; its uid when it may.
fn authorized(stream: &UnixStream, own_uid: u32, group: Option<u32>) -> Result<u32, AccessError> {
    let (pid, uid, gid) =
        sys::peer_credentials(stream.as_fd()).map_err(AccessError::PeerCredentials)?;
    if uid == 0 || uid == own_uid || group.is_some_and(|g| g == gid) {
        return Ok(uid);
    }
    Err(AccessError::Denied {
        pid,
        uid,
        own_uid,
        group,
    })
}

/// Why a request line could not be read.
enum LineError {
    /// Longer than `MAX_REQUEST_BYTES`.
    TooLong,
    /// Not complete within the idle timeout.
    TimedOut,
    /// The connection failed.
    Broken,
}

/// Reads one line of at most `MAX_REQUEST_BYTES`. `Ok(None)` at end of stream.
fn read_line(
    reader: &mut BufReader<DeadlineStream>,
    line: &mut Vec<u8>,
) -> Result<Option<()>, LineError> {
    line.clear();
    let limit = MAX_REQUEST_BYTES as u64 + 1;
    match reader.by_ref().take(limit).read_until(b'\n', line) {
        Ok(0) => Ok(None),
        Ok(_) if line.last() == Some(&b'\n') => Ok(Some(())),
        Ok(_) if line.len() as u64 >= limit => Err(LineError::TooLong),
        Ok(_) => Ok(Some(())), // last line without newline
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(LineError::TimedOut),
        Err(_) => Err(LineError::Broken),
    }
}

fn serve_connection(
    stream: UnixStream,
    control: &Mutex<Control>,
    own_uid: u32,
    group: Option<u32>,
    limits: ServeLimits,
) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    // A client that does not read its replies must not hold the thread.
    writer.set_write_timeout(Some(limits.idle_timeout))?;
    let client_uid = match authorized(&stream, own_uid, group) {
        Ok(uid) => uid,
        Err(refusal) => {
            let message = refusal.to_string();
            tracing::warn!(%message, "refused a control connection");
            return write_reply(&mut writer, &error_reply(message));
        }
    };
    let mut reader = BufReader::new(DeadlineStream::new(stream));
    let mut line = Vec::with_capacity(1024);
    loop {
        reader.get_mut().expect_request_within(limits.idle_timeout);
        match read_line(&mut reader, &mut line) {
            Ok(None) => return Ok(()),
            Ok(Some(())) => {}
            Err(LineError::TooLong) => {
                let message = format!("request longer than {MAX_REQUEST_BYTES} bytes: refused");
                return write_reply(&mut writer, &error_reply(message));
            }
            Err(LineError::TimedOut) => {
                let message = format!(
                    "no complete request within {} s: connection closed — send one request line at a time",
                    limits.idle_timeout.as_secs_f64()
                );
                return write_reply(&mut writer, &error_reply(message));
            }
            Err(LineError::Broken) => return Ok(()),
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let envelope: Envelope = match serde_json::from_slice(&line) {
            Ok(env) => env,
            Err(e) => {
                write_reply(&mut writer, &error_reply(format!("malformed request: {e}")))?;
                continue;
            }
        };
        if envelope.api_version != API_VERSION {
            let message = format!(
                "this yardd speaks API version {API_VERSION}, the client {}: use yardctl and yardd from the same build",
                envelope.api_version
            );
            write_reply(&mut writer, &error_reply(message))?;
            continue;
        }
        if let Request::Capture { port, count } = envelope.request {
            // Streaming: the request is in, so no idle deadline applies, and
            // a slow reader only loses frames (the capture queue is bounded).
            reader.get_mut().clear_deadline();
            writer.set_write_timeout(None)?;
            return stream_capture(&mut reader, writer, control, port, count);
        }
        if let Err(refusal) = netns_access::check_attach(&envelope.request, client_uid, own_uid) {
            let message = refusal.to_string();
            tracing::warn!(%message, "refused an attach");
            write_reply(&mut writer, &error_reply(message))?;
            continue;
        }
        if let Request::Events = envelope.request {
            reader.get_mut().clear_deadline();
            writer.set_write_timeout(None)?;
            return stream_events(&mut reader, writer, control);
        }
        let reply = match lock(control).handle_as(envelope.request, client_uid) {
            Ok(payload) => Reply::Ok(payload),
            Err(refusal) => error_reply(refusal.to_string()),
        };
        write_reply(&mut writer, &reply)?;
    }
}

/// Streams pcap to the client until `count` frames have gone or it hangs up.
fn stream_capture(
    reader: &mut BufReader<DeadlineStream>,
    mut writer: UnixStream,
    control: &Mutex<Control>,
    port: String,
    count: Option<u64>,
) -> io::Result<()> {
    let (tx, rx) = crossbeam_channel::bounded(CAPTURE_QUEUE);
    let started = {
        let control = lock(control);
        match control.known_port(&port) {
            Err(e) => Err(e),
            Ok(())
                if !matches!(
                    control.live.get(&port).map(|l| &l.state),
                    Some(PortState::Up)
                ) =>
            {
                Err(ControlError::PortDown(port.clone()))
            }
            Ok(()) => control
                .datapath
                .capture(&port, CaptureTap::new(tx))
                .map_err(ControlError::from),
        }
    };
    if let Err(refusal) = started {
        return write_reply(&mut writer, &error_reply(refusal.to_string()));
    }
    write_reply(&mut writer, &Reply::Ok(Payload::CaptureStarted { port }))?;
    writer.write_all(&pcap::file_header())?;
    let mut sent = 0u64;
    while count.is_none_or(|c| sent < c) {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(frame) => {
                writer.write_all(&pcap::record_header(frame.when, frame.bytes.len()))?;
                writer.write_all(&frame.bytes)?;
                sent += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if client_gone(reader)? {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Dropping the receiver tells the datapath to remove the tap.
    Ok(())
}

/// Streams events to the client, one JSON line each, until it hangs up.
fn stream_events(
    reader: &mut BufReader<DeadlineStream>,
    mut writer: UnixStream,
    control: &Mutex<Control>,
) -> io::Result<()> {
    let events = lock(control).subscribe_events();
    write_reply(&mut writer, &Reply::Ok(Payload::EventsStarted))?;
    loop {
        match events.recv_timeout(Duration::from_millis(500)) {
            Ok(event) => {
                let mut line = serde_json::to_vec(&event).map_err(io::Error::other)?;
                line.push(b'\n');
                writer.write_all(&line)?;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if client_gone(reader)? {
                    return Ok(());
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// True when the client closed its end.
fn client_gone(reader: &mut BufReader<DeadlineStream>) -> io::Result<bool> {
    let stream = reader.get_ref().stream();
    stream.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    // The client sends nothing after a capture request, so a read either
    // reports end of stream (it hung up) or would block.
    let gone = match (&mut &*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false)?;
    Ok(gone)
}
