//! What container-engine integrations (the CNI plugin, the Docker network
//! driver) ask of yardd: one [`Yard`] session over [`Client`], whose
//! failures are a [`YardError`] each integration turns into its own
//! protocol's error.
//!
//! Contract: [`Yard::remove_port`] is idempotent — it removes the published
//! ports targeting the port, then the port, each only if present — so an
//! engine's delete succeeds however much of an attachment is already gone.

use std::path::{Path, PathBuf};

use crate::api::{NetworkInfo, Payload, PortInfo, PublishInfo, Reply, Request};
use crate::client::Client;

/// Why a request to yardd failed.
#[derive(Debug, thiserror::Error)]
pub enum YardError {
    /// yardd could not be reached, or the connection broke.
    #[error("cannot reach yardd at {}: {detail}; start yardd, or name its socket", .socket.display())]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// yardd refused the request; nothing was changed.
    #[error("{action}: {message}")]
    Refused {
        /// What was asked, e.g. `add port cni-…`.
        action: String,
        /// yardd's message.
        message: String,
    },
}

/// A connection to yardd for one engine request.
pub struct Yard {
    client: Client,
}

impl Yard {
    /// Connects to yardd's socket.
    pub fn connect(socket: &Path) -> Result<Yard, YardError> {
        Client::connect(socket)
            .map(|client| Yard { client })
            .map_err(|e| YardError::Unreachable {
                socket: socket.to_path_buf(),
                detail: e.to_string(),
            })
    }

    /// Sends `request`; `action` names it in a refusal.
    pub fn call(&mut self, action: &str, request: Request) -> Result<Payload, YardError> {
        match self.client.call(&request) {
            Ok(Reply::Ok(payload)) => Ok(payload),
            Ok(Reply::Error(e)) => Err(YardError::Refused {
                action: action.to_string(),
                message: e.message,
            }),
            Err(e) => Err(YardError::Unreachable {
                socket: self.client.path().to_path_buf(),
                detail: e.to_string(),
            }),
        }
    }

    /// The networks.
    pub fn networks(&mut self) -> Result<Vec<NetworkInfo>, YardError> {
        match self.call("list networks", Request::NetLs)? {
            Payload::Networks(nets) => Ok(nets),
            other => Err(unexpected("net ls", &other)),
        }
    }

    /// The ports.
    pub fn ports(&mut self) -> Result<Vec<PortInfo>, YardError> {
        match self.call("list ports", Request::PortLs)? {
            Payload::Ports(ports) => Ok(ports),
            other => Err(unexpected("port ls", &other)),
        }
    }

    /// Port `name`, if it exists.
    pub fn port(&mut self, name: &str) -> Result<Option<PortInfo>, YardError> {
        Ok(self.ports()?.into_iter().find(|p| p.spec.name == name))
    }

    /// The published ports.
    pub fn publishes(&mut self) -> Result<Vec<PublishInfo>, YardError> {
        match self.call("list published ports", Request::PublishLs)? {
            Payload::Publishes(rules) => Ok(rules),
            other => Err(unexpected("publish ls", &other)),
        }
    }

    /// Removes the published ports targeting port `name`.
    pub fn unpublish_port(&mut self, name: &str) -> Result<(), YardError> {
        for rule in self.publishes()? {
            if rule.spec.target == name {
                self.call(
                    &format!("unpublish {}", rule.rule),
                    Request::PublishRm(rule.spec),
                )?;
            }
        }
        Ok(())
    }

    /// Removes port `name` and every published port targeting it; both may
    /// already be gone.
    pub fn remove_port(&mut self, name: &str) -> Result<(), YardError> {
        self.unpublish_port(name)?;
        if self.port(name)?.is_some() {
            self.call(
                &format!("remove port {name}"),
                Request::PortRm {
                    name: name.to_string(),
                },
            )?;
        }
        Ok(())
    }
}

/// A reply of the wrong kind: yardd and its client are from different builds.
pub fn unexpected(what: &str, payload: &Payload) -> YardError {
    YardError::Refused {
        action: what.to_string(),
        message: format!(
            "unexpected reply {payload:?}: use the client and yardd from the same build"
        ),
    }
}
