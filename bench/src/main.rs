//! `meshbench`: meshgate's load generator and demo upstream.
//!
//! * `meshbench [run] URL ...`: HTTP/1.1 load over http:// or https:// (mTLS),
//!   closed loop or open loop (`--rate`, coordinated-omission corrected),
//!   keep-alive or a new connection per request; HDR latency percentiles,
//!   errors by kind, JSON and percentile-distribution output ([`run`]).
//! * `meshbench upstream ...`: a fast HTTP/1.1 origin with fault injection
//!   and honest request counts ([`upstream`]).
//!
//! Both run on the data plane's io_uring runtime, one runtime per thread,
//! like the gateway's shards. Exit status: 0 ok, 1 error rate above
//! `--max-error-rate` (default 1.0: never), 2 usage or setup error.

mod args;
mod conn;
mod report;
mod response;
mod run;
mod schedule;
mod stats;
mod tls;
mod upstream;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = match args::parse_command(std::env::args()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match command {
        args::Command::Run(a) => run::run(&a),
        args::Command::Upstream(a) => upstream::serve(&a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("meshbench: {msg}");
            ExitCode::from(2)
        }
    }
}
