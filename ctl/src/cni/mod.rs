//! `yard-cni`: a CNI plugin that puts containers on a yardd network.
//!
//! A container runtime (podman, containerd, CRI-O, Nomad, the kubelet's
//! runtime) runs the plugin with `CNI_*` variables and the network
//! configuration on stdin; the plugin asks yardd, over its control socket,
//! for a TAP port in the container's namespace and answers with the spec's
//! result on stdout, or with an error object and a non-zero exit.
//!
//! - [`config`]: the environment and the configuration, parsed and checked;
//! - [`result`]: the success results (ADD, VERSION);
//! - [`commands`]: what ADD, DEL, CHECK, STATUS and GC ask of yardd;
//! - [`delegate`]: running a delegated IPAM plugin such as `host-local`;
//! - [`error`]: [`CniError`] and the spec's error codes.
//!
//! Without an `ipam` section the address comes from yardd's own address
//! management; with one, from that plugin, and yardd is told to use it.

pub mod commands;
pub mod config;
pub mod delegate;
pub mod error;
pub mod result;

use std::io::Read;

pub use error::CniError;

use config::{Command, Env, NetConf};
use result::VersionResult;

/// The spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// What the process prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The JSON printed on stdout, if any.
    pub stdout: Option<serde_json::Value>,
    /// The exit status: 0 on success, 1 after an error object.
    pub exit: u8,
}

/// The `cniVersion` of the request, if stdin has one; else the newest.
fn request_version(raw: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string())
}

/// Runs one plugin invocation: the environment through `var`, the
/// configuration from `stdin`.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &mut dyn Read) -> Outcome {
    let mut raw = Vec::new();
    let result = stdin
        .read_to_end(&mut raw)
        .map_err(CniError::Stdin)
        .and_then(|_| dispatch(&var, &raw));
    match result {
        Ok(stdout) => Outcome { stdout, exit: 0 },
        Err(e) => Outcome {
            stdout: serde_json::to_value(e.to_object(&request_version(&raw))).ok(),
            exit: 1,
        },
    }
}

fn dispatch(
    var: &impl Fn(&str) -> Option<String>,
    raw: &[u8],
) -> Result<Option<serde_json::Value>, CniError> {
    let env = Env::from_vars(var)?;
    if env.command == Command::Version {
        let version = VersionResult {
            cni_version: request_version(raw),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        };
        return Ok(serde_json::to_value(version).ok());
    }
    let conf = NetConf::parse(raw)?;
    match env.command {
        Command::Add => {
            let result = commands::add(&env, &conf, raw)?;
            Ok(serde_json::to_value(result).ok())
        }
        Command::Del => commands::del(&env, &conf, raw).map(|()| None),
        Command::Check => commands::check(&env, &conf, raw).map(|()| None),
        Command::Status => commands::status(&conf).map(|()| None),
        Command::Gc => commands::gc(&conf).map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests;
