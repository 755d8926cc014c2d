//! The client against frames written by hand (and HPACK by the `hpack`
//! encoder, as a server would). Real servers: `bench/tests/h2.rs` (nginx).

use super::*;

/// One frame's bytes.
fn frame_bytes(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame_header(&mut out, payload.len(), typ, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn head(status: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut enc = hpack::Encoder::new();
    let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes())];
    fields.extend_from_slice(extra);
    enc.encode(fields)
}

/// Splits `out` into (type, flags, stream, payload) frames.
fn frames(mut out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while out.len() >= FRAME_HEADER {
        let len = u32::from_be_bytes([0, out[0], out[1], out[2]]) as usize;
        let stream = u32::from_be_bytes([out[5], out[6], out[7], out[8]]);
        v.push((out[3], out[4], stream, out[9..9 + len].to_vec()));
        out = &out[9 + len..];
    }
    assert!(out.is_empty(), "trailing partial frame");
    v
}

fn connected() -> (H2Client, Vec<u8>) {
    let mut out = Vec::new();
    let client = H2Client::new(&mut out);
    (client, out)
}

#[test]
fn preface_settings_and_window() {
    let (_, out) = connected();
    assert!(out.starts_with(PREFACE));
    let f = frames(&out[PREFACE.len()..]);
    assert_eq!(f[0].0, frame::SETTINGS);
    assert_eq!(f[0].3.len(), 18);
    assert_eq!(f[1].0, frame::WINDOW_UPDATE);
    assert_eq!(
        u32::from_be_bytes(f[1].3[..4].try_into().unwrap()),
        MAX_WINDOW - INITIAL_WINDOW
    );
}

#[test]
fn a_request_and_its_response_in_any_split() {
    let block = encode_head("GET", "https", "h:1", "/x", &[], 0);
    let mut server = frame_bytes(frame::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    server.extend(frame_bytes(
        frame::HEADERS,
        flag::END_HEADERS,
        1,
        &head("200", &[(b"server", b"t")]),
    ));
    server.extend(frame_bytes(frame::DATA, 0, 1, b"hel"));
    server.extend(frame_bytes(frame::DATA, flag::END_STREAM, 1, b"lo"));
    for split in 0..=server.len() {
        let (mut c, _) = connected();
        let mut out = Vec::new();
        assert_eq!(c.start_request(&block, b"", &mut out), 1);
        let f = frames(&out);
        assert_eq!(
            (f[0].0, f[0].1),
            (frame::HEADERS, flag::END_HEADERS | flag::END_STREAM)
        );
        let mut events = Vec::new();
        out.clear();
        c.feed(&server[..split], &mut out, &mut events).unwrap();
        c.feed(&server[split..], &mut out, &mut events).unwrap();
        assert_eq!(
            events,
            vec![Event::Response {
                stream: 1,
                status: 200,
                body: 5
            }],
            "split at {split}"
        );
        assert_eq!(c.open_streams(), 0);
        // The peer's SETTINGS were acknowledged.
        assert!(frames(&out).contains(&(frame::SETTINGS, flag::ACK, 0, vec![])));
    }
}

#[test]
fn the_request_head_decodes_as_sent() {
    let block = encode_head(
        "POST",
        "http",
        "gw:8443",
        "/a?b",
        &[
            ("X-Key".into(), "v".into()),
            ("Host".into(), "dropped".into()),
        ],
        3,
    );
    let got = hpack::Decoder::new().decode(&block).unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "gw:8443"),
        (":path", "/a?b"),
        ("x-key", "v"),
        ("content-length", "3"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(got, want);
    let long = "y".repeat(300);
    let block = encode_head("GET", "http", "h", &long, &[], 0);
    assert_eq!(
        hpack::Decoder::new().decode(&block).unwrap()[3].1,
        long.as_bytes()
    );
}

#[test]
fn interim_heads_continuations_and_trailers() {
    let (mut c, _) = connected();
    let mut out = Vec::new();
    let id = c.start_request(b"", b"", &mut out);
    let full = head("204", &[(b"x-long", &[b'v'; 40])]);
    let mut server = frame_bytes(frame::HEADERS, flag::END_HEADERS, id, &head("103", &[]));
    server.extend(frame_bytes(frame::HEADERS, 0, id, &full[..10]));
    server.extend(frame_bytes(
        frame::CONTINUATION,
        flag::END_HEADERS,
        id,
        &full[10..],
    ));
    let mut trailers = hpack::Encoder::new();
    server.extend(frame_bytes(
        frame::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        id,
        &trailers.encode(vec![(&b"grpc-status"[..], &b"0"[..])]),
    ));
    let mut events = Vec::new();
    c.feed(&server, &mut out, &mut events).unwrap();
    assert_eq!(
        events,
        vec![Event::Response {
            stream: id,
            status: 204,
            body: 0
        }]
    );
}

#[test]
fn resets_and_goaway_fail_streams_and_stop_new_ones() {
    let (mut c, _) = connected();
    let mut out = Vec::new();
    let a = c.start_request(b"", b"", &mut out);
    let b = c.start_request(b"", b"", &mut out);
    let d = c.start_request(b"", b"", &mut out);
    let mut events = Vec::new();
    let mut server = frame_bytes(frame::RST_STREAM, 0, a, &2u32.to_be_bytes());
    let mut goaway = b.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    server.extend(frame_bytes(frame::GOAWAY, 0, 0, &goaway));
    c.feed(&server, &mut out, &mut events).unwrap();
    assert_eq!(
        events,
        vec![Event::Reset { stream: a }, Event::Refused { stream: d }]
    );
    assert!(!c.can_start());
    assert_eq!(c.open_stream_ids(), vec![b]);
}

#[test]
fn request_bodies_follow_flow_control() {
    let (mut c, _) = connected();
    let mut out = Vec::new();
    let body = vec![7u8; 100_000];
    let id = c.start_request(b"", &body, &mut out);
    let sent = |out: &[u8]| -> (usize, bool) {
        frames(out)
            .iter()
            .filter(|f| f.0 == frame::DATA)
            .fold((0, false), |(n, end), f| {
                (n + f.3.len(), end || f.1 & flag::END_STREAM != 0)
            })
    };
    assert_eq!(sent(&out), (65_535, false));
    // The stream window opens; the connection's is still shut.
    out.clear();
    let mut events = Vec::new();
    c.feed(
        &frame_bytes(frame::WINDOW_UPDATE, 0, id, &50_000u32.to_be_bytes()),
        &mut out,
        &mut events,
    )
    .unwrap();
    assert_eq!(sent(&out), (0, false));
    c.feed(
        &frame_bytes(frame::WINDOW_UPDATE, 0, 0, &50_000u32.to_be_bytes()),
        &mut out,
        &mut events,
    )
    .unwrap();
    assert_eq!(sent(&out), (100_000 - 65_535, true));
}

#[test]
fn pings_are_answered() {
    let (mut c, _) = connected();
    let mut out = Vec::new();
    let mut events = Vec::new();
    c.feed(
        &frame_bytes(frame::PING, 0, 0, b"12345678"),
        &mut out,
        &mut events,
    )
    .unwrap();
    assert_eq!(
        frames(&out),
        vec![(frame::PING, flag::ACK, 0, b"12345678".to_vec())]
    );
}

#[test]
fn protocol_violations_are_connection_errors() {
    let cases: Vec<Vec<u8>> = vec![
        frame_bytes(frame::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
        frame_bytes(frame::DATA, 0, 1, b"x"),
        frame_bytes(frame::HEADERS, flag::END_HEADERS, 1, &head("2000", &[])),
        frame_bytes(frame::HEADERS, flag::END_HEADERS, 1, &[0xff, 0xff, 0xff]),
        frame_bytes(frame::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]),
        frame_bytes(frame::PING, 0, 0, b"123"),
        [
            frame_bytes(frame::HEADERS, 0, 1, &head("200", &[])),
            frame_bytes(frame::DATA, 0, 1, b"x"),
        ]
        .concat(),
    ];
    for bytes in cases {
        let (mut c, _) = connected();
        let mut out = Vec::new();
        c.start_request(b"", b"", &mut out);
        assert!(
            c.feed(&bytes, &mut out, &mut Vec::new()).is_err(),
            "accepted {bytes:?}"
        );
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Untrusted bytes from a server never panic the client.
        #[test]
        fn arbitrary_input_never_panics(
            chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..200), 1..5),
        ) {
            let (mut c, _) = connected();
            let mut out = Vec::new();
            c.start_request(b"", b"body", &mut out);
            let mut events = Vec::new();
            for chunk in chunks {
                if c.feed(&chunk, &mut out, &mut events).is_err() {
                    break;
                }
            }
        }

        /// Frame-shaped input (valid headers, random types and payloads).
        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(
                (0u8..12, any::<u8>(), 0u32..6,
                 proptest::collection::vec(any::<u8>(), 0..64)), 1..8),
        ) {
            let (mut c, _) = connected();
            let mut out = Vec::new();
            c.start_request(b"", b"", &mut out);
            c.start_request(b"", b"", &mut out);
            let mut events = Vec::new();
            for (typ, flags, stream, payload) in frames {
                let bytes = frame_bytes(typ, flags, stream, &payload);
                if c.feed(&bytes, &mut out, &mut events).is_err() {
                    break;
                }
            }
        }
    }
}
