//! Micro-benchmark: what reading the route table costs a request.
//!
//! `cargo run --release -p meshgate-dataplane --example snapshot_read`
//!
//! Measures, per operation on one thread (the shard's view):
//! - `refresh`: the per-request check that the connection's snapshot is
//!   still the published one (a cached pointer comparison);
//! - `with_snapshot + find_route`: reading the current snapshot and matching
//!   a request among 20 routes (what a request does end to end);
//! - for comparison, `ArcSwap::load_full` (an atomic reference-count
//!   increment and decrement on a shared cache line) and `find_route`
//!   alone;
//! - `refresh` while another thread publishes a new snapshot every
//!   millisecond (1000 swaps/s, far above any real apply rate).
//!
//! Timing, so the numbers wander on a shared machine: compare the rows of
//! one run with each other, not with another run.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use dataplane::proxy::ShardContext;
use dataplane::route::{
    Cluster, ClusterId, Listener, PathMatch, Protocol, Route, RouteMatch, Snapshot,
};
use dataplane::telemetry::ShardStats;

const ITERATIONS: u32 = 20_000_000;

fn snapshot(generation: u64) -> Snapshot {
    let routes = (0..20)
        .map(|i| {
            let matcher = RouteMatch {
                path: Some(PathMatch::Prefix(format!("/service-{i}/"))),
                ..RouteMatch::default()
            };
            Route::to_cluster(&format!("r{i}"), matcher, ClusterId(0))
        })
        .collect();
    let endpoints: Vec<SocketAddr> = vec!["127.0.0.1:9000".parse().unwrap()];
    Snapshot {
        generation,
        listeners: vec![Listener {
            name: "public".into(),
            address: "127.0.0.1:8443".parse().unwrap(),
            protocol: Protocol::Http,
            tls: None,
            routes,
            limits: Default::default(),
            authz: Default::default(),
            access_log: None,
        }],
        clusters: vec![Cluster::new("backend", endpoints)],
        tracing: None,
    }
}

/// Nanoseconds per call of `f`, best of 3 runs.
fn measure(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let published = Arc::new(ArcSwap::from_pointee(snapshot(1)));
    let ctx = ShardContext::new(
        0,
        1,
        published.clone(),
        Arc::new(ArcSwapOption::empty()),
        Arc::new(ShardStats::default()),
        dataplane::net::Stack::Kernel,
        1,
    );
    let mut held = ctx.snapshot();
    // The last route matches: the worst case of a 20-route table.
    let path = "/service-19/items?id=7";

    let rows = [
        (
            "refresh (unchanged snapshot)",
            measure(|| ctx.refresh(black_box(&mut held))),
        ),
        (
            "with_snapshot + find_route (20 routes, last matches)",
            measure(|| {
                ctx.with_snapshot(|s| {
                    black_box(s.listeners[0].find_route(Some("api"), black_box(path), "GET"));
                })
            }),
        ),
        (
            "find_route alone (same request)",
            measure(|| {
                black_box(held.listeners[0].find_route(Some("api"), black_box(path), "GET"));
            }),
        ),
        (
            "ArcSwap::load_full (refcount round trip), for comparison",
            measure(|| drop(black_box(published.load_full()))),
        ),
    ];

    // A writer publishing 1000 snapshots a second.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (published, stop) = (published.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut generation = 2;
            while !stop.load(Ordering::Relaxed) {
                published.store(Arc::new(snapshot(generation)));
                generation += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            generation - 2
        })
    };
    let under_swaps = measure(|| ctx.refresh(black_box(&mut held)));
    stop.store(true, Ordering::Relaxed);
    let swaps = writer.join().unwrap();

    println!("| operation | ns per request |");
    println!("|---|---|");
    for (name, ns) in rows {
        println!("| {name} | {ns:.2} |");
    }
    println!(
        "| refresh while another thread publishes every 1 ms ({swaps} swaps) | {under_swaps:.2} |"
    );
}
