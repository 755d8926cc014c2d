//! `meshctl`: the operator's client for meshgate's control socket.
//!
//! The control socket itself is not built yet (see the control-socket
//! issue); until then this binary says so and exits non-zero rather than
//! pretending to work.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    eprintln!(
        "meshctl: the control socket is not implemented yet; reload the gateway with SIGHUP \
         (`kill -HUP <pid>`) and stop it with SIGTERM"
    );
    ExitCode::from(2)
}
