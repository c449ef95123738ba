//! Every saved crash input (`fuzz/regressions/<target>/*`) and every seed
//! runs through its target's entry function in the ordinary test suite, on
//! stable Rust: a bug the fuzzer found stays fixed, and the seeds — real
//! conversations — keep passing the targets' own checks.

use std::path::Path;

use yard_fuzz::{Target, TARGETS};

fn target(name: &str) -> Target {
    TARGETS
        .into_iter()
        .find(|t| t.name == name)
        .expect("a target of that name")
}

/// Runs every file in `fuzz/regressions/<name>/`; returns how many.
fn replay_regressions(name: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../regressions")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    let run = target(name).run;
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        run(&data);
    }
    files.len()
}

fn replay_seeds(name: &str) {
    let t = target(name);
    let seeds = (t.seeds)();
    assert!(!seeds.is_empty());
    for seed in seeds {
        (t.run)(&seed);
    }
}

#[test]
fn wire_regressions_and_seeds() {
    replay_regressions("wire");
    replay_seeds("wire");
}

#[test]
fn gateway_regressions_and_seeds() {
    replay_regressions("gateway");
    replay_seeds("gateway");
}

#[test]
fn gre_regressions_and_seeds() {
    replay_regressions("gre");
    replay_seeds("gre");
}

#[test]
fn pipeline_regressions_and_seeds() {
    replay_regressions("pipeline");
    replay_seeds("pipeline");
}

/// Truncations of every seed (each prefix): the shapes a fuzzer tries
/// first, and the ones most likely to find an unchecked length.
#[test]
fn every_prefix_of_every_seed() {
    for t in TARGETS {
        for seed in (t.seeds)() {
            for len in 0..seed.len().min(600) {
                (t.run)(&seed[..len]);
            }
        }
    }
}
