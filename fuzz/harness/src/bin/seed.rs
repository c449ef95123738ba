//! `yard-fuzz-seed DIR`: writes each fuzz target's seed inputs to
//! `DIR/<target>/seed-NN` (`fuzz/run.sh` runs it with `DIR` =
//! `fuzz/corpus`). Existing files of other names are left alone.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: yard-fuzz-seed DIR — writes DIR/<target>/seed-NN for every fuzz target");
        return ExitCode::from(2);
    };
    for target in yard_fuzz::TARGETS {
        let into = dir.join(target.name);
        if let Err(e) = std::fs::create_dir_all(&into) {
            eprintln!(
                "cannot create {}: {e} — check the path and its permissions",
                into.display()
            );
            return ExitCode::FAILURE;
        }
        let seeds = (target.seeds)();
        for (i, seed) in seeds.iter().enumerate() {
            let path = into.join(format!("seed-{i:02}"));
            if let Err(e) = std::fs::write(&path, seed) {
                eprintln!(
                    "cannot write {}: {e} — check the path and its permissions",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        println!(
            "{}: {} seeds in {}",
            target.name,
            seeds.len(),
            into.display()
        );
    }
    ExitCode::SUCCESS
}
