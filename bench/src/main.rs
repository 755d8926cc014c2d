//! `meshbench`: meshgate's load generator and demo upstream.
//!
//! * `meshbench [run] URL ...`: HTTP/1.1 load over http:// or https:// (mTLS),
//!   closed loop or open loop (`--rate`, coordinated-omission corrected),
//!   keep-alive or a new connection per request; HDR latency percentiles,
//!   errors by kind, JSON and percentile-distribution output ([`run`]).
//! * `meshbench upstream ...`: a fast HTTP/1.1 origin with fault injection
//!   and honest request counts ([`upstream`]).
//! * `meshbench plot A.json B.json -o latency.svg`: the percentile curves of
//!   several runs in one picture ([`plot`]).
//!
//! Both run on the data plane's io_uring runtime, one runtime per thread,
//! like the gateway's shards. Exit status: 0 ok, 1 error rate above
//! `--max-error-rate` (default 1.0: never), 2 usage or setup error.

mod args;
mod backoff;
mod conn;
mod h2;
mod plot;
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
        args::Command::Plot(a) => plot_reports(&a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("meshbench: {msg}");
            ExitCode::from(2)
        }
    }
}

/// `meshbench plot`: reads each `--json` report's `percentiles` and writes
/// one SVG.
fn plot_reports(args: &args::PlotArgs) -> Result<u8, String> {
    let mut series = Vec::new();
    for spec in &args.reports {
        let (label, file) = match spec.split_once('=') {
            Some((label, file)) if !label.is_empty() => (label.to_owned(), file),
            _ => {
                let stem = std::path::Path::new(spec)
                    .file_stem()
                    .map_or_else(|| spec.clone(), |s| s.to_string_lossy().into_owned());
                (stem, spec.as_str())
            }
        };
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let report: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{file}: not a meshbench --json report: {e}"))?;
        let points = report["percentiles"]
            .as_array()
            .ok_or_else(|| {
                format!("{file}: no \"percentiles\" (a report from an older meshbench?)")
            })?
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
            .collect();
        series.push(plot::Series { label, points });
    }
    let mut svg = plot::render_svg(&series, &args.title);
    svg.push('\n');
    std::fs::write(&args.output, svg)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    Ok(0)
}
