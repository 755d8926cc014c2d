//! Distributed tracing, the sans-IO part: trace and span ids, the
//! `[tracing]` settings a shard needs ([`TraceSpec`]), the trace context of
//! one request ([`TraceContext`]: extracted from W3C or B3 headers, or
//! new), the sampling decision, and the finished spans a shard hands to the
//! exporter ([`FinishedTrace`]).
//!
//! Header parsing and writing is in `propagation`; encoding spans for a
//! collector (OTLP, Zipkin) happens off the shard, in `control`.
//! Randomness is passed in (a shard draws from its own generator).

mod propagation;
mod span;
#[cfg(test)]
mod tests;

use std::fmt;

pub use propagation::{
    Extracted, SpanSlots, extract, forced, is_propagation_header, write_headers,
};
pub use span::{FinishedTrace, ServerSpan, TrySpan};

/// A 16-byte trace id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A fresh id from two random draws (a zero draw is replaced, so the
    /// id is never the invalid all-zero one).
    pub fn random(a: u64, b: u64) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.max(1).to_be_bytes());
        TraceId(id)
    }

    /// 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The same 32 digits, on the stack.
    pub fn hex_digits(&self) -> [u8; 32] {
        let mut digits = [0u8; 32];
        hex_into(&self.0, &mut digits);
        digits
    }
}

/// The lowercase hex of `bytes` into the front of `out` (twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
        b += 1;
    }
    pairs
};

impl SpanId {
    /// A fresh id from a random draw (never zero).
    pub fn random(a: u64) -> SpanId {
        SpanId(a.max(1).to_be_bytes())
    }

    /// 16 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// A header format trace context is read from and written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// W3C Trace Context: `traceparent` and `tracestate`.
    W3c,
    /// Zipkin B3: the single `b3` header, or the `x-b3-*` headers.
    B3,
}

/// The `[tracing]` settings shards use.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// Share of new traces (no sampling decision from upstream) that are
    /// recorded, in percent.
    pub sample_percent: f64,
    /// Formats read (first valid one wins) and written, in order.
    pub propagation: Vec<Propagation>,
    /// A request carrying this header (lowercase name, any value but `0`
    /// or `false`) is sampled whatever the rate; B3's debug flag does the
    /// same.
    pub force_header: Option<String>,
    /// Spans are recorded and exported (an exporter is configured); when
    /// not, context is still propagated.
    pub records: bool,
}

impl TraceSpec {
    /// Whether this spec reads and writes `p`.
    pub fn uses(&self, p: Propagation) -> bool {
        self.propagation.contains(&p)
    }

    /// Whether a new trace is sampled at the configured rate, `draw` being
    /// a uniform random number.
    pub fn samples(&self, draw: u64) -> bool {
        self.sample_percent >= 100.0 || (draw % 1_000_000) as f64 / 10_000.0 < self.sample_percent
    }
}

/// One request's place in a trace: the trace, the gateway's server span,
/// its parent (the caller's span, when one came), and whether it is
/// sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The gateway's server span for this request.
    pub span_id: SpanId,
    /// The caller's span, from the request's headers.
    pub parent: Option<SpanId>,
    pub sampled: bool,
    /// B3's debug flag (or the force header): sampled, and said so upstream.
    pub debug: bool,
    /// W3C `tracestate`, passed on as received (only with a valid
    /// `traceparent`).
    pub tracestate: Option<String>,
    /// The caller used the single `b3` header: it is written back in that
    /// form.
    pub b3_single: bool,
}

/// Random draws a new context may use; [`TraceContext::start`] takes
/// what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Draws {
    pub sample: u64,
    pub ids: [u64; 3],
}

impl TraceContext {
    /// The context of a request: continues `extracted` (a valid incoming
    /// context) or starts a new trace. Parent-based sampling: the caller's
    /// decision is followed when it made one; else `forced` or the rate
    /// decides.
    pub fn start(
        spec: &TraceSpec,
        extracted: Option<Extracted>,
        forced: bool,
        draws: Draws,
    ) -> TraceContext {
        let span_id = SpanId::random(draws.ids[2]);
        match extracted {
            Some(e) => {
                let debug = e.debug || forced;
                let sampled = debug || e.sampled.unwrap_or_else(|| spec.samples(draws.sample));
                TraceContext {
                    trace_id: e
                        .trace_id
                        .unwrap_or_else(|| TraceId::random(draws.ids[0], draws.ids[1])),
                    span_id,
                    parent: e.trace_id.and(e.parent),
                    sampled,
                    debug,
                    tracestate: e.tracestate,
                    b3_single: e.b3_single,
                }
            }
            None => TraceContext {
                trace_id: TraceId::random(draws.ids[0], draws.ids[1]),
                span_id,
                parent: None,
                sampled: forced || spec.samples(draws.sample),
                debug: forced,
                tracestate: None,
                b3_single: false,
            },
        }
    }
}
