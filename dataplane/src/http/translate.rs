//! HTTP/2 ↔ HTTP/1.1 message translation (RFC 9113 §8, RFC 9112), sans-IO.
//! Downstream (a client speaks HTTP/2): the HTTP/1.1 request head that
//! stands for an HTTP/2 request ([`write_request_head`]), and the HTTP/2
//! response and trailer fields for an HTTP/1.1 response head and chunked
//! trailers ([`response_of`], [`trailers_of`]). Upstream (a cluster
//! speaks HTTP/2): the HTTP/2 request for the HTTP/1.1 request head the
//! gateway would send ([`request_of`]), and the HTTP/1.1 response head
//! for the HTTP/2 response ([`write_response_head`]).
//!
//! The gateway serves an HTTP/2 stream by handing this head to the same
//! HTTP/1.1 request path every request takes (parse, route, authorize,
//! rewrite, try, answer), so an HTTP/2 request gets exactly the rules an
//! HTTP/1.1 one gets, and is parsed by the same hardened parser.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::{RequestHead, ResponseHead};

/// Why an HTTP/2 request cannot be carried as HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// CONNECT (plain or extended) is not proxied.
    #[error("CONNECT is not supported")]
    Connect,
    /// A field value holds CR, LF or NUL, which HTTP/1.1 cannot carry
    /// (RFC 9113 §8.2.1 makes such a request malformed).
    #[error("a field value holds CR, LF or NUL")]
    FieldValue,
    /// No `:path`.
    #[error("the request has no path")]
    NoPath,
}

/// What the HTTP/1.1 side reads after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No body (the HEADERS frame ended the stream).
    None,
    /// The client sent `content-length`: the DATA bytes as they are.
    Length,
    /// No length known: the DATA bytes chunked, then the trailers.
    Chunked,
}

/// Header fields an HTTP/2 request may not carry (RFC 9113 §8.2.2), or
/// that the HTTP/1.1 head sets itself; `h2` already refuses most of them.
fn dropped_request_field(name: &HeaderName) -> bool {
    use http::header::*;
    [
        CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
        TE,
        HOST,
        EXPECT,
        COOKIE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Writes (appends) the HTTP/1.1 request head for an HTTP/2 request:
/// request line from `:method` and `:path`, `host` from `:authority` (else
/// the request's `host` field), cookie crumbs joined into one field
/// (RFC 9113 §8.2.3), connection-specific fields left out, and
/// `transfer-encoding: chunked` when a body of unknown length follows.
/// `end_of_stream`: the HEADERS frame ended the stream (no body).
pub fn write_request_head<B>(
    request: &Request<B>,
    end_of_stream: bool,
    out: &mut Vec<u8>,
) -> Result<RequestBody, TranslateError> {
    if request.method() == Method::CONNECT {
        return Err(TranslateError::Connect);
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .ok_or(TranslateError::NoPath)?;
    let headers = request.headers();
    let clean = |v: &[u8]| !v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
    if !headers.values().all(|v| clean(v.as_bytes())) {
        return Err(TranslateError::FieldValue);
    }
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| headers.get(http::header::HOST).map(|h| h.as_bytes()));
    if let Some(host) = host {
        push_field(out, b"host", host);
    }
    for (name, value) in headers {
        if !dropped_request_field(name) {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let mut crumbs = headers.get_all(http::header::COOKIE).iter();
    if let Some(first) = crumbs.next() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(first.as_bytes());
        for crumb in crumbs {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(crumb.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let body = if end_of_stream {
        RequestBody::None
    } else if headers.contains_key(http::header::CONTENT_LENGTH) {
        RequestBody::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        RequestBody::Chunked
    };
    out.extend_from_slice(b"\r\n");
    Ok(body)
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Fields of an HTTP/1.1 message that mean nothing in HTTP/2 (RFC 9113
/// §8.2.2): they are left out of the translated message.
fn connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Why an HTTP/1.1 response cannot be sent as HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response field {0:?} cannot be sent in HTTP/2")]
pub struct BadField(pub &'static str);

/// The HTTP/2 response for an HTTP/1.1 response head: its status and
/// fields without the connection-specific ones (names lowercased, as
/// HTTP/2 requires).
pub fn response_of(head: &ResponseHead<'_>) -> Result<Response<()>, BadField> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).map_err(|_| BadField("status"))?;
    append_fields(
        response.headers_mut(),
        head.headers().map(|(n, v)| (n.as_bytes(), v)),
    )?;
    Ok(response)
}

/// The HTTP/2 trailer fields for HTTP/1.1 trailer fields.
pub fn trailers_of<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<HeaderMap, BadField> {
    let mut map = HeaderMap::new();
    append_fields(&mut map, fields)?;
    Ok(map)
}

fn append_fields<'a>(
    map: &mut HeaderMap,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), BadField> {
    for (name, value) in fields {
        if connection_specific(name) {
            continue;
        }
        let name = HeaderName::from_bytes(name).map_err(|_| BadField("name"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| BadField("value"))?;
        map.append(name, value);
    }
    Ok(())
}

/// The HTTP/2 request (RFC 9113 §8.3.1) for an HTTP/1.1 request head
/// the gateway sends upstream: `:scheme` given, `:authority` from `host`,
/// `:path` from the origin-form target; connection-specific fields and
/// `host` left out, `te: trailers` added (gRPC servers want it; it is the
/// one `te` HTTP/2 allows).
pub fn request_of(head: &RequestHead<'_>, scheme: &'static str) -> Result<Request<()>, BadField> {
    if !head.target.starts_with('/') {
        return Err(BadField("request-target"));
    }
    let mut uri = http::Uri::builder()
        .scheme(scheme)
        .path_and_query(head.target);
    if let Some(host) = head.host {
        uri = uri.authority(host);
    }
    let uri = uri.build().map_err(|_| BadField("host"))?;
    let method = Method::from_bytes(head.method.as_bytes()).map_err(|_| BadField("method"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    append_fields(
        request.headers_mut(),
        head.headers()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_bytes(), v)),
    )?;
    request
        .headers_mut()
        .insert(http::header::TE, HeaderValue::from_static("trailers"));
    Ok(request)
}

/// How an HTTP/2 response's body is framed in the HTTP/1.1 head written
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body follows (HEADERS ended the stream, a HEAD request, 204,
    /// 304): `content-length: 0` is written where a length is needed.
    None,
    /// The response's own `content-length`: the DATA bytes as they are.
    Length,
    /// No length: the DATA chunked, the trailers in the last chunk.
    Chunked,
}

/// Writes (appends) the HTTP/1.1 head for an HTTP/2 response; returns how
/// the body follows. `end_of_stream`: the HEADERS frame ended the stream;
/// `is_head`: the request was HEAD (no body whatever the fields say).
pub fn write_response_head<B>(
    response: &Response<B>,
    end_of_stream: bool,
    is_head: bool,
    out: &mut Vec<u8>,
) -> ResponseBody {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let headers = response.headers();
    for (name, value) in headers {
        if !connection_specific(name.as_str().as_bytes()) {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let no_body_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let has_length = headers.contains_key(http::header::CONTENT_LENGTH);
    let body = if is_head || no_body_status {
        ResponseBody::None
    } else if end_of_stream {
        if !has_length {
            // Without a length an HTTP/1.1 response runs to the close.
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ResponseBody::None
    } else if has_length {
        ResponseBody::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        ResponseBody::Chunked
    };
    out.extend_from_slice(b"\r\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{BodyKind, Limits, Parse, parse_request, parse_response};

    fn head_of(request: Request<()>, end: bool) -> (String, RequestBody) {
        let mut out = Vec::new();
        let body = write_request_head(&request, end, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), body)
    }

    #[test]
    fn a_get_becomes_an_origin_form_head_with_host_from_authority() {
        let request = Request::get("https://orders.mesh.local/v1/x?y=1")
            .header("x-a", "1")
            .header("host", "ignored")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (head, body) = head_of(request, true);
        assert_eq!(
            head,
            "GET /v1/x?y=1 HTTP/1.1\r\nhost: orders.mesh.local\r\nx-a: 1\r\n\r\n"
        );
        assert_eq!(body, RequestBody::None);
        // And our own parser takes it.
        let parsed = parse_request(head.as_bytes(), &Limits::default()).unwrap();
        let Parse::Complete(h) = parsed else {
            panic!("partial")
        };
        assert_eq!(h.host, Some("orders.mesh.local"));
        assert_eq!(h.path, "/v1/x");
    }

    #[test]
    fn cookie_crumbs_are_joined_and_bodies_framed() {
        let request = Request::post("https://a/p")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        let (head, body) = head_of(request, false);
        assert!(head.contains("cookie: a=1; b=2\r\n"), "{head}");
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert_eq!(body, RequestBody::Chunked);
        let request = Request::post("https://a/p")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let (head, body) = head_of(request, false);
        assert!(head.contains("content-length: 3\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(body, RequestBody::Length);
    }

    #[test]
    fn connect_and_unsafe_values_are_refused() {
        let request = Request::connect("a:443").body(()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            write_request_head(&request, true, &mut out),
            Err(TranslateError::Connect)
        );
        // obs-text is allowed (HTTP/1.1 carries it); CR, LF and NUL cannot
        // be built through `http`'s checked API, and the check above stays
        // for a decoder that builds values unchecked.
        let mut request = Request::get("https://a/").body(()).unwrap();
        request
            .headers_mut()
            .insert("x-ok", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert!(write_request_head(&request, true, &mut out).is_ok());
    }

    #[test]
    fn a_response_loses_its_connection_fields() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-Up: a\r\nkeep-alive: 5\r\n\r\nok";
        let Parse::Complete(head) = parse_response(bytes, "GET", &Limits::default()).unwrap()
        else {
            panic!("partial")
        };
        let response = response_of(&head).unwrap();
        assert_eq!(response.status(), 200);
        let names: Vec<_> = response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-up"]);
    }

    #[test]
    fn trailers_translate() {
        let fields = [(&b"Grpc-Status"[..], &b"0"[..]), (b"te", b"trailers")];
        let map = trailers_of(fields.into_iter()).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map["grpc-status"], "0");
        let bad = [(&b"x"[..], &b"a\nb"[..])];
        assert!(trailers_of(bad.into_iter()).is_err());
    }

    fn parsed(bytes: &[u8]) -> RequestHead<'_> {
        match parse_request(bytes, &Limits::default()).unwrap() {
            Parse::Complete(h) => h,
            Parse::Partial => panic!("partial"),
        }
    }

    #[test]
    fn an_upstream_request_gets_pseudo_fields_from_its_head() {
        let bytes = b"POST /pay.v1.Pay/Charge?x=1 HTTP/1.1\r\nhost: pay.mesh.local:50051\r\ncontent-type: application/grpc\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\nx-request-id: abc\r\n\r\n";
        let head = parsed(bytes);
        let request = request_of(&head, "http").unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "http://pay.mesh.local:50051/pay.v1.Pay/Charge?x=1"
        );
        let h = request.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h["te"], "trailers");
        for gone in ["host", "connection", "transfer-encoding"] {
            assert!(!h.contains_key(gone), "{gone} must not be sent");
        }
        assert_eq!(head.body, BodyKind::Chunked);
    }

    fn response_head(response: Response<()>, end: bool, is_head: bool) -> (String, ResponseBody) {
        let mut out = Vec::new();
        let body = write_response_head(&response, end, is_head, &mut out);
        (String::from_utf8(out).unwrap(), body)
    }

    #[test]
    fn an_upstream_response_head_is_framed_for_http1() {
        let with_length = Response::builder()
            .status(200)
            .header("content-length", "5")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (head, body) = response_head(with_length, false, false);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(body, ResponseBody::Length);
        // And our own parser reads the same framing.
        let parsed = parse_response(head.as_bytes(), "GET", &Limits::default()).unwrap();
        let Parse::Complete(h) = parsed else {
            panic!("partial")
        };
        assert_eq!(h.body, BodyKind::Length(5));

        let streamed = Response::builder().status(200).body(()).unwrap();
        let (head, body) = response_head(streamed, false, false);
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert_eq!(body, ResponseBody::Chunked);

        // Trailers-only (a gRPC error): no body, and a length says so.
        let trailers_only = Response::builder()
            .status(200)
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        let (head, body) = response_head(trailers_only, true, false);
        assert!(head.contains("grpc-status: 14\r\n"), "{head}");
        assert!(head.ends_with("content-length: 0\r\n\r\n"), "{head}");
        assert_eq!(body, ResponseBody::None);
        let parsed = parse_response(head.as_bytes(), "GET", &Limits::default()).unwrap();
        let Parse::Complete(h) = parsed else {
            panic!("partial")
        };
        assert_eq!(h.body, BodyKind::None);

        // HEAD and 204/304 carry no body whatever the stream does.
        let (_, body) = response_head(Response::new(()), false, true);
        assert_eq!(body, ResponseBody::None);
        let no_content = Response::builder().status(204).body(()).unwrap();
        let (head, body) = response_head(no_content, true, false);
        assert_eq!(head, "HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(body, ResponseBody::None);
    }

    #[test]
    fn an_asterisk_or_absolute_target_is_not_sent_as_http2() {
        let head = parsed(b"OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(request_of(&head, "http").is_err());
    }
}
