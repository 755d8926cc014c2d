//! OTLP/HTTP trace export bodies: `ExportTraceServiceRequest` in protobuf
//! (`application/x-protobuf`) and in the OTLP JSON mapping
//! (`application/json`: lowerCamelCase names, ids in hex, 64-bit integers
//! as strings, enums as numbers).
//!
//! The protobuf is written by hand — a handful of messages, no code
//! generator: field numbers are those of `opentelemetry/proto/trace/v1/
//! trace.proto`, `common/v1/common.proto` and `resource/v1/resource.proto`.

use serde_json::{Value as Json, json};

use super::model::{Kind, Span, Value};

/// The instrumentation scope the spans are reported under.
const SCOPE: &str = "meshgate";

/// `Span.SpanKind`
fn kind_number(kind: Kind) -> u64 {
    match kind {
        Kind::Server => 2,
        Kind::Client => 3,
    }
}

/// `Status.StatusCode`: UNSET (0) or ERROR (2).
fn status_code(span: &Span) -> u64 {
    if span.error.is_some() { 2 } else { 0 }
}

// --- protobuf ---------------------------------------------------------------

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    tag(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

/// A sub-message written by `f`, length-prefixed. Written in place and
/// the length put in front after (a copy of the tail, no buffer per
/// message: nested messages used to copy the whole batch into fresh
/// memory at every level).
fn message_field(out: &mut Vec<u8>, field: u64, f: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let start = out.len();
    f(out);
    let mut len = (out.len() - start) as u64;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    while len >= 0x80 {
        prefix[n] = (len as u8) | 0x80;
        len >>= 7;
        n += 1;
    }
    prefix[n] = len as u8;
    out.splice(start..start, prefix[..=n].iter().copied());
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value
/// = 1; int_value = 3 }`.
fn key_value(out: &mut Vec<u8>, field: u64, key: &str, value: &Value) {
    message_field(out, field, |kv| {
        bytes_field(kv, 1, key.as_bytes());
        message_field(kv, 2, |any| match value {
            Value::Str(s) => bytes_field(any, 1, s.as_bytes()),
            Value::Int(i) => varint_field(any, 3, *i as u64),
        });
    });
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`
/// with one resource (`service.name`) and one scope.
#[cfg(test)]
pub fn protobuf(service_name: &str, spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::new();
    protobuf_into(service_name, spans, &mut out);
    out
}

/// [`protobuf`] into `out` (emptied first), so that one buffer serves
/// every batch: no fresh memory to fault in per batch.
pub fn protobuf_into(service_name: &str, spans: &[Span], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(256 * spans.len() + 64);
    message_field(out, 1, |rs| {
        // ResourceSpans.resource = 1: Resource { attributes = 1 }
        message_field(rs, 1, |resource| {
            let name = Value::Str(service_name.to_owned());
            key_value(resource, 1, "service.name", &name);
        });
        // ResourceSpans.scope_spans = 2
        message_field(rs, 2, |ss| {
            // ScopeSpans.scope = 1: InstrumentationScope { name = 1; version = 2 }
            message_field(ss, 1, |scope| {
                bytes_field(scope, 1, SCOPE.as_bytes());
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                // ScopeSpans.spans = 2
                message_field(ss, 2, |s| span_message(s, span));
            }
        });
    });
}

/// `Span`: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
/// start 7 and end 8 (fixed64), attributes 9, status 15.
fn span_message(s: &mut Vec<u8>, span: &Span) {
    bytes_field(s, 1, &span.trace_id.0);
    bytes_field(s, 2, &span.span_id.0);
    if let Some(p) = span.parent {
        bytes_field(s, 4, &p.0);
    }
    bytes_field(s, 5, span.name.as_bytes());
    varint_field(s, 6, kind_number(span.kind));
    tag(s, 7, FIXED64);
    s.extend_from_slice(&span.start_unix_ns.to_le_bytes());
    tag(s, 8, FIXED64);
    s.extend_from_slice(&span.end_unix_ns.to_le_bytes());
    for (k, v) in &span.attributes {
        key_value(s, 9, k, v);
    }
    if let Some(why) = &span.error {
        // Status { message = 2; code = 3 }
        message_field(s, 15, |st| {
            bytes_field(st, 2, why.as_bytes());
            varint_field(st, 3, status_code(span));
        });
    }
}

// --- JSON -------------------------------------------------------------------

fn json_value(v: &Value) -> Json {
    match v {
        Value::Str(s) => json!({ "stringValue": s }),
        // 64-bit integers are strings in the OTLP JSON mapping.
        Value::Int(i) => json!({ "intValue": i.to_string() }),
    }
}

/// The same request in the OTLP JSON mapping.
pub fn json(service_name: &str, spans: &[Span]) -> String {
    let spans: Vec<Json> = spans
        .iter()
        .map(|span| {
            let mut s = json!({
                "traceId": span.trace_id.hex(),
                "spanId": span.span_id.hex(),
                "name": span.name,
                "kind": kind_number(span.kind),
                "startTimeUnixNano": span.start_unix_ns.to_string(),
                "endTimeUnixNano": span.end_unix_ns.to_string(),
                "attributes": span.attributes.iter()
                    .map(|(k, v)| json!({ "key": k, "value": json_value(v) }))
                    .collect::<Vec<_>>(),
                "status": { "code": status_code(span) },
            });
            if let Some(p) = span.parent {
                s["parentSpanId"] = json!(p.hex());
            }
            if let Some(why) = &span.error {
                s["status"]["message"] = json!(why);
            }
            s
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": service_name } }
            ]},
            "scopeSpans": [{
                "scope": { "name": SCOPE, "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::telemetry::trace::{SpanId, TraceId};

    fn span() -> Span {
        Span {
            trace_id: TraceId::random(1, 2),
            span_id: SpanId::random(3),
            parent: Some(SpanId::random(4)),
            name: "GET r".into(),
            kind: Kind::Server,
            start_unix_ns: 10,
            end_unix_ns: 20,
            attributes: vec![("http.response.status_code", Value::Int(503))],
            error: Some("status 503".into()),
            remote: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        out.clear();
        varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn sub_messages_are_prefixed_with_their_length() {
        let mut out = vec![0xFF];
        message_field(&mut out, 2, |m| {
            bytes_field(m, 1, &[7; 200]);
            message_field(m, 3, |inner| varint_field(inner, 1, 300));
        });
        // Field 2, LEN, then 208 (203 + 5) as a varint.
        let mut inner = vec![0x0A, 0xC8, 0x01];
        inner.extend_from_slice(&[7; 200]);
        inner.extend_from_slice(&[0x1A, 3, 0x08, 0xAC, 0x02]);
        let mut want = vec![0xFF, 0x12];
        varint(&mut want, inner.len() as u64);
        want.extend_from_slice(&inner);
        assert_eq!(out, want);
    }

    #[test]
    fn protobuf_holds_the_ids_and_times() {
        let s = span();
        let body = protobuf("svc", std::slice::from_ref(&s));
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        // trace_id: field 1, LEN 16.
        let mut trace = vec![0x0A, 16];
        trace.extend_from_slice(&s.trace_id.0);
        assert!(find(&trace));
        // start: field 7, fixed64.
        let mut start = vec![0x39];
        start.extend_from_slice(&10u64.to_le_bytes());
        assert!(find(&start));
        assert!(find(b"service.name") && find(b"svc") && find(b"GET r"));
    }

    #[test]
    fn json_uses_hex_ids_and_string_integers() {
        let s = span();
        let v: Json = serde_json::from_str(&json("svc", std::slice::from_ref(&s))).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], s.trace_id.hex());
        assert_eq!(span["parentSpanId"], s.parent.unwrap().hex());
        assert_eq!(span["startTimeUnixNano"], "10");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "503");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["kind"], 2);
    }
}
