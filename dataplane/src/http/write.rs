//! Serialising heads: what the gateway sends upstream
//! ([`write_upstream_request`]), back downstream ([`write_downstream_response`])
//! and on its own behalf ([`write_local_response`]).
//!
//! Heads are rewritten, never forwarded byte-for-byte: hop-by-hop fields are
//! dropped (RFC 9110 §7.6.1), framing fields are regenerated from the parsed
//! framing (one normalised `content-length`, or one `transfer-encoding:
//! chunked` because the body bytes go out verbatim), and everything goes out
//! as HTTP/1.1. Output is appended to a caller-owned `Vec`.

use std::io::Write as _;

use super::edits::HeaderEdits;
use super::fields::ConnectionOptions;
use super::head::Fields;
use super::{BodyKind, RequestHead, ResponseHead};

/// The interim response the gateway sends itself for `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the proxy adds when forwarding a request upstream.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    /// Keep the client's `x-request-id` (its first); else it is replaced
    /// by `new_request_id`.
    pub keep_request_id: bool,
    /// Address of the downstream peer, appended to x-forwarded-for.
    pub client_ip: std::net::IpAddr,
    /// `"https"` or `"http"`: x-forwarded-proto (overwrites).
    pub proto: &'a str,
    /// Used only when the request carries no x-request-id.
    pub new_request_id: &'a str,
    /// `Some`: x-forwarded-client-cert set to this, replacing any client
    /// value; `None`: any client-sent XFCC removed.
    pub xfcc: Option<&'a str>,
}

/// How a field line is treated when a head is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Copied as is.
    Keep,
    /// Dropped: hop-by-hop, or replaced by a regenerated value.
    Drop,
    /// x-forwarded-for: folded into the one we write.
    ForwardedFor,
}

/// RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
/// field before a message is forwarded and, for each connection-option in
/// this field, remove any header or trailer field(s) from the message with
/// the same name as the connection-option, and then remove the Connection
/// header field itself (or replace it with the intermediary's own control
/// options for the forwarded message)." Plus the fields it lists as
/// hop-by-hop: Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade
/// (and Trailer, which describes the chunked framing we do not rewrite).
///
/// Content-Length is always dropped here and regenerated from the parsed
/// value, so a `Connection: content-length` option cannot strip the framing
/// the upstream relies on. Host is never removed by a Connection option.
/// Whether `name` is a field that never crosses the gateway, whatever the
/// message's Connection header says.
fn fixed_hop_by_hop(name: &str) -> bool {
    const FIXED: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "content-length",
    ];
    FIXED.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// Whether field `name` of a message is hop-by-hop: fixed, or named by
/// that message's own Connection header (RFC 9110 §7.6.1). The Connection
/// header applies to the fields of the message it came with only; fields
/// the gateway or a route adds are never subject to it.
fn hop_by_hop(name: &str, conn: &ConnectionOptions<'_>) -> bool {
    fixed_hop_by_hop(name) || (conn.names(name) && !name.eq_ignore_ascii_case("host"))
}

/// The origin-form of a request-target (RFC 9112 §3.2.1): origin-form as
/// is; for absolute-form (§3.2.2) its path and query, `/` when it has no
/// path. A gateway forwards origin-form, whatever form the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginForm<'a> {
    /// A `/` precedes `rest` (an absolute-form target without a path).
    slash: bool,
    rest: &'a str,
}

/// See [`OriginForm`].
pub fn origin_form(target: &str) -> OriginForm<'_> {
    let Some(scheme_end) = target.find("://").filter(|_| !target.starts_with('/')) else {
        return OriginForm {
            slash: false,
            rest: target,
        };
    };
    let after = &target[scheme_end + 3..];
    match after.find(['/', '?']) {
        Some(i) if after.as_bytes()[i] == b'/' => OriginForm {
            slash: false,
            rest: &after[i..],
        },
        Some(i) => OriginForm {
            slash: true,
            rest: &after[i..],
        },
        None => OriginForm {
            slash: true,
            rest: "",
        },
    }
}

impl OriginForm<'_> {
    /// Whether the client sent absolute-form.
    pub fn was_absolute(&self, target: &str) -> bool {
        self.slash || self.rest.len() != target.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        if self.slash {
            out.push(b'/');
        }
        out.extend_from_slice(self.rest.as_bytes());
    }

    /// With `prefix` replaced by `with` when it starts with it.
    fn write_rewritten(&self, prefix: &str, with: &str, out: &mut Vec<u8>) {
        let mut whole = String::new();
        let full = if self.slash {
            whole.push('/');
            whole.push_str(self.rest);
            whole.as_str()
        } else {
            self.rest
        };
        match full.strip_prefix(prefix) {
            Some(tail) => {
                out.extend_from_slice(with.as_bytes());
                out.extend_from_slice(tail.as_bytes());
            }
            None => out.extend_from_slice(full.as_bytes()),
        }
    }
}

impl std::fmt::Display for OriginForm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.slash {
            f.write_str("/")?;
        }
        f.write_str(self.rest)
    }
}

fn request_disposition(name: &str, conn: &ConnectionOptions<'_>) -> Disposition {
    if hop_by_hop(name, conn)
        // The gateway answers 100-continue itself (RFC 9110 §10.1.1).
        || name.eq_ignore_ascii_case("expect")
        || name.eq_ignore_ascii_case("x-forwarded-proto")
        || name.eq_ignore_ascii_case("x-forwarded-client-cert")
    {
        Disposition::Drop
    } else if name.eq_ignore_ascii_case("x-forwarded-for") {
        Disposition::ForwardedFor
    } else {
        Disposition::Keep
    }
}

/// Appends `name: value\r\n`. Values from the gateway's own side are
/// filtered of CR, LF and NUL so they can never split the head.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_safe(out, name);
    out.extend_from_slice(b": ");
    push_safe(out, value);
    out.extend_from_slice(b"\r\n");
}

fn push_safe(out: &mut Vec<u8>, value: &[u8]) {
    if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        out.extend(
            value
                .iter()
                .copied()
                .filter(|b| !matches!(b, b'\r' | b'\n' | 0)),
        );
    } else {
        out.extend_from_slice(value);
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Writes the regenerated framing fields.
fn push_framing(out: &mut Vec<u8>, body: BodyKind, fields: &Fields<'_>, keep_length: bool) {
    if body == BodyKind::Chunked {
        // The chunked body is forwarded verbatim, so it stays labelled.
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if let (true, Some(n)) = (keep_length, fields.content_length) {
        out.extend_from_slice(b"content-length: ");
        push_u64(out, n);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the upstream request head into `out` (appends).
///
/// Request line `METHOD target HTTP/1.1` with the original method and
/// target; hop-by-hop fields removed (see `hop_by_hop`), a single
/// `transfer-encoding: chunked` when the body is chunked, Content-Length
/// kept as one normalised line; Expect removed (the gateway answers
/// 100-continue itself); x-forwarded-for appended to (all client lines
/// folded into one, then `, client_ip`) or created; x-forwarded-proto set;
/// x-request-id kept or added; x-forwarded-client-cert replaced or removed.
pub fn write_upstream_request(head: &RequestHead<'_>, fwd: &ForwardInfo<'_>, out: &mut Vec<u8>) {
    write_upstream_request_edited(head, fwd, &RequestEdits::default(), out);
}

/// Route-level changes to a forwarded request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestEdits<'a> {
    /// Header edits (a `set` of `host` rewrites the host).
    pub headers: Option<&'a HeaderEdits>,
    /// `(prefix, replacement)`: a target starting with `prefix` has it
    /// replaced.
    pub prefix_rewrite: Option<(&'a str, &'a str)>,
    /// Leave out request fields whose name has `_`.
    pub drop_underscores: bool,
    /// The normalised path, sent in place of the target's path (its query
    /// kept); `None`: the path as received.
    pub path: Option<&'a str>,
    /// Trace context fields written in place of the client's.
    pub trace: Option<TraceFields<'a>>,
}

/// Trace context fields the gateway writes in place of the client's (the
/// client's lines of the fields they replace are left out).
#[derive(Clone, Copy)]
pub struct TraceFields<'a> {
    /// Whole field lines, each ending in CRLF.
    pub lines: &'a [u8],
    /// Whether a client field (by name) is one `lines` replaces.
    pub replaces: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for TraceFields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceFields")
            .field("lines", &String::from_utf8_lossy(self.lines))
            .finish_non_exhaustive()
    }
}

/// [`write_upstream_request`] with route edits applied: fields the edits
/// drop are left out (framing and forwarding fields cannot be edited: they
/// are regenerated after), edited fields are appended, and the target's
/// prefix is rewritten. Returns where in `out` the trace fields were
/// written (`edits.trace`; else where they would have gone).
pub fn write_upstream_request_edited(
    head: &RequestHead<'_>,
    fwd: &ForwardInfo<'_>,
    edits: &RequestEdits<'_>,
    out: &mut Vec<u8>,
) -> usize {
    let fields = &head.fields;
    let conn = &fields.connection;
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    // Origin-form always, so the upstream sees (and a prefix rewrite
    // edits) the same path the route matched.
    let target = origin_form(head.target);
    let absolute = target.was_absolute(head.target);
    let normalized;
    let target = match edits.path {
        Some(path) => {
            let query = target.rest.find('?').map_or("", |q| &target.rest[q..]);
            normalized = format!("{path}{query}");
            OriginForm {
                slash: false,
                rest: &normalized,
            }
        }
        None => target,
    };
    match edits.prefix_rewrite {
        Some((prefix, with)) => target.write_rewritten(prefix, with, out),
        None => target.write(out),
    }
    // An HTTP/1.0 request goes upstream as HTTP/1.0, so the upstream never
    // answers with chunked framing the client cannot read (RFC 9112 §6.1);
    // `connection: keep-alive` keeps the upstream connection poolable.
    if head.minor_version == 0 {
        out.extend_from_slice(b" HTTP/1.0\r\nconnection: keep-alive\r\n");
    } else {
        out.extend_from_slice(b" HTTP/1.1\r\n");
    }

    let mut has_request_id = false;
    let mut has_host = false;
    let dropped = |name: &str| edits.headers.is_some_and(|e| e.drops(name));
    // An absolute-form target's authority replaces any Host line
    // (RFC 9112 §3.2.2); `head.host` holds it.
    let replaced = |name: &str| {
        (absolute && name.eq_ignore_ascii_case("host"))
            || (edits.drop_underscores && name.contains('_'))
            || edits.trace.is_some_and(|t| (t.replaces)(name))
    };
    for h in fields.lines() {
        let is_id = h.name.eq_ignore_ascii_case("x-request-id");
        // At most one id goes upstream: the client's first, when it may
        // keep it, else the gateway's.
        if is_id && (!fwd.keep_request_id || has_request_id || h.value.is_empty()) {
            continue;
        }
        if request_disposition(h.name, conn) == Disposition::Keep
            && !dropped(h.name)
            && !replaced(h.name)
        {
            has_request_id |= is_id;
            has_host |= h.name.eq_ignore_ascii_case("host");
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(e) = edits.headers {
        for (name, value) in e.appended() {
            // The client's Connection header cannot remove what the route
            // adds.
            if request_disposition(name, &ConnectionOptions::default()) == Disposition::Keep {
                has_request_id |= name.eq_ignore_ascii_case("x-request-id");
                has_host |= name.eq_ignore_ascii_case("host");
                push_field(out, name.as_bytes(), value.as_bytes());
            }
        }
    }
    // An HTTP/1.0 request may come without Host, but what we forward is
    // HTTP/1.1: RFC 9112 §3.2 requires Host, empty when the target has no
    // authority.
    if !has_host {
        push_field(out, b"host", head.host.unwrap_or("").as_bytes());
    }
    push_framing(out, head.body, fields, true);

    out.extend_from_slice(b"x-forwarded-for: ");
    for h in fields.lines() {
        if request_disposition(h.name, conn) == Disposition::ForwardedFor && !h.value.is_empty() {
            out.extend_from_slice(h.value);
            out.extend_from_slice(b", ");
        }
    }
    let _ = write!(out, "{}", fwd.client_ip);
    out.extend_from_slice(b"\r\n");
    push_field(out, b"x-forwarded-proto", fwd.proto.as_bytes());
    if !has_request_id {
        push_field(out, b"x-request-id", fwd.new_request_id.as_bytes());
    }
    if let Some(xfcc) = fwd.xfcc {
        push_field(out, b"x-forwarded-client-cert", xfcc.as_bytes());
    }
    let trace_at = out.len();
    if let Some(t) = edits.trace {
        out.extend_from_slice(t.lines);
    }
    out.extend_from_slice(b"\r\n");
    trace_at
}

fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the downstream response head (appends): status line HTTP/1.1
/// with the upstream's reason (or the standard one if it sent none),
/// hop-by-hop fields removed as for requests, `transfer-encoding: chunked`
/// when the body is chunked, Content-Length as one normalised line (none
/// for 1xx and 204, RFC 9110 §8.6), and `connection: close` when
/// `!keep_alive` or when the body is close-delimited (it can only end with
/// the connection).
pub fn write_downstream_response(head: &ResponseHead<'_>, keep_alive: bool, out: &mut Vec<u8>) {
    write_downstream_response_for(head, keep_alive, false, out);
}

/// [`write_downstream_response`] for a client that must be told the
/// connection stays open: an HTTP/1.0 client that asked for keep-alive
/// (RFC 9112 §9.3, Appendix C.2.2) gets `connection: keep-alive` when
/// `keep_alive` holds and the body is not close-delimited.
pub fn write_downstream_response_for(
    head: &ResponseHead<'_>,
    keep_alive: bool,
    announce_keep_alive: bool,
    out: &mut Vec<u8>,
) {
    write_downstream_response_edited(head, keep_alive, announce_keep_alive, None, out);
}

/// [`write_downstream_response_for`] with the route's response header edits
/// (framing and connection fields cannot be edited).
pub fn write_downstream_response_edited(
    head: &ResponseHead<'_>,
    keep_alive: bool,
    announce_keep_alive: bool,
    edits: Option<&HeaderEdits>,
    out: &mut Vec<u8>,
) {
    let fields = &head.fields;
    let reason = if head.reason.is_empty() {
        reason_phrase(head.status)
    } else {
        head.reason
    };
    push_status_line(out, head.status, reason);
    let dropped = |name: &str| edits.is_some_and(|e| e.drops(name));
    for h in fields.lines() {
        if !hop_by_hop(h.name, &fields.connection) && !dropped(h.name) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(e) = edits {
        for (name, value) in e.appended() {
            // The upstream's Connection header cannot remove what the
            // route adds.
            if !fixed_hop_by_hop(name) {
                push_field(out, name.as_bytes(), value.as_bytes());
            }
        }
    }
    // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in
    // any response with a status code of 1xx (Informational) or 204 (No
    // Content)."
    let may_have_length = head.status >= 200 && head.status != 204;
    push_framing(out, head.body, fields, may_have_length);
    if !keep_alive || head.body == BodyKind::CloseDelimited {
        out.extend_from_slice(b"connection: close\r\n");
    } else if announce_keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a complete small response generated by the gateway (errors):
/// status line, `content-type: text/plain`, `content-length`,
/// `connection: close` when `!keep_alive`, the extra headers, then `body`.
/// For 1xx, 204 and 304, which cannot carry content, the content fields and
/// `body` are left out.
pub fn write_local_response(
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    push_status_line(out, status, reason_phrase(status));
    let has_content = status >= 200 && status != 204 && status != 304;
    if has_content {
        out.extend_from_slice(b"content-type: text/plain\r\ncontent-length: ");
        push_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in extra_headers {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if has_content {
        out.extend_from_slice(body);
    }
}

/// The standard reason phrase for `status` (RFC 9110 §15), or `""` for an
/// unregistered code (the reason-phrase may be empty, RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
