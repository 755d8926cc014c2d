//! Same seed, same run: a scenario full of random draws (least-request
//! picks, a weighted split, fault injection, retry jitter) gives the same
//! transcript every time.

use std::time::Duration;

use super::harness::*;
use crate::route::{ClusterId, LbPolicy};
use crate::route::{Fault, RetryPolicy, RouteTarget, SplitTarget};
use crate::upstream::retry::RetryOn;

/// Which upstream served each path, each response's status, and the
/// counters at the end.
type Transcript = (
    Vec<(std::net::SocketAddr, String)>,
    Vec<u16>,
    Vec<(&'static str, u64)>,
);

fn transcript(seed: u64) -> Transcript {
    World::http()
        .cluster("one", &[A, B])
        .with_cluster(|c| c.lb = LbPolicy::LeastRequest)
        .cluster("two", &[C])
        .route_to("one")
        .with_route(|r| {
            r.target = RouteTarget::Split(vec![
                SplitTarget {
                    cluster: ClusterId(0),
                    weight: 70,
                },
                SplitTarget {
                    cluster: ClusterId(1),
                    weight: 30,
                },
            ]);
            r.fault = Some(Fault {
                abort_percent: 10,
                abort_status: 418,
                delay_percent: 20,
                delay: Duration::from_millis(3),
            });
            r.retry = Some(RetryPolicy {
                attempts: 2,
                on: RetryOn::FIVE_XX,
                per_try_timeout: None,
                backoff_base: Duration::from_millis(5),
                backoff_max: Duration::from_millis(50),
                buffer_bytes: 1024,
            });
        })
        .seed(seed)
        .run(|gw| async move {
            let ups = [A, B, C].map(|addr| {
                Upstream::start(addr, move |s| {
                    // Every third request on A fails, and B is slow.
                    if addr == A && s.nth % 3 == 2 {
                        Reply::status(503, "a")
                    } else if addr == B {
                        Reply::ok("b").after(Duration::from_millis(7))
                    } else {
                        Reply::ok("ok")
                    }
                })
            });
            let mut statuses = Vec::new();
            let mut clients = Vec::new();
            for _ in 0..4 {
                clients.push(gw.client().await);
            }
            for round in 0..25 {
                for c in clients.iter_mut() {
                    c.send(&get(&format!("/{round}"))).await;
                }
                for c in clients.iter_mut() {
                    statuses.push(c.response().await.status);
                }
            }
            let seen: Vec<_> = ups
                .iter()
                .flat_map(|u| u.seen())
                .map(|s| (s.upstream, s.path))
                .collect();
            (seen, statuses, gw.stats.values())
        })
}

#[test]
fn the_same_seed_replays_the_same_run_fifty_times() {
    let first = transcript(42);
    assert!(first.1.contains(&418), "faults were drawn");
    assert!(first.0.iter().any(|(a, _)| *a == C), "the split was drawn");
    for run in 1..50 {
        assert_eq!(transcript(42), first, "run {run} differs");
    }
}
