//! HTTP/2 ↔ HTTP/1.1 message translation (RFC 9113 §8, RFC 9112), sans-IO:
//! the HTTP/1.1 request head that stands for an HTTP/2 request
//! ([`write_request_head`]), and the HTTP/2 response and trailer fields
//! for an HTTP/1.1 response head and chunked trailers ([`response_of`],
//! [`trailers_of`]).
//!
//! The gateway serves an HTTP/2 stream by handing this head to the same
//! HTTP/1.1 request path every request takes (parse, route, authorize,
//! rewrite, try, answer), so an HTTP/2 request gets exactly the rules an
//! HTTP/1.1 one gets, and is parsed by the same hardened parser.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::ResponseHead;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, Parse, parse_request, parse_response};

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
}
