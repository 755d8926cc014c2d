//! The spans of one finished request, as a shard hands them to the
//! exporter: the gateway's server span and a client span per upstream try
//! (so retries show), with the facts a collector's attributes are made of.
//! Names, attributes and wire formats are the exporter's business.

use std::net::SocketAddr;

use super::{SpanId, TraceId};

/// A sampled request, finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedTrace {
    pub trace_id: TraceId,
    pub server: ServerSpan,
    /// In the order they were made.
    pub tries: Vec<TrySpan>,
}

/// The gateway's span for the downstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpan {
    pub span_id: SpanId,
    /// The caller's span, when the request carried one.
    pub parent: Option<SpanId>,
    /// Wall clock, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub protocol: &'static str,
    pub listener: String,
    pub route: Option<String>,
    pub cluster: Option<String>,
    /// `None`: nothing was answered.
    pub status: Option<u16>,
    /// The gateway's error label, when the gateway ended the request.
    pub error: Option<&'static str>,
    /// The caller's SPIFFE ID.
    pub spiffe_id: Option<String>,
    pub client: SocketAddr,
}

/// One try against an upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrySpan {
    pub span_id: SpanId,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub endpoint: SocketAddr,
    /// The response's status (`None`: the try failed before one).
    pub status: Option<u16>,
    /// Why the try failed, when it did.
    pub error: Option<&'static str>,
}
