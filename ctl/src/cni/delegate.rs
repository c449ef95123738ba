//! Running the delegated IPAM plugin (`ipam.type`, e.g. `host-local`): the
//! binary of that name in a `CNI_PATH` directory, run with this process's
//! `CNI_*` environment (the command set to ours) and the same configuration
//! on stdin, as the spec's delegation protocol says.
//!
//! Contract: a plugin that exits 0 has its stdout parsed as a result (ADD)
//! or ignored (DEL, CHECK); one that fails is reported with its own error
//! message when it printed an error object.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::config::Env;
use super::error::CniError;
use super::result::CniResult;

/// Finds `plugin` in `env.path`.
fn find(env: &Env, plugin: &str) -> Result<PathBuf, CniError> {
    if plugin.contains('/') || plugin.starts_with('.') {
        return Err(CniError::Config(format!(
            "ipam type {plugin} is not a plugin name: give the binary's name, found in CNI_PATH"
        )));
    }
    env.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::Ipam {
            plugin: plugin.to_string(),
            why: format!(
                "not found in CNI_PATH ({}): install it (Debian: containernetworking-plugins) \
                 or add its directory to the runtime's plugin path",
                env.path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        })
}

/// Runs `plugin` for `command` (`ADD`, `DEL`, `CHECK`) with `config` on its
/// stdin; for ADD returns its result.
pub fn run(
    env: &Env,
    plugin: &str,
    command: &str,
    config: &[u8],
) -> Result<Option<CniResult>, CniError> {
    let binary = find(env, plugin)?;
    let fail = |why: String| CniError::Ipam {
        plugin: plugin.to_string(),
        why,
    };
    let mut child = Command::new(&binary)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config)
            .map_err(|e| fail(format!("cannot write its configuration: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    if !out.status.success() {
        let said: Option<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string));
        let said = said.unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(fail(format!("{command} failed ({}): {said}", out.status)));
    }
    if command != "ADD" {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|e| fail(format!("its ADD result does not parse: {e}")))
}
