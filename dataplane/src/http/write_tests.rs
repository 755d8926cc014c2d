//! Byte-fixture tests of the head writers: upstream request rewriting,
//! downstream response rewriting, local responses.

use super::tests::{limits, req, res};
use super::*;

fn fwd(xfcc: Option<&str>) -> ForwardInfo<'_> {
    ForwardInfo {
        keep_request_id: true,
        client_ip: "10.1.2.3".parse().unwrap(),
        proto: "https",
        new_request_id: "rid-1",
        xfcc,
    }
}

fn upstream(buf: &[u8], f: &ForwardInfo<'_>) -> String {
    let h = req(buf).unwrap();
    let mut out = Vec::new();
    write_upstream_request(&h, f, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn upstream_request_rewrites_head() {
    let buf = b"POST /v1?x HTTP/1.0\r\n\
        Host: orders\r\n\
        Connection: keep-alive, X-Hop, Host\r\n\
        Keep-Alive: timeout=5\r\n\
        X-Hop: secret\r\n\
        Proxy-Connection: keep-alive\r\n\
        TE: trailers\r\n\
        Trailer: X-Sum\r\n\
        Upgrade: websocket\r\n\
        Expect: 100-continue\r\n\
        Content-Length: 3, 3\r\n\
        X-Forwarded-For: 1.1.1.1\r\n\
        X-Forwarded-Proto: http\r\n\
        x-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\
        X-Forwarded-Client-Cert: forged\r\n\
        Accept: */*\r\n\r\n";
    assert_eq!(
        upstream(buf, &fwd(Some("By=spiffe://mesh/gw;URI=spiffe://mesh/c"))),
        "POST /v1?x HTTP/1.0\r\n\
         connection: keep-alive\r\n\
         Host: orders\r\n\
         Accept: */*\r\n\
         content-length: 3\r\n\
         x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n\
         x-forwarded-proto: https\r\n\
         x-request-id: rid-1\r\n\
         x-forwarded-client-cert: By=spiffe://mesh/gw;URI=spiffe://mesh/c\r\n\r\n"
    );
}

#[test]
fn upstream_request_chunked_keeps_one_te_and_request_id() {
    let buf = b"PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nX-Request-Id: abc\r\nX-Forwarded-Client-Cert: forged\r\n\r\n";
    let ip6 = ForwardInfo {
        client_ip: "2001:db8::1".parse().unwrap(),
        ..fwd(None)
    };
    assert_eq!(
        upstream(buf, &ip6),
        "PUT /u HTTP/1.1\r\n\
         Host: a\r\n\
         X-Request-Id: abc\r\n\
         transfer-encoding: chunked\r\n\
         x-forwarded-for: 2001:db8::1\r\n\
         x-forwarded-proto: https\r\n\r\n"
    );
}

#[test]
fn upstream_request_connection_cannot_strip_framing() {
    // "Connection: content-length" must not make the upstream read no body.
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, x-request-id\r\nContent-Length: 4\r\nX-Request-Id: abc\r\n\r\n";
    let out = upstream(buf, &fwd(None));
    assert!(out.contains("content-length: 4\r\n"), "{out}");
    assert!(!out.contains("abc"), "{out}");
    assert!(out.contains("x-request-id: rid-1\r\n"), "{out}");
    let again = req(out.as_bytes()).unwrap();
    assert_eq!(again.body, BodyKind::Length(4));
}

#[test]
fn upstream_request_forward_info_cannot_inject_lines() {
    let evil = ForwardInfo {
        new_request_id: "x\r\nEvil: 1",
        ..fwd(Some("a\nb\0c"))
    };
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &evil);
    assert!(out.contains("x-request-id: xEvil: 1\r\n"), "{out}");
    assert!(out.contains("x-forwarded-client-cert: abc\r\n"), "{out}");
    assert!(req(out.as_bytes()).is_ok());
}

fn upstream_edited(buf: &[u8], edits: &RequestEdits<'_>) -> String {
    let h = req(buf).unwrap();
    let mut out = Vec::new();
    write_upstream_request_edited(&h, &fwd(None), edits, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn upstream_request_round_trips() {
    let buf = b"GET http://a.b/p?q HTTP/1.1\r\nHost: a.b\r\nX-A: 1\r\n\r\n";
    let out = upstream(buf, &fwd(None));
    let h = req(out.as_bytes()).unwrap();
    assert_eq!(
        (h.method, h.target, h.path, h.host),
        ("GET", "/p?q", "/p", Some("a.b"))
    );
    assert_eq!(h.header("x-a"), Some(&b"1"[..]));
    assert_eq!(h.header("x-forwarded-for"), Some(&b"10.1.2.3"[..]));
}

fn downstream(buf: &[u8], method: &str, keep_alive: bool) -> String {
    let h = res(buf, method).unwrap();
    let mut out = Vec::new();
    write_downstream_response(&h, keep_alive, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn downstream_response_rewrites_head() {
    let buf = b"HTTP/1.0 200 Fine\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nContent-Length: 2,2\r\nServer: up\r\n\r\nok";
    assert_eq!(
        downstream(buf, "GET", true),
        "HTTP/1.1 200 Fine\r\nServer: up\r\ncontent-length: 2\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, "GET", false),
        "HTTP/1.1 200 Fine\r\nServer: up\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn downstream_response_framing_fields() {
    let chunked = b"HTTP/1.1 201\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
    assert_eq!(
        downstream(chunked, "POST", true),
        "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let close = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
    assert_eq!(
        downstream(close, "GET", true),
        "HTTP/1.1 200 OK\r\nX: y\r\nconnection: close\r\n\r\n"
    );
    let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        downstream(no_content, "GET", true),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    assert_eq!(
        downstream(head, "HEAD", true),
        "HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"
    );
    let head_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        downstream(head_chunked, "HEAD", true),
        "HTTP/1.1 200 OK\r\n\r\n"
    );
}

#[test]
fn local_responses() {
    let mut out = Vec::new();
    write_local_response(
        503,
        &[("retry-after", "1")],
        b"no healthy upstream",
        false,
        &mut out,
    );
    assert_eq!(
        out,
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 19\r\n\
          connection: close\r\nretry-after: 1\r\n\r\nno healthy upstream"
    );
    out.clear();
    write_local_response(404, &[], b"", true, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n"
    );
    out.clear();
    write_local_response(100, &[], b"ignored", true, &mut out);
    assert_eq!(out, CONTINUE_RESPONSE);
    out.clear();
    write_local_response(599, &[], b"x", true, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 599 \r\n"));
    assert!(matches!(
        parse_response(&out, "GET", &limits()),
        Ok(Parse::Complete(_))
    ));
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(502), "Bad Gateway");
}

/// Found by the `http_request` fuzz target: an HTTP/1.0 request without
/// Host was forwarded as HTTP/1.1 without Host, which no upstream accepts.
#[test]
fn http10_request_without_host_is_forwarded_with_one() {
    let out = upstream(b"GET /x HTTP/1.0\r\n\r\n", &fwd(None));
    assert!(
        out.starts_with("GET /x HTTP/1.0\r\nconnection: keep-alive\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nhost: \r\n"), "{out}");
    let out = upstream(b"GET http://a.example/x HTTP/1.0\r\n\r\n", &fwd(None));
    assert!(out.contains("\r\nhost: a.example\r\n"), "{out}");
    // The rewritten head parses as a complete request.
    let rewritten = upstream(
        b"GET /y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &fwd(None),
    );
    assert!(matches!(
        parse_request(rewritten.as_bytes(), &limits()),
        Ok(Parse::Complete(_))
    ));
}

/// RFC 9112 §3.2.2: an absolute-form target goes upstream in origin-form,
/// its authority replacing whatever Host line the client sent, and a
/// prefix rewrite sees the path the route matched.
#[test]
fn absolute_form_goes_upstream_as_origin_form_with_its_host() {
    let out = upstream(
        b"GET http://orders.mesh/v1/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        &fwd(None),
    );
    assert!(out.starts_with("GET /v1/x?y=1 HTTP/1.1\r\n"), "{out}");
    assert!(out.contains("host: orders.mesh\r\n"), "{out}");
    assert!(!out.contains("evil.example"), "{out}");
    for (target, sent) in [
        ("http://a.b", "GET / HTTP/1.1"),
        ("http://a.b?q", "GET /?q HTTP/1.1"),
        ("HTTPS://a.b:8443/p", "GET /p HTTP/1.1"),
        ("/already/origin", "GET /already/origin HTTP/1.1"),
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: a.b\r\n\r\n");
        let out = upstream(buf.as_bytes(), &fwd(None));
        assert!(out.starts_with(&format!("{sent}\r\n")), "{target}: {out}");
    }
    let rewrite = RequestEdits {
        headers: None,
        prefix_rewrite: Some(("/v1/", "/internal/")),
        drop_underscores: false,
        path: None,
        trace: None,
    };
    let out = upstream_edited(
        b"GET http://orders.mesh/v1/x HTTP/1.1\r\nHost: x\r\n\r\n",
        &rewrite,
    );
    assert!(out.starts_with("GET /internal/x HTTP/1.1\r\n"), "{out}");
}

/// RFC 9110 §7.6.1: a Connection header names fields of its own message;
/// it cannot remove what the gateway or a route adds.
#[test]
fn connection_cannot_remove_fields_the_route_adds() {
    let edits = HeaderEdits {
        add: vec![("x-tenant".into(), "blue".into())],
        set: vec![("x-env".into(), "prod".into())],
        remove: Vec::new(),
    };
    let out = upstream_edited(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-tenant, x-env, x-mine\r\nx-mine: 1\r\nx-env: dev\r\n\r\n",
        &RequestEdits {
            headers: Some(&edits),
            prefix_rewrite: None,
            drop_underscores: false,
            path: None,
            trace: None,
        },
    );
    assert!(out.contains("x-tenant: blue\r\n"), "{out}");
    assert!(out.contains("x-env: prod\r\n"), "{out}");
    assert!(
        !out.contains("x-mine"),
        "the client's own nominated field goes: {out}"
    );
    assert!(!out.contains("x-env: dev"), "{out}");
    // Gateway-owned fields are written whatever Connection says.
    assert!(out.contains("x-forwarded-for: 10.1.2.3\r\n"), "{out}");
    assert!(out.contains("x-request-id: rid-1\r\n"), "{out}");
    // The same on the way back.
    let h = res(
        b"HTTP/1.1 200 OK\r\nConnection: x-tenant, x-up\r\nx-up: 1\r\nContent-Length: 0\r\n\r\n",
        "GET",
    )
    .unwrap();
    let mut out = Vec::new();
    write_downstream_response_edited(&h, true, false, Some(&edits), &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("x-tenant: blue\r\n"), "{out}");
    assert!(!out.contains("x-up"), "{out}");
}

#[test]
fn underscore_names_can_be_left_out() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nx_forwarded_client_cert: By=evil\r\nX_Mine: 1\r\nx-ok: 2\r\n\r\n";
    let drop = RequestEdits {
        drop_underscores: true,
        ..RequestEdits::default()
    };
    let out = upstream_edited(buf, &drop);
    assert!(!out.contains('_'), "{out}");
    assert!(out.contains("x-ok: 2\r\n"), "{out}");
    let out = upstream_edited(buf, &RequestEdits::default());
    assert!(out.contains("X_Mine: 1\r\n"), "allowed: {out}");
}

#[test]
fn a_normalised_path_replaces_the_target_path_and_keeps_the_query() {
    let edits = RequestEdits {
        path: Some("/b/c"),
        prefix_rewrite: Some(("/b/", "/z/")),
        ..RequestEdits::default()
    };
    let out = upstream_edited(b"GET /a/../b//c?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", &edits);
    assert!(out.starts_with("GET /z/c?q=1 HTTP/1.1\r\n"), "{out}");
}

#[test]
fn at_most_one_request_id_goes_upstream() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: first\r\nx-request-id: second\r\n\r\n";
    let out = upstream(buf, &fwd(None));
    assert_eq!(
        out.matches("first").count() + out.matches("second").count(),
        1,
        "{out}"
    );
    assert!(out.contains("X-Request-Id: first\r\n"), "{out}");
    let fresh = ForwardInfo {
        keep_request_id: false,
        ..fwd(None)
    };
    let out = upstream(buf, &fresh);
    assert!(!out.contains("first") && !out.contains("second"), "{out}");
    assert_eq!(out.matches("x-request-id: rid-1\r\n").count(), 1, "{out}");
    // An empty id is no id.
    let out = upstream(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id:\r\n\r\n",
        &fwd(None),
    );
    assert!(out.contains("x-request-id: rid-1\r\n"), "{out}");
}

#[test]
fn upstream_request_trace_fields_replace_the_clients() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nTraceparent: 00-old\r\nX-A: 1\r\n\r\n";
    let h = req(buf).unwrap();
    let replaces = |name: &str| name.eq_ignore_ascii_case("traceparent");
    let lines = b"traceparent: 00-new\r\n";
    let edits = RequestEdits {
        trace: Some(crate::http::TraceFields {
            lines,
            replaces: &replaces,
        }),
        ..RequestEdits::default()
    };
    let mut out = Vec::new();
    let at = write_upstream_request_edited(&h, &fwd(None), &edits, &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("00-old"), "{text}");
    assert_eq!(&out[at..at + lines.len()], lines);
    assert!(text.ends_with("traceparent: 00-new\r\n\r\n"), "{text}");
    assert!(text.contains("X-A: 1\r\n"));
}
