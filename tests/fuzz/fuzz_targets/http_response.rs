//! Response heads from untrusted upstream bytes. Must never panic.
#![no_main]

use dataplane::http::{self, Limits, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let method = if selector & 1 == 0 { "GET" } else { "HEAD" };
    if let Ok(Parse::Complete(head)) = http::parse_response(rest, method, &Limits::default()) {
        assert!(head.head_len <= rest.len());
        let mut out = Vec::new();
        http::write_downstream_response(&head, selector & 2 == 0, &mut out);
    }
});
