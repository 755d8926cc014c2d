//! The TCP relay through a real shard on virtual time.

use std::time::Duration;

use super::harness::*;
use crate::net::memory::{self, MemStream};
use crate::runtime;

/// An upstream that reads until the client's FIN, then answers with what
/// it got and closes.
fn echo_after_fin() -> runtime::JoinHandle<()> {
    let mut listener = memory::listen(A).expect("free");
    runtime::spawn(async move {
        while let Ok(conn) = listener.accept().await {
            runtime::spawn(answer_after_fin(conn));
        }
    })
}

async fn answer_after_fin(mut conn: MemStream) {
    let mut got = Vec::new();
    loop {
        match conn.recv().await {
            Ok(chunk) if !chunk.is_empty() => got.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut out = b"got:".to_vec();
    out.extend_from_slice(&got);
    let _ = conn.send_owned(out).await;
}

#[test]
fn a_half_close_is_passed_on_and_the_answer_still_comes_back() {
    World::tcp()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let _up = echo_after_fin();
            let mut client = gw.client().await;
            client.send(b"hello ").await;
            client.send(b"world").await;
            client.shutdown();
            let answer = client.read_to_end().await;
            assert_eq!(answer, b"got:hello world");
            assert!(!client.was_reset(), "a clean close both ways");
            assert_eq!(gw.stats.tcp_sessions.get(), 1);
            gw.until(Duration::from_secs(1), "bytes counted", |g| {
                g.stats.tcp_bytes_up.get() == 11 && g.stats.tcp_bytes_down.get() == 15
            })
            .await;
            // Counted like a request by listener, route and cluster: no
            // status, not failed, the session's bytes.
            gw.until(
                Duration::from_secs(3),
                "the session in the named counts",
                |g| {
                    g.stats.named.get().is_some_and(|n| {
                        [&n.listeners, &n.routes, &n.clusters].iter().all(|m| {
                            m.len() == 1
                                && m.values().all(|c| {
                                    (c.requests, c.failed, c.bytes_in, c.bytes_out, c.responses)
                                        == (1, 0, 11, 15, [0; 6])
                                })
                        })
                    })
                },
            )
            .await;
        });
}

#[test]
fn a_session_without_an_upstream_counts_as_failed() {
    World::tcp()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            // Nothing listens on A.
            let mut client = gw.client().await;
            let _ = client.read_to_end().await;
            gw.until(
                Duration::from_secs(3),
                "a failed session on its route",
                |g| {
                    g.stats.named.get().is_some_and(|n| {
                        n.routes.values().any(|c| c.requests == 1 && c.failed == 1)
                    })
                },
            )
            .await;
        });
}

#[test]
fn a_refused_endpoint_is_retried_on_another() {
    use crate::upstream::retry::RetryOn;
    World::tcp()
        .cluster("c", &[A, B])
        .route_to("c")
        .with_route(|r| {
            r.retry = Some(crate::route::RetryPolicy {
                attempts: 1,
                on: RetryOn::CONNECT_FAILURE,
                per_try_timeout: None,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(10),
                buffer_bytes: 0,
            })
        })
        .run(|gw| async move {
            // Nothing listens on A; B echoes after the FIN.
            let mut listener = memory::listen(B).expect("free");
            let _b = runtime::spawn(async move {
                while let Ok(conn) = listener.accept().await {
                    runtime::spawn(answer_after_fin(conn));
                }
            });
            for _ in 0..2 {
                let mut client = gw.client().await;
                client.send(b"x").await;
                client.shutdown();
                assert_eq!(client.read_to_end().await, b"got:x");
            }
            assert!(gw.stats.retries.get() >= 1);
            assert!(memory::connects(A) >= 1);
        });
}

#[test]
fn no_byte_either_way_within_the_idle_timeout_resets_both() {
    World::tcp()
        .cluster("c", &[A])
        .route_to("c")
        .with_limits(|l| l.idle_timeout = Duration::from_secs(30))
        .run(|gw| async move {
            let _up = echo_after_fin();
            let mut client = gw.client().await;
            client.send(b"x").await;
            assert!(!client.closed_within(Duration::from_secs(29)).await);
            assert!(client.closed_within(Duration::from_secs(2)).await);
            assert!(client.was_reset());
            assert_eq!(gw.stats.idle_timeouts.get(), 1);
        });
}

#[test]
fn a_rule_published_mid_session_cuts_the_caller_off_at_once() {
    use crate::route::authz::{IpNet, Policy, Rule};
    World::tcp()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let mut listener = memory::listen(A).expect("free");
            let _echo = runtime::spawn(async move {
                while let Ok(mut conn) = listener.accept().await {
                    runtime::spawn(async move {
                        while let Ok(chunk) = conn.recv().await {
                            if chunk.is_empty() || conn.send_owned(chunk).await.0.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            let mut client = gw.client().await;
            client.send(b"ping").await;
            runtime::sleep(Duration::from_millis(1)).await;
            gw.publish(|s| {
                s.listeners[0].authz = Policy {
                    deny: vec![Rule {
                        name: "lockdown".into(),
                        sources: vec![IpNet::parse("0.0.0.0/0").unwrap()],
                        ..Rule::default()
                    }],
                    ..Policy::default()
                }
            });
            // Cut within the shard's housekeeping tick, long before the idle
            // timeout (60 s).
            let t0 = runtime::now();
            assert_eq!(client.read_to_end().await, b"ping");
            assert!(runtime::now() - t0 <= Duration::from_millis(200));
            assert!(client.was_reset());
            assert_eq!(gw.stats.connections_rechecked_closed.get(), 1);
            assert_eq!(gw.stats.forbidden.get(), 1);
        });
}

#[test]
fn a_sampled_session_is_a_session_span_with_a_span_per_connect() {
    use crate::telemetry::trace::{Propagation, TraceSpec};
    let spec = TraceSpec {
        sample_percent: 100.0,
        propagation: vec![Propagation::W3c],
        force_header: None,
        records: true,
    };
    // The first endpoint refuses (nothing listens on B): a second connect.
    let (world, spans) = World::tcp()
        .cluster("c", &[B, A])
        .route_to("c")
        .with_route(|r| {
            r.retry = Some(crate::route::RetryPolicy {
                attempts: 1,
                on: crate::upstream::retry::RetryOn::CONNECT_FAILURE,
                per_try_timeout: None,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(10),
                buffer_bytes: 0,
            })
        })
        .tracing(spec, 4);
    world.run(|gw| async move {
        let _up = echo_after_fin();
        let mut client = gw.client().await;
        client.send(b"ping").await;
        client.shutdown();
        assert_eq!(client.read_to_end().await, b"got:ping");
        let got = std::cell::RefCell::new(None);
        gw.until(Duration::from_secs(1), "the session's spans", |_| {
            let mut got = got.borrow_mut();
            if got.is_none() {
                *got = spans.try_recv().ok();
            }
            got.is_some()
        })
        .await;
        let t = got.into_inner().expect("a sampled session is exported");
        assert_eq!(t.server.protocol, "TCP");
        assert_eq!(t.server.parent, None, "a session starts its own trace");
        assert_eq!((t.server.status, t.server.error), (None, None));
        assert_eq!(t.server.cluster.as_deref(), Some("c"));
        let tries: Vec<_> = t
            .tries
            .iter()
            .map(|s| (s.endpoint, s.error.is_some()))
            .collect();
        assert_eq!(tries, [(B, true), (A, false)], "a span per connect try");
        assert!(t.tries.iter().all(|s| s.start_unix_ns <= s.end_unix_ns));
    });
}
