//! `yard-docker`: the Docker network driver. With no arguments it serves
//! `/run/docker/plugins/switchyard.sock` and speaks to yardd on its default
//! socket; behaviour lives in [`yard_ctl::docker`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Docker network driver for Switchyard: `docker network create -d switchyard`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The socket dockerd finds the driver by; the driver's name is its
    /// file name without `.sock`.
    #[arg(long, value_name = "PATH", default_value = yard_ctl::docker::DEFAULT_PLUGIN_SOCKET)]
    plugin_socket: PathBuf,
    /// yardd's control socket [default: as yardctl's, $YARD_SOCKET or yardd's own default].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let socket = args.socket.unwrap_or_else(yard_ctl::paths::default_socket);
    let driver = yard_ctl::docker::Driver::new(socket);
    match yard_ctl::docker::serve(&args.plugin_socket, driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("yard-docker: {error}");
            ExitCode::FAILURE
        }
    }
}
