//! Record protection round trips in every format, and what a receiver
//! refuses. (Interoperability with real peers is `session/tests.rs` against
//! a rustls client and `tests/` against curl and openssl.)

use super::*;
use rustls::crypto::cipher::{AeadKey, Iv};

fn secrets(alg: u8, fill: u8) -> ConnectionTrafficSecrets {
    let iv = Iv::new([fill ^ 0x5a; NONCE_LEN]);
    match alg {
        // (AES-128 keys cannot be made outside rustls; the session tests
        // cover that suite against a rustls client.)
        1 => ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([fill; 32]),
            iv,
        },
        _ => ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([fill; 32]),
            iv,
        },
    }
}

fn pair(format: Format, alg: u8) -> (Sealer, Opener) {
    (
        Sealer::new(format, secrets(alg, 7), 3).unwrap(),
        Opener::new(format, secrets(alg, 7), 3).unwrap(),
    )
}

const CASES: [(Format, u8); 4] = [
    (Format::Tls13, 1),
    (Format::Tls13, 2),
    (Format::Tls12Gcm, 1),
    (Format::Tls12Chacha, 2),
];

fn open_all(opener: &mut Opener, mut wire: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = opener.complete_record(&wire[at..]).unwrap() {
        let record = &mut wire[at..at + len];
        let (typ, range) = opener.open(record).unwrap();
        out.push((typ, record[range].to_vec()));
        at += len;
    }
    assert_eq!(at, wire.len(), "a partial record was left");
    out
}

#[test]
fn records_round_trip_in_every_format() {
    for (format, alg) in CASES {
        let (mut sealer, mut opener) = pair(format, alg);
        let mut wire = Vec::new();
        let big: Vec<u8> = (0..MAX_PLAINTEXT).map(|i| i as u8).collect();
        sealer.seal(APPLICATION_DATA, b"hello", &mut wire);
        sealer.seal(ALERT, &[1, 0], &mut wire);
        sealer.seal(APPLICATION_DATA, &big, &mut wire);
        sealer.seal(APPLICATION_DATA, b"", &mut wire);
        assert_eq!(
            wire.len(),
            5 + 2 + MAX_PLAINTEXT + 4 * format.overhead(),
            "{format:?}"
        );
        let got = open_all(&mut opener, wire);
        assert_eq!(
            got,
            vec![
                (APPLICATION_DATA, b"hello".to_vec()),
                (ALERT, vec![1, 0]),
                (APPLICATION_DATA, big.clone()),
                (APPLICATION_DATA, Vec::new()),
            ],
            "{format:?}"
        );
        assert_eq!(sealer.seq(), 7);
    }
}

#[test]
fn tls13_hides_the_content_type_and_tls12_does_not() {
    let (mut s13, _) = pair(Format::Tls13, 1);
    let (mut s12, _) = pair(Format::Tls12Gcm, 1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    s13.seal(ALERT, &[1, 0], &mut a);
    s12.seal(ALERT, &[1, 0], &mut b);
    assert_eq!(a[..3], [APPLICATION_DATA, 3, 3]);
    assert_eq!(b[..3], [ALERT, 3, 3]);
}

#[test]
fn any_flipped_bit_fails_to_open() {
    for (format, alg) in CASES {
        let (mut sealer, _) = pair(format, alg);
        let mut wire = Vec::new();
        sealer.seal(APPLICATION_DATA, b"attack at dawn", &mut wire);
        // Header bytes 0..3 are checked as framing; the rest is authenticated.
        for at in 3..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 0x01;
            let (_, mut opener) = pair(format, alg);
            let verdict = match opener.complete_record(&bad) {
                Ok(Some(len)) if len == bad.len() => opener.open(&mut bad).map(|_| ()),
                Ok(_) => Err(RecordError::Decode),
                Err(e) => Err(e),
            };
            assert!(verdict.is_err(), "{format:?}: flipped byte {at} opened");
        }
    }
}

#[test]
fn out_of_order_records_fail_to_open() {
    let (mut sealer, mut opener) = pair(Format::Tls13, 1);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    sealer.seal(APPLICATION_DATA, b"one", &mut first);
    sealer.seal(APPLICATION_DATA, b"two", &mut second);
    assert_eq!(opener.open(&mut second), Err(RecordError::BadRecordMac));
}

#[test]
fn framing_is_checked_before_decryption() {
    let (_, opener) = pair(Format::Tls13, 1);
    assert_eq!(opener.complete_record(&[23, 3, 3]), Ok(None));
    assert_eq!(opener.complete_record(&[23, 3, 3, 0, 20, 1]), Ok(None));
    assert_eq!(
        opener.complete_record(&[99, 3, 3, 0, 1, 0]),
        Err(RecordError::Unexpected)
    );
    assert_eq!(
        opener.complete_record(&[23, 9, 3, 0, 1, 0]),
        Err(RecordError::Decode)
    );
    let too_long = ((MAX_PLAINTEXT + 257) as u16).to_be_bytes();
    assert_eq!(
        opener.complete_record(&[23, 3, 3, too_long[0], too_long[1]]),
        Err(RecordError::Overflow)
    );
    // TLS 1.2 authenticates the version as a constant: the header must
    // carry exactly 0x0303.
    let (_, opener12) = pair(Format::Tls12Gcm, 1);
    assert_eq!(
        opener12.complete_record(&[23, 3, 1, 0, 1, 0]),
        Err(RecordError::Decode)
    );
    // TLS 1.2 allows more expansion.
    let (_, opener12) = pair(Format::Tls12Gcm, 1);
    assert_eq!(
        opener12.complete_record(&[23, 3, 3, too_long[0], too_long[1]]),
        Ok(None)
    );
}

/// Seals an arbitrary TLS 1.3 inner plaintext (payload ‖ type ‖ padding).
fn seal_inner13(alg: u8, inner: &[u8]) -> Vec<u8> {
    let keys = Keys::new(secrets(alg, 7), 3).unwrap();
    let len = (inner.len() + TAG_LEN) as u16;
    let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
    let mut body = inner.to_vec();
    let tag = keys
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(keys.nonce()),
            Aad::from(&header),
            &mut body,
        )
        .unwrap();
    [&header[..], &body, tag.as_ref()].concat()
}

#[test]
fn tls13_padding_is_stripped_and_all_padding_is_refused() {
    let mut padded = seal_inner13(1, &[b'h', b'i', APPLICATION_DATA, 0, 0, 0, 0]);
    let (_, mut opener) = pair(Format::Tls13, 1);
    let (typ, range) = opener.open(&mut padded).unwrap();
    assert_eq!((typ, &padded[range]), (APPLICATION_DATA, &b"hi"[..]));

    let mut zeros = seal_inner13(1, &[0, 0, 0]);
    let (_, mut opener) = pair(Format::Tls13, 1);
    assert_eq!(opener.open(&mut zeros), Err(RecordError::Unexpected));

    let mut oversized = vec![b'x'; MAX_PLAINTEXT + 1];
    oversized.push(APPLICATION_DATA);
    let mut record = seal_inner13(1, &oversized);
    let (_, mut opener) = pair(Format::Tls13, 1);
    assert_eq!(opener.open(&mut record), Err(RecordError::Overflow));

    // A full record plus its type is the limit; one byte of padding more
    // is over it (RFC 8446 §5.4).
    let mut full = vec![b'x'; MAX_PLAINTEXT];
    full.push(APPLICATION_DATA);
    let (_, mut opener) = pair(Format::Tls13, 1);
    assert!(opener.open(&mut seal_inner13(1, &full)).is_ok());
    full.push(0);
    let (_, mut opener) = pair(Format::Tls13, 1);
    assert_eq!(
        opener.open(&mut seal_inner13(1, &full)),
        Err(RecordError::Overflow)
    );
}

#[test]
fn appending_copies_exactly_at_any_distance() {
    let src_buf: Vec<u8> = (0..64 * 1024).map(|i| (i * 7) as u8).collect();
    for want_distance in [0usize, 5, 15, 16, 63, 64, 1000] {
        let mut out = Vec::with_capacity(32 * 1024);
        out.extend_from_slice(b"hdr");
        let dst = out.as_ptr() as usize + out.len();
        // Pick the source offset that puts dst `want_distance` past it (mod 4 KiB).
        let base = src_buf.as_ptr() as usize;
        let offset = (dst.wrapping_sub(want_distance).wrapping_sub(base)) % 4096;
        let src = &src_buf[offset..offset + 20_000];
        append_copy(&mut out, src);
        assert_eq!(&out[..3], b"hdr");
        assert!(out[3..] == *src, "distance {want_distance}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Untrusted bytes: framing and opening never panic, and nothing
        /// forged opens (a 2^-128 event aside).
        #[test]
        fn arbitrary_bytes_never_panic_nor_open(
            format in prop_oneof![
                Just(Format::Tls13), Just(Format::Tls12Gcm), Just(Format::Tls12Chacha)
            ],
            mut bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let alg = if format == Format::Tls12Gcm { 1 } else { 2 };
            let (_, mut opener) = pair(format, alg);
            if let Ok(Some(len)) = opener.complete_record(&bytes) {
                prop_assert!(opener.open(&mut bytes[..len]).is_err());
            }
        }

        /// Records survive any way the wire is cut.
        #[test]
        fn sealed_records_open_whatever_the_payloads(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..3000), 1..6),
        ) {
            for (format, alg) in CASES {
                let (mut sealer, mut opener) = pair(format, alg);
                let mut wire = Vec::new();
                for p in &payloads {
                    sealer.seal(APPLICATION_DATA, p, &mut wire);
                }
                let got: Vec<Vec<u8>> =
                    open_all(&mut opener, wire).into_iter().map(|(_, p)| p).collect();
                prop_assert_eq!(&got, &payloads);
            }
        }
    }
}
