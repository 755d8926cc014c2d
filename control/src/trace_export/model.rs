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
    // A TCP session: no HTTP attributes; its tries are connects.
    let tcp = s.protocol == "TCP";
    let mut attributes = if tcp {
        vec![("network.transport", Value::Str("tcp".into()))]
    } else {
        vec![
            ("http.request.method", Value::Str(s.method.clone())),
            ("url.path", Value::Str(s.path.clone())),
            ("network.protocol.name", Value::Str("http".into())),
            (
                "network.protocol.version",
                Value::Str(s.protocol.trim_start_matches("HTTP/").into()),
            ),
        ]
    };
    attributes.extend([
        ("client.address", Value::Str(s.client.ip().to_string())),
        ("meshgate.listener", Value::Str(s.listener.clone())),
    ]);
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
    let verb = if tcp { "TCP" } else { s.method.as_str() };
    let name = match &s.route {
        Some(route) => format!("{verb} {route}"),
        None => verb.to_owned(),
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
        error: failure(tcp, s.status, s.error),
        remote: s.client,
    });
    for (n, try_span) in t.tries.iter().enumerate() {
        let mut attributes = if tcp {
            vec![("network.transport", Value::Str("tcp".into()))]
        } else {
            vec![("http.request.method", Value::Str(s.method.clone()))]
        };
        attributes.extend([
            (
                "server.address",
                Value::Str(try_span.endpoint.ip().to_string()),
            ),
            (
                "server.port",
                Value::Int(i64::from(try_span.endpoint.port())),
            ),
            ("meshgate.attempt", Value::Int(n as i64 + 1)),
        ]);
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
            name: match (&s.cluster, tcp) {
                (Some(c), true) => format!("connect {c}"),
                (None, true) => "connect".to_owned(),
                (Some(c), false) => format!("{} {c}", s.method),
                (None, false) => s.method.clone(),
            },
            kind: Kind::Client,
            start_unix_ns: try_span.start_unix_ns,
            end_unix_ns: try_span.end_unix_ns.max(try_span.start_unix_ns),
            attributes,
            error: failure(tcp, try_span.status, try_span.error),
            remote: try_span.endpoint,
        });
    }
    out
}

/// Why a span failed: the gateway's error label, else (HTTP) a 5xx or
/// no response.
fn failure(tcp: bool, status: Option<u16>, error: Option<&'static str>) -> Option<String> {
    match (error, status) {
        (Some(e), _) => Some(e.to_owned()),
        (None, _) if tcp => None,
        (None, Some(s)) if s >= 500 => Some(format!("status {s}")),
        (None, None) => Some("no response".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::telemetry::trace::{ServerSpan, TrySpan};

    fn trace(
        protocol: &'static str,
        method: &str,
        tries: &[(Option<u16>, Option<&'static str>)],
    ) -> FinishedTrace {
        FinishedTrace {
            trace_id: TraceId::random(1, 2),
            server: ServerSpan {
                span_id: SpanId::random(3),
                parent: None,
                start_unix_ns: 10,
                end_unix_ns: 20,
                method: method.into(),
                path: if method.is_empty() {
                    String::new()
                } else {
                    "/x".into()
                },
                authority: None,
                protocol,
                listener: "l".into(),
                route: Some("r".into()),
                cluster: Some("c".into()),
                status: tries.last().and_then(|t| t.0),
                error: None,
                spiffe_id: None,
                client: "127.0.0.1:5000".parse().unwrap(),
            },
            tries: tries
                .iter()
                .enumerate()
                .map(|(i, &(status, error))| TrySpan {
                    span_id: SpanId::random(10 + i as u64),
                    start_unix_ns: 11,
                    end_unix_ns: 19,
                    endpoint: "127.0.0.1:8080".parse().unwrap(),
                    status,
                    error,
                })
                .collect(),
        }
    }

    fn has(span: &Span, key: &str) -> bool {
        span.attributes.iter().any(|(k, _)| *k == key)
    }

    #[test]
    fn http_spans_carry_http_attributes_and_fail_on_5xx() {
        let spans = spans(&trace(
            "HTTP/1.1",
            "GET",
            &[(Some(503), None), (Some(200), None)],
        ));
        assert_eq!(spans.len(), 3);
        assert_eq!(
            (spans[0].name.as_str(), spans[0].kind),
            ("GET r", Kind::Server)
        );
        assert!(has(&spans[0], "http.request.method") && has(&spans[0], "url.path"));
        assert_eq!(spans[0].error, None);
        assert_eq!(spans[1].name, "GET c");
        assert_eq!(spans[1].error.as_deref(), Some("status 503"));
        assert_eq!(spans[2].error, None);
        assert_eq!(spans[2].parent, Some(spans[0].span_id));
    }

    #[test]
    fn tcp_sessions_are_a_session_span_and_connect_spans_without_http() {
        let spans = spans(&trace(
            "TCP",
            "",
            &[(None, Some("connect_failed")), (None, None)],
        ));
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].name, "TCP r");
        assert_eq!(spans[1].name, "connect c");
        for s in &spans {
            assert!(has(s, "network.transport"), "{s:?}");
            assert!(
                !has(s, "http.request.method") && !has(s, "url.path"),
                "{s:?}"
            );
        }
        // No status is not a failure for a TCP session; an error label is.
        assert_eq!(spans[0].error, None);
        assert_eq!(spans[1].error.as_deref(), Some("connect_failed"));
        assert_eq!(spans[2].error, None);
    }
}
