//! The control plane's error type: why the daemon could not start, or why
//! a change was refused. Uses only `config` (its error).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("listener {name:?}: cannot listen on {address}: {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard threads: {0}")]
    Spawn(std::io::Error),
    #[error("signal setup: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Rejected(String),
    #[error("shard {0} stopped unexpectedly")]
    ShardDied(usize),
    #[error("dataplane.user: cannot run as {user:?}: {source}")]
    Privileges {
        user: String,
        source: std::io::Error,
    },
    #[error("admin.address: cannot listen on {address}: {source}")]
    Admin {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("control.socket: cannot serve the control socket at {path}: {source}")]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
}
