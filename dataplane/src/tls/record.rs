//! TLS stage, records: protection of application-data records once the
//! handshake is over (sans-IO, no rustls state).
//!
//! rustls runs the handshake and keeps the key schedule (see `session.rs`);
//! it hands over the traffic keys and sequence numbers, and from then on a
//! [`Sealer`] encrypts our records straight into the send buffer and an
//! [`Opener`] decrypts the peer's records in place in the receive buffer.
//! This is what kTLS users of rustls do; here the "kernel" is this file,
//! using aws-lc-rs' AEADs, because the plaintext copy inside rustls'
//! record layer was the most expensive thing on the 1 MiB path (see
//! `bench/RESULTS.md`).
//!
//! Formats (RFC 8446 §5.2, RFC 5288 §3, RFC 7905 §2):
//!
//! | version | wire | nonce | additional data |
//! |---|---|---|---|
//! | TLS 1.3 | `23 3 3 len` ‖ seal(payload ‖ type ‖ zeros) ‖ tag | iv ⊕ seq | the 5-byte header |
//! | TLS 1.2 AES-GCM | `type 3 3 len` ‖ explicit nonce (8) ‖ seal(payload) ‖ tag | iv\[..4\] ‖ explicit | seq ‖ type ‖ 3 3 ‖ payload length |
//! | TLS 1.2 ChaCha20-Poly1305 | `type 3 3 len` ‖ seal(payload) ‖ tag | iv ⊕ seq | as above |

use std::ops::Range;

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey,
};
use rustls::ConnectionTrafficSecrets;

/// Largest plaintext in one record (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Record header: type, legacy version (2), length (2).
pub const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
const EXPLICIT_NONCE_LEN: usize = 8;

/// Record content types (RFC 8446 §5.1).
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Which record format the connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tls13,
    Tls12Gcm,
    Tls12Chacha,
}

impl Format {
    /// Largest ciphertext body a peer may send (RFC 8446 §5.2, RFC 5246 §6.2.3).
    fn max_body(self) -> usize {
        match self {
            Format::Tls13 => MAX_PLAINTEXT + 256,
            Format::Tls12Gcm | Format::Tls12Chacha => MAX_PLAINTEXT + 2048,
        }
    }

    /// Bytes a record adds around its payload.
    pub fn overhead(self) -> usize {
        match self {
            Format::Tls13 => HEADER_LEN + 1 + TAG_LEN,
            Format::Tls12Gcm => HEADER_LEN + EXPLICIT_NONCE_LEN + TAG_LEN,
            Format::Tls12Chacha => HEADER_LEN + TAG_LEN,
        }
    }
}

/// Why a received record was refused; each maps to the alert we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record failed to decrypt")]
    BadRecordMac,
    #[error("record longer than the protocol allows")]
    Overflow,
    #[error("malformed record header")]
    Decode,
    #[error("record of an unexpected content type")]
    Unexpected,
    #[error("illegal parameter in a post-handshake message")]
    IllegalParameter,
    #[error("sequence number exhausted")]
    SequenceExhausted,
}

impl RecordError {
    /// The fatal alert description to send (RFC 8446 §6).
    pub fn alert(self) -> u8 {
        match self {
            RecordError::BadRecordMac => 20,
            RecordError::Overflow => 22,
            RecordError::Decode => 50,
            RecordError::Unexpected => 10,
            RecordError::IllegalParameter => 47,
            // internal_error: we would have to wrap the nonce counter.
            RecordError::SequenceExhausted => 80,
        }
    }
}

/// rustls negotiated an AEAD this layer does not implement (none of the
/// suites `config.rs` enables).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("negotiated cipher has no record-layer implementation")]
pub struct UnsupportedAead;

/// One direction's key, IV and next sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    fn new(secrets: ConnectionTrafficSecrets, seq: u64) -> Result<Keys, UnsupportedAead> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err(UnsupportedAead),
        };
        // rustls hands out keys of the algorithm's length and 12-byte IVs
        // for every AEAD suite it supports.
        let unbound = UnboundKey::new(alg, key.as_ref()).expect("AEAD key length from rustls");
        let iv: [u8; NONCE_LEN] = iv.as_ref().try_into().expect("12-byte IV from rustls");
        Ok(Keys {
            key: LessSafeKey::new(unbound),
            iv,
            seq,
        })
    }

    /// iv ⊕ seq (the sequence number right-aligned).
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = self.iv;
        for (b, s) in n[NONCE_LEN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Encrypts our records.
pub struct Sealer {
    keys: Keys,
    format: Format,
}

impl Sealer {
    pub fn new(
        format: Format,
        secrets: ConnectionTrafficSecrets,
        seq: u64,
    ) -> Result<Sealer, UnsupportedAead> {
        Ok(Sealer {
            keys: Keys::new(secrets, seq)?,
            format,
        })
    }

    /// Records sealed with the current key.
    pub fn seq(&self) -> u64 {
        self.keys.seq
    }

    /// Appends one record of content type `typ` carrying `payload`
    /// (at most [`MAX_PLAINTEXT`] bytes) to `out`.
    pub fn seal(&mut self, typ: u8, payload: &[u8], out: &mut Vec<u8>) {
        assert!(payload.len() <= MAX_PLAINTEXT, "record payload too long");
        let start = out.len();
        let body_len = payload.len() + self.format.overhead() - HEADER_LEN;
        out.reserve(HEADER_LEN + body_len);
        let outer = match self.format {
            Format::Tls13 => APPLICATION_DATA,
            Format::Tls12Gcm | Format::Tls12Chacha => typ,
        };
        out.extend_from_slice(&[outer, 3, 3]);
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        let nonce = self.keys.nonce();
        let sealed_from = match self.format {
            Format::Tls12Gcm => {
                out.extend_from_slice(&nonce[4..]);
                start + HEADER_LEN + EXPLICIT_NONCE_LEN
            }
            Format::Tls13 | Format::Tls12Chacha => start + HEADER_LEN,
        };
        append_copy(out, payload);
        if self.format == Format::Tls13 {
            out.push(typ);
        }
        let (head, body) = out.split_at_mut(sealed_from);
        let aad_header;
        let aad_tls12;
        let aad: &[u8] = match self.format {
            Format::Tls13 => {
                aad_header = [head[start], 3, 3, head[start + 3], head[start + 4]];
                &aad_header
            }
            Format::Tls12Gcm | Format::Tls12Chacha => {
                aad_tls12 = tls12_aad(self.keys.seq, typ, payload.len());
                &aad_tls12
            }
        };
        let tag = self
            .keys
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .expect("AEAD seal of a bounded record cannot fail");
        out.extend_from_slice(tag.as_ref());
        debug_assert_eq!(out.len() - start, HEADER_LEN + body_len);
        // Cannot wrap: the session rotates the key (TLS 1.3) or closes
        // (TLS 1.2) before the cipher's confidentiality limit, which is
        // below 2^64 - 2^16 for every suite.
        self.keys.seq = self.keys.seq.wrapping_add(1);
    }
}

/// Decrypts the peer's records.
pub struct Opener {
    keys: Keys,
    format: Format,
}

impl Opener {
    pub fn new(
        format: Format,
        secrets: ConnectionTrafficSecrets,
        seq: u64,
    ) -> Result<Opener, UnsupportedAead> {
        Ok(Opener {
            keys: Keys::new(secrets, seq)?,
            format,
        })
    }

    /// The length of the whole record at the front of `buf` (header
    /// included) once it is all there, `None` while it is incomplete.
    pub fn complete_record(&self, buf: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        if !matches!(header[0], ALERT | HANDSHAKE | APPLICATION_DATA) {
            return Err(RecordError::Unexpected);
        }
        // legacy_record_version 0x0303. TLS 1.2's additional data carries
        // it as a constant, so there a byte that differs would be the only
        // one not authenticated: refused. (TLS 1.3 authenticates the header
        // as received.)
        if header[1] != 3 || (self.format != Format::Tls13 && header[2] != 3) {
            return Err(RecordError::Decode);
        }
        let body = u16::from_be_bytes([header[3], header[4]]) as usize;
        if body > self.format.max_body() {
            return Err(RecordError::Overflow);
        }
        let len = HEADER_LEN + body;
        Ok((buf.len() >= len).then_some(len))
    }

    /// Decrypts the complete record `record` (header included, as measured by
    /// [`complete_record`](Self::complete_record)) in place. Returns its
    /// content type and where its plaintext now lies within `record`.
    pub fn open(&mut self, record: &mut [u8]) -> Result<(u8, Range<usize>), RecordError> {
        let (header, body) = record.split_at_mut(HEADER_LEN);
        let outer = header[0];
        let (nonce, aad_buf, sealed_from): ([u8; NONCE_LEN], [u8; 13], usize) = match self.format {
            Format::Tls13 => {
                if outer != APPLICATION_DATA {
                    return Err(RecordError::Unexpected);
                }
                let mut aad = [0u8; 13];
                aad[..HEADER_LEN].copy_from_slice(header);
                (self.keys.nonce(), aad, 0)
            }
            Format::Tls12Gcm => {
                // Too short to be sealed: fails like a bad tag (as rustls).
                if body.len() < EXPLICIT_NONCE_LEN + TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let mut nonce = self.keys.iv;
                nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE_LEN]);
                let len = body.len() - EXPLICIT_NONCE_LEN - TAG_LEN;
                (
                    nonce,
                    tls12_aad(self.keys.seq, outer, len),
                    EXPLICIT_NONCE_LEN,
                )
            }
            Format::Tls12Chacha => {
                if body.len() < TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let len = body.len() - TAG_LEN;
                (self.keys.nonce(), tls12_aad(self.keys.seq, outer, len), 0)
            }
        };
        let aad = match self.format {
            Format::Tls13 => &aad_buf[..HEADER_LEN],
            Format::Tls12Gcm | Format::Tls12Chacha => &aad_buf[..],
        };
        let plain_len = self
            .keys
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body[sealed_from..],
            )
            .map_err(|_| RecordError::BadRecordMac)?
            .len();
        self.keys.seq = self
            .keys
            .seq
            .checked_add(1)
            .ok_or(RecordError::SequenceExhausted)?;
        let from = HEADER_LEN + sealed_from;
        match self.format {
            Format::Tls13 => {
                // TLSInnerPlaintext, padding included, is at most 2^14 + 1
                // bytes (RFC 8446 §5.4).
                if plain_len > MAX_PLAINTEXT + 1 {
                    return Err(RecordError::Overflow);
                }
                // Strip the zero padding; the last non-zero byte is the type.
                let plain = &record[from..from + plain_len];
                let Some(at) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(RecordError::Unexpected);
                };
                if at > MAX_PLAINTEXT {
                    return Err(RecordError::Overflow);
                }
                Ok((plain[at], from..from + at))
            }
            Format::Tls12Gcm | Format::Tls12Chacha => {
                if plain_len > MAX_PLAINTEXT {
                    return Err(RecordError::Overflow);
                }
                Ok((outer, from..from + plain_len))
            }
        }
    }
}

/// Appends `src` to `out`. glibc's `memcpy` takes `rep movsb` for large
/// copies, and on this AMD EPYC (FSRM) that runs at ~3 GB/s instead of
/// ~50 GB/s when the destination is 1–15 bytes past the source modulo the
/// 4 KiB page (`bench/RESULTS.md`, 2026-11-25): exactly the case of a record
/// payload 5 bytes into a page-aligned buffer copied from another. Copies
/// in pieces below glibc's `rep movsb` threshold then.
fn append_copy(out: &mut Vec<u8>, src: &[u8]) {
    const PIECE: usize = 2048;
    let distance = (out.as_ptr() as usize + out.len()).wrapping_sub(src.as_ptr() as usize) % 4096;
    if src.len() <= PIECE || distance >= 64 {
        out.extend_from_slice(src);
        return;
    }
    for piece in src.chunks(PIECE) {
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests;
