//! Writes the man pages and shell completions of yardd, yardctl and
//! yard-docker into a directory, from the clap definitions the binaries
//! parse (so they cannot drift from the options):
//!
//! ```sh
//! cargo run -p yard-switch --example gen-docs -- target/dist
//! ```
//!
//! gives `man/yardd.8`, `man/yard-docker.8`, `man/yardctl.1` and one
//! page per subcommand (`man/yardctl-port-add.1`), and `completions/` for
//! bash, zsh and fish. The README's "Installing" section says where they go.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gen-docs: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every page and completion under `out`; returns the files.
fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    let commands = [
        (yard_switch::cli::Args::command(), "8"),
        (yard_ctl::docker::DriverArgs::command(), "8"),
        (yard_ctl::cli::Cli::command(), "1"),
    ];
    for (command, section) in commands {
        pages(
            &man,
            &command,
            command.get_name(),
            command.get_name(),
            section,
            &mut written,
        )?;
        let name = command.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut command = command.clone();
            written.push(clap_complete::generate_to(
                shell,
                &mut command,
                &name,
                &completions,
            )?);
        }
    }
    Ok(written)
}

/// Writes `command`'s page as `name`, invoked as `bin`, then one page per
/// subcommand, recursively: `yardctl port add` is `yardctl-port-add(1)`.
fn pages(
    dir: &Path,
    command: &clap::Command,
    name: &str,
    bin: &str,
    section: &str,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let named = command
        .clone()
        .name(name.to_string())
        .bin_name(bin.to_string());
    written.push(page(dir, &named, name, section)?);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub_bin = format!("{bin} {}", sub.get_name());
        pages(dir, sub, &sub_name, &sub_bin, section, written)?;
    }
    Ok(())
}

/// Renders `command`'s man page as `NAME.SECTION` in `dir`.
fn page(
    dir: &Path,
    command: &clap::Command,
    name: &str,
    section: &str,
) -> std::io::Result<PathBuf> {
    let man = clap_mangen::Man::new(command.clone()).section(section);
    let path = dir.join(format!("{name}.{section}"));
    let mut bytes = Vec::new();
    man.render(&mut bytes)?;
    fs::write(&path, bytes)?;
    Ok(path)
}
