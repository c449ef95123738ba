//! `yard-docker`: a Docker network driver (libnetwork's remote driver
//! protocol: JSON over HTTP on a Unix socket that dockerd finds under
//! `/run/docker/plugins/`), so `docker network create -d switchyard` puts
//! containers on yardd networks. HTTP is tiny_http's; the calls are
//! answered by [`driver::Driver`], which speaks yardd's API.
//!
//! Contract: every call is answered with HTTP 200 and the protocol's JSON;
//! a failure is `{"Err": "…"}` whose message says what to do. The driver
//! keeps no state: what a call needs is in yardd, under names derived from
//! Docker's ids.

pub mod driver;
pub mod protocol;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Response, Server};

pub use driver::{Driver, DriverError};

/// Where dockerd looks for the driver named `switchyard`.
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/switchyard.sock";

/// The protocol's content type.
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Docker network driver for Switchyard: `docker network create -d switchyard`.
#[derive(Debug, Parser)]
#[command(name = "yard-docker", version)]
pub struct DriverArgs {
    /// The socket dockerd finds the driver by; the driver's name is its
    /// file name without `.sock`.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PLUGIN_SOCKET)]
    pub plugin_socket: PathBuf,
    /// yardd's control socket [default: as yardctl's, $YARD_SOCKET or yardd's own default].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Why the driver could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Something other than a socket is at the path.
    #[error("{} exists and is not a socket; remove it or choose another --plugin-socket", .0.display())]
    NotASocket(PathBuf),
    /// The socket or its directory could not be made.
    #[error("cannot listen on {}: {error}; run yard-docker as root (dockerd reads /run/docker/plugins) or choose another --plugin-socket", .path.display())]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        error: String,
    },
}

/// Listens on `plugin_socket` (replacing a stale socket file there) and
/// answers dockerd's calls until the process ends.
pub fn serve(plugin_socket: &Path, driver: Driver) -> Result<(), ServeError> {
    let listen_error = |error: String| ServeError::Listen {
        path: plugin_socket.to_path_buf(),
        error,
    };
    if let Some(dir) = plugin_socket.parent() {
        fs::create_dir_all(dir).map_err(|e| listen_error(e.to_string()))?;
    }
    match fs::symlink_metadata(plugin_socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(plugin_socket).map_err(|e| listen_error(e.to_string()))?
        }
        Ok(_) => return Err(ServeError::NotASocket(plugin_socket.to_path_buf())),
        Err(_) => {}
    }
    let server = Server::http_unix(plugin_socket).map_err(|e| listen_error(e.to_string()))?;
    fs::set_permissions(plugin_socket, fs::Permissions::from_mode(0o660))
        .map_err(|e| listen_error(e.to_string()))?;
    for mut request in server.incoming_requests() {
        let call = request.url().trim_start_matches('/').to_string();
        let answer = if *request.method() != Method::Post {
            json!({"Err": format!("switchyard: {call}: the driver answers POST only")})
        } else {
            let mut body = Vec::new();
            match request.as_reader().read_to_end(&mut body) {
                Ok(_) => answer(&driver, &call, &body),
                Err(e) => json!({"Err": format!("switchyard: {call}: reading the request: {e}")}),
            }
        };
        let header = Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
        let response = Response::from_string(answer.to_string()).with_header(header);
        if let Err(error) = request.respond(response) {
            eprintln!("yard-docker: {call}: answering dockerd failed: {error}");
        }
    }
    Ok(())
}

/// The JSON answer to one call; failures are logged to stderr as well.
fn answer(driver: &Driver, call: &str, body: &[u8]) -> Value {
    match driver.handle(call, body) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("yard-docker: {call}: {error}");
            json!({"Err": error.to_string()})
        }
    }
}
