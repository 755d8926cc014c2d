//! The control socket's commands, carried out against the running
//! [`Gateway`]. Runs on the control server's connection threads, never on a
//! shard.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::DaemonError;
use crate::running::Gateway;
use crate::socket::protocol::{Command, ErrorBody, ErrorKind};
use crate::socket::server::Handler;

/// Answers control commands for one gateway.
#[derive(Debug, Clone)]
pub struct Commands {
    gateway: Arc<Gateway>,
}

impl Commands {
    pub fn new(gateway: Arc<Gateway>) -> Commands {
        Commands { gateway }
    }

    /// The configuration text and the path that anchors it: `toml` as sent
    /// (with `path`, or the running config's path, for relative paths), or
    /// the file at `path`.
    fn source(
        &self,
        path: Option<PathBuf>,
        toml: Option<String>,
        config: Option<serde_json::Value>,
    ) -> Result<(String, PathBuf), ErrorBody> {
        let toml = match (toml, config) {
            (Some(_), Some(_)) => {
                return Err(ErrorBody::new(
                    ErrorKind::InvalidRequest,
                    "give `toml` or `config`, not both",
                ));
            }
            (None, Some(config)) => Some(json_config_to_toml(&config)?),
            (toml, None) => toml,
        };
        match (toml, path) {
            (Some(text), path) => Ok((
                text,
                path.unwrap_or_else(|| self.gateway.config_path.clone()),
            )),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Ok((text, path)),
                Err(e) => Err(ErrorBody::new(
                    ErrorKind::Invalid,
                    format!("{}: {e}", path.display()),
                )),
            },
            (None, None) => Err(ErrorBody::new(
                ErrorKind::InvalidRequest,
                "give `path`, `toml` or `config`",
            )),
        }
    }
}

/// An inline JSON configuration as TOML text (then validated like a file:
/// errors name the field; positions refer to this generated text).
fn json_config_to_toml(config: &serde_json::Value) -> Result<String, ErrorBody> {
    if !config.is_object() {
        return Err(ErrorBody::new(
            ErrorKind::InvalidRequest,
            "`config` must be a JSON object",
        ));
    }
    toml::to_string(config).map_err(|e| {
        ErrorBody::new(
            ErrorKind::Invalid,
            format!("config: no TOML form ({e}); JSON null is not allowed"),
        )
    })
}

fn failed(e: DaemonError) -> ErrorBody {
    let kind = match e {
        DaemonError::Config(_) | DaemonError::Rejected(_) => ErrorKind::Invalid,
        _ => ErrorKind::Failed,
    };
    ErrorBody::new(kind, e.to_string())
}

impl Handler for Commands {
    fn handle(&self, command: Command) -> Result<Value, ErrorBody> {
        let g = &self.gateway;
        match command {
            Command::Status => Ok(g.status_json()),
            Command::ConfigCheck { path, toml, config } => {
                let (text, path) = self.source(path, toml, config)?;
                let snapshot = g.check(&text, &path).map_err(failed)?;
                let routes: usize = snapshot.listeners.iter().map(|l| l.routes.len()).sum();
                Ok(json!({
                    "valid": true,
                    "path": path.display().to_string(),
                    "listeners": snapshot.listeners.len(),
                    "routes": routes,
                    "clusters": snapshot.clusters.len(),
                }))
            }
            Command::ConfigApply {
                path,
                toml,
                config,
                canary: Some(shard),
                watch_s,
            } => {
                let (text, path) = self.source(path, toml, config)?;
                let watch = Duration::from_secs(watch_s.unwrap_or(30));
                g.apply_canary(&text, &path, shard, watch).map_err(failed)
            }
            Command::ConfigApply {
                path,
                toml,
                config,
                canary: None,
                watch_s: _,
            } => {
                let (text, path) = self.source(path, toml, config)?;
                let applied = g.apply(&text, &path).map_err(failed)?;
                log::info!(
                    "config apply from {}: generation {}",
                    path.display(),
                    applied.generation
                );
                Ok(applied.to_json())
            }
            Command::ConfigShow => Ok(json!({
                "generation": g.generation(),
                "path": g.config_path.display().to_string(),
                // Key material never lives in the config: it names files.
                "toml": g.config_text(),
            })),
            Command::Routes => Ok(g.routes_json()),
            Command::Clusters => Ok(g.clusters_json()),
            Command::EndpointDrain { cluster, address } => g
                .set_endpoint_drained(&cluster, &address, true)
                .map_err(failed),
            Command::EndpointEnable { cluster, address } => g
                .set_endpoint_drained(&cluster, &address, false)
                .map_err(failed),
            Command::CertsReload => {
                let applied = g.reload_certs().map_err(failed)?;
                log::info!("certificates reloaded: generation {}", applied.generation);
                Ok(applied.to_json())
            }
            Command::Stats => Ok(g.stats_json()),
            Command::Top => Ok(g.top_json()),
            Command::Drain { timeout_s } => Ok(g.start_drain(timeout_s.map(Duration::from_secs))),
            Command::AuthzExplain {
                listener,
                spiffe_id,
                authenticated,
                source,
                method,
                path,
                host,
                headers,
            } => g
                .authz_explain(&crate::running::ExplainQuery {
                    listener,
                    spiffe_id,
                    authenticated,
                    source,
                    method,
                    path,
                    host,
                    headers,
                })
                .map_err(failed),
            Command::LogReopen => match &g.access_log {
                Some(writer) => {
                    writer.reopen();
                    Ok(json!({ "reopening": true }))
                }
                None => Err(ErrorBody::new(
                    ErrorKind::Invalid,
                    "this gateway writes no access logs",
                )),
            },
            Command::LogLevel { level } => match crate::logging::parse_level(&level) {
                Some(filter) => {
                    log::set_max_level(filter);
                    log::warn!("log level set to {filter}");
                    Ok(json!({ "level": filter.to_string().to_lowercase() }))
                }
                None => Err(ErrorBody::new(
                    ErrorKind::Invalid,
                    format!("unknown log level {level:?} (error, warn, info, debug, trace, off)"),
                )),
            },
        }
    }
}

/// Where the quickstart puts its control socket.
pub fn quickstart_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}
