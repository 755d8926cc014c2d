use super::*;

fn route(name: &str, matcher: RouteMatch, cluster: u32) -> Route {
    Route::to_cluster(name, matcher, ClusterId(cluster))
}

fn listener(routes: Vec<Route>) -> Listener {
    Listener {
        name: "public".to_owned(),
        address: "127.0.0.1:8443".parse().unwrap(),
        protocol: Protocol::Http,
        tls: None,
        routes,
        limits: HttpLimits::default(),
        authz: Default::default(),
        access_log: None,
    }
}

fn host(h: HostMatch) -> RouteMatch {
    RouteMatch {
        host: Some(h),
        ..RouteMatch::default()
    }
}

fn exact(h: &str) -> RouteMatch {
    host(HostMatch::Exact(h.to_owned()))
}

fn suffix(s: &str) -> RouteMatch {
    host(HostMatch::Suffix(s.to_owned()))
}

fn path(p: PathMatch) -> RouteMatch {
    RouteMatch {
        path: Some(p),
        ..RouteMatch::default()
    }
}

fn get(m: &RouteMatch, h: Option<&str>, p: &str) -> bool {
    m.matches(h, p, "GET")
}

#[test]
fn host_exact() {
    let m = exact("api.example.com");
    assert!(get(&m, Some("api.example.com"), "/"));
    assert!(!get(&m, Some("api.example.org"), "/"));
    assert!(!get(&m, Some("x.api.example.com"), "/"));
    assert!(!get(&m, Some("pi.example.com"), "/"));
    assert!(!get(&m, None, "/"), "a host condition needs a host");
    assert!(!get(&m, Some(""), "/"));
}

#[test]
fn host_ignores_port_and_case_and_trailing_dot() {
    let m = exact("api.example.com");
    assert!(get(&m, Some("api.example.com:8443"), "/"));
    assert!(get(&m, Some("API.Example.COM"), "/"));
    assert!(get(&m, Some("Api.Example.Com:443"), "/"));
    assert!(get(&m, Some("api.example.com."), "/"));
    assert!(get(&m, Some("api.example.com.:80"), "/"));
    assert!(get(&m, Some("api.example.com:"), "/"), "empty port");
}

#[test]
fn host_ipv6_literal() {
    let m = exact("[::1]");
    assert!(get(&m, Some("[::1]"), "/"));
    assert!(get(&m, Some("[::1]:8443"), "/"));
    assert!(!get(&m, Some("[::2]:8443"), "/"));
    assert!(
        !get(&m, Some("[::1"), "/"),
        "unterminated literal never matches"
    );

    let m = exact("[2001:db8::a]");
    assert!(get(&m, Some("[2001:DB8::A]:443"), "/"));
}

#[test]
fn host_suffix() {
    let m = suffix(".example.com");
    assert!(get(&m, Some("api.example.com"), "/"));
    assert!(get(&m, Some("a.b.example.com"), "/"));
    assert!(get(&m, Some("API.EXAMPLE.COM:8443"), "/"));
    assert!(!get(&m, Some("example.com"), "/"), "wildcard needs a label");
    assert!(!get(&m, Some(".example.com"), "/"), "empty label");
    assert!(!get(&m, Some("badexample.com"), "/"));
    assert!(!get(&m, Some("example.com.evil"), "/"));
    assert!(!get(&m, Some("api.example.org"), "/"));
    assert!(!get(&m, None, "/"));
}

#[test]
fn host_suffix_non_ascii_does_not_panic() {
    let m = suffix(".example.com");
    // A multi-byte character straddling the suffix boundary must not panic.
    assert!(!get(&m, Some("é.example.co"), "/"));
    assert!(!get(&m, Some("ééééééééééééé"), "/"));
    assert!(get(&m, Some("é.example.com"), "/"));
    let m = exact("api.example.com");
    assert!(!get(&m, Some("ápi.example.com"), "/"));
}

#[test]
fn path_prefix_and_exact() {
    let m = path(PathMatch::Prefix("/api".to_owned()));
    assert!(get(&m, None, "/api"));
    assert!(get(&m, None, "/api/v1"));
    assert!(get(&m, None, "/apix"), "prefix is a byte prefix");
    assert!(!get(&m, None, "/ap"));
    assert!(!get(&m, None, "/API"), "paths are case-sensitive");
    assert!(get(&m, None, "/api?x=1"));

    let m = path(PathMatch::Exact("/healthz".to_owned()));
    assert!(get(&m, None, "/healthz"));
    assert!(get(&m, None, "/healthz?verbose=1"), "query is ignored");
    assert!(!get(&m, None, "/healthz/"));
    assert!(!get(&m, None, "/health"));
    assert!(!get(&m, None, "?/healthz"));

    let m = path(PathMatch::Prefix("/".to_owned()));
    assert!(get(&m, None, "/"));
    assert!(get(&m, None, "/anything"));
    assert!(!get(&m, None, "*"));
}

#[test]
fn methods() {
    let m = RouteMatch {
        methods: vec!["GET".to_owned(), "POST".to_owned()],
        ..RouteMatch::default()
    };
    assert!(m.matches(None, "/", "GET"));
    assert!(m.matches(None, "/", "POST"));
    assert!(!m.matches(None, "/", "PUT"));
    assert!(!m.matches(None, "/", "get"), "methods are case-sensitive");

    let any = RouteMatch::default();
    assert!(any.matches(None, "/", "PATCH"));
    assert!(any.matches(Some("whatever"), "/x", "BREW"));
}

#[test]
fn all_conditions_must_hold() {
    let m = RouteMatch {
        host: Some(HostMatch::Exact("a.example".to_owned())),
        path: Some(PathMatch::Prefix("/v1/".to_owned())),
        methods: vec!["GET".to_owned()],
    };
    assert!(m.matches(Some("a.example"), "/v1/x", "GET"));
    assert!(!m.matches(Some("b.example"), "/v1/x", "GET"));
    assert!(!m.matches(Some("a.example"), "/v2/x", "GET"));
    assert!(!m.matches(Some("a.example"), "/v1/x", "POST"));
}

#[test]
fn first_match_wins() {
    let l = listener(vec![
        route("exact", path(PathMatch::Exact("/a".to_owned())), 0),
        route("prefix", path(PathMatch::Prefix("/a".to_owned())), 1),
        route("host", exact("x.example"), 2),
        route("catch-all", RouteMatch::default(), 3),
    ]);
    let name = |h, p| l.find_route(h, p, "GET").map(|r| r.name.as_str());
    assert_eq!(name(None, "/a"), Some("exact"));
    assert_eq!(name(Some("x.example"), "/a"), Some("exact"));
    assert_eq!(name(None, "/ab"), Some("prefix"));
    assert_eq!(name(Some("x.example"), "/b"), Some("host"));
    assert_eq!(name(None, "/b"), Some("catch-all"));
    let target = &l.find_route(None, "/b", "GET").unwrap().target;
    assert_eq!(target.clusters().collect::<Vec<_>>(), [ClusterId(3)]);
}

#[test]
fn no_match() {
    let l = listener(vec![
        route("a", exact("a.example"), 0),
        route("b", path(PathMatch::Prefix("/b".to_owned())), 0),
    ]);
    assert!(l.find_route(Some("c.example"), "/c", "GET").is_none());
    assert!(l.find_route(None, "/", "GET").is_none());
    assert!(listener(vec![]).find_route(None, "/", "GET").is_none());
}

#[test]
fn normalize_host_forms() {
    assert_eq!(normalize_host("a.example:80"), "a.example");
    assert_eq!(normalize_host("a.example"), "a.example");
    assert_eq!(normalize_host("a.example."), "a.example");
    assert_eq!(normalize_host("[::1]:80"), "[::1]");
    assert_eq!(normalize_host("[::1]"), "[::1]");
    assert_eq!(normalize_host("[::1"), "[::1");
    assert_eq!(normalize_host(""), "");
    assert_eq!(normalize_host(":"), "");
}

#[test]
fn snapshot_lookups() {
    let snap = Snapshot {
        generation: 7,
        listeners: vec![listener(vec![])],
        clusters: vec![Cluster::new(
            "backend",
            vec!["127.0.0.1:9000".parse().unwrap()],
        )],
        tracing: None,
    };
    assert_eq!(snap.cluster(ClusterId(0)).name, "backend");
    assert_eq!(snap.cluster(ClusterId(0)).rotation, [0]);
    assert_eq!(snap.listener("public").unwrap().name, "public");
    assert!(snap.listener("nope").is_none());
    // Every type prints.
    assert!(format!("{snap:?}").contains("backend"));
}

proptest::proptest! {
    #[test]
    fn matching_never_panics(h in proptest::option::of(".{0,40}"), p in ".{0,40}", m in "[A-Za-z]{0,8}") {
        let l = listener(vec![
            route("s", suffix(".example.com"), 0),
            route("e", exact("[::1]"), 0),
            route("p", path(PathMatch::Prefix("/x".to_owned())), 0),
        ]);
        let _ = l.find_route(h.as_deref(), &p, &m);
    }
}

#[test]
fn rotation_skips_drained_and_unhealthy_and_panics_when_none_is_healthy() {
    let addrs: Vec<SocketAddr> = (1..=3)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], 9000 + p)))
        .collect();
    let mut c = Cluster::new("c", addrs);
    assert_eq!(c.rotation, [0, 1, 2]);
    c.drained[1] = true;
    c.healthy[2] = false;
    c.update_rotation();
    assert_eq!(c.rotation, [0]);
    // None healthy: panic mode uses every endpoint not drained.
    c.healthy[0] = false;
    c.update_rotation();
    assert_eq!(c.rotation, [0, 2]);
    // Fail mode: nothing.
    c.panic_when_all_unhealthy = false;
    c.update_rotation();
    assert!(c.rotation.is_empty());
}
