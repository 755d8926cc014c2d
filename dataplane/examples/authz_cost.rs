//! Micro-benchmark: what authorization costs a request.
//!
//! `cargo run --release -p meshgate-dataplane --example authz_cost`
//!
//! `authorize_request` on a listener whose one route has no rules, and
//! the same with 20 rules (10 deny rules that do not match, 9 allow rules
//! that do not match, the last allow rule matching the caller: every rule
//! is looked at). Timing on a shared machine: compare rows of one run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use dataplane::route::authz::{Asked, Caller, Headers, IdPattern, Policy, Rule, authorize_request};
use dataplane::route::{ClusterId, Listener, Protocol, Route, RouteMatch};

const ITERATIONS: u32 = 5_000_000;

struct NoHeaders;
impl Headers for NoHeaders {
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

fn listener(rules: usize) -> Listener {
    let mut route = Route::to_cluster("small", RouteMatch::default(), ClusterId(0));
    let rule = |name: String, pattern: String| Rule {
        name: Arc::from(name),
        spiffe_ids: vec![IdPattern::parse(&pattern).unwrap()],
        methods: vec!["GET".into()],
        ..Rule::default()
    };
    let half = rules / 2;
    route.authz = Policy {
        deny: (0..half)
            .map(|i| {
                rule(
                    format!("d{i}"),
                    format!("spiffe://meshgate.local/ns/blocked-{i}/sa/*"),
                )
            })
            .collect(),
        allow: (0..rules.saturating_sub(half + 1))
            .map(|i| {
                rule(
                    format!("a{i}"),
                    format!("spiffe://meshgate.local/ns/team-{i}/**"),
                )
            })
            .chain((rules > 0).then(|| {
                rule(
                    "last".into(),
                    "spiffe://meshgate.local/ns/default/sa/*".into(),
                )
            }))
            .collect(),
        default_name: Arc::from("route small: no allow rule"),
    };
    Listener {
        name: "bench".into(),
        address: "127.0.0.1:8443".parse().unwrap(),
        protocol: Protocol::Http,
        tls: None,
        routes: vec![route],
        limits: Default::default(),
        authz: Policy::default(),
        access_log: None,
    }
}

fn measure(l: &Listener) -> f64 {
    let caller = Caller {
        spiffe_id: Some("spiffe://meshgate.local/ns/default/sa/bench"),
        authenticated: true,
        source: "127.0.0.1".parse().unwrap(),
    };
    let asked = Asked {
        method: "GET",
        path: "/",
        headers: &NoHeaders,
    };
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                black_box(authorize_request(
                    black_box(l),
                    Some("localhost"),
                    &caller,
                    &asked,
                ));
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    for rules in [0, 20] {
        println!(
            "{rules:>2} rules: {:7.1} ns per request",
            measure(&listener(rules))
        );
    }
}
