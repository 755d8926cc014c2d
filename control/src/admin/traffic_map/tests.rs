use super::*;
use dataplane::telemetry::Buckets;

fn counts(requests: u64, errors: u64, us: u64) -> Totals {
    let mut duration = Buckets::default();
    duration.record_n(us, requests);
    let mut responses = [0; 6];
    responses[2] = requests - errors;
    responses[5] = errors;
    Totals {
        name: String::new(),
        requests,
        responses,
        failed: 0,
        duration,
        in_flight: None,
        endpoints: None,
    }
}

fn sample(rows: &[(&str, u64, u64)]) -> Sample {
    Sample {
        totals: rows
            .iter()
            .map(|(id, n, errors)| (id.to_string(), counts(*n, *errors, 800)))
            .collect(),
    }
}

#[test]
fn the_first_look_has_no_rates_and_the_next_are_over_the_window() {
    let mut h = History::default();
    let t0 = Instant::now();
    assert_eq!(h.rates(t0, sample(&[("r:a", 10, 0)])), None);
    let r = h
        .rates(t0 + Duration::from_secs(2), sample(&[("r:a", 30, 2)]))
        .expect("rates");
    assert_eq!(r.window_s, 2.0);
    let a = &r.by_id["r:a"];
    assert_eq!(a.rps, 10.0);
    assert_eq!(a.error_pct, Some(10.0));
    assert!(a.p99_us.is_some_and(|p| p <= 1_000 && p > 500), "{a:?}");
    // Still against t0 (kept: 4 s ≤ the window).
    let r = h
        .rates(t0 + Duration::from_secs(4), sample(&[("r:a", 50, 2)]))
        .unwrap();
    assert_eq!((r.window_s, r.by_id["r:a"].rps), (4.0, 10.0));
    // t0 is now too old; the base is the sample taken at 2 s.
    let r = h
        .rates(t0 + Duration::from_secs(6), sample(&[("r:a", 90, 2)]))
        .unwrap();
    assert_eq!((r.window_s, r.by_id["r:a"].rps), (4.0, 15.0));
    assert_eq!(r.by_id["r:a"].error_pct, Some(0.0));
}

#[test]
fn looks_less_than_a_second_apart_keep_one_sample_and_a_long_pause_starts_over() {
    let mut h = History::default();
    let t0 = Instant::now();
    h.rates(t0, sample(&[("r:a", 0, 0)]));
    for ms in [100, 200, 300] {
        h.rates(t0 + Duration::from_millis(ms), sample(&[("r:a", ms, 0)]));
    }
    assert_eq!(h.samples.len(), 1);
    assert!(
        h.rates(t0 + Duration::from_secs(60), Sample::default())
            .is_none()
    );
}

#[test]
fn a_counter_that_went_down_and_a_new_node_count_from_zero() {
    let mut h = History::default();
    let t0 = Instant::now();
    h.rates(t0, sample(&[("r:a", 100, 0)]));
    let r = h
        .rates(
            t0 + Duration::from_secs(1),
            sample(&[("r:a", 5, 0), ("r:new", 3, 0)]),
        )
        .unwrap();
    assert_eq!(r.by_id["r:a"].rps, 5.0);
    assert_eq!(r.by_id["r:new"].rps, 3.0);
}

fn endpoint(address: &str, state: &'static str) -> EndpointNode {
    EndpointNode {
        address: address.into(),
        state,
        health: "unchecked",
        in_flight: 0,
    }
}

fn topology() -> Topology {
    Topology {
        generation: 7,
        listeners: vec![ListenerNode {
            name: "public".into(),
            address: "127.0.0.1:8443".into(),
            protocol: "https",
        }],
        routes: vec![
            RouteNode {
                name: "api".into(),
                listener: "public".into(),
                targets: vec![("api".into(), 1)],
                redirect: None,
            },
            RouteNode {
                name: "web".into(),
                listener: "public".into(),
                targets: vec![("web".into(), 90), ("web-canary".into(), 10)],
                redirect: None,
            },
            RouteNode {
                name: "old".into(),
                listener: "public".into(),
                targets: vec![],
                redirect: Some(301),
            },
        ],
        clusters: vec![
            ClusterNode {
                name: "api".into(),
                lb: "round_robin",
                endpoints: vec![
                    endpoint("127.0.0.1:1", "active"),
                    endpoint("127.0.0.1:2", "ejected"),
                ],
            },
            ClusterNode {
                name: "web".into(),
                lb: "least_request",
                endpoints: vec![],
            },
            ClusterNode {
                name: "web-canary".into(),
                lb: "least_request",
                endpoints: vec![],
            },
        ],
    }
}

fn edge<'a>(g: &'a Value, from: &str, to: &str) -> &'a Value {
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
        .unwrap_or_else(|| panic!("no edge {from} → {to} in {g}"))
}

/// The rates of `counts` (id, requests, errors) reached from nothing in
/// two seconds.
fn rates_over_two_seconds(counts: &[(&str, u64, u64)]) -> Rates {
    let mut h = History::default();
    let t0 = Instant::now();
    h.rates(t0, Sample::default());
    h.rates(t0 + Duration::from_secs(2), sample(counts))
        .expect("a second sample gives rates")
}

#[test]
fn edges_carry_the_figures_of_the_traffic_along_them() {
    let rates = rates_over_two_seconds(&[
        ("r:api", 20, 1),
        ("c:api", 20, 1),
        ("e:api/127.0.0.1:1", 20, 1),
        ("r:web", 40, 0),
        ("c:web", 36, 0),
        ("s:web/web", 36, 0),
    ]);
    let g = graph_json(&topology(), Some(&rates));
    assert_eq!(g["generation"], 7);
    assert_eq!(g["window_s"], 2.0);
    let api = edge(&g, "l:public", "r:api");
    assert_eq!(
        (api["rps"].as_f64(), api["error_pct"].as_f64()),
        (Some(10.0), Some(5.0))
    );
    assert_eq!(edge(&g, "r:api", "c:api")["rps"], 10.0);
    assert_eq!(edge(&g, "c:api", "e:api/127.0.0.1:1")["rps"], 10.0);
    // A node without traffic: zero, not unknown.
    assert_eq!(edge(&g, "c:api", "e:api/127.0.0.1:2")["rps"], 0.0);
    // A split: the weights on the edges, and what the split sent each way.
    let split = edge(&g, "r:web", "c:web");
    assert_eq!(
        (split["weight"].as_u64(), split["rps"].as_f64()),
        (Some(90), Some(18.0))
    );
    let canary = edge(&g, "r:web", "c:web-canary");
    assert_eq!(
        (canary["weight"].as_u64(), canary["rps"].as_f64()),
        (Some(10), Some(0.0))
    );
    let web = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "c:web")
        .unwrap();
    assert_eq!(web["rps"], 18.0);
    // A redirect route leads nowhere.
    assert!(
        !g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == "r:old")
    );
    let ejected = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "e:api/127.0.0.1:2")
        .unwrap();
    assert_eq!(
        (ejected["state"].as_str(), ejected["kind"].as_str()),
        (Some("ejected"), Some("endpoint"))
    );
    let cluster = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "c:api")
        .unwrap();
    assert_eq!(cluster["detail"], "round_robin · 1/2 active");
}

#[test]
fn without_rates_every_figure_is_null() {
    let g = graph_json(&topology(), None);
    assert!(g["window_s"].is_null());
    for e in g["edges"].as_array().unwrap() {
        assert!(e["rps"].is_null() && e["p99_us"].is_null(), "{e}");
    }
}

#[test]
fn the_page_fetches_nothing_but_its_own_json() {
    let page = include_str!("../traffic_map.html");
    // The only URL in it is the SVG namespace, which is never fetched.
    let urls: Vec<&str> = page
        .match_indices("http")
        .map(|(i, _)| &page[i..(i + 30).min(page.len())])
        .collect();
    assert!(
        urls.iter()
            .all(|u| u.starts_with("http://www.w3.org/2000/svg")),
        "{urls:?}"
    );
    for asset in ["src=", "@import", "url(", "<link"] {
        assert!(!page.contains(asset), "the page loads {asset}…");
    }
    assert!(page.contains("fetch(\"/map.json\""));
}

#[test]
fn routes_sharing_a_cluster_each_carry_their_own_requests_into_it() {
    let mut t = topology();
    t.routes.push(RouteNode {
        name: "api-v2".into(),
        listener: "public".into(),
        targets: vec![("api".into(), 1)],
        redirect: None,
    });
    let rates = rates_over_two_seconds(&[("r:api", 20, 2), ("r:api-v2", 60, 0), ("c:api", 80, 2)]);
    let g = graph_json(&t, Some(&rates));
    let api = edge(&g, "r:api", "c:api");
    assert_eq!(
        (api["rps"].as_f64(), api["error_pct"].as_f64()),
        (Some(10.0), Some(10.0))
    );
    assert_eq!(edge(&g, "r:api-v2", "c:api")["rps"], 30.0);
    let cluster = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "c:api")
        .unwrap();
    assert_eq!(cluster["rps"], 40.0, "the node has both");
}
