//! GRE tunnel ports — `port add NAME --net NET (--gre | --gre-udp) --remote …`
//! — and their mapping onto [`PortKind::Gre`] and [`PortKind::GreUdp`].
//!
//! Contract: as for the rest of [`super`], mapping is pure and checks locally
//! what needs no daemon: that a tunnel has a network and a remote, that the
//! remote is a unicast address (not 0.0.0.0, multicast or broadcast), that
//! plain `--gre` endpoints carry no port, and that the options configuring a
//! TAP are not given. Whether the addresses are reachable, or the UDP port
//! free, is left to yardd.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use super::{ArgError, PortAddArgs};
use crate::api::PortKind;

/// The GRE-in-UDP port (RFC 8086), used when `--remote` or `--local` of a
/// `--gre-udp` port gives no port.
pub const GRE_UDP_PORT: u16 = 4754;

/// Why a tunnel port may not have the options that configure a TAP.
const TAP_OPTION_HINT: &str = "it configures the TAP yardd creates; a tunnel port has no \
                               interface of its own, and its MTU is the network's overlay MTU \
                               (see `yardctl net inspect`)";

/// A tunnel endpoint as `--remote` and `--local` take it: `IP` or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The IPv4 address.
    pub addr: Ipv4Addr,
    /// The UDP port, if one was given.
    pub port: Option<u16>,
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected IP or IP:PORT, e.g. 192.168.50.2 or 192.168.50.2:4754";
        let (addr, port) = match s.split_once(':') {
            Some((addr, port)) => {
                let port: u16 =
                    port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                        format!("'{port}' is not a port from 1 to 65535; {expected}")
                    })?;
                (addr, Some(port))
            }
            None => (s, None),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IPv4 address; {expected}"))?;
        Ok(Endpoint { addr, port })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl PortAddArgs {
    /// The first tunnel-only option given, if any.
    pub(super) fn first_tunnel_option(&self) -> Option<&'static str> {
        [
            ("--remote", self.remote.is_some()),
            ("--local", self.local.is_some()),
            ("--key", self.key.is_some()),
            ("--csum", self.csum),
            ("--seq", self.seq),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(option, _)| option)
    }

    /// Refuses the tunnel-only options for a port of another `kind`.
    pub(super) fn reject_tunnel_options(&self, kind: &'static str) -> Result<(), ArgError> {
        match self.first_tunnel_option() {
            Some(option) => Err(ArgError::NotForKind {
                option,
                kind,
                hint: "it configures a GRE tunnel to another host: use it with --gre or \
                       --gre-udp (instead of --tap, --iface or --trunk)",
            }),
            None => Ok(()),
        }
    }

    /// The `--gre` (`udp == false`) or `--gre-udp` port these arguments describe.
    pub(super) fn tunnel_kind(&self, udp: bool) -> Result<PortKind, ArgError> {
        let kind = if udp { "gre-udp" } else { "gre" };
        if !self.nets.is_empty() {
            return Err(ArgError::NotForKind {
                option: "--nets",
                kind,
                hint: "a tunnel carries one network: use --net NET, and one tunnel port per \
                       network, told apart by --key",
            });
        }
        self.reject_tap_options(kind, TAP_OPTION_HINT)?;
        let net = self.required_net(kind)?;
        let remote = self.remote.ok_or(ArgError::Missing {
            kind,
            option: if udp {
                "--remote IP[:PORT] (the other host's address; port 4754 by default)"
            } else {
                "--remote IP (the other host's underlay address)"
            },
        })?;
        check_remote(remote)?;
        if let Some(local) = self.local {
            check_local(local, udp)?;
        }
        let (key, csum, seq) = (self.key, self.csum, self.seq);
        if udp {
            let socket = |e: Endpoint| SocketAddrV4::new(e.addr, e.port.unwrap_or(GRE_UDP_PORT));
            return Ok(PortKind::GreUdp {
                net,
                remote: socket(remote),
                local: self.local.map(socket),
                key,
                csum,
                seq,
            });
        }
        for (option, endpoint) in [("--remote", Some(remote)), ("--local", self.local)] {
            if let Some(
                e @ Endpoint {
                    port: Some(port), ..
                },
            ) = endpoint
            {
                return Err(ArgError::BadEndpoint {
                    option,
                    given: e.to_string(),
                    why: format!(
                        "--gre carries GRE directly in IPv4, which has no ports; drop :{port}, \
                         or use --gre-udp for GRE in UDP"
                    ),
                });
            }
        }
        Ok(PortKind::Gre {
            net,
            remote: remote.addr,
            local: self.local.map(|e| e.addr),
            key,
            csum,
            seq,
        })
    }
}

/// What makes `addr` unusable as a unicast endpoint, if anything.
fn not_unicast(addr: Ipv4Addr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("it is the unspecified address")
    } else if addr.is_broadcast() {
        Some("it is the broadcast address")
    } else if addr.is_multicast() {
        Some("it is a multicast address")
    } else {
        None
    }
}

fn check_remote(remote: Endpoint) -> Result<(), ArgError> {
    match not_unicast(remote.addr) {
        Some(why) => Err(ArgError::BadEndpoint {
            option: "--remote",
            given: remote.to_string(),
            why: format!("{why}; give the other host's unicast address, e.g. 192.168.50.2"),
        }),
        None => Ok(()),
    }
}

/// `--local` is one of this host's addresses; for `--gre-udp`, 0.0.0.0 means
/// every address (to pick another port than 4754, e.g. 0.0.0.0:4800).
fn check_local(local: Endpoint, udp: bool) -> Result<(), ArgError> {
    let why = match not_unicast(local.addr) {
        Some(_) if udp && local.addr.is_unspecified() => return Ok(()),
        Some(why) => why,
        None => return Ok(()),
    };
    let way_out = if udp {
        "give one of this host's addresses, or leave --local out to listen on 0.0.0.0:4754"
    } else {
        "give one of this host's addresses, or leave --local out to let the kernel choose"
    };
    Err(ArgError::BadEndpoint {
        option: "--local",
        given: local.to_string(),
        why: format!("{why}; {way_out}"),
    })
}

#[cfg(test)]
mod tests;
