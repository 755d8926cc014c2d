//! Long tests of the HTTP/1.1 head parsers and writers: byte fixtures for
//! every rejection rule, probes pinning down what httparse does by itself,
//! and property tests (no panics, split invariance, prefix consistency).
//! Body-decoder fixtures live beside the decoder in `body.rs`.

use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

fn req(bytes: &[u8]) -> Result<RequestHead<'_>, HttpError> {
    match parse_request(bytes, &limits())? {
        Parse::Complete(h) => Ok(h),
        Parse::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
    }
}

fn res<'b>(bytes: &'b [u8], method: &str) -> Result<ResponseHead<'b>, HttpError> {
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
    assert_eq!(req_err(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), HttpError::InvalidLineEnding);
    assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), HttpError::InvalidLineEnding);
    assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), HttpError::InvalidLineEnding);
    assert_eq!(req_err(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HttpError::InvalidLineEnding);
}

#[test]
fn httparse_rejects_by_itself() {
    let cases: &[(&[u8], httparse::Error)] = &[
        // obs-fold (RFC 9112 §5.2)
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", httparse::Error::HeaderName),
        // whitespace between name and colon (RFC 9112 §5.1)
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", httparse::Error::HeaderName),
        (b"GET / HTTP/1.1\r\nX\x01: a\r\n\r\n", httparse::Error::HeaderName),
        (b"GET / HTTP/1.1\r\n: a\r\n\r\n", httparse::Error::HeaderName),
        // bare CR, NUL and DEL in a value
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", httparse::Error::HeaderValue),
        (b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", httparse::Error::HeaderValue),
        (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", httparse::Error::HeaderValue),
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
        assert_eq!(httparse_req(bytes), Err(*e), "{:?}", String::from_utf8_lossy(bytes));
        assert_eq!(
            parse_request(bytes, &limits()),
            Err(HttpError::from_httparse(*e))
        );
    }
}

#[test]
fn httparse_accepts_targets_we_reject() {
    for target in ["/a#frag", "/caf\u{e9}", "foo", "ftp://h/", "http://u@h/", "http:///x"] {
        let bytes = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(httparse_req(bytes.as_bytes()), Ok(httparse::Status::Complete(_))));
        assert_eq!(req_err(bytes.as_bytes()), HttpError::InvalidTarget, "{target}");
    }
}

#[test]
fn httparse_accepts_any_three_digit_status_we_reject_out_of_range() {
    for status in ["000", "099", "600", "999"] {
        let bytes = format!("HTTP/1.1 {status} X\r\n\r\n");
        let mut h = [httparse::EMPTY_HEADER; 4];
        assert!(httparse::Response::new(&mut h).parse(bytes.as_bytes()).is_ok());
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
        assert_eq!(parse_request(&buf[..k], &limits()), Ok(Parse::Partial), "{k}");
    }
    assert!(matches!(parse_request(buf, &limits()), Ok(Parse::Complete(_))));
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
    assert_eq!(parse_request(&buf[..33], &small), Err(HttpError::HeadTooLarge));
    assert_eq!(parse_request(buf, &small), Err(HttpError::HeadTooLarge));
    assert_eq!(HttpError::HeadTooLarge.status(), 431);
    // Exactly at the limit is fine, with body bytes beyond it.
    let exact = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODYBODY";
    let lim = Limits { max_head_bytes: exact.len() - 8 };
    assert!(matches!(parse_request(exact, &lim), Ok(Parse::Complete(_))));
    let resp = b"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(parse_response(resp, "GET", &small), Err(HttpError::HeadTooLarge));
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
    assert_eq!(req(&with_headers(MAX_HEADERS)).unwrap().headers().count(), MAX_HEADERS);
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
    for v in ["+5", "-5", "0x5", "5 5", "", "5,", "5e0", "1_0", "18446744073709551616", "\u{661}"] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(req_err(buf.as_bytes()), HttpError::InvalidContentLength, "{v:?}");
    }
    // OWS around the value is not part of it (RFC 9110 §5.5).
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 7 \t\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyKind::Length(7));
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(h.unwrap().body, BodyKind::Length(u64::MAX));
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
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\x01X: b\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n", HttpError::InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\0c\r\n\r\n", HttpError::InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", HttpError::InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n", HttpError::InvalidHeaderValue),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", HttpError::InvalidLineEnding),
        (b"GET / HTTP/1.1\r\nHost: a\r\r\n", HttpError::InvalidHeaderValue),
        (b"GET /\n HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::InvalidRequestLine),
    ];
    for (buf, e) in cases {
        assert_eq!(req_err(buf), *e, "{:?}", String::from_utf8_lossy(buf));
        assert_eq!(e.status(), 400);
    }
    let resp = b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(parse_response(resp, "GET", &limits()), Err(HttpError::InvalidHeaderName));
    let resp = b"HTTP/1.1 200 OK\nContent-Length: 0\n\n";
    assert_eq!(parse_response(resp, "GET", &limits()), Err(HttpError::InvalidLineEnding));
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
    assert_eq!(req_err(b"GET http://a.b/ HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
}

#[test]
fn other_target_forms() {
    let h = req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("*", Some("a")));
    assert_eq!(req_err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), HttpError::InvalidTarget);
    let h = req(b"CONNECT db.mesh:5432 HTTP/1.1\r\nHost: db.mesh:5432\r\n\r\n").unwrap();
    assert_eq!((h.path, h.host), ("", Some("db.mesh:5432")));
    assert_eq!(req_err(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), HttpError::InvalidTarget);
    assert_eq!(req_err(b"GET a.b:80 HTTP/1.1\r\nHost: a\r\n\r\n"), HttpError::InvalidTarget);
    let h = req(b"GET /p?a=/b#? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.unwrap_err(), HttpError::InvalidTarget);
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
    ];
    for (buf, ka) in cases {
        assert_eq!(req(buf).unwrap().keep_alive, *ka, "{:?}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn expect_continue_detection() {
    let h = req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(h.unwrap().expect_continue);
    let h = req(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(!h.unwrap().expect_continue, "ignored in HTTP/1.0 (RFC 9110 §10.1.1)");
    let h = req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
    assert!(!h.unwrap().expect_continue);
}

// ── response heads ──────────────────────────────────────────────────────

#[test]
fn response_framing() {
    let cases: &[(&[u8], &str, BodyKind, bool)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "GET", BodyKind::Length(12), true),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", BodyKind::None, true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", BodyKind::Chunked, true),
        (b"HTTP/1.1 200 OK\r\n\r\n", "GET", BodyKind::CloseDelimited, false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "HEAD", BodyKind::None, true),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", BodyKind::None, true),
        (b"HTTP/1.1 200 OK\r\n\r\n", "HEAD", BodyKind::None, true),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "GET", BodyKind::None, true),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", BodyKind::None, true),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "POST", BodyKind::None, true),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET", BodyKind::None, true),
        (b"HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT", BodyKind::None, true),
        (b"HTTP/1.1 407 Auth\r\nContent-Length: 1\r\n\r\n", "CONNECT", BodyKind::Length(1), true),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", BodyKind::Length(1), false),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", "GET", BodyKind::Length(1), true),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", "GET", BodyKind::Length(1), false),
    ];
    for (buf, method, body, ka) in cases {
        let h = res(buf, method).unwrap();
        assert_eq!((h.body, h.keep_alive), (*body, *ka), "{method} {:?}", String::from_utf8_lossy(buf));
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
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..], HttpError::ConflictingContentLength),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", HttpError::InvalidContentLength),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::UnsupportedTransferCoding),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HttpError::ChunkedNotFinal),
    ] {
        let got = parse_response(buf, "GET", &limits()).unwrap_err();
        assert_eq!(got, e);
        assert_eq!(got.response_status(), 502);
    }
}

// ── writers ─────────────────────────────────────────────────────────────

fn fwd(xfcc: Option<&str>) -> ForwardInfo<'_> {
    ForwardInfo {
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
        "POST /v1?x HTTP/1.1\r\n\
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

#[test]
fn upstream_request_round_trips() {
    let buf = b"GET http://a.b/p?q HTTP/1.1\r\nHost: a.b\r\nX-A: 1\r\n\r\n";
    let out = upstream(buf, &fwd(None));
    let h = req(out.as_bytes()).unwrap();
    assert_eq!((h.method, h.target, h.path, h.host), ("GET", "http://a.b/p?q", "/p", Some("a.b")));
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
    assert_eq!(downstream(no_content, "GET", true), "HTTP/1.1 204 No Content\r\n\r\n");
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    assert_eq!(downstream(head, "HEAD", true), "HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n");
    let head_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(downstream(head_chunked, "HEAD", true), "HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn local_responses() {
    let mut out = Vec::new();
    write_local_response(503, &[("retry-after", "1")], b"no healthy upstream", false, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 19\r\n\
          connection: close\r\nretry-after: 1\r\n\r\nno healthy upstream"
    );
    out.clear();
    write_local_response(404, &[], b"", true, &mut out);
    assert_eq!(out, b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n");
    out.clear();
    write_local_response(100, &[], b"ignored", true, &mut out);
    assert_eq!(out, CONTINUE_RESPONSE);
    out.clear();
    write_local_response(599, &[], b"x", true, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 599 \r\n"));
    assert!(matches!(parse_response(&out, "GET", &limits()), Ok(Parse::Complete(_))));
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(502), "Bad Gateway");
}

// ── property tests ──────────────────────────────────────────────────────

/// Fragments that steer random heads into the interesting branches.
const FRAGMENTS: &[&str] = &[
    "\r\n", "\n", "\r", " ", "\t", ":", ",", ";", "\0", "\x01", "\x7f", "\u{e9}", "GET ",
    "HEAD ", "CONNECT ", "/", "*", "http://", "a.b", "?", "#", "@", " HTTP/1.1", " HTTP/1.0",
    "HTTP/1.1 ", "200 OK", "204", "304", "101", "Host: ", "Content-Length: ", "0", "5",
    "99999999999999999999", "Transfer-Encoding: ", "chunked", "gzip", "Connection: ", "close",
    "keep-alive", "Expect: ", "100-continue", "X-A: v",
];

fn fragments() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)
        .prop_map(|v| v.concat().into_bytes())
}

fn bytes_or_fragments() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), fragments()]
}

fn body_kind() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::None),
        Just(BodyKind::Chunked),
        Just(BodyKind::CloseDelimited),
        any::<u64>().prop_map(BodyKind::Length),
    ]
}

/// Feeds `input` to a fresh decoder in pieces cut at `cuts` (indices).
fn feed(kind: BodyKind, input: &[u8], cuts: &[usize]) -> Result<(usize, bool), HttpError> {
    let mut d = BodyDecoder::new(kind);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    let mut total = 0;
    for end in cuts.into_iter().chain([input.len()]) {
        if end < start {
            continue;
        }
        let n = d.advance(&input[start..end])?;
        assert!(n <= end - start);
        total += n;
        if d.is_done() || n < end - start {
            // A decoder that stopped short is done (or the test fails below).
            assert!(d.is_done());
            break;
        }
        start = end;
    }
    Ok((total, d.is_done()))
}

/// Valid chunk extensions and trailers for the generator.
const EXTS: &[&str] = &["", ";a", ";a=b", " ;a=\"q \\\" x\"", "\t;n ; m = v"];
const TRAILERS: &[&str] = &["", "X-Sum: 1\r\n", "A:\r\nB: \tx y\r\n"];

fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..64),
                prop::sample::select(EXTS),
                any::<bool>(),
            ),
            0..6,
        ),
        prop::sample::select(EXTS),
        prop::sample::select(TRAILERS),
    )
        .prop_map(|(chunks, last_ext, trailers)| {
            let mut out = Vec::new();
            for (data, ext, upper) in chunks {
                let size = if upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:04x}", data.len())
                };
                out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(format!("0{last_ext}\r\n{trailers}\r\n").as_bytes());
            out
        })
}

fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&["GET", "POST", "PUT", "DELETE", "OPTIONS"][..]),
        "/[a-z0-9/._-]{0,20}(\\?[a-z=&]{0,10})?",
        prop::sample::select(&["HTTP/1.0", "HTTP/1.1"][..]),
        prop::collection::vec(("x-[a-z0-9-]{1,12}", "[!-~]([ -~]{0,30}[!-~])?"), 0..8),
        prop::option::of(0u64..100_000),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(method, path, version, headers, cl, body)| {
            let mut s = format!("{method} {path} {version}\r\nHost: svc.mesh:8443\r\n");
            for (n, v) in headers {
                s.push_str(&format!("{n}: {v}\r\n"));
            }
            if let Some(cl) = cl {
                s.push_str(&format!("Content-Length: {cl}\r\n"));
            }
            s.push_str("\r\n");
            let mut b = s.into_bytes();
            b.extend_from_slice(&body);
            b
        })
}

fn valid_response() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&[100u16, 200, 204, 301, 304, 404, 503][..]),
        prop::collection::vec(("x-[a-z0-9-]{1,12}", "[!-~]{0,20}"), 0..8),
        prop::sample::select(&["", "Content-Length: 7\r\n", "Transfer-Encoding: chunked\r\n"][..]),
    )
        .prop_map(|(status, headers, framing)| {
            let mut s = format!("HTTP/1.1 {status} {}\r\n{framing}", reason_phrase(status));
            for (n, v) in headers {
                s.push_str(&format!("{n}: {v}\r\n"));
            }
            s.push_str("\r\nBODY");
            s.into_bytes()
        })
}

proptest! {
    #[test]
    fn parse_request_never_panics(buf in bytes_or_fragments(), max in 0usize..600) {
        let _ = parse_request(&buf, &limits());
        let _ = parse_request(&buf, &Limits { max_head_bytes: max });
    }

    #[test]
    fn parse_response_never_panics(
        buf in bytes_or_fragments(),
        method in prop::sample::select(&["GET", "HEAD", "CONNECT"][..]),
    ) {
        let _ = parse_response(&buf, method, &limits());
    }

    #[test]
    fn body_decoder_never_panics_and_ignores_splits(
        kind in body_kind(),
        input in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), fragments(), chunked_body()],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = feed(kind, &input, &[]);
        let split = feed(kind, &input, &cuts);
        prop_assert_eq!(whole, split);
        let mut d = BodyDecoder::new(kind);
        let _ = d.advance(&input);
        let _ = d.finish_eof();
    }

    #[test]
    fn chunked_split_anywhere_same_result(
        body in chunked_body(),
        next in prop::collection::vec(any::<u8>(), 0..16),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut input = body.clone();
        input.extend_from_slice(&next);
        prop_assert_eq!(feed(BodyKind::Chunked, &input, &[]), Ok((body.len(), true)));
        prop_assert_eq!(feed(BodyKind::Chunked, &input, &cuts), Ok((body.len(), true)));
        // Every strict prefix of the body leaves the decoder waiting.
        let cut = cuts.first().map_or(0, |c| c % body.len());
        prop_assert_eq!(feed(BodyKind::Chunked, &body[..cut], &[]), Ok((cut, false)));
    }

    #[test]
    fn request_prefixes_are_partial_until_complete(buf in valid_request()) {
        let whole = match parse_request(&buf, &limits()) {
            Ok(Parse::Complete(h)) => h,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        for k in 0..buf.len() {
            match parse_request(&buf[..k], &limits()) {
                Ok(Parse::Partial) => prop_assert!(k < whole.head_len),
                Ok(Parse::Complete(h)) => {
                    prop_assert!(k >= whole.head_len);
                    prop_assert_eq!(&h, &whole);
                }
                Err(e) => return Err(TestCaseError::fail(format!("prefix {k}: {e}"))),
            }
        }
    }

    #[test]
    fn response_prefixes_are_partial_until_complete(
        buf in valid_response(),
        method in prop::sample::select(&["GET", "HEAD"][..]),
    ) {
        let whole = match parse_response(&buf, method, &limits()) {
            Ok(Parse::Complete(h)) => h,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(whole.head_len, buf.len() - 4);
        for k in 0..buf.len() {
            match parse_response(&buf[..k], method, &limits()) {
                Ok(Parse::Partial) => prop_assert!(k < whole.head_len),
                Ok(Parse::Complete(h)) => prop_assert_eq!(&h, &whole),
                Err(e) => return Err(TestCaseError::fail(format!("prefix {k}: {e}"))),
            }
        }
    }

    #[test]
    fn written_upstream_request_reparses(buf in valid_request()) {
        if let Ok(Parse::Complete(h)) = parse_request(&buf, &limits()) {
            let mut out = Vec::new();
            write_upstream_request(&h, &fwd(None), &mut out);
            let again = match parse_request(&out, &limits()) {
                Ok(Parse::Complete(a)) => a,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(again.head_len, out.len());
            prop_assert_eq!((again.method, again.target, again.body), (h.method, h.target, h.body));
            prop_assert_eq!(again.minor_version, 1);
        }
    }
}
