//! What a finished request's spans say, independent of the wire format:
//! names, kinds, attributes (OpenTelemetry semantic-convention names where
//! one exists, `meshgate.*` for the rest) and error status, made once for
//! both encoders (OTLP, Zipkin).

use dataplane::telemetry::trace::{FinishedTrace, SpanId, TraceId};

/// A span's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The gateway answering a downstream request.
    Server,
    /// One try against an upstream endpoint.
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// One span, ready to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// The span failed (a gateway error, a 5xx, a failed try); the text
    /// says why.
    pub error: Option<String>,
    /// The peer's address (`ip`, `port`): the client of a server span,
    /// the endpoint of a client span.
    pub remote: std::net::SocketAddr,
}

/// The server span and the client spans of `t`.
pub fn spans(t: &FinishedTrace) -> Vec<Span> {
    let s = &t.server;
    let mut attributes = vec![
        ("http.request.method", Value::Str(s.method.clone())),
        ("url.path", Value::Str(s.path.clone())),
        ("network.protocol.name", Value::Str("http".into())),
        (
            "network.protocol.version",
            Value::Str(s.protocol.trim_start_matches("HTTP/").into()),
        ),
        ("client.address", Value::Str(s.client.ip().to_string())),
        ("meshgate.listener", Value::Str(s.listener.clone())),
    ];
    if let Some(a) = &s.authority {
        attributes.push(("server.address", Value::Str(a.clone())));
    }
    if let Some(r) = &s.route {
        attributes.push(("meshgate.route", Value::Str(r.clone())));
    }
    if let Some(c) = &s.cluster {
        attributes.push(("meshgate.cluster", Value::Str(c.clone())));
    }
    if let Some(code) = s.status {
        attributes.push(("http.response.status_code", Value::Int(i64::from(code))));
    }
    if let Some(e) = s.error {
        attributes.push(("meshgate.error", Value::Str(e.into())));
    }
    if let Some(id) = &s.spiffe_id {
        attributes.push(("meshgate.caller.spiffe_id", Value::Str(id.clone())));
    }
    if let Some(last) = t.tries.last() {
        attributes.push(("meshgate.endpoint", Value::Str(last.endpoint.to_string())));
    }
    attributes.push(("meshgate.attempts", Value::Int(t.tries.len() as i64)));
    let name = match &s.route {
        Some(route) => format!("{} {route}", s.method),
        None => s.method.clone(),
    };
    let mut out = Vec::with_capacity(1 + t.tries.len());
    out.push(Span {
        trace_id: t.trace_id,
        span_id: s.span_id,
        parent: s.parent,
        name,
        kind: Kind::Server,
        start_unix_ns: s.start_unix_ns,
        end_unix_ns: s.end_unix_ns.max(s.start_unix_ns),
        attributes,
        error: failure(s.status, s.error),
        remote: s.client,
    });
    for (n, try_span) in t.tries.iter().enumerate() {
        let mut attributes = vec![
            ("http.request.method", Value::Str(s.method.clone())),
            (
                "server.address",
                Value::Str(try_span.endpoint.ip().to_string()),
            ),
            (
                "server.port",
                Value::Int(i64::from(try_span.endpoint.port())),
            ),
            ("meshgate.attempt", Value::Int(n as i64 + 1)),
        ];
        if let Some(c) = &s.cluster {
            attributes.push(("meshgate.cluster", Value::Str(c.clone())));
        }
        if let Some(code) = try_span.status {
            attributes.push(("http.response.status_code", Value::Int(i64::from(code))));
        }
        if let Some(e) = try_span.error {
            attributes.push(("meshgate.error", Value::Str(e.into())));
        }
        out.push(Span {
            trace_id: t.trace_id,
            span_id: try_span.span_id,
            parent: Some(s.span_id),
            name: match &s.cluster {
                Some(c) => format!("{} {c}", s.method),
                None => s.method.clone(),
            },
            kind: Kind::Client,
            start_unix_ns: try_span.start_unix_ns,
            end_unix_ns: try_span.end_unix_ns.max(try_span.start_unix_ns),
            attributes,
            error: failure(try_span.status, try_span.error),
            remote: try_span.endpoint,
        });
    }
    out
}

/// Why a span failed: the gateway's error label, else a 5xx.
fn failure(status: Option<u16>, error: Option<&'static str>) -> Option<String> {
    match (error, status) {
        (Some(e), _) => Some(e.to_owned()),
        (None, Some(s)) if s >= 500 => Some(format!("status {s}")),
        (None, None) => Some("no response".to_owned()),
        _ => None,
    }
}
