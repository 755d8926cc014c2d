//! Chunked bodies from untrusted bytes, fed in pieces: never panics, takes
//! fewer bytes than offered only when the body ended, and agrees with a
//! one-shot feed on where the body ends and whether it is valid.
#![no_main]

use dataplane::http::{BodyDecoder, BodyKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else { return };
    let step = usize::from(step).max(1);

    let mut whole = BodyDecoder::new(BodyKind::Chunked);
    let whole_result = whole.advance(body);

    let mut split = BodyDecoder::new(BodyKind::Chunked);
    let mut consumed = 0;
    let mut failed = false;
    while consumed < body.len() && !split.is_done() {
        let end = (consumed + step).min(body.len());
        match split.advance(&body[consumed..end]) {
            Ok(n) => {
                assert!(n <= end - consumed);
                assert!(n == end - consumed || split.is_done(), "took {n} of {} without ending", end - consumed);
                consumed += n;
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match (whole_result, failed) {
        (Ok(n), false) => {
            assert_eq!(whole.is_done(), split.is_done());
            assert_eq!(n, consumed);
        }
        (Err(_), true) => {}
        (Ok(_), true) => panic!("a split feed rejected what a whole feed accepted"),
        (Err(_), false) => panic!("a whole feed rejected what a split feed accepted"),
    }
});
