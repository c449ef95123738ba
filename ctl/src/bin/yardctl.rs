//! `yardctl`: configure a running yardd through its control socket.
//!
//! The binary only parses the command line and wires the process's stdout,
//! stderr and exit status to [`yard_ctl::cli::run`], where all the behaviour
//! lives (and is tested).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use yard_ctl::cli::{run, Cli, Io};

fn main() -> ExitCode {
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
