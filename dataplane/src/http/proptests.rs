//! Property tests of the HTTP/1.1 codec: parsers and the body decoder never
//! panic on arbitrary bytes; body framing does not depend on how input is
//! split; heads fed on growing prefixes are `Partial` until complete and then
//! equal to the head parsed whole; written upstream heads parse again.

use super::tests::limits;
use super::*;
use proptest::prelude::*;

fn fwd() -> ForwardInfo<'static> {
    ForwardInfo {
        keep_request_id: true,
        client_ip: std::net::IpAddr::from([10, 1, 2, 3]),
        proto: "https",
        new_request_id: "rid-1",
        xfcc: None,
    }
}

/// Fragments that steer random heads into the interesting branches.
const FRAGMENTS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    ":",
    ",",
    ";",
    "\0",
    "\x01",
    "\x7f",
    "\u{e9}",
    "GET ",
    "HEAD ",
    "CONNECT ",
    "/",
    "*",
    "http://",
    "a.b",
    "?",
    "#",
    "@",
    " HTTP/1.1",
    " HTTP/1.0",
    "HTTP/1.1 ",
    "200 OK",
    "204",
    "304",
    "101",
    "Host: ",
    "Content-Length: ",
    "0",
    "5",
    "99999999999999999999",
    "Transfer-Encoding: ",
    "chunked",
    "gzip",
    "Connection: ",
    "close",
    "keep-alive",
    "Expect: ",
    "100-continue",
    "X-A: v",
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
        prop::sample::select(
            &[
                "",
                "Content-Length: 7\r\n",
                "Transfer-Encoding: chunked\r\n",
            ][..],
        ),
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
            write_upstream_request(&h, &fwd(), &mut out);
            let again = match parse_request(&out, &limits()) {
                Ok(Parse::Complete(a)) => a,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(again.head_len, out.len());
            prop_assert_eq!((again.method, again.target, again.body), (h.method, h.target, h.body));
            prop_assert_eq!(again.minor_version, h.minor_version);
        }
    }
}
