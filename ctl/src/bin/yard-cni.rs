//! `yard-cni`: the CNI plugin. The runtime sets `CNI_*` and writes the
//! network configuration on stdin; all the behaviour lives in
//! [`yard_ctl::cni::run`] (and is tested there).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let outcome = yard_ctl::cni::run(|name| std::env::var(name).ok(), &mut std::io::stdin());
    if let Some(json) = outcome.stdout {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &json);
        let _ = out.write_all(b"\n");
    }
    ExitCode::from(outcome.exit)
}
