//! Zipkin v2 JSON export bodies (`POST /api/v2/spans`): a list of spans
//! with hex ids, microsecond `timestamp` and `duration`, `kind`, the
//! gateway as `localEndpoint`, the peer as `remoteEndpoint`, and the
//! attributes as string `tags` (`error` set on a failed span, as Zipkin
//! marks errors).

use serde_json::{Map, Value as Json, json};

use super::model::{Kind, Span, Value};

/// The spans as a Zipkin v2 JSON array.
pub fn json(service_name: &str, spans: &[Span]) -> String {
    let list: Vec<Json> = spans
        .iter()
        .map(|span| {
            let mut tags = Map::new();
            for (k, v) in &span.attributes {
                let text = match v {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                };
                tags.insert((*k).to_owned(), Json::String(text));
            }
            if let Some(why) = &span.error {
                tags.insert("error".into(), Json::String(why.clone()));
            }
            let start_us = span.start_unix_ns / 1000;
            let duration_us = (span.end_unix_ns.saturating_sub(span.start_unix_ns) / 1000).max(1);
            let mut remote = Map::new();
            let ip = span.remote.ip();
            let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            remote.insert(family.into(), Json::String(ip.to_string()));
            remote.insert("port".into(), json!(span.remote.port()));
            let mut s = json!({
                "traceId": span.trace_id.hex(),
                "id": span.span_id.hex(),
                "name": span.name.to_ascii_lowercase(),
                "kind": match span.kind { Kind::Server => "SERVER", Kind::Client => "CLIENT" },
                "timestamp": start_us,
                "duration": duration_us,
                "localEndpoint": { "serviceName": service_name },
                "remoteEndpoint": remote,
                "tags": tags,
            });
            if let Some(p) = span.parent {
                s["parentId"] = json!(p.hex());
            }
            s
        })
        .collect();
    Json::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::telemetry::trace::{SpanId, TraceId};

    #[test]
    fn v2_shape() {
        let span = Span {
            trace_id: TraceId::random(1, 2),
            span_id: SpanId::random(3),
            parent: None,
            name: "GET orders".into(),
            kind: Kind::Client,
            start_unix_ns: 5_000,
            end_unix_ns: 5_500,
            attributes: vec![("server.port", Value::Int(80))],
            error: None,
            remote: "[::1]:80".parse().unwrap(),
        };
        let v: Json = serde_json::from_str(&json("edge", &[span])).unwrap();
        let s = &v[0];
        assert_eq!(s["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(s["id"].as_str().unwrap().len(), 16);
        assert!(s.get("parentId").is_none());
        assert_eq!(
            (s["timestamp"].as_u64(), s["duration"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(s["kind"], "CLIENT");
        assert_eq!(s["name"], "get orders");
        assert_eq!(s["remoteEndpoint"]["ipv6"], "::1");
        assert_eq!(s["tags"]["server.port"], "80");
        assert_eq!(s["localEndpoint"]["serviceName"], "edge");
    }
}
