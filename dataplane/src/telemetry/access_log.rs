//! Access log records: what one finished request (or TCP session) looks
//! like in a listener's access log, which requests are logged, and how a
//! record is rendered — one JSON object per line, or a line from an
//! Envoy-style `%FIELD%` template.
//!
//! Sans-IO. A shard fills an [`AccessRecord`] when a request it logs
//! finishes and hands it to the writer thread (in `control`) through a
//! bounded queue; rendering and writing happen there, off the shard.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// A listener's `access_log` table, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSpec {
    /// A file (appended to, reopened on SIGUSR1) or `stdout`.
    pub path: String,
    pub format: LogFormat,
    /// Share of requests answered below 400 that are logged, in percent;
    /// every error (4xx, 5xx, no response) is always logged.
    pub sample_percent: f64,
}

impl AccessLogSpec {
    /// Whether a request that ended with `status` is logged, `draw` being a
    /// uniform random number.
    pub fn logs(&self, status: Option<u16>, draw: u64) -> bool {
        match status {
            Some(s) if s < 400 => {
                self.sample_percent >= 100.0
                    || (draw % 1_000_000) as f64 / 10_000.0 < self.sample_percent
            }
            _ => true,
        }
    }
}

/// How records are written.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// One JSON object per line, every field named as in [`Field::name`].
    Json,
    /// One line per record from a template.
    Template(Template),
}

/// A field of a record, as JSON names it and as a template spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    StartTime,
    DurationUs,
    RequestId,
    TraceId,
    SpiffeId,
    Client,
    Listener,
    Route,
    Cluster,
    Endpoint,
    Method,
    Authority,
    Path,
    Protocol,
    Status,
    Error,
    AuthzRule,
    BytesIn,
    BytesOut,
    UpstreamTtfbUs,
    Attempts,
    TlsVersion,
    TlsCipher,
    Sni,
}

impl Field {
    /// Every field, in JSON order.
    pub const ALL: [Field; 24] = [
        Field::StartTime,
        Field::DurationUs,
        Field::RequestId,
        Field::TraceId,
        Field::SpiffeId,
        Field::Client,
        Field::Listener,
        Field::Route,
        Field::Cluster,
        Field::Endpoint,
        Field::Method,
        Field::Authority,
        Field::Path,
        Field::Protocol,
        Field::Status,
        Field::Error,
        Field::AuthzRule,
        Field::BytesIn,
        Field::BytesOut,
        Field::UpstreamTtfbUs,
        Field::Attempts,
        Field::TlsVersion,
        Field::TlsCipher,
        Field::Sni,
    ];

    /// The JSON key; upper-cased, the template's `%NAME%`.
    pub fn name(self) -> &'static str {
        match self {
            Field::StartTime => "start_time",
            Field::DurationUs => "duration_us",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
            Field::SpiffeId => "spiffe_id",
            Field::Client => "client",
            Field::Listener => "listener",
            Field::Route => "route",
            Field::Cluster => "cluster",
            Field::Endpoint => "endpoint",
            Field::Method => "method",
            Field::Authority => "authority",
            Field::Path => "path",
            Field::Protocol => "protocol",
            Field::Status => "status",
            Field::Error => "error",
            Field::AuthzRule => "authz_rule",
            Field::BytesIn => "bytes_in",
            Field::BytesOut => "bytes_out",
            Field::UpstreamTtfbUs => "upstream_ttfb_us",
            Field::Attempts => "attempts",
            Field::TlsVersion => "tls_version",
            Field::TlsCipher => "tls_cipher",
            Field::Sni => "sni",
        }
    }

    /// What comes before the field's value in a JSON line: the separator
    /// (`{` for the first field), the quoted key and the colon, as one
    /// string.
    fn json_key(self) -> &'static str {
        match self {
            Field::StartTime => "{\"start_time\":",
            Field::DurationUs => ",\"duration_us\":",
            Field::RequestId => ",\"request_id\":",
            Field::TraceId => ",\"trace_id\":",
            Field::SpiffeId => ",\"spiffe_id\":",
            Field::Client => ",\"client\":",
            Field::Listener => ",\"listener\":",
            Field::Route => ",\"route\":",
            Field::Cluster => ",\"cluster\":",
            Field::Endpoint => ",\"endpoint\":",
            Field::Method => ",\"method\":",
            Field::Authority => ",\"authority\":",
            Field::Path => ",\"path\":",
            Field::Protocol => ",\"protocol\":",
            Field::Status => ",\"status\":",
            Field::Error => ",\"error\":",
            Field::AuthzRule => ",\"authz_rule\":",
            Field::BytesIn => ",\"bytes_in\":",
            Field::BytesOut => ",\"bytes_out\":",
            Field::UpstreamTtfbUs => ",\"upstream_ttfb_us\":",
            Field::Attempts => ",\"attempts\":",
            Field::TlsVersion => ",\"tls_version\":",
            Field::TlsCipher => ",\"tls_cipher\":",
            Field::Sni => ",\"sni\":",
        }
    }

    fn from_template_name(name: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

/// A parsed `%FIELD%` template: literal text and fields; `%%` is a `%`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// The template used when `format = "text"` gives none: close to Envoy's
/// default, with the caller's identity.
pub const DEFAULT_TEMPLATE: &str = "[%START_TIME%] \"%METHOD% %PATH% %PROTOCOL%\" %STATUS% %ERROR% %BYTES_IN% %BYTES_OUT% %DURATION_US% %UPSTREAM_TTFB_US% \"%AUTHORITY%\" \"%REQUEST_ID%\" \"%SPIFFE_ID%\" %CLIENT% %ROUTE% %CLUSTER% %ENDPOINT%";

impl Template {
    /// Parses `text`; the error names the unknown field or the unclosed `%`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let Some(end) = rest.find('%') else {
                return Err(format!(
                    "unclosed `%` before {:?} (write `%%` for a literal %)",
                    truncate(rest, 20)
                ));
            };
            let name = &rest[..end];
            let field = Field::from_template_name(name).ok_or_else(|| {
                format!(
                    "unknown field %{name}% (known: {})",
                    Field::ALL
                        .iter()
                        .map(|f| f.name().to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field(field));
            rest = &rest[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One finished request (or TCP session), as its listener logs it. It
/// borrows everything from the request's state: a shard renders it at
/// once into its batch (see [`super::access_batch`]), with no copy of a
/// name or a header.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// How to write it.
    pub format: &'a LogFormat,
    /// When the request head (or the connection) arrived, µs since the
    /// Unix epoch.
    pub start_unix_us: u64,
    /// Arrival → response written (or session closed), µs.
    pub duration_us: u64,
    /// The `x-request-id` the upstream saw (the client's, kept, or ours).
    pub request_id: Option<&'a str>,
    /// From the client's W3C `traceparent`, when it sent a valid one.
    pub trace_id: Option<&'a str>,
    pub spiffe_id: Option<&'a str>,
    pub client: SocketAddr,
    pub listener: &'a str,
    pub route: Option<&'a str>,
    pub cluster: Option<&'a str>,
    /// The endpoint of the last try.
    pub endpoint: Option<SocketAddr>,
    /// Empty for a TCP session.
    pub method: &'a str,
    pub authority: Option<&'a str>,
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/1.0` or `TCP`.
    pub protocol: &'static str,
    /// `None`: no response was written.
    pub status: Option<u16>,
    /// The gateway's error label when it answered (or ended) the request
    /// itself, e.g. `upstream_timeout`.
    pub error: Option<&'static str>,
    /// The authorization rule that refused the request.
    pub authz_rule: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream_ttfb_us: Option<u64>,
    pub attempts: u32,
    pub tls_version: Option<&'static str>,
    pub tls_cipher: Option<&'static str>,
    /// The server name (SNI) of the client's ClientHello.
    pub sni: Option<&'a str>,
}

fn text(s: Option<&str>) -> Value<'_> {
    s.map_or(Value::Missing, Value::Text)
}

/// A field's value, for both renderings.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Addr(SocketAddr),
    Time(u64),
    Missing,
}

impl AccessRecord<'_> {
    #[inline(always)]
    fn value(&self, field: Field) -> Value<'_> {
        match field {
            Field::StartTime => Value::Time(self.start_unix_us),
            Field::DurationUs => Value::Number(self.duration_us),
            Field::RequestId => text(self.request_id),
            Field::TraceId => text(self.trace_id),
            Field::SpiffeId => text(self.spiffe_id),
            Field::Client => Value::Addr(self.client),
            Field::Listener => Value::Text(self.listener),
            Field::Route => text(self.route),
            Field::Cluster => text(self.cluster),
            Field::Endpoint => self.endpoint.map_or(Value::Missing, Value::Addr),
            Field::Method if self.method.is_empty() => Value::Missing,
            Field::Method => Value::Text(self.method),
            Field::Authority => text(self.authority),
            Field::Path if self.path.is_empty() => Value::Missing,
            Field::Path => Value::Text(self.path),
            Field::Protocol => Value::Text(self.protocol),
            Field::Status => self
                .status
                .map_or(Value::Missing, |s| Value::Number(u64::from(s))),
            Field::Error => text(self.error),
            Field::AuthzRule => text(self.authz_rule),
            Field::BytesIn => Value::Number(self.bytes_in),
            Field::BytesOut => Value::Number(self.bytes_out),
            Field::UpstreamTtfbUs => self.upstream_ttfb_us.map_or(Value::Missing, Value::Number),
            Field::Attempts => Value::Number(u64::from(self.attempts)),
            Field::TlsVersion => text(self.tls_version),
            Field::TlsCipher => text(self.tls_cipher),
            Field::Sni => text(self.sni),
        }
    }

    /// Appends the record as one line (with its `\n`) in its format.
    pub fn render(&self, out: &mut String) {
        self.render_with(out, &mut DateCache::default());
    }

    /// [`AccessRecord::render`], with the date of the last second
    /// rendered kept in `dates` (a shard renders many lines a second).
    pub fn render_with(&self, out: &mut String, dates: &mut DateCache) {
        match self.format {
            LogFormat::Json => self.render_json(out, dates),
            LogFormat::Template(t) => self.render_template(t, out, dates),
        }
        out.push('\n');
    }

    fn render_json(&self, out: &mut String, dates: &mut DateCache) {
        out.reserve(512);
        // Field by field in the order of `Field::ALL` (a test checks), in
        // straight-line code: each field's value is known at compile time.
        self.json_field(Field::StartTime, out, dates);
        self.json_field(Field::DurationUs, out, dates);
        self.json_field(Field::RequestId, out, dates);
        self.json_field(Field::TraceId, out, dates);
        self.json_field(Field::SpiffeId, out, dates);
        self.json_field(Field::Client, out, dates);
        self.json_field(Field::Listener, out, dates);
        self.json_field(Field::Route, out, dates);
        self.json_field(Field::Cluster, out, dates);
        self.json_field(Field::Endpoint, out, dates);
        self.json_field(Field::Method, out, dates);
        self.json_field(Field::Authority, out, dates);
        self.json_field(Field::Path, out, dates);
        self.json_field(Field::Protocol, out, dates);
        self.json_field(Field::Status, out, dates);
        self.json_field(Field::Error, out, dates);
        self.json_field(Field::AuthzRule, out, dates);
        self.json_field(Field::BytesIn, out, dates);
        self.json_field(Field::BytesOut, out, dates);
        self.json_field(Field::UpstreamTtfbUs, out, dates);
        self.json_field(Field::Attempts, out, dates);
        self.json_field(Field::TlsVersion, out, dates);
        self.json_field(Field::TlsCipher, out, dates);
        self.json_field(Field::Sni, out, dates);
        out.push('}');
    }

    #[inline(always)]
    fn json_field(&self, field: Field, out: &mut String, dates: &mut DateCache) {
        // Field names are plain ASCII words (a test checks): no escapes.
        out.push_str(field.json_key());
        match self.value(field) {
            Value::Text(s) => json_string(s, out),
            Value::Number(n) => push_u64(n, out),
            Value::Addr(a) => {
                out.push('"');
                push_addr(a, out);
                out.push('"');
            }
            Value::Time(us) => {
                out.push('"');
                dates.push(us, out);
                out.push('"');
            }
            Value::Missing => out.push_str("null"),
        }
    }

    fn render_template(&self, t: &Template, out: &mut String, dates: &mut DateCache) {
        for piece in &t.0 {
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::Field(f) => match self.value(*f) {
                    // One record, one line: control characters never reach
                    // the file as themselves.
                    Value::Text(s) if !s.chars().any(char::is_control) => out.push_str(s),
                    Value::Text(s) => {
                        for c in s.chars() {
                            if c.is_control() {
                                let _ = write!(out, "\\x{:02x}", c as u32);
                            } else {
                                out.push(c);
                            }
                        }
                    }
                    Value::Number(n) => push_u64(n, out),
                    Value::Addr(a) => push_addr(a, out),
                    Value::Time(us) => dates.push(us, out),
                    Value::Missing => out.push('-'),
                },
            }
        }
    }
}

/// `s` as a JSON string (RFC 8259 escapes). Runs of bytes that need no
/// escape are copied whole; they end only at ASCII bytes, so every run is
/// whole UTF-8. Clean stretches are skipped eight bytes at a time.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8)
            && !may_need_escape(u64::from_le_bytes(word.try_into().unwrap_or_default()))
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 | 0x7f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[run..i]);
        i += 1;
        run = i;
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Whether any of the eight bytes of `word` may need a JSON escape (a
/// control byte, `"`, `\\` or DEL). Never a false "no"; a "yes" is
/// checked byte by byte.
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_space
        || zero_byte(word ^ (ONES * u64::from(b'"')))
        || zero_byte(word ^ (ONES * u64::from(b'\\')))
        || zero_byte(word ^ (ONES * 0x7f))
}

/// `n` in decimal, without the formatting machinery (the access log's
/// numbers and the metrics exposition's samples).
pub fn push_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: a char each, no UTF-8 check of the whole.
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// `addr` as `Display` writes it (`1.2.3.4:80`, `[::1]:80`); IPv4
/// without the formatting machinery.
fn push_addr(addr: SocketAddr, out: &mut String) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(u64::from(octet), out);
            }
            out.push(':');
            push_u64(u64::from(a.port()), out);
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// `n` with at least `width` digits (zero-padded; `width` ≤ 4).
fn push_padded(n: u64, width: usize, out: &mut String) {
    for bound in [1000, 100, 10].into_iter().skip(4 - width.clamp(1, 4)) {
        if n < bound {
            out.push('0');
        }
    }
    push_u64(n, out);
}

/// The RFC 3339 text of the last second rendered (`…T21:19:05.`), so
/// that lines of the same second only add their milliseconds.
#[derive(Debug, Default, Clone)]
pub struct DateCache {
    second: Option<u64>,
    text: String,
}

impl DateCache {
    /// Appends `unix_us` as [`rfc3339`] does.
    pub fn push(&mut self, unix_us: u64, out: &mut String) {
        let second = unix_us / 1_000_000;
        if self.second != Some(second) {
            self.text.clear();
            rfc3339_second(second, &mut self.text);
            self.second = Some(second);
        }
        out.push_str(&self.text);
        push_padded((unix_us % 1_000_000) / 1000, 3, out);
        out.push('Z');
    }
}

/// `unix_us` as RFC 3339 UTC with milliseconds, e.g.
/// `2026-12-02T21:19:05.123Z`.
pub fn rfc3339(unix_us: u64, out: &mut String) {
    rfc3339_second(unix_us / 1_000_000, out);
    push_padded((unix_us % 1_000_000) / 1000, 3, out);
    out.push('Z');
}

/// The date and time of `secs` since the epoch, up to the `.` before
/// the milliseconds.
fn rfc3339_second(secs: u64, out: &mut String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    push_padded(y.max(0) as u64, 4, out);
    out.push('-');
    push_padded(u64::from(m), 2, out);
    out.push('-');
    push_padded(u64::from(d), 2, out);
    out.push('T');
    push_padded(rem / 3600, 2, out);
    out.push(':');
    push_padded((rem % 3600) / 60, 2, out);
    out.push(':');
    push_padded(rem % 60, 2, out);
    out.push('.');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The trace id of a W3C `traceparent` value
/// (`00-<32 hex>-<16 hex>-<2 hex>`), when it is valid: lowercase hex, not
/// all zeros, version not `ff`.
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(format: &LogFormat) -> AccessRecord<'_> {
        AccessRecord {
            format,
            start_unix_us: 1_796_246_345_123_456,
            duration_us: 1500,
            request_id: Some("rid"),
            trace_id: None,
            spiffe_id: Some("spiffe://mesh.local/ns/a/sa/\"b\""),
            client: "127.0.0.1:5555".parse().unwrap(),
            listener: "public",
            route: Some("api"),
            cluster: Some("backend"),
            endpoint: Some("127.0.0.1:8080".parse().unwrap()),
            method: "GET",
            authority: Some("svc"),
            path: "/a\nb",
            protocol: "HTTP/1.1",
            status: Some(200),
            error: None,
            authz_rule: None,
            bytes_in: 70,
            bytes_out: 120,
            upstream_ttfb_us: Some(900),
            attempts: 1,
            tls_version: Some("TLSv1.3"),
            tls_cipher: Some("TLS13_AES_128_GCM_SHA256"),
            sni: Some("api.mesh.local"),
        }
    }

    #[test]
    fn json_lines_name_every_field_and_escape_text() {
        let mut out = String::new();
        record(&LogFormat::Json).render(&mut out);
        assert!(
            out.ends_with("}\n") && out.matches('\n').count() == 1,
            "{out}"
        );
        assert!(
            out.starts_with("{\"start_time\":\"2026-12-02T21:19:05.123Z\","),
            "{out}"
        );
        assert!(out.contains("\"trace_id\":null"), "{out}");
        assert!(out.contains("\"path\":\"/a\\nb\""), "{out}");
        assert!(out.contains("sa/\\\"b\\\"\""), "{out}");
        assert!(out.contains("\"status\":200,"), "{out}");
        for f in Field::ALL {
            assert!(
                out.contains(&format!("\"{}\":", f.name())),
                "{f:?} in {out}"
            );
        }
    }

    #[test]
    fn templates_fill_fields_and_mark_missing_ones() {
        let t = Template::parse("%METHOD% %PATH% %status% %TRACE_ID% 100%% %ENDPOINT%").unwrap();
        let mut out = String::new();
        record(&LogFormat::Template(t)).render(&mut out);
        assert_eq!(out, "GET /a\\x0ab 200 - 100% 127.0.0.1:8080\n");
        Template::parse(DEFAULT_TEMPLATE).unwrap();
    }

    #[test]
    fn bad_templates_name_the_problem() {
        let e = Template::parse("%METHOD% %NOPE%").unwrap_err();
        assert!(e.starts_with("unknown field %NOPE%"), "{e}");
        let e = Template::parse("50% off").unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn sampling_keeps_every_error_and_a_share_of_the_rest() {
        let spec = AccessLogSpec {
            path: "stdout".into(),
            format: LogFormat::Json,
            sample_percent: 10.0,
        };
        assert!(spec.logs(Some(503), 999_999));
        assert!(spec.logs(None, 999_999));
        let kept = (0..10_000u64)
            .filter(|i| spec.logs(Some(200), i * 7919 % 1_000_000 * 1_000_003))
            .count();
        assert!((800..1200).contains(&kept), "{kept}");
        let none = AccessLogSpec {
            sample_percent: 0.0,
            ..spec
        };
        assert!(!none.logs(Some(200), 0));
    }

    #[test]
    fn rfc3339_dates() {
        let mut s = String::new();
        rfc3339(0, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2024-02-29T12:00:00.5Z (a leap day).
        rfc3339(1_709_208_000_500_000, &mut s);
        assert_eq!(s, "2024-02-29T12:00:00.500Z");
    }

    #[test]
    fn traceparent_ids_are_checked() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent_trace_id(ok),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
    }

    /// The escaper as RFC 8259 says it, a char at a time: the oracle.
    fn json_string_slow(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn the_fast_escaper_matches_the_char_by_char_one(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é✓])*") {
            let mut out = String::new();
            json_string(&s, &mut out);
            proptest::prop_assert_eq!(out, json_string_slow(&s));
        }

        #[test]
        fn the_word_test_never_misses_a_byte_to_escape(word in proptest::num::u64::ANY, at in 0usize..8, b in proptest::sample::select(vec![0u8, 9, 0x1f, b'"', b'\\', 0x7f])) {
            let mut bytes = word.to_le_bytes();
            let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f;
            if bytes.iter().any(|&b| needs(b)) {
                proptest::prop_assert!(may_need_escape(word));
            }
            bytes[at] = b;
            proptest::prop_assert!(may_need_escape(u64::from_le_bytes(bytes)));
        }

        #[test]
        fn addresses_match_the_formatter(v4 in proptest::num::u32::ANY, v6 in proptest::num::u128::ANY, port in proptest::num::u16::ANY) {
            for addr in [
                SocketAddr::from((std::net::Ipv4Addr::from(v4), port)),
                SocketAddr::from((std::net::Ipv6Addr::from(v6), port)),
            ] {
                let mut out = String::new();
                push_addr(addr, &mut out);
                proptest::prop_assert_eq!(out, addr.to_string());
            }
        }

        #[test]
        fn numbers_and_padding_match_the_formatter(n in proptest::num::u64::ANY, small in 0u64..10_000) {
            let mut out = String::new();
            push_u64(n, &mut out);
            proptest::prop_assert_eq!(&out, &n.to_string());
            for width in 1..=4 {
                out.clear();
                push_padded(small, width, &mut out);
                proptest::prop_assert_eq!(&out, &format!("{small:0width$}"));
            }
        }
    }

    #[test]
    fn json_keys_are_the_names_with_their_separator() {
        for (i, f) in Field::ALL.into_iter().enumerate() {
            let separator = if i == 0 { '{' } else { ',' };
            assert_eq!(f.json_key(), format!("{separator}\"{}\":", f.name()));
        }
    }

    #[test]
    fn json_fields_come_in_the_order_of_all() {
        let mut out = String::new();
        record(&LogFormat::Json).render(&mut out);
        let at: Vec<usize> = Field::ALL
            .iter()
            .map(|f| out.find(f.json_key()).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert_eq!(out.matches("\":").count(), Field::ALL.len(), "{out}");
    }

    #[test]
    fn cached_dates_match_fresh_ones() {
        let mut dates = DateCache::default();
        for us in [
            0,
            999_999,
            1_000_000,
            1_709_208_000_500_000,
            1_709_208_000_999_000,
            1_709_208_001_000_001,
        ] {
            let (mut cached, mut fresh) = (String::new(), String::new());
            dates.push(us, &mut cached);
            rfc3339(us, &mut fresh);
            assert_eq!(cached, fresh);
        }
    }

    #[test]
    fn field_names_need_no_json_escape() {
        for f in Field::ALL {
            assert!(
                f.name()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{}",
                f.name()
            );
        }
    }
}
