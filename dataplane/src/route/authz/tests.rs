use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

struct Map(&'static [(&'static str, &'static str)]);

impl Headers for Map {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

fn caller(id: Option<&str>) -> Caller<'_> {
    Caller {
        spiffe_id: id,
        authenticated: id.is_some(),
        source: "10.1.2.3".parse().unwrap(),
    }
}

fn rule(name: &str) -> Rule {
    Rule {
        name: Arc::from(name),
        ..Rule::default()
    }
}

/// A verdict by rule name, for comparing.
fn named(v: Verdict<'_>) -> (bool, Option<String>) {
    match v {
        Verdict::Allow(rule) => (true, rule.map(|r| r.to_string())),
        Verdict::Deny(rule) => (false, Some(rule.to_string())),
    }
}

fn allowed_by(rule: &str) -> (bool, Option<String>) {
    (true, Some(rule.into()))
}

fn denied_by(rule: &str) -> (bool, Option<String>) {
    (false, Some(rule.into()))
}

fn ids(patterns: &[&str]) -> Vec<IdPattern> {
    patterns
        .iter()
        .map(|p| IdPattern::parse(p).unwrap())
        .collect()
}

#[test]
fn id_patterns_match_exact_one_segment_and_the_rest() {
    let p = IdPattern::parse("spiffe://mesh.local/ns/shop/sa/*").unwrap();
    assert!(p.matches("spiffe://mesh.local/ns/shop/sa/web"));
    assert!(!p.matches("spiffe://mesh.local/ns/shop/sa"));
    assert!(!p.matches("spiffe://mesh.local/ns/shop/sa/web/extra"));
    assert!(!p.matches("spiffe://other.local/ns/shop/sa/web"));
    assert!(!p.matches("spiffe://mesh.local/ns/shop/sa/"));
    let rest = IdPattern::parse("spiffe://mesh.local/ns/shop/**").unwrap();
    assert!(rest.matches("spiffe://mesh.local/ns/shop/sa/web"));
    assert!(rest.matches("spiffe://mesh.local/ns/shop/x"));
    assert!(!rest.matches("spiffe://mesh.local/ns/shop"));
    assert!(!rest.matches("spiffe://mesh.local/ns/shopping/x"));
    let exact = IdPattern::parse("spiffe://mesh.local/ns/a/sa/b").unwrap();
    assert!(exact.matches("spiffe://mesh.local/ns/a/sa/b"));
    assert!(!exact.matches("spiffe://mesh.local/ns/a/sa/b/c"));
    assert!(!exact.matches("http://mesh.local/ns/a/sa/b"));
    let domain = IdPattern::parse("spiffe://mesh.local/**").unwrap();
    assert!(domain.matches("spiffe://mesh.local/anything/at/all"));
    assert!(!domain.matches("spiffe://mesh.local"));
}

#[test]
fn bad_patterns_say_why() {
    for (p, why) in [
        ("mesh.local/ns/a", "spiffe://"),
        ("spiffe://Mesh.local/a", "lowercase"),
        ("spiffe:///a", "lowercase"),
        ("spiffe://mesh.local/a//b", "empty"),
        ("spiffe://mesh.local/", "trailing"),
        ("spiffe://mesh.local/ns/a/", "trailing"),
        ("spiffe://mesh.local/**/a", "last"),
        ("spiffe://mesh.local/sa-*", "whole segment"),
        ("spiffe://mesh.local/a?b", "character"),
    ] {
        let e = IdPattern::parse(p).unwrap_err();
        assert!(e.contains(why), "{p}: {e}");
    }
}

#[test]
fn address_ranges() {
    let net = IpNet::parse("10.0.0.0/8").unwrap();
    assert!(net.contains("10.255.1.2".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(
        net.contains("::ffff:10.1.1.1".parse().unwrap()),
        "v4-mapped"
    );
    let v6 = IpNet::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    assert!(
        IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap())
    );
    assert!(
        IpNet::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap())
    );
    assert!(
        IpNet::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("host bits")
    );
    assert!(IpNet::parse("10.0.0.0/33").unwrap_err().contains("0..=32"));
    assert!(IpNet::parse("ten/8").unwrap_err().contains("not an IP"));
}

#[test]
fn deny_wins_and_an_allow_list_refuses_everything_else() {
    let mut allow = rule("shop");
    allow.spiffe_ids = ids(&["spiffe://mesh.local/ns/shop/sa/*"]);
    allow.methods = vec!["GET".into(), "POST".into()];
    let mut deny = rule("legacy");
    deny.spiffe_ids = ids(&["spiffe://mesh.local/ns/shop/sa/legacy"]);
    let policy = Policy {
        allow: vec![allow],
        deny: vec![deny],
        default_name: Arc::from("route r: no allow rule"),
    };
    let get = Asked {
        method: "GET",
        path: "/orders/1",
        headers: &Map(&[]),
    };
    let web = caller(Some("spiffe://mesh.local/ns/shop/sa/web"));
    assert_eq!(named(policy.evaluate(&web, Some(&get))), allowed_by("shop"));
    let legacy = caller(Some("spiffe://mesh.local/ns/shop/sa/legacy"));
    assert_eq!(
        named(policy.evaluate(&legacy, Some(&get))),
        denied_by("legacy")
    );
    let delete = Asked {
        method: "DELETE",
        ..get
    };
    assert_eq!(
        named(policy.evaluate(&web, Some(&delete))),
        denied_by("route r: no allow rule")
    );
    assert!(matches!(
        policy.evaluate(&caller(None), Some(&get)),
        Verdict::Deny(_)
    ));
    assert_eq!(
        Policy::default().evaluate(&caller(None), None),
        Verdict::Allow(None)
    );
}

#[test]
fn every_condition_of_a_rule_must_hold() {
    let mut r = rule("r");
    r.trust_domains = vec!["mesh.local".into()];
    r.sources = vec![IpNet::parse("10.0.0.0/8").unwrap()];
    r.paths = vec![PathMatch::Prefix("/admin/".into())];
    r.headers = vec![
        HeaderCondition {
            name: "x-env".into(),
            value: Some("prod".into()),
        },
        HeaderCondition {
            name: "x-debug".into(),
            value: None,
        },
    ];
    r.authenticated = Some(true);
    let c = caller(Some("spiffe://mesh.local/ns/x/sa/y"));
    let ok = Asked {
        method: "GET",
        path: "/admin/users",
        headers: &Map(&[("X-Env", "prod"), ("x-debug", "1")]),
    };
    assert!(r.matches(&c, Some(&ok)));
    let wrong_value = Asked {
        headers: &Map(&[("x-env", "dev"), ("x-debug", "1")]),
        ..ok
    };
    assert!(!r.matches(&c, Some(&wrong_value)));
    let missing = Asked {
        headers: &Map(&[("x-env", "prod")]),
        ..ok
    };
    assert!(!r.matches(&c, Some(&missing)));
    let other_path = Asked {
        path: "/public",
        ..ok
    };
    assert!(!r.matches(&c, Some(&other_path)));
    let other_domain = caller(Some("spiffe://evil.local/ns/x/sa/y"));
    assert!(!r.matches(&other_domain, Some(&ok)));
    let outside = Caller {
        source: "192.0.2.1".parse::<IpAddr>().unwrap(),
        ..c
    };
    assert!(!r.matches(&outside, Some(&ok)));
    // A request condition never holds for a connection (TCP).
    assert!(!r.matches(&c, None));
    let mut anonymous = rule("anonymous");
    anonymous.authenticated = Some(false);
    assert!(anonymous.matches(&caller(None), None));
    assert!(!anonymous.matches(&c, None));
}

#[test]
fn the_listener_decides_first_then_the_route() {
    let mut deny_all = rule("closed");
    deny_all.sources = vec![IpNet::parse("0.0.0.0/0").unwrap()];
    let closed = Policy {
        deny: vec![deny_all],
        ..Policy::default()
    };
    let open = Policy::default();
    let c = caller(None);
    let (v, stage) = authorize(&closed, Some(&open), &c, None);
    assert_eq!((named(v), stage), (denied_by("closed"), Stage::Listener));
    let (v, stage) = authorize(&open, Some(&closed), &c, None);
    assert_eq!((named(v), stage), (denied_by("closed"), Stage::Route));
    let (v, stage) = authorize(&open, None, &c, None);
    assert_eq!((named(v), stage), ((true, None), Stage::Listener));
}

proptest! {
    /// Matching never panics, and a pattern built from an ID's own
    /// segments (or `*` in place of any of them) matches it.
    #[test]
    fn patterns_match_the_ids_they_describe(
        segs in prop::collection::vec("[a-z0-9._-]{1,8}", 1..6),
        wild in prop::collection::vec(any::<bool>(), 6),
        garbage in ".{0,40}",
    ) {
        let id = format!("spiffe://mesh.local/{}", segs.join("/"));
        let pattern: Vec<&str> = segs
            .iter()
            .zip(&wild)
            .map(|(s, w)| if *w { "*" } else { s.as_str() })
            .collect();
        let p = IdPattern::parse(&format!("spiffe://mesh.local/{}", pattern.join("/"))).unwrap();
        prop_assert!(p.matches(&id));
        let _ = p.matches(&garbage);
        let _ = IdPattern::parse(&garbage);
        let _ = IpNet::parse(&garbage);
        let longer = format!("{id}/more");
        prop_assert!(!p.matches(&longer));
    }
}
