//! QEMU socket ports — `port add NAME --net NET --qemu-stream PATH` and
//! `--qemu-dgram ADDR` — and their mapping onto [`PortKind::QemuStream`] and
//! [`PortKind::QemuDgram`].
//!
//! Contract: as for the rest of [`super`], mapping checks locally what needs
//! no daemon: one QEMU kind and no other port kind, a network, none of the
//! options that configure a TAP or a tunnel. A relative socket path is made
//! absolute against yardctl's working directory, since yardd runs elsewhere;
//! a `--qemu-dgram` UDP address must be on loopback
//! ([`QemuDgramAddr`]'s parser says so). Whether the path is free is left to
//! yardd.

use super::{ArgError, PortAddArgs};
use crate::api::{PortKind, QemuDgramAddr};

/// Why a QEMU port may not have the options that configure a TAP.
const TAP_OPTION_HINT: &str = "it configures the TAP yardd creates; a QEMU port has no \
                               interface of its own: the VM configures its NIC (MAC, address, \
                               MTU) itself";

impl PortAddArgs {
    /// The QEMU port asked for with `--qemu-stream` or `--qemu-dgram`, `None`
    /// when neither was given.
    pub(super) fn qemu(&self) -> Result<Option<PortKind>, ArgError> {
        let (option, kind) = match (&self.qemu_stream, &self.qemu_dgram) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ArgError::TwoKinds {
                    option: "--qemu-stream",
                    other: "--qemu-dgram",
                    why: "a VM's NIC uses one of QEMU's socket backends (-netdev stream or \
                          -netdev dgram); add one port per NIC",
                })
            }
            (Some(_), None) => ("--qemu-stream", "qemu-stream"),
            (None, Some(_)) => ("--qemu-dgram", "qemu-dgram"),
        };
        let other = [
            ("--tap", self.tap),
            ("--iface", self.iface.is_some()),
            ("--trunk", self.trunk),
            ("--gre", self.gre),
            ("--gre-udp", self.gre_udp),
        ]
        .into_iter()
        .find(|(_, given)| *given);
        if let Some((other, _)) = other {
            return Err(ArgError::TwoKinds {
                option,
                other,
                why: "a QEMU port is a socket a VM connects to; give only one way to \
                      attach the port",
            });
        }
        if !self.nets.is_empty() {
            return Err(ArgError::NotForKind {
                option: "--nets",
                kind,
                hint: "a VM's NIC joins one network: use --net NET",
            });
        }
        self.reject_tunnel_options(kind)?;
        self.reject_tap_options(kind, TAP_OPTION_HINT)?;
        let net = self.required_net(kind)?;
        if let Some(path) = &self.qemu_stream {
            return Ok(Some(PortKind::QemuStream {
                net,
                path: absolute(path)?,
            }));
        }
        let addr = match self.qemu_dgram.clone() {
            Some(QemuDgramAddr::Unix(path)) => QemuDgramAddr::Unix(absolute(&path)?),
            Some(udp) => udp,
            None => unreachable!("one of the two was given"),
        };
        Ok(Some(PortKind::QemuDgram { net, addr }))
    }
}

/// `path` made absolute against the working directory, as text.
fn absolute(path: &str) -> Result<String, ArgError> {
    if path.is_empty() {
        return Err(ArgError::PortKind(
            "a QEMU socket path must not be empty: give e.g. /run/user/1000/vm1.sock",
        ));
    }
    let absolute = std::path::absolute(path).map_err(|_| {
        ArgError::PortKind(
            "cannot make the QEMU socket path absolute (the working directory is gone): \
             give an absolute path",
        )
    })?;
    absolute.into_os_string().into_string().map_err(|_| {
        ArgError::PortKind("the QEMU socket path must be valid UTF-8: choose another path")
    })
}
