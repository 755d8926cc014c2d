//! Trace context in request headers: W3C Trace Context (`traceparent`,
//! `tracestate`) and B3 (the single `b3` header, or `x-b3-traceid`,
//! `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`) read
//! from a request ([`extract`]) and written into the upstream request
//! ([`write_headers`]).
//!
//! Every value is untrusted: anything that is not exactly the format
//! (lowercase hex of the right length, ids not all zero) is ignored and a
//! new trace starts. The span id written upstream sits at fixed offsets
//! ([`SpanSlots`]) so each try can write its own in place, without
//! rewriting the head.

use super::{Propagation, SpanId, TraceContext, TraceId, TraceSpec};

/// What a request's headers said about its trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    /// `None`: only a sampling decision came (B3 `b3: 0`, `x-b3-sampled`).
    pub trace_id: Option<TraceId>,
    /// The caller's span.
    pub parent: Option<SpanId>,
    /// The caller's sampling decision, when it made one.
    pub sampled: Option<bool>,
    /// B3 debug: sample, and say so upstream.
    pub debug: bool,
    pub tracestate: Option<String>,
    pub b3_single: bool,
}

/// The fields a format owns; the gateway drops the client's copies of them
/// and writes its own.
const W3C_FIELDS: &[&str] = &["traceparent", "tracestate"];
const B3_FIELDS: &[&str] = &[
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// Whether request field `name` carries trace context in a format `spec`
/// propagates (so the client's copy is replaced).
pub fn is_propagation_header(spec: &TraceSpec, name: &str) -> bool {
    let owned = |fields: &[&str]| fields.iter().any(|f| name.eq_ignore_ascii_case(f));
    (spec.uses(Propagation::W3c) && owned(W3C_FIELDS))
        || (spec.uses(Propagation::B3) && owned(B3_FIELDS))
}

/// Reads the trace context of a request whose fields `header` looks up
/// (the first field of a name): the first format of `spec.propagation`
/// that holds a valid one.
pub fn extract<'h>(
    spec: &TraceSpec,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Option<Extracted> {
    spec.propagation.iter().find_map(|p| match p {
        Propagation::W3c => {
            let (trace_id, parent, flags) = parse_traceparent(header("traceparent")?)?;
            let tracestate = header("tracestate")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 512)
                .map(str::to_owned);
            Some(Extracted {
                trace_id: Some(trace_id),
                parent: Some(parent),
                sampled: Some(flags & 1 == 1),
                tracestate,
                ..Extracted::default()
            })
        }
        Propagation::B3 => match header("b3") {
            Some(v) => parse_b3_single(v),
            None => parse_b3_multi(&header),
        },
    })
}

/// Whether `spec`'s force header is on the request.
pub fn forced<'h>(spec: &TraceSpec, header: impl Fn(&str) -> Option<&'h [u8]>) -> bool {
    spec.force_header
        .as_deref()
        .and_then(header)
        .is_some_and(|v| !matches!(v.trim_ascii(), b"" | b"0" | b"false"))
}

/// Where the span id written upstream sits in a head (at most once per
/// format), so each try writes its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanSlots {
    at: [Option<usize>; 2],
}

impl SpanSlots {
    /// The same slots, `by` bytes further on (where the fields landed in
    /// the head).
    pub fn shifted(self, by: usize) -> SpanSlots {
        SpanSlots {
            at: self.at.map(|a| a.map(|a| a + by)),
        }
    }

    /// Writes `span` into `head` at every slot (slots past the end, which
    /// a correct caller never has, are skipped).
    pub fn set(&self, head: &mut [u8], span: SpanId) {
        let mut digits = [0u8; 16];
        super::hex_into(&span.0, &mut digits);
        for at in self.at.iter().flatten() {
            if let Some(slot) = head.get_mut(*at..*at + 16) {
                slot.copy_from_slice(&digits);
            }
        }
    }

    fn push(&mut self, at: usize) {
        if let Some(free) = self.at.iter_mut().find(|a| a.is_none()) {
            *free = Some(at);
        }
    }
}

/// Appends the trace fields of `ctx` in every format `spec` propagates,
/// naming `span` as the upstream's parent (and `ctx.span_id` as that
/// span's parent where B3 says it). Returns where `span` was written.
pub fn write_headers(
    spec: &TraceSpec,
    ctx: &TraceContext,
    span: SpanId,
    out: &mut Vec<u8>,
) -> SpanSlots {
    // Written straight into `out`: no allocation per request.
    let mut slots = SpanSlots::default();
    let trace = &ctx.trace_id.0;
    for p in &spec.propagation {
        match p {
            Propagation::W3c => {
                out.extend_from_slice(b"traceparent: 00-");
                push_hex_bytes(out, trace);
                out.push(b'-');
                slots.push(out.len());
                push_hex_bytes(out, &span.0);
                out.extend_from_slice(if ctx.sampled { b"-01\r\n" } else { b"-00\r\n" });
                if let Some(state) = &ctx.tracestate {
                    out.extend_from_slice(b"tracestate: ");
                    out.extend_from_slice(state.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            Propagation::B3 if ctx.b3_single => {
                out.extend_from_slice(b"b3: ");
                push_hex_bytes(out, trace);
                out.push(b'-');
                slots.push(out.len());
                push_hex_bytes(out, &span.0);
                out.extend_from_slice(match (ctx.debug, ctx.sampled) {
                    (true, _) => b"-d-",
                    (false, true) => b"-1-",
                    (false, false) => b"-0-",
                });
                push_hex_bytes(out, &ctx.span_id.0);
                out.extend_from_slice(b"\r\n");
            }
            Propagation::B3 => {
                out.extend_from_slice(b"x-b3-traceid: ");
                push_hex_bytes(out, trace);
                out.extend_from_slice(b"\r\nx-b3-spanid: ");
                slots.push(out.len());
                push_hex_bytes(out, &span.0);
                out.extend_from_slice(b"\r\nx-b3-parentspanid: ");
                push_hex_bytes(out, &ctx.span_id.0);
                // Debug implies sampled; B3 says not to send both.
                out.extend_from_slice(match (ctx.debug, ctx.sampled) {
                    (true, _) => b"\r\nx-b3-flags: 1\r\n",
                    (false, true) => b"\r\nx-b3-sampled: 1\r\n",
                    (false, false) => b"\r\nx-b3-sampled: 0\r\n",
                });
            }
        }
    }
    slots
}

/// Appends the lowercase hex of `bytes`.
fn push_hex_bytes<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N]) {
    let mut digits = [[0u8; 2]; N];
    super::hex_into(bytes, digits.as_flattened_mut());
    out.extend_from_slice(digits.as_flattened());
}

/// One byte from two lowercase hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

/// Lowercase hex of exactly `N` bytes, not all zero.
fn id_bytes<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut id = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        id[i] = hex_byte(pair)?;
    }
    id.iter().any(|&b| b != 0).then_some(id)
}

fn span_id(hex: &[u8]) -> Option<SpanId> {
    id_bytes::<8>(hex).map(SpanId)
}

/// A 128-bit id, or a 64-bit one (B3 allows it), widened with zeros.
fn trace_id(hex: &[u8]) -> Option<TraceId> {
    match hex.len() {
        32 => id_bytes::<16>(hex).map(TraceId),
        16 => id_bytes::<8>(hex).map(|low| {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            TraceId(id)
        }),
        _ => None,
    }
}

/// `version-traceid-parentid-flags` (W3C Trace Context §3.2): version
/// `00` is exactly that; a later version may add fields after a `-`;
/// version `ff` is invalid.
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    let value = value.trim_ascii();
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex_byte(&value[..2])?;
    if version == 0xff {
        return None;
    }
    match value.get(55) {
        None => {}
        Some(b'-') if version > 0 => {}
        Some(_) => return None,
    }
    let trace = id_bytes::<16>(&value[3..35]).map(TraceId)?;
    let parent = span_id(&value[36..52])?;
    let flags = hex_byte(&value[53..55])?;
    Some((trace, parent, flags))
}

/// A B3 sampling state: `1`, `0` or `d` (debug); the multi-header form
/// also says `true` / `false`.
fn sampling(state: &[u8]) -> Option<(Option<bool>, bool)> {
    match state {
        b"1" | b"true" => Some((Some(true), false)),
        b"0" | b"false" => Some((Some(false), false)),
        b"d" => Some((Some(true), true)),
        _ => None,
    }
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a bare
/// sampling state.
pub(crate) fn parse_b3_single(value: &[u8]) -> Option<Extracted> {
    let value = value.trim_ascii();
    let mut parts = value.split(|&b| b == b'-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        let (sampled, debug) = sampling(first)?;
        return Some(Extracted {
            sampled,
            debug,
            b3_single: true,
            ..Extracted::default()
        });
    };
    let trace = trace_id(first)?;
    let parent = span_id(second)?;
    let (sampled, debug) = match parts.next() {
        Some(state) => sampling(state)?,
        None => (None, false),
    };
    // The caller's own parent, if given, must be well formed; it is not
    // needed beyond that.
    if let Some(grandparent) = parts.next() {
        span_id(grandparent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Extracted {
        trace_id: Some(trace),
        parent: Some(parent),
        sampled,
        debug,
        b3_single: true,
        ..Extracted::default()
    })
}

/// The `x-b3-*` headers: ids (both or neither), sampled, flags.
fn parse_b3_multi<'h>(header: &impl Fn(&str) -> Option<&'h [u8]>) -> Option<Extracted> {
    let debug = header("x-b3-flags").is_some_and(|f| f.trim_ascii() == b"1");
    let sampled = match header("x-b3-sampled") {
        Some(v) => sampling(v.trim_ascii()).and_then(|(s, _)| s),
        None => None,
    };
    let ids = match (header("x-b3-traceid"), header("x-b3-spanid")) {
        (Some(t), Some(s)) => Some((trace_id(t.trim_ascii())?, span_id(s.trim_ascii())?)),
        _ => None,
    };
    if ids.is_none() && sampled.is_none() && !debug {
        return None;
    }
    Some(Extracted {
        trace_id: ids.map(|(t, _)| t),
        parent: ids.map(|(_, s)| s),
        sampled,
        debug,
        ..Extracted::default()
    })
}
