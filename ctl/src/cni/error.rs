//! [`CniError`]: why a CNI command failed, with the spec's error code.
//!
//! Codes 1–7 and 11 are the spec's well-known ones, 50 is spec 1.1's
//! "plugin not available" (STATUS); 100 and above are this plugin's own.
//! Every message names the object concerned and what to do; it is printed
//! as the `msg` of a CNI error object on stdout.

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::YardError;

/// The spec's error codes, and this plugin's own (100 and above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one this plugin speaks.
    IncompatibleVersion = 1,
    /// 2: a configuration field this plugin does not support.
    UnsupportedField = 2,
    /// 3: the container (its namespace) is unknown or gone.
    UnknownContainer = 3,
    /// 4: a required `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment = 4,
    /// 5: reading stdin or running a delegate failed.
    IoFailure = 5,
    /// 6: stdin is not JSON.
    DecodingFailure = 6,
    /// 7: the JSON is not a valid configuration for this plugin.
    InvalidConfig = 7,
    /// 11: a transient condition (yardd not reachable); retry later.
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADD now (yardd not running).
    NotAvailable = 50,
    /// 100: yardd refused a request; the message is yardd's.
    Refused = 100,
    /// 101: CHECK found the port missing, down, or with another address.
    CheckFailed = 101,
    /// 102: the delegated IPAM plugin failed.
    IpamFailed = 102,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// `cniVersion` is not supported.
    #[error("CNI version {0} is not supported by yard-cni: set cniVersion to one of {list}", list = super::SUPPORTED_VERSIONS.join(", "))]
    Version(String),
    /// A field value this plugin cannot honour.
    #[error("{field}: {why}")]
    Unsupported {
        /// The configuration key.
        field: &'static str,
        /// Why, and what to write instead.
        why: String,
    },
    /// The namespace named by `CNI_NETNS` does not exist.
    #[error("network namespace {0} does not exist: the container is gone or not started")]
    NoNamespace(String),
    /// A `CNI_*` variable is missing or invalid.
    #[error("{var} {why}: the container runtime must set it (see the CNI spec's parameters)")]
    Environment {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// stdin could not be read.
    #[error("cannot read the network configuration from stdin: {0}")]
    Stdin(std::io::Error),
    /// stdin is not JSON.
    #[error("the network configuration on stdin is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The JSON is not a configuration this plugin accepts.
    #[error("invalid yard-cni network configuration: {0}")]
    Config(String),
    /// yardd could not be reached.
    #[error("yardd is not reachable at {}: {detail}; start yardd (it listens there by default as root), or set \"socket\" in the network configuration to the socket it listens on", socket.display())]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// What the client said.
        detail: String,
    },
    /// yardd refused a request.
    #[error("yardd refused to {action}: {message}")]
    Refused {
        /// What was asked ("add port X", …).
        action: String,
        /// yardd's message.
        message: String,
    },
    /// CHECK found a difference.
    #[error("CHECK: {0}")]
    Check(String),
    /// The IPAM plugin could not be run or failed.
    #[error("IPAM plugin {plugin}: {why}")]
    Ipam {
        /// The plugin's `type`.
        plugin: String,
        /// What went wrong (its own message when it gave one).
        why: String,
    },
    /// STATUS: yardd is not running.
    #[error("yardd is not reachable at {}: {detail}; start yardd", socket.display())]
    NotAvailable {
        /// The socket tried.
        socket: PathBuf,
        /// What the client said.
        detail: String,
    },
}

impl CniError {
    /// The spec's (or this plugin's) code for this error.
    pub fn code(&self) -> Code {
        match self {
            CniError::Version(_) => Code::IncompatibleVersion,
            CniError::Unsupported { .. } => Code::UnsupportedField,
            CniError::NoNamespace(_) => Code::UnknownContainer,
            CniError::Environment { .. } => Code::InvalidEnvironment,
            CniError::Stdin(_) => Code::IoFailure,
            CniError::NotJson(_) => Code::DecodingFailure,
            CniError::Config(_) => Code::InvalidConfig,
            CniError::Unreachable { .. } => Code::TryAgainLater,
            CniError::Refused { .. } => Code::Refused,
            CniError::Check(_) => Code::CheckFailed,
            CniError::Ipam { .. } => Code::IpamFailed,
            CniError::NotAvailable { .. } => Code::NotAvailable,
        }
    }

    /// The error object printed on stdout, for configuration version
    /// `cni_version`.
    pub fn to_object(&self, cni_version: &str) -> ErrorObject {
        ErrorObject {
            cni_version: cni_version.to_string(),
            code: self.code() as u32,
            msg: self.to_string(),
            details: String::new(),
        }
    }
}

/// The spec's error result.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorObject {
    /// The version of the request (or the newest supported).
    pub cni_version: String,
    /// The error code.
    pub code: u32,
    /// A one-line message.
    pub msg: String,
    /// More detail; empty here, the message says it all.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl From<YardError> for CniError {
    fn from(error: YardError) -> CniError {
        match error {
            YardError::Unreachable { socket, detail } => CniError::Unreachable { socket, detail },
            YardError::Refused { action, message } => CniError::Refused { action, message },
        }
    }
}
