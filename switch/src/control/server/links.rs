//! The link requests of the control server: `link add`, `link rm`, `link
//! ls` — validated by [`crate::control::config::Config`], applied to every
//! datapath thread's bridge as the network's whole list, then persisted;
//! restored after the ports; a port's links go with it.

use yard_ctl::api::{LinkInfo, LinkSpec, Payload, PortSpec};

use super::{Control, Outcome};
use crate::control::config::ConfigError;
use crate::dataplane::threads::DatapathError;

impl Control {
    pub(super) fn link_add(&mut self, spec: LinkSpec) -> Outcome {
        let net = self.config.check_new_link(&spec)?;
        let before = self.config.clone();
        self.config.links.push(spec.clone());
        self.push_links(&net)?;
        let undo_net = net.clone();
        let undo = before.datapath_links(&net);
        self.commit(before, move |dp| dp.set_links(&undo_net, undo))?;
        Ok(Payload::Link(LinkInfo { spec, net }))
    }

    pub(super) fn link_rm(&mut self, a: &str, b: &str) -> Outcome {
        let Some(link) = self.config.link_between(a, b).cloned() else {
            return Err(ConfigError::NoLink {
                a: a.to_string(),
                b: b.to_string(),
            }
            .into());
        };
        let net = self.config.link_net(&link);
        let before = self.config.clone();
        self.config.links.retain(|l| *l != link);
        if let Some(net) = &net {
            self.push_links(net)?;
            let undo_net = net.clone();
            let undo = before.datapath_links(net);
            self.commit(before, move |dp| dp.set_links(&undo_net, undo))?;
        } else {
            self.commit(before, |_| Ok(()))?;
        }
        Ok(Payload::Done)
    }

    pub(super) fn link_infos(&self) -> Vec<LinkInfo> {
        self.config
            .links
            .iter()
            .map(|spec| LinkInfo {
                spec: spec.clone(),
                net: self.config.link_net(spec).unwrap_or_default(),
            })
            .collect()
    }

    /// Gives network `net`'s bridges its links as configured.
    pub(super) fn push_links(&self, net: &str) -> Result<(), DatapathError> {
        self.datapath
            .set_links(net, self.config.datapath_links(net))
    }

    /// Gives a port just added the links that name it (kept while it was
    /// down or away).
    pub(super) fn relink(&self, spec: &PortSpec) {
        let named = self
            .config
            .links
            .iter()
            .any(|l| l.a == spec.name || l.b == spec.name);
        let net = spec.nets()[0];
        if named {
            if let Err(error) = self.push_links(net) {
                tracing::warn!(%net, %error, "links not applied");
            }
        }
    }

    /// Forgets the links of removed port `name` (the bridges dropped them
    /// with the port); part of `port rm`'s change.
    pub(super) fn forget_links(&mut self, name: &str) {
        self.config.links.retain(|l| l.a != name && l.b != name);
    }

    /// Restores the saved links after the ports: each network's list at
    /// once; a network whose ports are missing keeps none.
    pub(super) fn restore_links(&mut self, saved: Vec<LinkSpec>) {
        self.config.links = saved;
        let mut nets: Vec<String> = self
            .config
            .links
            .iter()
            .filter_map(|l| self.config.link_net(l))
            .collect();
        nets.sort();
        nets.dedup();
        for net in nets {
            if let Err(error) = self.push_links(&net) {
                tracing::warn!(%net, %error, "links not restored");
            }
        }
    }
}
