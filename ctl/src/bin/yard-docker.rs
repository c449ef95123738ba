//! `yard-docker`: the Docker network driver. With no arguments it serves
//! `/run/docker/plugins/switchyard.sock` and speaks to yardd on its default
//! socket; behaviour lives in [`yard_ctl::docker`].

use std::process::ExitCode;

use clap::Parser;
use yard_ctl::docker::DriverArgs as Args;

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
