//! The serde model of the observability tables: a listener's
//! `access_log` and `[tracing]` (see `schema.rs` for the conventions:
//! `deny_unknown_fields`, defaults next to the fields, cross-field rules in
//! validation).

use std::path::PathBuf;

use serde::Deserialize;

/// `access_log` of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file, appended to (relative: to the config file's folder;
    /// reopened on SIGUSR1 and `meshctl log reopen`), or `"stdout"`.
    pub path: PathBuf,
    #[serde(default)]
    pub format: AccessLogFormatConfig,
    /// With `format = "text"`: the line, `%FIELD%` placeholders (README
    /// lists the fields); default: an Envoy-like line.
    pub template: Option<String>,
    /// Share of requests answered with a status below 400 that are logged,
    /// percent in `0..=100` (default 100); errors are always logged.
    #[serde(default = "default_sample_percent")]
    pub sample_percent: Percent,
}

fn default_sample_percent() -> Percent {
    Percent(100.0)
}

/// `access_log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormatConfig {
    /// One JSON object per line.
    #[default]
    Json,
    /// One line from `template`.
    Text,
}

/// A percentage as written (range checked by validation).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub f64);

impl PartialEq for Percent {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Percent {}

/// `[tracing]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Share of new traces recorded, percent in `0..=100` (default 1); a
    /// caller's sampling decision is always followed (parent-based).
    #[serde(default = "default_trace_percent")]
    pub sample_percent: Percent,
    /// Formats read (the first valid one wins) and written upstream.
    #[serde(default = "default_propagation")]
    pub propagation: Vec<PropagationConfig>,
    /// OTLP/HTTP export.
    pub otlp: Option<OtlpConfig>,
    /// Zipkin v2 JSON export.
    pub zipkin: Option<ZipkinConfig>,
    /// `service.name` of the spans (default `meshgate`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// A request carrying this header (any value but `0` or `false`) is
    /// sampled whatever the rate; `""` turns it off.
    #[serde(default = "default_force_header")]
    pub force_header: String,
}

fn default_trace_percent() -> Percent {
    Percent(1.0)
}

fn default_propagation() -> Vec<PropagationConfig> {
    vec![PropagationConfig::W3c, PropagationConfig::B3]
}

fn default_service_name() -> String {
    "meshgate".to_owned()
}

fn default_force_header() -> String {
    "x-meshgate-force-trace".to_owned()
}

/// One entry of `tracing.propagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropagationConfig {
    /// W3C Trace Context (`traceparent`, `tracestate`).
    W3c,
    /// B3, single header or multi-header.
    B3,
}

/// `tracing.otlp`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http://host:port/v1/traces`
    pub endpoint: String,
    #[serde(default)]
    pub encoding: OtlpEncoding,
    /// Per request to the collector (default 2000).
    #[serde(default = "default_export_timeout_ms")]
    pub timeout_ms: u64,
}

/// `tracing.otlp.encoding`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpEncoding {
    #[default]
    Protobuf,
    Json,
}

/// `tracing.zipkin`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZipkinConfig {
    /// `http://host:port/api/v2/spans`
    pub endpoint: String,
    /// Per request to the collector (default 2000).
    #[serde(default = "default_export_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_export_timeout_ms() -> u64 {
    2000
}
