//! The DER walker that extracts SANs and the subject: never panics.
#![no_main]

use dataplane::tls::PeerIdentity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dataplane::tls::certificate_not_after(data);
    if let Ok(id) = PeerIdentity::from_der(data) {
        let _ = id.xfcc();
        let _ = id.principal();
    }
});
