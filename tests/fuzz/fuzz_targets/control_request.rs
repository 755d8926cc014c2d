//! Control-socket request bytes: the line framer and the request decoder
//! never panic, never hold more than `max + 1` bytes, always produce an
//! encodable response on error, and a decoded request re-encodes to a line
//! that decodes to the same request.
#![no_main]

use control::socket::protocol::{
    LineDecoder, Request, decode_request, encode_request, encode_response,
};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 512;

fn check_line(line: &[u8]) {
    match decode_request(line) {
        Ok(request) => {
            let mut again = Vec::new();
            encode_request(&request, &mut again);
            assert_eq!(again.pop(), Some(b'\n'));
            assert!(!again.contains(&b'\n'));
            let decoded: Request = decode_request(&again).expect("re-encoded request decodes");
            assert_eq!(decoded, request);
        }
        Err(response) => {
            assert!(!response.ok && response.error.is_some());
            let mut out = Vec::new();
            encode_response(&response, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one line.
    check_line(data);

    // Through the framer, in chunks whose sizes come from the first byte.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut dec = LineDecoder::new(MAX);
    for chunk in data.chunks(step) {
        let mut rest = chunk;
        loop {
            let used = dec.push(rest);
            rest = &rest[used..];
            assert!(dec.buffered() <= MAX + 1);
            let mut progressed = used > 0;
            while let Some(line) = dec.next_line() {
                progressed = true;
                if let Ok(line) = line {
                    assert!(line.len() <= MAX);
                    check_line(&line);
                }
            }
            if rest.is_empty() {
                break;
            }
            assert!(progressed, "decoder stalled");
        }
    }
    if let Some(line) = dec.finish() {
        assert!(line.len() <= MAX);
        check_line(&line);
    }
});
