//! Tests of trace context parsing, sampling and header writing.

use std::collections::HashMap;

use proptest::prelude::*;

use super::propagation::{parse_b3_single, parse_traceparent};
use super::*;

fn spec(propagation: &[Propagation]) -> TraceSpec {
    TraceSpec {
        sample_percent: 0.0,
        propagation: propagation.to_vec(),
        force_header: Some("x-force-trace".into()),
        records: true,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn lookup<'h>(h: &'h HashMap<String, Vec<u8>>) -> impl Fn(&str) -> Option<&'h [u8]> {
    move |name| h.get(name).map(Vec::as_slice)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[test]
fn traceparent_valid_and_invalid() {
    let ok = format!("00-{TRACE}-{PARENT}-01");
    let (t, p, flags) = parse_traceparent(ok.as_bytes()).unwrap();
    assert_eq!((t.hex(), p.hex(), flags), (TRACE.into(), PARENT.into(), 1));
    // A later version may carry more fields.
    assert!(parse_traceparent(format!("01-{TRACE}-{PARENT}-00-extra").as_bytes()).is_some());
    for bad in [
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{TRACE}-{PARENT}"),
        format!("00-{TRACE}-{PARENT}-01-x"),
        format!("00-{TRACE}-{PARENT}-0g"),
        format!("0-{TRACE}-{PARENT}-01"),
        String::new(),
    ] {
        assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn b3_single_forms() {
    let e = parse_b3_single(format!("{TRACE}-{PARENT}-1").as_bytes()).unwrap();
    assert_eq!(e.trace_id.unwrap().hex(), TRACE);
    assert_eq!(e.parent.unwrap().hex(), PARENT);
    assert_eq!((e.sampled, e.debug, e.b3_single), (Some(true), false, true));
    // 64-bit trace ids are widened.
    let e = parse_b3_single(format!("a3ce929d0e0e4736-{PARENT}").as_bytes()).unwrap();
    assert_eq!(
        e.trace_id.unwrap().hex(),
        "0000000000000000a3ce929d0e0e4736"
    );
    assert_eq!(e.sampled, None);
    let e = parse_b3_single(format!("{TRACE}-{PARENT}-d-{PARENT}").as_bytes()).unwrap();
    assert!(e.debug && e.sampled == Some(true));
    let e = parse_b3_single(b"0").unwrap();
    assert_eq!((e.trace_id, e.sampled), (None, Some(false)));
    for bad in [
        "".to_string(),
        "x".into(),
        TRACE.to_string(),
        format!("{TRACE}-{PARENT}-2"),
        format!("{TRACE}-{PARENT}-1-zz"),
        format!("{TRACE}-{PARENT}-1-{PARENT}-more"),
        format!("{TRACE}x-{PARENT}"),
    ] {
        assert_eq!(parse_b3_single(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn extract_takes_the_first_valid_format() {
    let both = spec(&[Propagation::W3c, Propagation::B3]);
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let b3_trace = "11111111111111111111111111111111";
    let h = headers(&[
        ("traceparent", &tp),
        ("tracestate", "vendor=1"),
        ("x-b3-traceid", b3_trace),
        ("x-b3-spanid", PARENT),
    ]);
    let e = extract(&both, lookup(&h)).unwrap();
    assert_eq!(e.trace_id.unwrap().hex(), TRACE);
    assert_eq!(e.tracestate.as_deref(), Some("vendor=1"));
    // B3 first: its ids win.
    let b3_first = spec(&[Propagation::B3, Propagation::W3c]);
    let e = extract(&b3_first, lookup(&h)).unwrap();
    assert_eq!(e.trace_id.unwrap().hex(), b3_trace);
    assert_eq!(e.sampled, None);
    // An invalid traceparent falls through to B3.
    let h = headers(&[
        ("traceparent", "00-bad"),
        ("x-b3-traceid", b3_trace),
        ("x-b3-spanid", PARENT),
        ("x-b3-sampled", "0"),
    ]);
    let e = extract(&both, lookup(&h)).unwrap();
    assert_eq!(
        (e.trace_id.unwrap().hex(), e.sampled),
        (b3_trace.into(), Some(false))
    );
    // W3C only: B3 headers are not read.
    assert_eq!(extract(&spec(&[Propagation::W3c]), lookup(&h)), None);
    // Multi-header B3 with only a flag.
    let h = headers(&[("x-b3-flags", "1")]);
    let e = extract(&both, lookup(&h)).unwrap();
    assert!(e.debug && e.trace_id.is_none());
}

#[test]
fn sampling_is_parent_based_then_forced_then_rate() {
    let mut s = spec(&[Propagation::W3c]);
    let draws = Draws {
        sample: 0,
        ids: [1, 2, 3],
    };
    let parent = |sampled| Extracted {
        trace_id: Some(TraceId::random(9, 9)),
        parent: Some(SpanId::random(7)),
        sampled: Some(sampled),
        ..Extracted::default()
    };
    // Rate 0: a sampled parent is still followed, an unsampled one too.
    assert!(TraceContext::start(&s, Some(parent(true)), false, draws).sampled);
    assert!(!TraceContext::start(&s, Some(parent(false)), false, draws).sampled);
    assert!(!TraceContext::start(&s, None, false, draws).sampled);
    // Forcing wins over an unsampled parent.
    let c = TraceContext::start(&s, Some(parent(false)), true, draws);
    assert!(c.sampled && c.debug);
    // Rate 100: new traces are sampled.
    s.sample_percent = 100.0;
    let c = TraceContext::start(&s, None, false, draws);
    assert!(c.sampled && c.parent.is_none());
    assert_eq!(c.trace_id, TraceId::random(1, 2));
    assert_eq!(c.span_id, SpanId::random(3));
    // 1 %: draws below 10,000 per million sample.
    s.sample_percent = 1.0;
    assert!(s.samples(9_999) && !s.samples(10_000) && s.samples(1_009_999));
    // A sampling-only B3 header starts a new trace with its decision.
    let only = Extracted {
        sampled: Some(true),
        ..Extracted::default()
    };
    s.sample_percent = 0.0;
    let c = TraceContext::start(&s, Some(only), false, draws);
    assert!(c.sampled && c.parent.is_none());
}

#[test]
fn force_header_values() {
    let s = spec(&[Propagation::W3c]);
    for (value, expect) in [("1", true), ("yes", true), ("0", false), ("false", false)] {
        let h = headers(&[("x-force-trace", value)]);
        assert_eq!(forced(&s, lookup(&h)), expect, "{value}");
    }
    assert!(!forced(&s, lookup(&headers(&[]))));
}

fn context(b3_single: bool, debug: bool) -> TraceContext {
    TraceContext {
        trace_id: TraceId::random(0x4bf9_2f35_77b3_4da6, 0xa3ce_929d_0e0e_4736),
        span_id: SpanId::random(0x1111_1111_1111_1111),
        parent: None,
        sampled: true,
        debug,
        tracestate: Some("a=b".into()),
        b3_single,
    }
}

#[test]
fn written_headers_parse_back_and_slots_take_each_try() {
    let s = spec(&[Propagation::W3c, Propagation::B3]);
    let ctx = context(false, false);
    let mut out = b"GET / HTTP/1.1\r\n".to_vec();
    let slots = write_headers(&s, &ctx, ctx.span_id, &mut out);
    let try_span = SpanId::random(0x2222_2222_2222_2222);
    slots.set(&mut out, try_span);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            "GET / HTTP/1.1\r\ntraceparent: 00-{TRACE}-2222222222222222-01\r\n\
             tracestate: a=b\r\nx-b3-traceid: {TRACE}\r\nx-b3-spanid: 2222222222222222\r\n\
             x-b3-parentspanid: 1111111111111111\r\nx-b3-sampled: 1\r\n"
        )
    );
    // Single-header B3, debug.
    let ctx = context(true, true);
    let mut out = Vec::new();
    let slots = write_headers(&spec(&[Propagation::B3]), &ctx, ctx.span_id, &mut out);
    slots.shifted(0).set(&mut out, try_span);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("b3: {TRACE}-2222222222222222-d-1111111111111111\r\n")
    );
}

#[test]
fn propagation_fields_follow_the_formats() {
    let w3c = spec(&[Propagation::W3c]);
    assert!(is_propagation_header(&w3c, "TraceParent"));
    assert!(is_propagation_header(&w3c, "tracestate"));
    assert!(!is_propagation_header(&w3c, "x-b3-traceid"));
    let b3 = spec(&[Propagation::B3]);
    assert!(is_propagation_header(&b3, "X-B3-Sampled") && is_propagation_header(&b3, "b3"));
    assert!(!is_propagation_header(&b3, "traceparent"));
}

proptest! {
    /// Untrusted header values never panic the parsers.
    #[test]
    fn parsers_take_any_bytes(value in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_traceparent(&value);
        let _ = parse_b3_single(&value);
        let s = spec(&[Propagation::B3, Propagation::W3c]);
        let _ = extract(&s, |_| Some(value.as_slice()));
    }

    /// What the gateway writes, it reads back as the same context.
    #[test]
    fn written_context_round_trips(a in any::<u64>(), b in any::<u64>(), c in any::<u64>(),
                                   sampled in any::<bool>(), single in any::<bool>()) {
        let ctx = TraceContext {
            trace_id: TraceId::random(a, b),
            span_id: SpanId::random(c),
            parent: None,
            sampled,
            debug: false,
            tracestate: None,
            b3_single: single,
        };
        for p in [Propagation::W3c, Propagation::B3] {
            let s = spec(&[p]);
            let mut out = Vec::new();
            write_headers(&s, &ctx, ctx.span_id, &mut out);
            let text = String::from_utf8(out).unwrap();
            let fields: HashMap<String, Vec<u8>> = text
                .split("\r\n")
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            let e = extract(&s, lookup(&fields)).unwrap();
            prop_assert_eq!(e.trace_id, Some(ctx.trace_id));
            prop_assert_eq!(e.parent, Some(ctx.span_id));
            prop_assert_eq!(e.sampled, Some(sampled));
        }
    }
}

#[test]
fn stack_hex_matches_the_string_hex() {
    for (a, b) in [
        (0, 1),
        (u64::MAX, u64::MAX),
        (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
    ] {
        let id = TraceId::random(a, b);
        assert_eq!(std::str::from_utf8(&id.hex_digits()).unwrap(), id.hex());
        let span = SpanId::random(a);
        let mut digits = [0u8; 16];
        super::hex_into(&span.0, &mut digits);
        assert_eq!(std::str::from_utf8(&digits).unwrap(), span.hex());
    }
}
