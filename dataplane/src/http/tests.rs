//! Byte-fixture tests of the HTTP/1.1 head parsers: one test per rejection
//! rule, and probes pinning down what httparse does by itself (so it is clear
//! which checks are ours). Writers are tested in `write_tests.rs`, properties
//! in `proptests.rs`, body-decoder fixtures beside the decoder in `body.rs`.

use super::*;

pub(super) fn limits() -> Limits {
    Limits::default()
}

pub(super) fn req(bytes: &[u8]) -> Result<RequestHead<'_>, HttpError> {
    match parse_request(bytes, &limits())? {
        Parse::Complete(h) => Ok(h),
        Parse::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
    }
}

pub(super) fn res<'b>(bytes: &'b [u8], method: &str) -> Result<ResponseHead<'b>, HttpError> {
    match parse_response(bytes, method, &limits())? {
        Parse::Complete(h) => Ok(h),
        Parse::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
    }
}

fn req_err(bytes: &[u8]) -> HttpError {
    match parse_request(bytes, &limits()) {
        Err(e) => e,
        Ok(_) => panic!("accepted: {:?}", String::from_utf8_lossy(bytes)),
    }
}

// ── what httparse does on its own (pins down which checks are ours) ───────

fn httparse_req(bytes: &[u8]) -> httparse::Result<usize> {
    let mut h = [httparse::EMPTY_HEADER; 16];
    httparse::Request::new(&mut h).parse(bytes)
}

#[test]
fn httparse_accepts_bare_lf_and_we_reject_it() {
    assert!(matches!(
        httparse_req(b"GET / HTTP/1.1\nHost: a\n\n"),
        Ok(httparse::Status::Complete(_))
    ));
    assert!(matches!(
        httparse_req(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        Ok(httparse::Status::Complete(_))
    ));
    assert_eq!(
        req_err(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
        HttpError::InvalidLineEnding
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        HttpError::InvalidLineEnding
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
        HttpError::InvalidLineEnding
    );
    assert_eq!(
        req_err(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::InvalidLineEnding
    );
}

#[test]
fn httparse_rejects_by_itself() {
    let cases: &[(&[u8], httparse::Error)] = &[
        // obs-fold (RFC 9112 §5.2)
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
            httparse::Error::HeaderName,
        ),
        // whitespace between name and colon (RFC 9112 §5.1)
        (
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            httparse::Error::HeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nX\x01: a\r\n\r\n",
            httparse::Error::HeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\n: a\r\n\r\n",
            httparse::Error::HeaderName,
        ),
        // bare CR, NUL and DEL in a value
        (
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            httparse::Error::HeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            httparse::Error::HeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            httparse::Error::HeaderValue,
        ),
        // bare CR in the request line
        (b"GET /\r HTTP/1.1\r\n\r\n", httparse::Error::Token),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", httparse::Error::NewLine),
        // request-line delimiters
        (b"GET  / HTTP/1.1\r\n\r\n", httparse::Error::Token),
        (b"GET\t/ HTTP/1.1\r\n\r\n", httparse::Error::Token),
        (b"GET / HTTP/1.2\r\n\r\n", httparse::Error::Version),
        (b"GET / http/1.1\r\n\r\n", httparse::Error::Version),
        (b"GET / HTTP/2.0\r\n\r\n", httparse::Error::Version),
    ];
    for (bytes, e) in cases {
        assert_eq!(
            httparse_req(bytes),
            Err(*e),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(
            parse_request(bytes, &limits()),
            Err(HttpError::from_httparse(*e))
        );
    }
}

#[test]
fn httparse_accepts_targets_we_reject() {
    for target in [
        "/a#frag",
        "/caf\u{e9}",
        "foo",
        "ftp://h/",
        "http://u@h/",
        "http:///x",
    ] {
        let bytes = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(
            httparse_req(bytes.as_bytes()),
            Ok(httparse::Status::Complete(_))
        ));
        assert_eq!(
            req_err(bytes.as_bytes()),
            HttpError::InvalidTarget,
            "{target}"
        );
    }
}

#[test]
fn httparse_accepts_any_three_digit_status_we_reject_out_of_range() {
    for status in ["000", "099", "600", "999"] {
        let bytes = format!("HTTP/1.1 {status} X\r\n\r\n");
        let mut h = [httparse::EMPTY_HEADER; 4];
        assert!(
            httparse::Response::new(&mut h)
                .parse(bytes.as_bytes())
                .is_ok()
        );
        assert_eq!(
            parse_response(bytes.as_bytes(), "GET", &limits()),
            Err(HttpError::InvalidStatusCode)
        );
    }
}

// ── request heads ───────────────────────────────────────────────────────

#[test]
fn request_simple_get() {
    let buf = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8443\r\nAccept: */*\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nNEXT";
    let h = req(buf).unwrap();
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "/a/b?x=1");
    assert_eq!(h.path, "/a/b");
    assert_eq!(h.minor_version, 1);
    assert_eq!(h.head_len, buf.len() - 4);
    assert_eq!(h.body, BodyKind::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.host, Some("example.com:8443"));
    assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
    assert_eq!(h.header("X-DUP"), Some(&b"1"[..]));
    assert_eq!(h.header("missing"), None);
    let all: Vec<_> = h.headers().collect();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3], ("x-dup", &b"2"[..]));
}

#[test]
fn request_partial_until_final_crlf() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for k in 0..buf.len() {
        assert_eq!(
            parse_request(&buf[..k], &limits()),
            Ok(Parse::Partial),
            "{k}"
        );
    }
    assert!(matches!(
        parse_request(buf, &limits()),
        Ok(Parse::Complete(_))
    ));
}

#[test]
fn request_leading_empty_lines_are_ignored() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = req(buf).unwrap();
    assert_eq!(h.method, "GET");
    assert_eq!(h.head_len, buf.len());
}

#[test]
fn head_too_large() {
    let small = Limits { max_head_bytes: 32 };
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(parse_request(&buf[..32], &small), Ok(Parse::Partial));
    assert_eq!(
        parse_request(&buf[..33], &small),
        Err(HttpError::HeadTooLarge)
    );
    assert_eq!(parse_request(buf, &small), Err(HttpError::HeadTooLarge));
    assert_eq!(HttpError::HeadTooLarge.status(), 431);
    // Exactly at the limit is fine, with body bytes beyond it.
    let exact = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODYBODY";
    let lim = Limits {
        max_head_bytes: exact.len() - 8,
    };
    assert!(matches!(parse_request(exact, &lim), Ok(Parse::Complete(_))));
    let resp = b"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(
        parse_response(resp, "GET", &small),
        Err(HttpError::HeadTooLarge)
    );
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 1..n {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    buf
}

#[test]
fn too_many_headers() {
    assert_eq!(
        req(&with_headers(MAX_HEADERS)).unwrap().headers().count(),
        MAX_HEADERS
    );
    let e = req_err(&with_headers(MAX_HEADERS + 1));
    assert_eq!(e, HttpError::TooManyHeaders);
    assert_eq!(e.status(), 431);
}

#[test]
fn smuggling_te_and_cl_rejected() {
    for buf in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
    ] {
        let e = req_err(buf);
        assert_eq!(e, HttpError::ContentLengthWithTransferEncoding);
        assert_eq!(e.status(), 400);
    }
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let e = parse_response(resp, "GET", &limits()).unwrap_err();
    assert_eq!(e, HttpError::ContentLengthWithTransferEncoding);
    assert_eq!(e.response_status(), 502);
}

#[test]
fn smuggling_duplicate_content_length() {
    let differ = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(req_err(differ), HttpError::ConflictingContentLength);
    assert_eq!(
        req_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"),
        HttpError::ConflictingContentLength
    );
    for same in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\ncontent-length: 5\r\n\r\n",
    ] {
        let h = req(same).unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(h.content_length(), Some(5));
    }
}

#[test]
fn smuggling_content_length_not_digits() {
    for v in [
        "+5",
        "-5",
        "0x5",
        "5 5",
        "",
        "5,",
        "5e0",
        "1_0",
        "18446744073709551616",
        "\u{661}",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            req_err(buf.as_bytes()),
            HttpError::InvalidContentLength,
            "{v:?}"
        );
    }
    // OWS around the value is not part of it (RFC 9110 §5.5).
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 7 \t\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyKind::Length(7));
    // Up to 2^53 - 1; beyond is refused, not passed on.
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740991\r\n\r\n");
    assert_eq!(h.unwrap().body, BodyKind::Length((1 << 53) - 1));
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740992\r\n\r\n";
    assert_eq!(req_err(buf), HttpError::InvalidContentLength);
}

#[test]
fn content_length_zero_is_no_body() {
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyKind::None);
    assert_eq!(h.content_length(), Some(0));
}

#[test]
fn smuggling_transfer_encoding_variants() {
    let cases: &[(&str, Result<BodyKind, HttpError>)] = &[
        ("chunked", Ok(BodyKind::Chunked)),
        ("Chunked", Ok(BodyKind::Chunked)),
        ("chunked \t", Ok(BodyKind::Chunked)),
        ("\tchunked", Ok(BodyKind::Chunked)),
        ("gzip", Err(HttpError::UnsupportedTransferCoding)),
        ("gzip, chunked", Err(HttpError::UnsupportedTransferCoding)),
        ("xchunked", Err(HttpError::UnsupportedTransferCoding)),
        ("chunkedx", Err(HttpError::UnsupportedTransferCoding)),
        ("chunked, gzip", Err(HttpError::ChunkedNotFinal)),
        ("chunked, chunked", Err(HttpError::ChunkedAppliedTwice)),
        ("chunked , chunked", Err(HttpError::ChunkedAppliedTwice)),
        ("", Err(HttpError::InvalidTransferEncoding)),
        ("chunked;x", Err(HttpError::InvalidTransferEncoding)),
        ("chun ked", Err(HttpError::InvalidTransferEncoding)),
        ("\"chunked\"", Err(HttpError::InvalidTransferEncoding)),
    ];
    for (v, want) in cases {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
        let got = parse_request(buf.as_bytes(), &limits()).map(|p| match p {
            Parse::Complete(h) => h.body,
            Parse::Partial => panic!("partial"),
        });
        assert_eq!(&got, want, "{v:?}");
    }
    assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
    assert_eq!(HttpError::ChunkedNotFinal.status(), 400);
    // Two lines form one list.
    let twice = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(req_err(twice), HttpError::ChunkedAppliedTwice);
    let split = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(req_err(split), HttpError::ChunkedNotFinal);
}

#[test]
fn smuggling_transfer_encoding_in_http10() {
    let buf = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(req_err(buf), HttpError::TransferEncodingInHttp10);
    let resp = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        parse_response(resp, "GET", &limits()),
        Err(HttpError::TransferEncodingInHttp10)
    );
}

#[test]
fn smuggling_malformed_field_lines() {
    let cases: &[(&[u8], HttpError)] = &[
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n\x01X: b\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n",
            HttpError::InvalidHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\0c\r\n\r\n",
            HttpError::InvalidHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
            HttpError::InvalidHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n",
            HttpError::InvalidHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            HttpError::InvalidLineEnding,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\r\n",
            HttpError::InvalidHeaderValue,
        ),
        (
            b"GET /\n HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidRequestLine,
        ),
    ];
    for (buf, e) in cases {
        assert_eq!(req_err(buf), *e, "{:?}", String::from_utf8_lossy(buf));
        assert_eq!(e.status(), 400);
    }
    let resp = b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        parse_response(resp, "GET", &limits()),
        Err(HttpError::InvalidHeaderName)
    );
    let resp = b"HTTP/1.1 200 OK\nContent-Length: 0\n\n";
    assert_eq!(
        parse_response(resp, "GET", &limits()),
        Err(HttpError::InvalidLineEnding)
    );
}

#[test]
fn host_rules() {
    assert_eq!(req_err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
    assert_eq!(
        req_err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        HttpError::MultipleHost
    );
    assert_eq!(
        req_err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        HttpError::MultipleHost
    );
    for bad in ["a b", "u@a", "a/b", "a\"b"] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(req_err(buf.as_bytes()), HttpError::InvalidHost, "{bad}");
    }
    let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(h.host, None);
    let h = req(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap();
    assert_eq!(h.host, Some(""));
    let h = req(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap();
    assert_eq!(h.host, Some("[::1]:8080"));
}

#[test]
fn absolute_form_target() {
    let h = req(b"GET http://Orders.mesh:81/v1/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
    assert_eq!(h.target, "http://Orders.mesh:81/v1/x?q=1");
    assert_eq!(h.path, "/v1/x");
    assert_eq!(h.host, Some("Orders.mesh:81"));
    let h = req(b"GET HTTPS://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("/", Some("a.b")));
    let h = req(b"GET http://a.b?x HTTP/1.1\r\nHost: a.b\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("/", Some("a.b")));
    // Host is still required on HTTP/1.1 (RFC 9112 §3.2).
    assert_eq!(
        req_err(b"GET http://a.b/ HTTP/1.1\r\n\r\n"),
        HttpError::MissingHost
    );
}

#[test]
fn other_target_forms() {
    let h = req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("*", Some("a")));
    assert_eq!(
        req_err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::InvalidTarget
    );
    let h = req(b"CONNECT db.mesh:5432 HTTP/1.1\r\nHost: db.mesh:5432\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("", Some("db.mesh:5432")));
    assert_eq!(
        req_err(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::InvalidTarget
    );
    assert_eq!(
        req_err(b"GET a.b:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::InvalidTarget
    );
    let h = req(b"GET /p?a=/b#? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.unwrap_err(), HttpError::InvalidTarget);
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ];
    for (buf, ka) in cases {
        assert_eq!(
            req(buf).unwrap().keep_alive,
            *ka,
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

#[test]
fn expect_continue_detection() {
    let h = req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(h.unwrap().expect_continue);
    let h = req(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(
        !h.unwrap().expect_continue,
        "ignored in HTTP/1.0 (RFC 9110 §10.1.1)"
    );
    let h = req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
    assert!(!h.unwrap().expect_continue);
}

// ── response heads ──────────────────────────────────────────────────────

#[test]
fn response_framing() {
    let cases: &[(&[u8], &str, BodyKind, bool)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            "GET",
            BodyKind::Length(12),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "GET",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
            BodyKind::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            "GET",
            BodyKind::CloseDelimited,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            "HEAD",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HEAD",
            BodyKind::None,
            true,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", "HEAD", BodyKind::None, true),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            "GET",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            "GET",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\n",
            "POST",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            "GET",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            "CONNECT",
            BodyKind::None,
            true,
        ),
        (
            b"HTTP/1.1 407 Auth\r\nContent-Length: 1\r\n\r\n",
            "CONNECT",
            BodyKind::Length(1),
            true,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            "GET",
            BodyKind::Length(1),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            "GET",
            BodyKind::Length(1),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            "GET",
            BodyKind::Length(1),
            false,
        ),
    ];
    for (buf, method, body, ka) in cases {
        let h = res(buf, method).unwrap();
        assert_eq!(
            (h.body, h.keep_alive),
            (*body, *ka),
            "{method} {:?}",
            String::from_utf8_lossy(buf)
        );
        assert_eq!(h.head_len, buf.len());
    }
}

#[test]
fn response_status_line() {
    let h = res(b"HTTP/1.1 404 Not Here\r\nContent-Length: 0\r\n\r\n", "GET").unwrap();
    assert_eq!((h.status, h.reason, h.minor_version), (404, "Not Here", 1));
    let h = res(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET").unwrap();
    assert_eq!((h.status, h.reason), (200, ""));
    assert_eq!(h.header("content-length"), Some(&b"0"[..]));
    assert_eq!(
        parse_response(b"HTTP/1.1 20 OK\r\n\r\n", "GET", &limits()),
        Err(HttpError::InvalidStatusLine)
    );
    assert_eq!(
        parse_response(b"HTTP/1.1 200 OK\r\n", "GET", &limits()),
        Ok(Parse::Partial)
    );
}

#[test]
fn response_bad_framing_is_an_error() {
    for (buf, e) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            HttpError::ConflictingContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            HttpError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            HttpError::UnsupportedTransferCoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            HttpError::ChunkedNotFinal,
        ),
    ] {
        let got = parse_response(buf, "GET", &limits()).unwrap_err();
        assert_eq!(got, e);
        assert_eq!(got.response_status(), 502);
    }
}
