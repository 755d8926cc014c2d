//! TLS stage, identity: who the caller is, read from its verified leaf
//! certificate (sans-IO: DER bytes in, values out).
//!
//! [`PeerIdentity::from_der`] is a deliberately small DER walker rather than a
//! full X.509 parser: it reads only `tbsCertificate.subject` and the
//! subjectAltName extension (2.5.29.17: `uniformResourceIdentifier` [6] and
//! `dNSName` [2]). The certificate has already been verified by webpki, so
//! this code only extracts names; it never decides trust. A dependency
//! (x509-parser and its nom/asn1 stack) would be larger than this file.
//!
//! Guarantees: never panics on any input (proptested), no recursion (the
//! walk has a fixed depth: Certificate → TBS → extensions → extension →
//! GeneralNames), no unchecked indexing, rejects indefinite lengths and
//! high tag numbers. Output strings are header-safe: SAN entries with bytes
//! outside printable ASCII are dropped, and [`PeerIdentity::subject`] escapes
//! every non-printable or non-ASCII byte as an RFC 4514 `\XX` pair.

use std::fmt::Write as _;

/// Why a certificate could not be read. Only reachable for DER that webpki
/// would also reject (or for bytes that are not a certificate at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate DER is truncated")]
    Truncated,
    #[error("certificate DER is malformed: {0}")]
    Malformed(&'static str),
}

/// When a DER X.509 certificate stops being valid (`validity.notAfter`),
/// in seconds since the Unix epoch. Never panics.
pub fn not_after(cert: &[u8]) -> Result<i64, IdentityError> {
    let mut outer = Der::new(cert);
    let certificate = outer.expect(SEQUENCE, "Certificate")?;
    let mut tbs = Der::new(Der::new(certificate).expect(SEQUENCE, "tbsCertificate")?);
    tbs.optional(CTX_0, "version")?;
    tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Der::new(tbs.expect(SEQUENCE, "validity")?);
    validity.read()?; // notBefore
    let t = validity.read()?;
    parse_time(t.tag, t.body).ok_or(IdentityError::Malformed("validity.notAfter"))
}

/// RFC 5280 §4.1.2.5: UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`, as Unix seconds.
fn parse_time(tag: u8, body: &[u8]) -> Option<i64> {
    let digits = |b: &[u8]| -> Option<i64> {
        b.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, rest) = match (tag, body.len()) {
        (0x17, 13) => {
            let yy = digits(&body[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &body[2..])
        }
        (0x18, 15) => (digits(&body[..4])?, &body[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let [mo, d, h, mi, s] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
    let (mo, d, h, mi, s) = (mo?, d?, h?, mi?, s?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// The caller's identity, taken from its (verified) leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The `spiffe://` URI SAN, when the certificate has exactly one.
    /// (An X.509-SVID carries exactly one; two SPIFFE IDs are ambiguous and
    /// yield `None` here, so authorization falls back to other names.)
    pub spiffe_id: Option<String>,
    /// All URI SANs, in certificate order.
    pub uris: Vec<String>,
    /// All DNS SANs, in certificate order.
    pub dns_names: Vec<String>,
    /// The subject as an RFC 4514 string (most specific RDN first, e.g.
    /// `CN=client,O=Example`); `None` when the subject is empty.
    pub subject: Option<String>,
    /// The subject's (last) common name, unescaped.
    pub common_name: Option<String>,
    /// Lowercase hex SHA-256 of the certificate DER.
    pub cert_sha256_hex: String,
}

impl PeerIdentity {
    /// Reads the names from a DER X.509 certificate. Never panics.
    pub fn from_der(cert: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let mut outer = Der::new(cert);
        let certificate = outer.expect(SEQUENCE, "Certificate")?;
        if !outer.is_empty() {
            return Err(IdentityError::Malformed("trailing data after Certificate"));
        }
        let tbs = Der::new(certificate).expect(SEQUENCE, "tbsCertificate")?;
        let mut tbs = Der::new(tbs);
        tbs.optional(CTX_0, "version")?;
        tbs.expect(INTEGER, "serialNumber")?;
        tbs.expect(SEQUENCE, "signature")?;
        tbs.expect(SEQUENCE, "issuer")?;
        tbs.expect(SEQUENCE, "validity")?;
        let subject = tbs.expect(SEQUENCE, "subject")?;
        tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;

        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        let mut seen_san = false;
        while !tbs.is_empty() {
            let tlv = tbs.read()?;
            match tlv.tag {
                // issuerUniqueID / subjectUniqueID, primitive or constructed
                0x81 | 0x82 | 0xa1 | 0xa2 => {}
                CTX_3 => {
                    let exts = Der::new(tlv.body).expect(SEQUENCE, "extensions")?;
                    let mut exts = Der::new(exts);
                    while !exts.is_empty() {
                        let ext = exts.expect(SEQUENCE, "Extension")?;
                        let mut ext = Der::new(ext);
                        let oid = ext.expect(OID, "extnID")?;
                        ext.optional(BOOLEAN, "critical")?;
                        let value = ext.expect(OCTET_STRING, "extnValue")?;
                        if oid == OID_SUBJECT_ALT_NAME {
                            if seen_san {
                                return Err(IdentityError::Malformed(
                                    "duplicate subjectAltName extension",
                                ));
                            }
                            seen_san = true;
                            read_general_names(value, &mut uris, &mut dns_names)?;
                        }
                    }
                }
                _ => {
                    return Err(IdentityError::Malformed(
                        "unexpected field in tbsCertificate",
                    ));
                }
            }
        }

        let (subject, common_name) = read_name(subject)?;
        let mut spiffe = uris.iter().filter(|u| is_spiffe(u));
        let spiffe_id = match (spiffe.next(), spiffe.next()) {
            (Some(id), None) => Some(id.clone()),
            _ => None,
        };
        Ok(PeerIdentity {
            spiffe_id,
            uris,
            dns_names,
            subject,
            common_name,
            cert_sha256_hex: sha256_hex(cert),
        })
    }

    /// The principal used for routing and authorization: the SPIFFE ID if
    /// any, else the first DNS SAN, else the subject common name.
    pub fn principal(&self) -> Option<&str> {
        self.spiffe_id
            .as_deref()
            .or(self.dns_names.first().map(String::as_str))
            .or(self.common_name.as_deref())
    }

    /// One element of Envoy's `x-forwarded-client-cert` header:
    /// `Hash=<hex>;Subject="<subject>";URI=<uri>;DNS=<name>;DNS=<name>...`
    /// in Envoy's key order. `URI` is the SPIFFE ID (else the first URI SAN);
    /// `Subject` and `URI`/`DNS` appear only when present. `Subject` is
    /// always a quoted-string (`"` and `\` backslash-escaped); other values
    /// are quoted only if they contain `,` `;` `=` or `"`.
    pub fn xfcc(&self) -> String {
        let mut out = String::with_capacity(80 + self.cert_sha256_hex.len());
        out.push_str("Hash=");
        out.push_str(&self.cert_sha256_hex);
        if let Some(subject) = &self.subject {
            out.push_str(";Subject=");
            push_quoted(&mut out, subject);
        }
        if let Some(uri) = self.spiffe_id.as_ref().or(self.uris.first()) {
            out.push_str(";URI=");
            push_xfcc_value(&mut out, uri);
        }
        for dns in &self.dns_names {
            out.push_str(";DNS=");
            push_xfcc_value(&mut out, dns);
        }
        out
    }
}

fn is_spiffe(uri: &str) -> bool {
    uri.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn push_xfcc_value(out: &mut String, value: &str) {
    if value.contains([',', ';', '=', '"']) {
        push_quoted(out, value);
    } else {
        out.push_str(value);
    }
}

// ---- DER ------------------------------------------------------------------

const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const CTX_0: u8 = 0xa0;
const CTX_3: u8 = 0xa3;
/// GeneralName `[2] IMPLICIT IA5String` and `[6] IMPLICIT IA5String`.
const GN_DNS: u8 = 0x82;
const GN_URI: u8 = 0x86;

/// 2.5.29.17
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.4.3
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One tag-length-value.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    /// Tag, length and body together.
    whole: &'a [u8],
}

/// A cursor over a sequence of DER TLVs.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn read(&mut self) -> Result<Tlv<'a>, IdentityError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(IdentityError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(IdentityError::Malformed("high tag number"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(IdentityError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(IdentityError::Malformed("indefinite length"));
            }
            if n > 4 {
                return Err(IdentityError::Malformed("length too large"));
            }
            let (len_bytes, rest) = after_len
                .split_at_checked(n)
                .ok_or(IdentityError::Truncated)?;
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (body, rest) = after_len
            .split_at_checked(len)
            .ok_or(IdentityError::Truncated)?;
        let header_len = input.len() - after_len.len();
        let whole = input
            .get(..header_len + len)
            .ok_or(IdentityError::Truncated)?;
        self.rest = rest;
        Ok(Tlv { tag, body, whole })
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], IdentityError> {
        let tlv = self.read()?;
        if tlv.tag != tag {
            return Err(IdentityError::Malformed(what));
        }
        Ok(tlv.body)
    }

    fn optional(&mut self, tag: u8, what: &'static str) -> Result<Option<&'a [u8]>, IdentityError> {
        match self.rest.first() {
            Some(&t) if t == tag => self.expect(tag, what).map(Some),
            _ => Ok(None),
        }
    }
}

/// GeneralNames ::= SEQUENCE OF GeneralName. Keeps URIs and DNS names made
/// of printable ASCII (no spaces); ignores other name forms.
fn read_general_names(
    ext_value: &[u8],
    uris: &mut Vec<String>,
    dns_names: &mut Vec<String>,
) -> Result<(), IdentityError> {
    let mut outer = Der::new(ext_value);
    let names = outer.expect(SEQUENCE, "GeneralNames")?;
    if !outer.is_empty() {
        return Err(IdentityError::Malformed("trailing data after GeneralNames"));
    }
    let mut names = Der::new(names);
    while !names.is_empty() {
        let name = names.read()?;
        let list = match name.tag {
            GN_URI => &mut *uris,
            GN_DNS => &mut *dns_names,
            _ => continue,
        };
        match ia5_visible(name.body) {
            Some(s) => list.push(s.to_owned()),
            None => log::debug!("ignoring subjectAltName entry with non-printable bytes"),
        }
    }
    Ok(())
}

/// `bytes` as a str if every byte is printable ASCII without space.
fn ia5_visible(bytes: &[u8]) -> Option<&str> {
    if bytes.is_empty() || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
/// AttributeTypeAndValue). Returns (RFC 4514 string, last CN).
fn read_name(name: &[u8]) -> Result<(Option<String>, Option<String>), IdentityError> {
    // RFC 4514 lists RDNs last-to-first; collect rendered RDNs, then reverse.
    let mut rdns: Vec<String> = Vec::new();
    let mut common_name = None;
    let mut name = Der::new(name);
    while !name.is_empty() {
        let rdn = name.expect(SET, "RelativeDistinguishedName")?;
        let mut rdn = Der::new(rdn);
        let mut rendered = String::new();
        while !rdn.is_empty() {
            let atv = rdn.expect(SEQUENCE, "AttributeTypeAndValue")?;
            let mut atv = Der::new(atv);
            let oid = atv.expect(OID, "AttributeType")?;
            let value = atv.read()?;
            if !rendered.is_empty() {
                rendered.push('+');
            }
            match short_name(oid) {
                Some(short) => rendered.push_str(short),
                None => push_dotted_oid(&mut rendered, oid),
            }
            rendered.push('=');
            match decode_directory_string(value.tag, value.body) {
                Some(text) => {
                    push_rfc4514_escaped(&mut rendered, &text);
                    if oid == OID_COMMON_NAME {
                        common_name = Some(text);
                    }
                }
                None => {
                    rendered.push('#');
                    for b in value.whole {
                        let _ = write!(rendered, "{b:02x}");
                    }
                }
            }
        }
        rdns.push(rendered);
    }
    if rdns.is_empty() {
        return Ok((None, common_name));
    }
    rdns.reverse();
    Ok((Some(rdns.join(",")), common_name))
}

fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// Dotted-decimal OID; malformed encodings render as `#<hex>`-free `?`.
fn push_dotted_oid(out: &mut String, oid: &[u8]) {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        if acc > (u64::MAX >> 7) {
            out.push('?');
            return;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let Some((&first, rest)) = arcs.split_first() else {
        out.push('?');
        return;
    };
    if acc != 0 || oid.last().is_some_and(|b| b & 0x80 != 0) {
        out.push('?');
        return;
    }
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let _ = write!(out, "{a}.{b}");
    for arc in rest {
        let _ = write!(out, ".{arc}");
    }
}

/// DirectoryString and friends to text; `None` for other types or bad bytes.
fn decode_directory_string(tag: u8, body: &[u8]) -> Option<String> {
    match tag {
        // UTF8String
        0x0c => std::str::from_utf8(body).ok().map(str::to_owned),
        // PrintableString, IA5String, VisibleString
        0x13 | 0x16 | 0x1a => body
            .is_ascii()
            .then(|| body.iter().map(|&b| char::from(b)).collect()),
        // TeletexString: treated as Latin-1, as OpenSSL does
        0x14 => Some(body.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1e => {
            if !body.len().is_multiple_of(2) {
                return None;
            }
            let units = body
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok())
                .map(u16::from_be_bytes);
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString: UTF-32BE
        0x1c => {
            if !body.len().is_multiple_of(4) {
                return None;
            }
            body.chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                .map(|c| char::from_u32(u32::from_be_bytes(c)))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping, ASCII-only output: specials get a backslash,
/// bytes outside printable ASCII become `\XX`.
fn push_rfc4514_escaped(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
