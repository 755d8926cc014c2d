//! Path normalisation and authorization rule matching on arbitrary input:
//! no panic; normalising a normalised path changes nothing and the result
//! never climbs above the root; a SPIFFE ID pattern that parses matches
//! the ID it was written from when that is a valid ID.
#![no_main]

use dataplane::http::path::{PathRules, normalize};
use dataplane::route::authz::{IdPattern, IpNet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut half = text.len() / 2;
    while !text.is_char_boundary(half) {
        half -= 1;
    }
    let (a, b) = text.split_at(half);
    for rules in [
        PathRules::default(),
        PathRules {
            merge_slashes: false,
            reject_encoded_slashes: true,
            normalize: true,
        },
    ] {
        if let Ok(n) = normalize(a, rules) {
            let once = n.unwrap_or_else(|| a.to_owned());
            if once.starts_with('/') {
                assert!(once.split('/').all(|s| s != ".." && s != "."), "{once:?}");
                assert_eq!(normalize(&once, rules), Ok(None), "not idempotent: {a:?} -> {once:?}");
            }
        }
    }
    if let Ok(p) = IdPattern::parse(a) {
        let _ = p.matches(b);
        if !a.contains('*') {
            assert!(p.matches(a), "{a:?} does not match itself");
        }
    }
    if let Ok(net) = IpNet::parse(a)
        && let Ok(ip) = b.parse()
    {
        let _ = net.contains(ip);
    }
});
