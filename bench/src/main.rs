//! `meshbench`: meshgate's load generator and demo upstream.
//!
//! Not built yet (see the meshbench issue). Until then this binary says so
//! and exits non-zero instead of pretending to measure anything; the first
//! figures in `bench/RESULTS.md` were taken with ApacheBench
//! (`scripts/bench-first.sh`).

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    eprintln!(
        "meshbench: not implemented yet; use scripts/bench-first.sh for the current comparison with nginx"
    );
    ExitCode::from(2)
}
