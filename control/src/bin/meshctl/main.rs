//! `meshctl`: the operator's client for meshgate's control socket.
//!
//! `meshctl [--socket PATH] [--json] [--timeout-s N] <command> [args]`; the
//! global flags may also follow the command. The socket is `--socket`, else
//! `$MESHGATE_SOCKET`, else `/run/meshgate/control.sock`.
//!
//! `config check|apply FILE` reads FILE here and sends its text together
//! with its absolute path; the daemon resolves relative paths inside the
//! config against the file's folder, as it does for its own config file.
//!
//! Exit status: 0 on success; 1 when the daemon ran the command and
//! reported an error; 2 when meshctl could not get the command run (not
//! running, permission denied, protocol version mismatch, bad file, no
//! reply).

mod top;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control::socket::render::{render, render_stats};
use control::socket::{Client, ClientError, Command, ErrorKind, PROTOCOL_VERSION, Response};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The packaged default socket path.
const DEFAULT_SOCKET: &str = "/run/meshgate/control.sock";

#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Control a running meshgate through its control socket",
    after_help = "The socket defaults to $MESHGATE_SOCKET, else /run/meshgate/control.sock.\n\
                  Exit status: 0 ok, 1 the daemon reported an error, 2 meshctl could not \
                  get the command run."
)]
struct Cli {
    /// Control socket path [default: $MESHGATE_SOCKET, else /run/meshgate/control.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the raw JSON result (for scripts)
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the daemon's reply (0: no limit)
    #[arg(
        long = "timeout-s",
        global = true,
        value_name = "N",
        default_value_t = 30
    )]
    timeout_s: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Version, uptime, shards, snapshot generation, connections
    Status,
    /// Check, apply or show the configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The route table
    Routes,
    /// Clusters with their endpoints and states
    Clusters,
    /// Take an endpoint out of rotation or put it back
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Certificates
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Counters and latency percentiles (per shard: all shards with --wide)
    Stats {
        /// A column per shard, however many there are
        #[arg(long)]
        wide: bool,
    },
    /// A live view of routes and clusters: rps, error %, p50/p99, in flight
    Top {
        /// Print this many frames (a second apart) and exit, no terminal needed
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
    },
    /// Stop accepting, finish in-flight requests, then exit
    Drain {
        /// Give up waiting after S seconds [default: the daemon's]
        #[arg(long, value_name = "S")]
        timeout: Option<u64>,
    },
    /// Logging
    #[command(subcommand)]
    Log(LogCmd),
    /// Authorization
    #[command(subcommand)]
    Authz(AuthzCmd),
}

#[derive(Debug, Subcommand)]
enum AuthzCmd {
    /// Which route a request would match and which rule would decide it,
    /// without sending traffic
    Explain {
        #[arg(long)]
        listener: String,
        /// The caller's SPIFFE ID (absent: a caller without one)
        #[arg(long = "spiffe-id", value_name = "ID")]
        spiffe_id: Option<String>,
        /// A verified client certificate without a SPIFFE ID
        #[arg(long, conflicts_with = "spiffe_id")]
        authenticated: bool,
        /// The caller's address [default: 127.0.0.1]
        #[arg(long, value_name = "IP")]
        source: Option<String>,
        #[arg(long, value_name = "METHOD")]
        method: Option<String>,
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// A request header, `name: value` (repeatable)
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate and compile FILE without applying it
    Check { file: PathBuf },
    /// Validate, compile and atomically apply FILE
    Apply {
        file: PathBuf,
        /// Publish to this shard only, compare it with the others over the
        /// watch window, then promote to all shards or roll back.
        #[arg(long, value_name = "SHARD")]
        canary: Option<usize>,
        /// The canary's watch window, e.g. `30s`, `2m` or seconds.
        #[arg(long, value_name = "DURATION", value_parser = parse_watch, requires = "canary")]
        watch: Option<u64>,
    },
    /// The effective configuration (private keys never shown)
    Show,
}

#[derive(Debug, Subcommand)]
enum EndpointCmd {
    /// Take ADDR of CLUSTER out of rotation (until the next config apply)
    Drain { cluster: String, address: String },
    /// Put ADDR of CLUSTER back into rotation
    Enable { cluster: String, address: String },
}

#[derive(Debug, Subcommand)]
enum CertsCmd {
    /// Re-read every certificate, key and CA file
    Reload,
}

#[derive(Debug, Subcommand)]
enum LogCmd {
    /// Set the log level (error, warn, info, debug, trace)
    Level { level: String },
    /// Reopen the access log files (after logrotate moved them)
    Reopen,
}

/// A failure of meshctl itself: message and exit status.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    message: String,
    code: u8,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let socket = socket_path(cli.socket.as_deref(), std::env::var_os("MESHGATE_SOCKET"));
    let command = to_command(&cli.command)?;
    // `drain` may legitimately take as long as its own timeout.
    let wait = match &command {
        Command::Drain { timeout_s: Some(t) } => cli.timeout_s.max(t.saturating_add(10)),
        Command::ConfigApply {
            canary: Some(_),
            watch_s,
            ..
        } => cli.timeout_s.max(watch_s.unwrap_or(30).saturating_add(10)),
        _ => cli.timeout_s,
    };
    let timeout = (wait > 0).then(|| Duration::from_secs(wait));
    if let Cmd::Top { iterations } = &cli.command {
        return top::run(&socket, timeout, *iterations);
    }
    let response = Client::connect(&socket, timeout)
        .and_then(|mut c| c.call(command))
        .map_err(|e| client_failure(&e, &socket))?;
    let result = outcome(response, &socket)?;
    if cli.json {
        let text = serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string());
        println!("{text}");
    } else if let Cmd::Stats { wide } = &cli.command {
        print!("{}", render_stats(&result, *wide));
    } else {
        print!("{}", render(&result));
    }
    Ok(())
}

fn socket_path(flag: Option<&Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    match (flag, env) {
        (Some(p), _) => p.to_owned(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

fn to_command(cmd: &Cmd) -> Result<Command, Failure> {
    Ok(match cmd {
        Cmd::Status => Command::Status,
        Cmd::Config(ConfigCmd::Check { file }) => {
            let (path, toml) = read_config(file)?;
            Command::ConfigCheck {
                path: Some(path),
                toml: Some(toml),
                config: None,
            }
        }
        Cmd::Config(ConfigCmd::Apply {
            file,
            canary,
            watch,
        }) => {
            let (path, toml) = read_config(file)?;
            Command::ConfigApply {
                path: Some(path),
                toml: Some(toml),
                config: None,
                canary: *canary,
                watch_s: *watch,
            }
        }
        Cmd::Config(ConfigCmd::Show) => Command::ConfigShow,
        Cmd::Routes => Command::Routes,
        Cmd::Clusters => Command::Clusters,
        Cmd::Endpoint(EndpointCmd::Drain { cluster, address }) => Command::EndpointDrain {
            cluster: cluster.clone(),
            address: address.clone(),
        },
        Cmd::Endpoint(EndpointCmd::Enable { cluster, address }) => Command::EndpointEnable {
            cluster: cluster.clone(),
            address: address.clone(),
        },
        Cmd::Certs(CertsCmd::Reload) => Command::CertsReload,
        Cmd::Stats { .. } => Command::Stats,
        Cmd::Top { .. } => Command::Top,
        Cmd::Drain { timeout } => Command::Drain {
            timeout_s: *timeout,
        },
        Cmd::Log(LogCmd::Level { level }) => Command::LogLevel {
            level: level.clone(),
        },
        Cmd::Log(LogCmd::Reopen) => Command::LogReopen,
        Cmd::Authz(AuthzCmd::Explain {
            listener,
            spiffe_id,
            authenticated,
            source,
            method,
            path,
            host,
            headers,
        }) => Command::AuthzExplain {
            listener: listener.clone(),
            spiffe_id: spiffe_id.clone(),
            authenticated: authenticated.then_some(true),
            source: source.clone(),
            method: method.clone(),
            path: path.clone(),
            host: host.clone(),
            headers: headers.clone(),
        },
    })
}

/// The file's absolute path and text.
fn read_config(file: &Path) -> Result<(PathBuf, String), Failure> {
    let toml = std::fs::read_to_string(file)
        .map_err(|e| fail(2, format!("meshctl: cannot read {}: {e}", file.display())))?;
    let path = std::fs::canonicalize(file).map_err(|e| {
        fail(
            2,
            format!("meshctl: cannot resolve {}: {e}", file.display()),
        )
    })?;
    Ok((path, toml))
}

fn client_failure(e: &ClientError, socket: &Path) -> Failure {
    let message = match e {
        ClientError::NotRunning { .. } => format!(
            "meshctl: meshgate is not running (no control socket at {})",
            socket.display()
        ),
        ClientError::PermissionDenied { .. } => format!(
            "meshctl: permission denied on the control socket {}: run meshctl as the user \
             meshgate runs as, or as root (the socket is mode 0600)",
            socket.display()
        ),
        other => format!("meshctl: {other}"),
    };
    fail(2, message)
}

/// The result of a successful response, or the failure to report.
fn outcome(response: Response, socket: &Path) -> Result<serde_json::Value, Failure> {
    if response.ok {
        return Ok(response.result.unwrap_or(serde_json::Value::Null));
    }
    let Some(error) = response.error else {
        return Err(fail(2, "meshctl: the daemon failed without saying why"));
    };
    Err(match error.kind {
        ErrorKind::PermissionDenied => fail(
            2,
            format!(
                "meshctl: permission denied by meshgate ({}): run meshctl as the user meshgate \
                 runs as or as root, or add your uid to [control] allowed_uids; socket {}",
                error.message,
                socket.display()
            ),
        ),
        ErrorKind::VersionMismatch => fail(
            2,
            format!(
                "meshctl: version mismatch: this meshctl speaks control protocol version \
                 {PROTOCOL_VERSION} and the running meshgate does not ({}); use the meshctl \
                 that ships with the running meshgate",
                error.message
            ),
        ),
        _ => fail(1, error.to_string()),
    })
}

/// Parses a watch window: `30s`, `2m`, `1h` or plain seconds.
fn parse_watch(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s or 2m"))?;
    match unit {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        _ => Err(format!("{s:?}: unit must be s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::socket::ErrorBody;
    use serde_json::{Value, json};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("meshctl").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_before_or_after_the_command() {
        let a = parse(&["--socket", "/tmp/s", "--json", "--timeout-s", "3", "status"]).unwrap();
        let b = parse(&["status", "--json", "--socket", "/tmp/s", "--timeout-s", "3"]).unwrap();
        for cli in [a, b] {
            assert_eq!(cli.socket.as_deref(), Some(Path::new("/tmp/s")));
            assert!(cli.json);
            assert_eq!(cli.timeout_s, 3);
            assert!(matches!(cli.command, Cmd::Status));
        }
        let c = parse(&["endpoint", "drain", "api", "10.0.0.1:80", "--json"]).unwrap();
        assert!(c.json);
        assert_eq!(c.timeout_s, 30);
        assert_eq!(
            to_command(&c.command).unwrap(),
            Command::EndpointDrain {
                cluster: "api".into(),
                address: "10.0.0.1:80".into()
            }
        );
    }

    #[test]
    fn every_command_parses() {
        let cases: Vec<(Vec<&str>, Command)> = vec![
            (vec!["status"], Command::Status),
            (vec!["config", "show"], Command::ConfigShow),
            (vec!["routes"], Command::Routes),
            (vec!["clusters"], Command::Clusters),
            (
                vec!["endpoint", "enable", "c", "[::1]:8"],
                Command::EndpointEnable {
                    cluster: "c".into(),
                    address: "[::1]:8".into(),
                },
            ),
            (vec!["certs", "reload"], Command::CertsReload),
            (vec!["stats"], Command::Stats),
            (vec!["stats", "--wide"], Command::Stats),
            (vec!["top"], Command::Top),
            (vec!["drain"], Command::Drain { timeout_s: None }),
            (
                vec!["drain", "--timeout", "20"],
                Command::Drain {
                    timeout_s: Some(20),
                },
            ),
            (
                vec!["log", "level", "debug"],
                Command::LogLevel {
                    level: "debug".into(),
                },
            ),
            (vec!["log", "reopen"], Command::LogReopen),
        ];
        for (args, expected) in cases {
            let cli = parse(&args).unwrap();
            assert_eq!(to_command(&cli.command).unwrap(), expected, "{args:?}");
        }
    }

    #[test]
    fn bad_invocations_are_rejected() {
        for args in [
            &[][..],
            &["reboot"],
            &["config"],
            &["config", "apply"],
            &["endpoint", "drain", "api"],
            &["drain", "--timeout", "soon"],
            &["--timeout-s", "-1", "status"],
            &["log", "level"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn config_file_is_sent_with_its_absolute_path() {
        let dir = std::env::temp_dir().join(format!("meshctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.toml");
        std::fs::write(&file, "[control]\n").unwrap();
        let cli = parse(&["config", "apply", file.to_str().unwrap()]).unwrap();
        let cmd = to_command(&cli.command).unwrap();
        assert_eq!(
            cmd,
            Command::ConfigApply {
                path: Some(std::fs::canonicalize(&file).unwrap()),
                toml: Some("[control]\n".into()),
                config: None,
                canary: None,
                watch_s: None,
            }
        );
        let missing = parse(&["config", "check", "/nonexistent/m.toml"]).unwrap();
        let err = to_command(&missing.command).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(
            err.message.contains("/nonexistent/m.toml"),
            "{}",
            err.message
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn socket_path_precedence() {
        let flag = Path::new("/f");
        assert_eq!(
            socket_path(Some(flag), Some("/e".into())),
            PathBuf::from("/f")
        );
        assert_eq!(socket_path(None, Some("/e".into())), PathBuf::from("/e"));
        assert_eq!(
            socket_path(None, Some("".into())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(socket_path(None, None), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn not_running_message_and_exit_code() {
        let socket = Path::new("/nonexistent/control.sock");
        let err = Client::connect(socket, None).err().unwrap();
        let f = client_failure(&err, socket);
        assert_eq!(f.code, 2);
        assert_eq!(
            f.message,
            "meshctl: meshgate is not running (no control socket at /nonexistent/control.sock)"
        );
    }

    #[test]
    fn end_to_end_against_a_control_server() {
        use control::socket::{ControlServer, ErrorBody, ServerConfig};
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(format!("meshctl-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("c.sock");
        let handler = |command: Command| match command {
            Command::Routes => Ok(json!([{"route": "r", "cluster": "c"}])),
            Command::LogLevel { level } => Err(ErrorBody::new(
                ErrorKind::Invalid,
                format!("level: unknown level {level:?}"),
            )),
            _ => Err(ErrorBody::new(ErrorKind::NotImplemented, "later")),
        };
        let server =
            ControlServer::start_with(&sock, ServerConfig::default(), Arc::new(handler)).unwrap();
        let s = sock.to_str().unwrap();
        assert_eq!(run(&parse(&["routes", "--socket", s]).unwrap()), Ok(()));
        assert_eq!(
            run(&parse(&["--json", "--socket", s, "routes"]).unwrap()),
            Ok(())
        );
        assert_eq!(
            run(&parse(&["--socket", s, "log", "level", "loud"]).unwrap()),
            Err(fail(1, "error (invalid): level: unknown level \"loud\""))
        );
        server.shutdown();
        let f = run(&parse(&["--socket", s, "status"]).unwrap()).unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("not running"), "{}", f.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn daemon_errors_map_to_messages_and_exit_codes() {
        let s = Path::new("/s");
        let err = |kind, msg: &str| Response::error(Value::from(1), ErrorBody::new(kind, msg));
        let f = outcome(err(ErrorKind::Invalid, "listeners[0].address: bad"), s).unwrap_err();
        assert_eq!(f, fail(1, "error (invalid): listeners[0].address: bad"));
        let f = outcome(err(ErrorKind::PermissionDenied, "uid 7"), s).unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("allowed_uids"));
        let f = outcome(err(ErrorKind::VersionMismatch, "v1 only"), s).unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("version mismatch"));
        let ok = Response::ok(Value::from(1), json!({"a": 1}));
        assert_eq!(outcome(ok, s).unwrap(), json!({"a": 1}));
    }
}
