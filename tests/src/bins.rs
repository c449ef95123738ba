//! Builds `yardd`, `yardctl`, `yard-cni` and `yard-docker` once per test process and locates them.
//!
//! `cargo test` does not build another package's binaries for this crate's
//! tests, so the first caller runs `$CARGO build --bins -p yard-switch -p yard-ctl`
//! in the workspace and every later caller reuses the result.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The daemon.
    pub yardd: PathBuf,
    /// The CLI.
    pub yardctl: PathBuf,
    /// The CNI plugin.
    pub yard_cni: PathBuf,
    /// The Docker network driver.
    pub yard_docker: PathBuf,
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"] {
        if let Some(dir) = env::var_os(var).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            };
        }
    }
    workspace_root().join("target")
}

fn build() -> Bins {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--bins", "-p", "yard-switch", "-p", "yard-ctl"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} build: {e}"));
    assert!(
        output.status.success(),
        "building yardd and yardctl failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let debug = target_dir().join("debug");
    let bins = Bins {
        yardd: debug.join("yardd"),
        yardctl: debug.join("yardctl"),
        yard_cni: debug.join("yard-cni"),
        yard_docker: debug.join("yard-docker"),
    };
    for path in [
        &bins.yardd,
        &bins.yardctl,
        &bins.yard_cni,
        &bins.yard_docker,
    ] {
        assert!(
            path.is_file(),
            "{} was not built (is CARGO_TARGET_DIR right?)",
            path.display()
        );
    }
    bins
}

/// The binaries, built on first use.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(build)
}
