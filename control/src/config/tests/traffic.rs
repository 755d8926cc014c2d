//! The traffic-management keys (issue 5): the example as written compiles,
//! nonsense is refused with the field named.

use super::{MINIMAL, assert_contains, err, load};

/// The traffic-management example of the issue, every key as written.
const TRAFFIC: &str = r#"
[[listeners]]
name = "public"
address = "127.0.0.1:8080"

[[clusters]]
name = "backend"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
lb = "least_request"
[clusters.health]
path = "/healthz"
interval_ms = 500
timeout_ms = 200
healthy = 1
unhealthy = 2
[clusters.outlier]
consecutive_failures = 3
base_ejection_ms = 2000
max_ejection_percent = 50
[clusters.limits]
max_connections = 1024
max_pending = 256
max_requests = 1024

[[clusters]]
name = "canary"
endpoints = ["127.0.0.1:9004"]

[[routes]]
listener = "public"
split = [{ cluster = "backend", weight = 95 }, { cluster = "canary", weight = 5 }]
timeout_ms = 3000
[routes.match]
path_prefix = "/"
[routes.retry]
attempts = 2
on = ["connect-failure", "reset", "503"]
per_try_timeout_ms = 500
[routes.rate_limit]
rps = 1000
burst = 100
"#;

#[test]
fn traffic_management_example_compiles() {
    let config = load(TRAFFIC).unwrap();
    let snap = config.compile(1).unwrap();
    let route = &snap.listeners[0].routes[0];
    assert_eq!(route.target.clusters().count(), 2);
    let retry = route.retry.unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(
        retry.per_try_timeout,
        Some(std::time::Duration::from_millis(500))
    );
    assert_eq!(route.rate_limit.as_ref().unwrap().rps, 1000.0);
    let c = &snap.clusters[0];
    assert_eq!(c.outlier.unwrap().consecutive_failures, 3);
    assert_eq!(c.limits.max_pending, 256);
    assert_eq!(c.rotation, [0, 1, 2]);
    assert_eq!(config.clusters[0].health.as_ref().unwrap().interval_ms, 500);
}

#[test]
fn traffic_management_nonsense_is_named() {
    let cases: [(&str, &str, &str); 15] = [
        (
            "attempts = 2",
            "attempts = 11",
            "routes[0].retry.attempts: 11 is out of range: expected 0..=10",
        ),
        (
            "\"503\"]",
            "\"503\", \"sometimes\"]",
            "routes[0].retry.on[3]: unknown retry condition \"sometimes\"",
        ),
        ("weight = 5 }", "weight = -5 }", "routes[0].split[1].weight"),
        (
            "max_ejection_percent = 50",
            "max_ejection_percent = 150",
            "clusters[0].outlier.max_ejection_percent: 150 is out of range",
        ),
        (
            "timeout_ms = 200",
            "timeout_ms = 900",
            "clusters[0].health.timeout_ms: 900 must be below interval_ms (500)",
        ),
        (
            "unhealthy = 2",
            "unhealthy = 0",
            "clusters[0].health.unhealthy: 0 is out of range",
        ),
        (
            "max_pending = 256",
            "max_pending = 0",
            "clusters[0].limits.max_pending: 0 is out of range",
        ),
        (
            "rps = 1000",
            "rps = 0",
            "routes[0].rate_limit.rps: 0 is out of range",
        ),
        (
            "burst = 100",
            "burst = 100\nkey = \"header:\"",
            "routes[0].rate_limit.key: invalid key \"header:\"",
        ),
        (
            "burst = 100",
            "burst = 100\nkey = \"client\"",
            "routes[0].rate_limit.key: invalid key \"client\"",
        ),
        (
            "lb = \"least_request\"",
            "lb = \"fastest\"",
            "unknown variant `fastest`",
        ),
        (
            "lb = \"least_request\"",
            "lb = \"ring_hash\"\nhash_on = \"body\"",
            "clusters[0].hash_on: invalid hash key \"body\"",
        ),
        (
            "lb = \"least_request\"",
            "weights = [1, 2]",
            "clusters[0].weights: 2 weights for 3 endpoints",
        ),
        (
            "lb = \"least_request\"",
            "weights = [1, -2, 1]",
            "clusters[0].weights",
        ),
        (
            "per_try_timeout_ms = 500",
            "per_try_timeout_ms = 0",
            "routes[0].retry.per_try_timeout_ms: 0 is out of range",
        ),
    ];
    for (from, to, want) in cases {
        assert!(TRAFFIC.contains(from), "{from}");
        let text = TRAFFIC.replacen(from, to, 1);
        let e = err(&text);
        assert_contains(&e, want);
    }
    // Budget over 100 %.
    let e = err(&(TRAFFIC.replace(
        "[[clusters]]\nname = \"canary\"",
        "[clusters.retry_budget]\npercent = 120\n\n[[clusters]]\nname = \"canary\"",
    )));
    assert_contains(
        &e,
        "clusters[0].retry_budget.percent: 120 is out of range: expected 0..=100",
    );
    // Exactly one target.
    let e = err(&TRAFFIC.replace("split = [", "cluster = \"backend\"\nsplit = ["));
    assert_contains(
        &e,
        "routes[0].cluster: cluster, split and redirect are exclusive",
    );
    let e = err(&MINIMAL.replace("cluster = \"backend\"\n", ""));
    assert_contains(
        &e,
        "routes[0].cluster: a route needs one of cluster, split or redirect",
    );
    // Headers the gateway owns cannot be edited.
    let e = err(&(MINIMAL.to_owned().replace(
        "cluster = \"backend\"\n",
        "cluster = \"backend\"\n[routes.request_headers]\nset = { content-length = \"5\" }\n",
    )));
    assert_contains(
        &e,
        "routes[0].request_headers.set: header \"content-length\" is managed by the gateway",
    );
    // A rewrite needs the prefix it replaces; redirects need a redirect status.
    let e = err(&MINIMAL.replace(
        "cluster = \"backend\"\n",
        "cluster = \"backend\"\nprefix_rewrite = \"/v2\"\n",
    ));
    assert_contains(&e, "routes[0].prefix_rewrite: needs match.path_prefix");
    let e = err(&MINIMAL.replace(
        "cluster = \"backend\"\n",
        "[routes.redirect]\nstatus = 200\n",
    ));
    assert_contains(
        &e,
        "routes[0].redirect.status: 200 is not a redirect status",
    );
}
