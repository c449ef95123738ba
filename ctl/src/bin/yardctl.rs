//! `yardctl`: configure a running yardd through its control socket.
//!
//! The binary only parses the command line and wires the process's stdout,
//! stderr and exit status to [`yard_ctl::cli::run`], where all the behaviour
//! lives (and is tested).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use yard_ctl::cli::{run, Cli, Io};
use yard_ctl::container;

fn main() -> ExitCode {
    // The container's first process of `yardctl run` must stay
    // single-threaded until it has made its user namespace.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == container::CHILD_ARG) {
        let code = container::child_main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    let stdout_is_terminal = io::stdout().is_terminal();
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let code = run(
        &cli,
        &mut Io {
            stdout: &mut stdout,
            stderr: &mut stderr,
            stdout_is_terminal,
        },
    );
    ExitCode::from(code)
}
