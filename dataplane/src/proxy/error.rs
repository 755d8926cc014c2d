//! Every way a proxied request fails, which side is at fault, how a retry
//! policy sees it, and what goes on the wire. The one place that maps
//! errors to local responses, and the one failure classification the tries
//! of HTTP requests and TCP connections share ([`ProxyError::retry_class`],
//! [`ProxyError::blames_endpoint`]).

use std::io;

use crate::http::{self, HttpError};
use crate::upstream::retry::Failure;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed request: {0}")]
    BadRequest(HttpError),
    #[error("request head not received within the header timeout")]
    HeaderTimeout,
    #[error("no route matches")]
    NoRoute,
    #[error("method {0} is not supported by the gateway")]
    UnsupportedMethod(&'static str),
    #[error("cluster {0:?} has no endpoint")]
    NoEndpoint(String),
    #[error("connect to upstream {addr} failed: {source}")]
    ConnectFailed {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("connect to upstream {0} timed out")]
    ConnectTimeout(std::net::SocketAddr),
    /// The TLS handshake with an endpoint of a `[clusters.tls]` cluster
    /// failed (certificate, SPIFFE ID, protocol, timeout).
    #[error("TLS to upstream {addr} of cluster {cluster:?} failed: {source}")]
    UpstreamTls {
        cluster: String,
        addr: std::net::SocketAddr,
        source: Box<crate::tls::HandshakeError>,
    },
    #[error("upstream response timed out")]
    UpstreamTimeout,
    #[error("invalid upstream response: {0}")]
    BadResponse(HttpError),
    #[error("upstream closed the connection before responding")]
    UpstreamClosed,
    #[error("upstream I/O: {0}")]
    UpstreamIo(io::Error),
    #[error("downstream I/O: {0}")]
    DownstreamIo(io::Error),
    #[error("downstream closed mid-request")]
    DownstreamClosed,
    #[error("downstream timed out mid-request")]
    DownstreamTimeout,
    #[error("request body arrived below the listener's minimum rate")]
    SlowRequestBody,
    #[error("cluster {cluster:?} overloaded: {limit} reached")]
    Overloaded {
        cluster: String,
        /// The circuit breaker that tripped (`max_requests`, ...).
        limit: &'static str,
    },
    #[error("rate limit of route {route:?} exceeded")]
    RateLimited {
        route: String,
        /// Whole seconds until a request would be admitted (≥ 1).
        retry_after_s: u64,
    },
    #[error("fault injected by route {route:?}: {status}")]
    FaultAbort { route: String, status: u16 },
    #[error("refused by authorization rule {rule:?} ({stage:?})")]
    Forbidden {
        /// The rule that decided (named in logs and counters, never in
        /// the response).
        rule: std::sync::Arc<str>,
        stage: crate::route::authz::Stage,
        /// The route matched, when the listener's policy let it that far
        /// (index in its listener).
        route: Option<usize>,
    },
    /// A gRPC request (HTTP/2, `content-type: application/grpc…`) routed
    /// to a cluster that speaks HTTP/1.1, which cannot carry it: refused
    /// rather than sent as a mangled exchange.
    #[error("gRPC request routed to cluster {0:?}, which speaks HTTP/1.1")]
    GrpcToHttp1Cluster(String),
}

impl ProxyError {
    /// Who is at fault.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::HeaderTimeout
            | ProxyError::DownstreamIo(_)
            | ProxyError::DownstreamClosed
            | ProxyError::DownstreamTimeout
            | ProxyError::SlowRequestBody => Side::Downstream,
            ProxyError::NoRoute
            | ProxyError::NoEndpoint(_)
            | ProxyError::Overloaded { .. }
            | ProxyError::FaultAbort { .. }
            | ProxyError::GrpcToHttp1Cluster(_) => Side::Internal,
            ProxyError::RateLimited { .. } | ProxyError::Forbidden { .. } => Side::Downstream,
            ProxyError::UnsupportedMethod(_) => Side::Downstream,
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls { .. }
            | ProxyError::UpstreamTimeout
            | ProxyError::BadResponse(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamIo(_) => Side::Upstream,
        }
    }

    /// The status of the local response, or `None` when the connection is
    /// just closed (nothing sensible can be written, or the peer is gone).
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::BadRequest(e) => Some(e.status()),
            ProxyError::HeaderTimeout | ProxyError::SlowRequestBody => Some(408),
            ProxyError::NoRoute => Some(404),
            ProxyError::UnsupportedMethod(_) => Some(501),
            ProxyError::NoEndpoint(_)
            | ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls { .. } => Some(503),
            ProxyError::UpstreamTimeout => Some(504),
            ProxyError::Overloaded { .. } => Some(503),
            ProxyError::RateLimited { .. } => Some(429),
            ProxyError::Forbidden { .. } => Some(403),
            ProxyError::FaultAbort { status, .. } => Some(*status),
            ProxyError::BadResponse(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamIo(_)
            | ProxyError::GrpcToHttp1Cluster(_) => Some(502),
            ProxyError::DownstreamIo(_)
            | ProxyError::DownstreamClosed
            | ProxyError::DownstreamTimeout => None,
        }
    }

    /// How a retry policy sees this failure of one try, `None` for
    /// failures no policy retries (the caller's fault, the gateway's own
    /// refusals, broken upstream framing).
    pub fn retry_class(&self) -> Option<Failure> {
        match self {
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls { .. } => Some(Failure::ConnectFailure),
            ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_) => Some(Failure::Reset),
            ProxyError::UpstreamTimeout => Some(Failure::Timeout),
            _ => None,
        }
    }

    /// Whether the endpoint the try went to is to blame (outlier detection,
    /// the latency-aware balancer): every upstream-side failure.
    pub fn blames_endpoint(&self) -> bool {
        self.side() == Side::Upstream
    }

    /// A short label, sent as `x-meshgate-error` and used in logs.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::HeaderTimeout => "header_timeout",
            ProxyError::NoRoute => "no_route",
            ProxyError::UnsupportedMethod(_) => "unsupported_method",
            ProxyError::NoEndpoint(_) => "no_endpoint",
            ProxyError::ConnectFailed { .. } => "connect_failed",
            ProxyError::ConnectTimeout(_) => "connect_timeout",
            ProxyError::UpstreamTls { .. } => "upstream_tls",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::BadResponse(_) => "bad_response",
            ProxyError::UpstreamClosed => "upstream_closed",
            ProxyError::UpstreamIo(_) => "upstream_io",
            ProxyError::DownstreamIo(_) => "downstream_io",
            ProxyError::DownstreamClosed => "downstream_closed",
            ProxyError::DownstreamTimeout => "downstream_timeout",
            ProxyError::SlowRequestBody => "slow_request_body",
            ProxyError::Overloaded { .. } => "overloaded",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::FaultAbort { .. } => "fault_injected",
            ProxyError::Forbidden { .. } => "forbidden",
            ProxyError::GrpcToHttp1Cluster(_) => "grpc_http1_cluster",
        }
    }

    /// Writes the local response for this error (if any) into `out`.
    /// Returns the status written.
    pub fn write_response(&self, keep_alive: bool, out: &mut Vec<u8>) -> Option<u16> {
        let status = self.status()?;
        let mut body = [0u8; 128];
        let text = response_text(self, &mut body);
        let mut seconds = [0u8; 20];
        let extra: &[(&str, &str)] = match self {
            ProxyError::Overloaded { .. } => &[
                ("x-meshgate-error", self.label()),
                ("x-meshgate-overloaded", "true"),
            ],
            ProxyError::RateLimited { retry_after_s, .. } => &[
                ("x-meshgate-error", self.label()),
                ("retry-after", format_u64(*retry_after_s, &mut seconds)),
            ],
            _ => &[("x-meshgate-error", self.label())],
        };
        http::write_local_response(status, extra, text, keep_alive, out);
        Some(status)
    }
}

/// The gRPC status code for the gateway's local answer of HTTP `status`
/// labelled `label` (its `x-meshgate-error`) to a gRPC request: the
/// gateway's own errors by name, anything else by gRPC's HTTP-to-gRPC
/// status mapping (gRPC's `doc/http-grpc-status-mapping.md`).
pub fn grpc_status(label: &str, status: u16) -> u32 {
    const PERMISSION_DENIED: u32 = 7;
    const UNIMPLEMENTED: u32 = 12;
    const RESOURCE_EXHAUSTED: u32 = 8;
    const DEADLINE_EXCEEDED: u32 = 4;
    const UNAVAILABLE: u32 = 14;
    match label {
        "forbidden" => PERMISSION_DENIED,
        "no_route" | "unsupported_method" | "grpc_http1_cluster" => UNIMPLEMENTED,
        "rate_limited" => RESOURCE_EXHAUSTED,
        "upstream_timeout" => DEADLINE_EXCEEDED,
        "overloaded" | "no_endpoint" | "connect_failed" | "connect_timeout" | "upstream_tls" => {
            UNAVAILABLE
        }
        _ => match status {
            400 => 13, // INTERNAL
            401 => 16, // UNAUTHENTICATED
            403 => PERMISSION_DENIED,
            404 => UNIMPLEMENTED,
            429 | 502 | 503 | 504 => UNAVAILABLE,
            _ => 2, // UNKNOWN
        },
    }
}

/// `n` in decimal, in `buf`.
fn format_u64(n: u64, buf: &mut [u8; 20]) -> &str {
    use std::io::Write;
    let mut cursor = io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{n}");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("1")
}

/// A one-line body: reason phrase and label, e.g. `Service Unavailable (connect_failed)`.
fn response_text<'a>(e: &ProxyError, buf: &'a mut [u8; 128]) -> &'a [u8] {
    use std::io::Write;
    let status = e.status().unwrap_or(500);
    let mut cursor = io::Cursor::new(&mut buf[..]);
    let _ = writeln!(cursor, "{} ({})", http::reason_phrase(status), e.label());
    let n = cursor.position() as usize;
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's answers to gRPC callers, by error: the codes gRPC
    /// clients act on (retry UNAVAILABLE, not PERMISSION_DENIED).
    #[test]
    fn local_answers_map_to_grpc_statuses() {
        let forbidden = ProxyError::Forbidden {
            rule: "r".into(),
            stage: crate::route::authz::Stage::Route,
            route: None,
        };
        let rate_limited = ProxyError::RateLimited {
            route: "r".into(),
            retry_after_s: 1,
        };
        let overloaded = ProxyError::Overloaded {
            cluster: "c".into(),
            limit: "max_requests",
        };
        let cases: [(ProxyError, u32); 8] = [
            (forbidden, 7),
            (ProxyError::NoRoute, 12),
            (ProxyError::GrpcToHttp1Cluster("c".into()), 12),
            (rate_limited, 8),
            (ProxyError::UpstreamTimeout, 4),
            (overloaded, 14),
            (ProxyError::NoEndpoint("c".into()), 14),
            (ProxyError::UpstreamClosed, 14),
        ];
        for (e, code) in cases {
            let status = e.status().unwrap_or(0);
            assert_eq!(grpc_status(e.label(), status), code, "{e}");
        }
        // Unknown labels go by the HTTP status.
        assert_eq!(grpc_status("x", 400), 13);
        assert_eq!(grpc_status("x", 401), 16);
        assert_eq!(grpc_status("x", 418), 2);
    }
}
