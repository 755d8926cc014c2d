//! Request smuggling vectors (RFC 9112 §6.1, §6.3, §7.1; RFC 9110 §5.5),
//! sent as raw bytes to a plaintext listener. Each must be answered with
//! exactly one 400 (501 for an unknown transfer coding) carrying
//! `connection: close`, the connection must then close, and the upstream
//! must have served nothing: neither the framed request nor the
//! `GET /smuggled` that follows it in the same write.

use harness::client::READ_TIMEOUT;
use harness::{LISTENER, RawConn, Scripted, Setup, split_responses};

/// Appended to every vector: what a desynchronised parser would serve.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: e2e\r\n\r\n";

/// Sends each of `vectors` (plus [`SMUGGLED`]) on its own connection and
/// checks the answer is exactly one `status`, then close, and that the
/// upstream served nothing.
fn assert_rejected(status: u16, vectors: &[&[u8]]) {
    let s = Setup::plain(|c| c);
    for v in vectors {
        let shown = String::from_utf8_lossy(v).into_owned();
        let mut c = RawConn::connect(s.gw.addr(LISTENER));
        let mut bytes = v.to_vec();
        bytes.extend_from_slice(SMUGGLED);
        // The gateway may close before reading everything: ignore write errors.
        let _ = c.send(&bytes);
        let got = c.read_to_close(READ_TIMEOUT);
        assert!(
            got.closed,
            "vector {shown:?}: connection still open after {READ_TIMEOUT:?}; got:\n{}",
            got.text()
        );
        let responses = split_responses(&got.bytes);
        assert_eq!(
            responses.len(),
            1,
            "vector {shown:?}: expected exactly one response, got:\n{}",
            got.text()
        );
        let resp = &responses[0];
        assert_eq!(resp.status, status, "vector {shown:?}: {resp:?}");
        assert_eq!(
            resp.header("x-meshgate-error"),
            Some("bad_request"),
            "vector {shown:?}: not a local rejection: {resp:?}"
        );
        assert!(
            resp.says_close(),
            "vector {shown:?}: rejection without connection: close: {resp:?}"
        );
        // Let anything the gateway might have sent upstream arrive.
        s.settle();
        assert_eq!(
            s.up.served(),
            0,
            "vector {shown:?}: the upstream served {:?}",
            s.up.requests()
        );
    }
}

#[test]
fn content_length_with_transfer_encoding() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn conflicting_content_lengths() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ],
    );
}

#[test]
fn malformed_content_length() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: +5\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: -1\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 0x5\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ],
    );
}

#[test]
fn chunked_not_the_final_coding() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn chunked_applied_twice() {
    assert_rejected(
        400,
        &[b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"],
    );
}

#[test]
fn unknown_transfer_coding_is_501() {
    assert_rejected(
        501,
        &[b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"],
    );
}

#[test]
fn transfer_encoding_in_http_1_0() {
    assert_rejected(
        400,
        &[b"POST /echo HTTP/1.0\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    );
}

#[test]
fn obs_fold_header_line() {
    assert_rejected(
        400,
        &[
            b"GET /headers HTTP/1.1\r\nHost: e2e\r\nX-Folded: a\r\n b\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn bare_cr_in_header_value() {
    assert_rejected(
        400,
        &[b"GET /headers HTTP/1.1\r\nHost: e2e\r\nX-A: a\rb\r\n\r\n"],
    );
}

#[test]
fn nul_in_header_value() {
    assert_rejected(
        400,
        &[b"GET /headers HTTP/1.1\r\nHost: e2e\r\nX-A: a\0b\r\n\r\n"],
    );
}

#[test]
fn whitespace_before_colon_in_header_name() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            b"GET /headers HTTP/1.1\r\nHost: e2e\r\nX-A\t: b\r\n\r\n",
        ],
    );
}

#[test]
fn chunk_size_overflow() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n",
            // 2^31: an upstream parsing chunk sizes into 32 bits would
            // read 0 and take the rest for the next request.
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n80000000\r\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n0000000100000005\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn content_length_beyond_2_pow_53() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 9007199254740993\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
        ],
    );
}

#[test]
fn invalid_chunk_size_or_extension() {
    assert_rejected(
        400,
        &[
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n5;a\"b\r\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ],
    );
}

#[test]
fn missing_host_in_http_1_1() {
    assert_rejected(400, &[b"GET /headers HTTP/1.1\r\n\r\n"]);
}

#[test]
fn two_host_headers() {
    assert_rejected(
        400,
        &[b"GET /headers HTTP/1.1\r\nHost: e2e\r\nHost: other\r\n\r\n"],
    );
}

#[test]
fn valid_chunked_request_with_extension_and_trailer_is_served() {
    // The positive control for the vectors above: well-formed framing goes through.
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    c.send(b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"quoted\"\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n")
        .expect("send");
    let resp = c.read_response().expect("response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, b"abcde");
    assert_eq!(s.up.served(), 1);
}

#[test]
fn body_of_a_locally_answered_request_is_not_parsed_as_a_request() {
    // No route for /nope: the gateway answers 404 itself. The body it did
    // not read must not be taken for the next request.
    let s = Setup::plain(|c| c.path_prefix("/api"));
    let inner = b"GET /api/smuggled HTTP/1.1\r\nHost: e2e\r\n\r\n";
    let mut req = format!(
        "POST /nope HTTP/1.1\r\nHost: e2e\r\nContent-Length: {}\r\n\r\n",
        inner.len()
    )
    .into_bytes();
    req.extend_from_slice(inner);
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    let _ = c.send(&req);
    let got = c.read_to_close(READ_TIMEOUT);
    let responses = split_responses(&got.bytes);
    assert_eq!(responses.len(), 1, "{}", got.text());
    assert_eq!(responses[0].status, 404, "{:?}", responses[0]);
    assert!(got.closed, "connection kept with an unread body");
    s.settle();
    assert_eq!(s.up.served(), 0, "{:?}", s.up.requests());
}

// ── response side: an upstream's framing must not desync the client ──────

/// One request through a gateway whose upstream answers with `script`:
/// the client must get exactly one 502 `bad_response`, nothing of the
/// upstream's bytes.
fn assert_bad_response(script: &[u8]) {
    let shown = String::from_utf8_lossy(script).into_owned();
    let origin = Scripted::start(script);
    let s = Setup::plain(|mut c| {
        c.endpoints = vec![origin.addr()];
        c
    });
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    c.send(b"GET /x HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n")
        .expect("send");
    let got = c.read_to_close(READ_TIMEOUT);
    assert!(got.closed, "script {shown:?}: connection left open");
    let responses = split_responses(&got.bytes);
    assert_eq!(
        responses.len(),
        1,
        "script {shown:?}: expected one response, got:\n{}",
        got.text()
    );
    assert_eq!(
        responses[0].status, 502,
        "script {shown:?}: {:?}",
        responses[0]
    );
    assert_eq!(
        responses[0].header("x-meshgate-error"),
        Some("bad_response"),
        "script {shown:?}: {:?}",
        responses[0]
    );
    assert_eq!(origin.heads(), 1);
}

#[test]
fn upstream_response_with_content_length_and_transfer_encoding() {
    assert_bad_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nhello",
    );
}

#[test]
fn upstream_response_with_conflicting_content_lengths() {
    assert_bad_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nokHTTP/1",
    );
}

#[test]
fn upstream_response_with_nul_in_a_header() {
    assert_bad_response(b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn upstream_response_with_malformed_status_line() {
    assert_bad_response(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn upstream_switching_protocols() {
    assert_bad_response(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    );
}
