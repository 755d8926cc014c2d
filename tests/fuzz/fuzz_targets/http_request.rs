//! Request heads from untrusted bytes: parse, and when complete, rewrite for
//! the upstream. Must never panic.
#![no_main]

use dataplane::http::{self, ForwardInfo, Limits, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_head_bytes: 8 * 1024 };
    if let Ok(Parse::Complete(head)) = http::parse_request(data, &limits) {
        assert!(head.head_len <= data.len());
        let fwd = ForwardInfo {
            client_ip: "127.0.0.1".parse().unwrap(),
            proto: "https",
            new_request_id: "00000000-0000-0000-0000-000000000001",
            xfcc: Some("Hash=00;URI=spiffe://x/y"),
            keep_request_id: true,
        };
        let mut out = Vec::new();
        http::write_upstream_request(&head, &fwd, &mut out);
        // What we forward must itself parse as one complete request head
        // (the gateway adds up to five fields, so a head at our own field
        // limit may exceed it upstream: that is the upstream's limit).
        match http::parse_request(&out, &Limits { max_head_bytes: 64 * 1024 }) {
            Ok(Parse::Complete(again)) => assert_eq!(again.body, head.body),
            Err(http::HttpError::TooManyHeaders) => {}
            other => panic!("rewritten head does not parse: {other:?}"),
        }
    }
});
