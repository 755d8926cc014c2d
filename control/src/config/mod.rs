//! Configuration: the TOML schema (`meshgate.toml`), validation with errors
//! that name file, line and field, and compilation into the data plane's
//! [`Snapshot`](dataplane::route::Snapshot).
//!
//! Runs on the control thread only. The pipeline is
//!
//! ```text
//! text ─► serde model (schema.rs; clusters in schema_cluster.rs, logs and
//!          tracing in schema_observability.rs, shared values in
//!          schema_values.rs) ─► normalize + check (validate.rs) ─► Config
//! Config ─► compile (compile.rs: loads TLS files) ─► Snapshot ─► ArcSwap
//! ```
//!
//! # Errors
//!
//! A syntax or type error stops parsing (the TOML deserializer reports one);
//! it is given as `file:line:col: field.path: message`. Semantic problems
//! (unknown references, duplicates, ranges, TLS settings) are all collected
//! into [`ConfigError::Invalid`], one per line, each with the line and column
//! of the offending value when the text is at hand. Positions are looked up
//! in a spanned re-parse of the text (`span.rs`), which keeps the public
//! model free of span wrappers.
//!
//! Nothing here panics on any input text.

mod compile;
mod problem;
mod schema;
mod schema_cluster;
mod schema_observability;
mod schema_values;
mod span;
mod tls_build;
mod validate;
mod validate_authz;
mod validate_tracing;
mod validate_upstream;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use schema::{
    AllUnhealthyConfig, ClientAuthConfig, ClusterConfig, ClusterLimitsConfig, Config,
    ControlConfig, DEFAULT_GROUPS, DataplaneConfig, FaultConfig, HeaderEditsConfig, HealthConfig,
    HealthProtocol, LbPolicyConfig, ListenerConfig, ListenerProtocol, MAX_SHARDS, MatchConfig,
    MinVersion, OutlierConfig, PoolConfig, RateLimitConfig, RedirectConfig, RetryBudgetConfig,
    RetryConfig, RouteConfig, Shards, SplitConfig, Stack, TlsConfig,
};
pub use schema_observability::{OtlpConfig, Percent, ZipkinConfig};
pub use span::Location;
pub use validate::{HEADER_BYTES_RANGE, MAX_NAME_LEN, MAX_TIMEOUT_MS};

use problem::Problem;

/// One problem in a configuration, positioned as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file (or the origin given to [`Config::from_toml_str`]).
    pub origin: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// Field path such as `listeners[0].address`; empty for the document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema (unknown field,
    /// wrong type, malformed value). Parsing stops at the first such error.
    #[error("{0}")]
    Parse(Issue),
    /// The config is well-formed but breaks rules, or its TLS files could not
    /// be loaded; every problem found is listed.
    #[error("{}", display_issues(.0))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// Every issue this error carries (none for [`ConfigError::Read`]).
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Parse(issue) => std::slice::from_ref(issue),
            ConfigError::Invalid(issues) => issues,
        }
    }
}

fn display_issues(issues: &[Issue]) -> String {
    let lines: Vec<String> = issues.iter().map(Issue::to_string).collect();
    lines.join("\n")
}

impl Config {
    /// Reads, parses and validates a config file; relative paths in it are
    /// resolved against the file's folder. Messages name the file as given.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut config = Config::from_toml_str(&text, &path.display().to_string(), base_dir)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates config text. `origin` names the text in messages
    /// (usually the file name) and becomes [`Config::source`]; relative paths
    /// are resolved against `base_dir` (itself made absolute against the
    /// working directory if relative). Does not touch the file system.
    pub fn from_toml_str(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(parse_issue(origin, text, &e)))?;
        validate::normalize(&mut config, base_dir);
        config.source = Some(PathBuf::from(origin));
        let problems = validate::check(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(locate(origin, Some(text), problems)))
        }
    }

    /// Checks a config built or changed in code (loading already did this).
    /// Issues carry no line numbers since there is no text.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::check(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(locate(&self.origin(), None, problems)))
        }
    }

    /// Loads certificates/keys and builds everything a shard needs. Re-checks
    /// the config first, so a config built in code cannot produce a broken
    /// snapshot. TLS problems of all listeners are reported together.
    pub fn compile(&self, generation: u64) -> Result<dataplane::route::Snapshot, ConfigError> {
        self.validate()?;
        compile::compile(self, generation)
            .map_err(|problems| ConfigError::Invalid(locate(&self.origin(), None, problems)))
    }

    /// Where `[tracing]` sends spans (no collectors when it is absent).
    /// The config must have passed validation.
    pub fn export_settings(&self) -> crate::trace_export::ExportSettings {
        compile::export_settings(self.tracing.as_ref())
    }

    fn origin(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "<config>".to_owned(), |p| p.display().to_string())
    }
}

/// Positions a deserializer error: line and column from its span, field path
/// from the spanned document; an element error (see
/// `schema::ELEMENT_MARKER`) is moved from its array to the element.
fn parse_issue(origin: &str, text: &str, e: &toml::de::Error) -> Issue {
    let doc = span::Document::parse(text);
    let mut span = e.span();
    let mut path = span
        .as_ref()
        .and_then(|s| doc.path_at(s.start))
        .unwrap_or_default();
    let mut message = e.message().trim_end();
    let element = message
        .strip_prefix(schema::ELEMENT_MARKER)
        .and_then(|rest| rest.split_once("] "))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
    if let Some((index, rest)) = element {
        message = rest;
        if !path.is_empty() {
            path = format!("{path}[{index}]");
            span = doc.span_of(&path).or(span);
        }
    }
    Issue {
        origin: origin.to_owned(),
        location: span.map(|s| span::location(text, s.start)),
        path,
        message: message.to_owned(),
    }
}

/// Turns problems into issues, finding each field's line when `text` is given,
/// and orders them by position in the file (unpositioned ones last, in the
/// order found).
fn locate(origin: &str, text: Option<&str>, problems: Vec<Problem>) -> Vec<Issue> {
    let doc = text.map(span::Document::parse);
    let mut issues: Vec<Issue> = problems
        .into_iter()
        .map(|p| {
            let location = match (text, &doc) {
                (Some(text), Some(doc)) => {
                    doc.span_of(&p.path).map(|s| span::location(text, s.start))
                }
                _ => None,
            };
            Issue {
                origin: origin.to_owned(),
                location,
                path: p.path,
                message: p.message,
            }
        })
        .collect();
    issues.sort_by_key(|i| i.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
    issues
}
