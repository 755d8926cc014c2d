//! `meshgate`: the gateway daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use control::{daemon, logging, quickstart};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "meshgate", version, about = "mTLS service-mesh gateway")]
struct Cli {
    /// Log level: error, warn, info, debug, trace (default: $MESHGATE_LOG or info).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway until SIGINT/SIGTERM (SIGHUP reloads the config).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration (including certificates); exit 0 or print errors and exit 2.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generate development certificates and a config, start a demo upstream, and run.
    Quickstart {
        /// Folder for the certificates and meshgate.toml.
        #[arg(long, default_value = "meshgate-quickstart")]
        dir: PathBuf,
        /// Address of the mTLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli
        .log_level
        .or_else(|| std::env::var("MESHGATE_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let Some(level) = logging::parse_level(&level) else {
        eprintln!(
            "meshgate: unknown log level {level:?} (use error, warn, info, debug, trace, off)"
        );
        return ExitCode::from(2);
    };
    logging::init(level);
    match cli.command {
        Command::Check { config } => match daemon::check(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => finish(daemon::run(&config, announce)),
        Command::Quickstart { dir, listen } => {
            let path = match quickstart::prepare(&dir, listen) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            finish(daemon::run(&path, |bound, admin| {
                announce(bound, admin);
                if let Some(l) = bound.first() {
                    println!(
                        "\nmeshgate quickstart is running. Files are in {}/. Try:\n",
                        dir.display()
                    );
                    println!("  {}\n", quickstart::curl_command(&dir, l.address));
                    if let Some(a) = admin {
                        println!(
                            "Its metrics (Prometheus text format):\n\n  curl http://{a}/metrics\n"
                        );
                        println!(
                            "Each request is logged as a JSON line in {}/access.log.\n",
                            dir.display()
                        );
                    }
                    println!("Operate it with meshctl, e.g.:\n");
                    println!(
                        "  cargo run --release --bin meshctl -- --socket {}/control.sock status\n",
                        dir.display()
                    );
                    println!("Press Ctrl-C to stop.");
                }
            }))
        }
    }
}

/// Prints one machine-readable line for the admin listener and one per
/// listener on stdout.
fn announce(bound: &[control::listeners::BoundListener], admin: Option<std::net::SocketAddr>) {
    if let Some(a) = admin {
        println!("admin http {a}");
    }
    for l in bound {
        println!(
            "listening {} {} {}",
            l.name,
            if l.tls { "https" } else { "http" },
            l.address
        );
    }
}

fn finish(result: Result<(), control::error::DaemonError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshgate: {e}");
            ExitCode::FAILURE
        }
    }
}
