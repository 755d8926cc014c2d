//! Tracing through a real shard on virtual time: the context continued
//! from the client's headers, a client span per try with the span id the
//! try carried upstream, parent-based sampling, and a full span queue that
//! drops and counts.

use std::time::Duration;

use super::harness::*;
use crate::route::RetryPolicy;
use crate::telemetry::trace::{Propagation, TraceSpec};
use crate::upstream::retry::RetryOn;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn spec(percent: f64, propagation: &[Propagation]) -> TraceSpec {
    TraceSpec {
        sample_percent: percent,
        propagation: propagation.to_vec(),
        force_header: Some("x-force-trace".into()),
        records: true,
    }
}

fn get_with(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: svc\r\n{extra}\r\n").into_bytes()
}

/// The span id in a `traceparent` value.
fn parent_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).expect("a traceparent")
}

#[test]
fn each_try_is_a_client_span_named_upstream_as_the_parent() {
    let (world, spans) = World::http()
        .cluster("c", &[A, B])
        .route_to("c")
        .with_route(|r| {
            r.retry = Some(RetryPolicy {
                attempts: 1,
                on: RetryOn::SERVICE_UNAVAILABLE,
                per_try_timeout: None,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(10),
                buffer_bytes: 0,
            })
        })
        .tracing(spec(0.0, &[Propagation::W3c]), 16);
    world.run(|gw| async move {
        let a = Upstream::start(A, |_| Reply::status(503, "a"));
        let b = Upstream::start(B, |_| Reply::ok("b"));
        let mut client = gw.client().await;
        let tp = format!("traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: k=v\r\n");
        client.send(&get_with("/x", &tp)).await;
        assert_eq!(client.response().await.status, 200);
        let t = spans.try_recv().expect("a sampled parent is followed");
        assert_eq!(t.trace_id.hex(), TRACE);
        assert_eq!(t.server.parent.map(|p| p.hex()).as_deref(), Some(PARENT));
        assert_eq!(t.server.status, Some(200));
        assert_eq!(t.server.path, "/x");
        assert_eq!(t.tries.len(), 2, "the 503 and the retry");
        let seen = [a.seen(), b.seen()];
        let by_endpoint = |addr| if addr == A { &seen[0][0] } else { &seen[1][0] };
        for try_span in &t.tries {
            let up = by_endpoint(try_span.endpoint);
            let tp = up.header("traceparent").expect("trace context upstream");
            assert!(tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"));
            assert_eq!(parent_id(tp), try_span.span_id.hex());
            assert_eq!(up.header("tracestate"), Some("k=v"));
            assert!(try_span.start_unix_ns <= try_span.end_unix_ns);
            assert!(t.server.start_unix_ns <= try_span.start_unix_ns);
        }
        let statuses: Vec<_> = t.tries.iter().map(|s| s.status).collect();
        assert!(statuses.contains(&Some(503)) && statuses.contains(&Some(200)));
        assert_ne!(t.tries[0].span_id, t.tries[1].span_id);
        assert_ne!(t.tries[0].span_id, t.server.span_id);
    });
}

#[test]
fn an_unsampled_request_is_propagated_but_not_recorded() {
    let (world, spans) = World::http()
        .cluster("c", &[A])
        .route_to("c")
        .tracing(spec(0.0, &[Propagation::W3c, Propagation::B3]), 16);
    world.run(|gw| async move {
        let up = Upstream::start(A, |_| Reply::ok("a"));
        let mut client = gw.client().await;
        // A sampled=0 parent, in the multi-header B3 form.
        let b3 = format!("x-b3-traceid: {TRACE}\r\nx-b3-spanid: {PARENT}\r\nx-b3-sampled: 0\r\n");
        client.send(&get_with("/", &b3)).await;
        assert_eq!(client.response().await.status, 200);
        // No decision, rate 0: a new trace, not sampled.
        client.send(&get_with("/", "")).await;
        assert_eq!(client.response().await.status, 200);
        assert!(spans.try_recv().is_err(), "nothing recorded");
        let seen = up.seen();
        let first = &seen[0];
        assert_eq!(first.header("x-b3-traceid"), Some(TRACE));
        assert_eq!(first.header("x-b3-sampled"), Some("0"));
        // Not recorded: the caller's span stays the upstream's parent.
        assert_eq!(first.header("x-b3-spanid"), Some(PARENT));
        let tp = first.header("traceparent").expect("both formats written");
        assert_eq!(tp, format!("00-{TRACE}-{PARENT}-00"));
        let second = seen[1].header("traceparent").expect("a new trace");
        assert!(
            !second.contains(TRACE) && second.ends_with("-00"),
            "{second}"
        );
    });
}

#[test]
fn a_full_span_queue_drops_and_counts() {
    let (world, spans) = World::http()
        .cluster("c", &[A])
        .route_to("c")
        .tracing(spec(100.0, &[Propagation::B3]), 1);
    world.run(|gw| async move {
        let up = Upstream::start(A, |_| Reply::ok("a"));
        let mut client = gw.client().await;
        for _ in 0..3 {
            client.send(&get_with("/", "b3: 1\r\n")).await;
            assert_eq!(client.response().await.status, 200);
        }
        // Two requests of a server and a client span each.
        assert_eq!(gw.stats.spans_dropped.get(), 4);
        let t = spans.try_recv().expect("the first request's spans");
        // A client's b3 header is replaced, in the form it came in:
        // trace, the try's span, sampled, the server span as its parent.
        let b3 = up.seen()[0].header("b3").unwrap().to_owned();
        let parts: Vec<&str> = b3.split('-').collect();
        let expect = [
            t.trace_id.hex(),
            t.tries[0].span_id.hex(),
            "1".to_owned(),
            t.server.span_id.hex(),
        ];
        assert_eq!(parts, expect, "{b3}");
        assert_eq!(up.seen()[0].header("x-b3-traceid"), None);
    });
}
