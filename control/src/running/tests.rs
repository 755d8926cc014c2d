//! The running gateway without shards: applies, swaps, snapshot lifetimes.

use super::*;

const BASE: &str = r#"
[[listeners]]
name = "p"
address = "127.0.0.1:18080"
[[routes]]
name = "all"
listener = "p"
cluster = "a"
[[clusters]]
name = "a"
endpoints = ["127.0.0.1:9001"]
[[clusters]]
name = "b"
endpoints = ["127.0.0.1:9002"]
"#;

fn gateway() -> Gateway {
    let path = PathBuf::from("/nonexistent/meshgate.toml");
    let config = parse(BASE, &path).unwrap();
    let snapshot = config.compile(1).unwrap();
    let bound = vec![BoundListener {
        name: "p".into(),
        address: "127.0.0.1:18080".parse().unwrap(),
        tls: false,
    }];
    Gateway::new(
        path,
        config,
        BASE.to_owned(),
        Arc::new(ArcSwap::from_pointee(snapshot)),
        vec![Arc::default()],
        vec![Arc::default()],
        vec![crossbeam_channel::unbounded().0],
        bound,
        Arc::default(),
        Arc::default(),
    )
}

#[test]
fn apply_publishes_a_new_generation_and_reports_the_diff() {
    let g = gateway();
    let path = g.config_path.clone();
    let text = BASE
        .replace("cluster = \"a\"", "cluster = \"b\"")
        .replace("127.0.0.1:9001", "127.0.0.1:9003");
    let applied = g.apply(&text, &path).unwrap();
    assert_eq!(applied.generation, 2);
    assert_eq!(g.snapshots.load().generation, 2);
    assert_eq!(applied.routes.changed, vec!["all"]);
    assert_eq!(applied.clusters.changed, vec!["a"]);
    assert!(applied.clusters.added.is_empty() && applied.clusters.removed.is_empty());
    let text = text
        .replace(
            "[[clusters]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9002\"]\n",
            "",
        )
        .replace("cluster = \"b\"", "cluster = \"a\"");
    let applied = g.apply(&text, &path).unwrap();
    assert_eq!(applied.clusters.removed, vec!["b"]);
}

#[test]
fn a_bad_config_changes_nothing_and_names_the_field() {
    let g = gateway();
    let path = g.config_path.clone();
    let e = g
        .apply(&BASE.replace("cluster = \"a\"", "cluster = \"zz\""), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("routes[0].cluster"), "{e}");
    // A listener moved to a busy address: refused before anything changes.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let e = g
        .apply(&BASE.replace("127.0.0.1:18080", &busy_addr), &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("listener \"p\"") && e.contains(&busy_addr),
        "{e}"
    );
    assert_eq!(g.generation(), 1);
    assert_eq!(g.snapshots.load().generation, 1);
    assert_eq!(g.config_text(), BASE);
}

#[test]
fn old_snapshots_are_freed_across_10000_swaps() {
    let g = gateway();
    let path = g.config_path.clone();
    let first = Arc::downgrade(&g.snapshots.load_full());
    let mut held = None;
    for i in 0..10_000 {
        g.apply(BASE, &path).unwrap();
        if i == 5_000 {
            // A reader (like a shard's in-flight request) keeps one alive.
            held = Some(g.snapshots.load_full());
        }
    }
    assert_eq!(g.generation(), 10_001);
    assert!(first.upgrade().is_none(), "the first snapshot leaked");
    let held = held.unwrap();
    assert_eq!(held.generation, 5_002, "a held snapshot stays valid");
    let weak = Arc::downgrade(&held);
    drop(held);
    assert!(weak.upgrade().is_none(), "freed once its last user is gone");
}
