//! The L3 requests of the control server: routing between networks, the
//! uplink, published ports and conntrack settings — validated by
//! [`Config`], applied to the datapath's gateway, then persisted, as every
//! other change.

use yard_ctl::api::{
    ConntrackSettings, Payload, PortState, PublishInfo, PublishSpec, UplinkInfo, UplinkKind,
    UplinkSpec,
};
use yard_nat::conntrack::RuleId;
use yard_nat::gateway::{PublishRule, UplinkConfig};

use super::{destroy_kept, Control, LivePort, Outcome};
use crate::control::adopt::{destroy_left_tap, TapMode};
use crate::control::attach::attach_uplink;
use crate::control::config::Config;
use crate::control::nat_api::{self, proto_of, ConntrackChange};
use crate::control::{ControlError, Object, Removed};
use crate::relay::published;

impl Control {
    /// Restores the L3 configuration after networks and ports: connections,
    /// the uplink (reported down when it cannot be attached), published
    /// ports, conntrack settings.
    pub(super) fn restore_l3(&mut self, saved: Config) -> Result<(), ControlError> {
        for (a, b) in saved.connections {
            self.datapath.connect(&a, &b)?;
            self.config.connections.push((a, b));
        }
        if let Some(spec) = saved.uplink {
            let (live, _) = self.start_uplink(&spec, TapMode::CreateOrAdopt);
            if let PortState::Down(reason) = &live.state {
                tracing::warn!(uplink = %spec.name, %reason, "uplink could not be re-attached");
            }
            self.uplink = Some(live);
            self.config.uplink = Some(spec);
        }
        for spec in saved.publish {
            let id = self.next_rule_id();
            let installed = self
                .install_publish(&spec, id)
                .and_then(|()| self.listen_publish(&spec, id));
            if let Err(e) = installed {
                tracing::warn!(rule = %spec, error = %e, "published port not restored");
            }
            self.config.publish.push(spec);
            self.rule_ids.push(id);
        }
        if saved.conntrack != ConntrackSettings::default() {
            let change = ConntrackChange::parse(&saved.conntrack)?;
            self.datapath
                .set_conntrack(move |config| change.apply(config))?;
        }
        Ok(())
    }

    fn next_rule_id(&mut self) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        id
    }

    /// Attaches the uplink and hands it to the datapath: what is known of
    /// it, and when that failed, why (also in its state, as the reason it
    /// is down). Its TAP, if it has one, is kept for `uplink rm`, even when
    /// the datapath refuses it.
    fn start_uplink(
        &mut self,
        spec: &UplinkSpec,
        mode: TapMode,
    ) -> (LivePort, Option<ControlError>) {
        if spec.kind == UplinkKind::Host {
            return self.start_host_uplink();
        }
        match attach_uplink(spec, mode) {
            Ok(mut attached) => {
                self.kept_uplink = attached.kept.take();
                // Checked on the way in: an --iface or --tap uplink has one.
                let ip = spec.ip.unwrap_or(yard_ctl::Ipv4Cidr {
                    addr: std::net::Ipv4Addr::UNSPECIFIED,
                    prefix: 32,
                });
                let config = UplinkConfig {
                    addr: (ip.addr, ip.prefix),
                    mac: attached.mac.0,
                    gateway: spec.gateway,
                };
                let live = LivePort {
                    mac: Some(attached.mac),
                    mtu: attached.mtu,
                    state: PortState::Up,
                };
                let set = self
                    .datapath
                    .set_uplink(&spec.name, attached.port, config, attached.mtu);
                match set {
                    Ok(()) => (live, None),
                    Err(e) => (
                        LivePort {
                            state: PortState::Down(e.to_string()),
                            ..live
                        },
                        Some(e.into()),
                    ),
                }
            }
            Err(error) => {
                let failed = ControlError::NotAttached {
                    object: Object::Uplink(spec.name.clone()),
                    error: Box::new(error),
                };
                let live = LivePort {
                    mac: None,
                    mtu: 0,
                    state: PortState::Down(failed.to_string()),
                };
                (live, Some(failed))
            }
        }
    }

    /// Hands the host uplink to the datapath: no device, no address.
    fn start_host_uplink(&mut self) -> (LivePort, Option<ControlError>) {
        let live = LivePort {
            mac: None,
            mtu: 0,
            state: PortState::Up,
        };
        let resolver = crate::control::resolv::host_resolver();
        if resolver.is_none() {
            tracing::warn!(
                path = crate::control::resolv::RESOLV_CONF,
                "no IPv4 nameserver: the gateways will not answer DNS"
            );
        }
        match self.datapath.set_host_uplink(resolver) {
            Ok(()) => (live, None),
            Err(e) => (
                LivePort {
                    state: PortState::Down(e.to_string()),
                    ..live
                },
                Some(e.into()),
            ),
        }
    }

    pub(super) fn net_connect(&mut self, a: &str, b: &str) -> Outcome {
        self.config.check_connect(a, b)?;
        self.datapath.connect(a, b)?;
        let before = self.config.clone();
        self.config.connections.push((a.to_string(), b.to_string()));
        let (x, y) = (a.to_string(), b.to_string());
        self.commit(before, move |dp| dp.disconnect(&x, &y))?;
        Ok(Payload::Done)
    }

    pub(super) fn net_disconnect(&mut self, a: &str, b: &str) -> Outcome {
        if !self.config.is_connected(a, b) {
            return Err(ControlError::NotConnected {
                a: a.to_string(),
                b: b.to_string(),
            });
        }
        self.datapath.disconnect(a, b)?;
        let before = self.config.clone();
        self.config
            .connections
            .retain(|(x, y)| !((x == a && y == b) || (x == b && y == a)));
        let (x, y) = (a.to_string(), b.to_string());
        self.commit(before, move |dp| dp.connect(&x, &y))?;
        Ok(Payload::Done)
    }

    /// Adds the uplink; an `--iface` or `--tap` uplink replaces a host
    /// uplink (whose relayed connections end), which comes back if the new
    /// one cannot be added.
    pub(super) fn uplink_add(&mut self, spec: UplinkSpec) -> Outcome {
        self.config.check_new_uplink(&spec)?;
        let replaced = self
            .config
            .uplink
            .clone()
            .filter(|old| old.kind == UplinkKind::Host && spec.kind != UplinkKind::Host);
        if replaced.is_some() {
            self.datapath.remove_uplink()?;
            self.config.uplink = None;
            self.uplink = None;
        }
        let added = self.add_uplink(spec);
        if let (Err(_), Some(old)) = (&added, replaced) {
            let (live, _) = self.start_uplink(&old, TapMode::Create);
            self.config.uplink = Some(old);
            self.uplink = Some(live);
        }
        added
    }

    fn add_uplink(&mut self, spec: UplinkSpec) -> Outcome {
        let (live, failed) = self.start_uplink(&spec, TapMode::Create);
        if let Some(e) = failed {
            destroy_kept(&spec.name, self.kept_uplink.take());
            return Err(e);
        }
        let before = self.config.clone();
        self.config.uplink = Some(spec.clone());
        if let Err(e) = self.commit(before, |dp| dp.remove_uplink()) {
            destroy_kept(&spec.name, self.kept_uplink.take());
            return Err(e);
        }
        self.uplink = Some(live);
        // Published ports on the uplink address now have somewhere to
        // listen; on the host uplink, host sockets listen for them.
        for (index, rule) in self.config.publish.clone().iter().enumerate() {
            let id = self.rule_ids[index];
            let installed = self
                .install_publish(rule, id)
                .and_then(|()| self.listen_publish(rule, id));
            if let Err(e) = installed {
                tracing::warn!(rule = %rule, error = %e, "published port not served by the new uplink");
            }
        }
        Ok(Payload::Uplink(self.uplink_info(&spec)))
    }

    pub(super) fn uplink_rm(&mut self, name: &str) -> Outcome {
        match &self.config.uplink {
            Some(spec) if spec.name == name => {}
            _ => return Err(ControlError::NoUplink(name.to_string())),
        }
        if matches!(self.uplink.as_ref().map(|l| &l.state), Some(PortState::Up)) {
            self.datapath.remove_uplink()?;
        }
        match (self.kept_uplink.take(), &self.config.uplink) {
            (Some(kept), _) => destroy_kept(name, Some(kept)),
            (
                None,
                Some(UplinkSpec {
                    kind: UplinkKind::Tap { netns, ifname },
                    ..
                }),
            ) => {
                let owner = Object::Uplink(name.to_string());
                if let Err(error) = destroy_left_tap(&owner, netns.as_deref(), ifname) {
                    tracing::warn!(uplink = %name, %error, "the uplink's TAP could not be deleted");
                }
            }
            (None, _) => {}
        }
        self.config.uplink = None;
        self.uplink = None;
        self.publish_down.clear();
        self.save().map_err(|error| ControlError::RemovedNotSaved {
            removed: Removed::Uplink(name.to_string()),
            error,
        })?;
        Ok(Payload::Done)
    }

    fn uplink_info(&self, spec: &UplinkSpec) -> UplinkInfo {
        let live = self.uplink.as_ref();
        UplinkInfo {
            spec: spec.clone(),
            mac: live.and_then(|l| l.mac),
            mtu: live.map(|l| l.mtu).unwrap_or(0),
            state: live
                .map(|l| l.state.clone())
                .unwrap_or(PortState::Down("not attached".into())),
        }
    }

    pub(super) fn uplink_infos(&self) -> Vec<UplinkInfo> {
        self.config
            .uplink
            .iter()
            .map(|spec| self.uplink_info(spec))
            .collect()
    }

    /// Resolves a published port's target and hands the rule to the gateway.
    fn install_publish(&self, spec: &PublishSpec, id: RuleId) -> Result<(), ControlError> {
        let target = self.config.resolve_target(&spec.target)?;
        let rule = PublishRule {
            id,
            proto: proto_of(spec.proto),
            host_addr: spec.host_ip,
            host_ports: spec.host_ports,
            target,
            target_ports: spec.target_ports,
        };
        // Replacing: drop the old rule (and its connections) first.
        self.datapath.remove_publish(id)?;
        self.datapath.add_publish(rule)?;
        Ok(())
    }

    /// With the host uplink, binds the host sockets of published rule `id`
    /// and has the relay serve them; else nothing. A rule whose sockets
    /// cannot be bound is reported down with the reason.
    fn listen_publish(&mut self, spec: &PublishSpec, id: RuleId) -> Result<(), ControlError> {
        self.publish_down.remove(&id);
        let host = matches!(&self.config.uplink, Some(u) if u.kind == UplinkKind::Host);
        if !host {
            return Ok(());
        }
        let bound = published::bind(id, proto_of(spec.proto), spec.host_ip, spec.host_ports);
        match bound {
            Ok(sockets) => Ok(self.datapath.listen_publish(sockets)?),
            Err(e) => {
                self.publish_down.insert(id, e.to_string());
                Err(ControlError::PublishListen(e))
            }
        }
    }

    pub(super) fn publish_add(&mut self, spec: PublishSpec) -> Outcome {
        self.config.check_new_publish(&spec)?;
        let id = self.next_rule_id();
        self.install_publish(&spec, id)?;
        if let Err(e) = self.listen_publish(&spec, id) {
            self.publish_down.remove(&id);
            let _ = self.datapath.remove_publish(id);
            return Err(e);
        }
        let before = self.config.clone();
        self.config.publish.push(spec.clone());
        self.commit(before, move |dp| {
            dp.unlisten_publish(id)?;
            dp.remove_publish(id).map(drop)
        })?;
        self.rule_ids.push(id);
        let info = self.publish_info(self.config.publish.len() - 1);
        Ok(Payload::Publish(info))
    }

    pub(super) fn publish_rm(&mut self, spec: &PublishSpec) -> Outcome {
        let index = self.config.find_publish(spec)?;
        let id = self.rule_ids[index];
        self.datapath.unlisten_publish(id)?;
        self.datapath.remove_publish(id)?;
        self.publish_down.remove(&id);
        self.config.publish.remove(index);
        self.rule_ids.remove(index);
        self.save().map_err(|error| ControlError::RemovedNotSaved {
            removed: Removed::Publish,
            error,
        })?;
        Ok(Payload::Done)
    }

    fn publish_info(&self, index: usize) -> PublishInfo {
        let spec = self.config.publish[index].clone();
        let target = self.config.resolve_target(&spec.target);
        let down = self.publish_down.get(&self.rule_ids[index]);
        let state = match (&target, &self.config.uplink, spec.host_ip) {
            (Err(e), _, _) => PortState::Down(e.to_string()),
            _ if down.is_some() => PortState::Down(down.cloned().unwrap_or_default()),
            (Ok(_), None, None) => {
                PortState::Down("no uplink: add one with `yardctl uplink add`".into())
            }
            _ => PortState::Up,
        };
        PublishInfo {
            rule: spec.to_string(),
            target_ip: target.ok(),
            state,
            spec,
        }
    }

    pub(super) fn publish_infos(&self) -> Vec<PublishInfo> {
        (0..self.config.publish.len())
            .map(|i| self.publish_info(i))
            .collect()
    }

    /// A port came (back): rules that name it as their target follow its
    /// address.
    pub(super) fn retarget_publishes(&self, port: &str) {
        for (index, spec) in self.config.publish.iter().enumerate() {
            if spec.target == port {
                if let Err(e) = self.install_publish(spec, self.rule_ids[index]) {
                    tracing::warn!(rule = %spec, error = %e, "published port not re-targeted");
                }
            }
        }
    }

    /// Changes the conntrack limit, timeouts and SNAT share. The change is saved first
    /// and applied only once saved: a lower limit evicts at once, which no
    /// undo could bring back, so a state directory that cannot be written
    /// leaves the running table as it was.
    pub(super) fn conntrack_set(&mut self, settings: ConntrackSettings) -> Outcome {
        let change = ConntrackChange::parse(&settings)?;
        let before = self.config.clone();
        if settings.max_entries.is_some() {
            self.config.conntrack.max_entries = settings.max_entries;
        }
        if settings.snat_share_percent.is_some() {
            self.config.conntrack.snat_share_percent = settings.snat_share_percent;
        }
        self.config.conntrack.timeouts.extend(settings.timeouts);
        if let Err(e) = self.save() {
            self.config = before;
            return Err(ControlError::NotSaved(e));
        }
        match self
            .datapath
            .set_conntrack(move |config| change.apply(config))
        {
            Ok(applied) => Ok(Payload::ConntrackSettings(nat_api::settings(&applied))),
            Err(e) => {
                self.config = before;
                if let Err(undo) = self.save() {
                    tracing::warn!(error = %undo, "conntrack settings saved but not applied, and the old ones could not be saved back");
                }
                Err(e.into())
            }
        }
    }
}
