//! The HTTP/1.1 path through a real shard on virtual time: keep-alive,
//! pipelining, `100-continue`, stale pooled connections, retries and their
//! budget, every timeout, outlier ejection, drain.

use std::time::Duration;

use super::harness::*;
use crate::net::memory::{self, ConnectFault};
use crate::route::RetryPolicy;
use crate::upstream::outlier::OutlierSettings;
use crate::upstream::retry::{RetryBudget, RetryOn};

fn retry(attempts: u32, on: RetryOn, per_try: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        attempts,
        on,
        per_try_timeout: per_try,
        backoff_base: Duration::from_millis(25),
        backoff_max: Duration::from_millis(250),
        buffer_bytes: 64 * 1024,
    }
}

#[test]
fn keep_alive_reuses_both_connections() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let up = Upstream::start(A, |_| Reply::ok("hello"));
            let mut client = gw.client().await;
            for _ in 0..3 {
                client.send(&get("/")).await;
                let r = client.response().await;
                assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
                assert_eq!(r.header("connection"), None, "kept alive");
            }
            assert_eq!(up.connections(), 1, "one pooled upstream connection");
            assert_eq!(gw.stats.upstream_reused.get(), 2);
            assert_eq!(gw.stats.requests.get(), 3);
            let seen = up.seen();
            assert!(
                seen.iter()
                    .enumerate()
                    .all(|(i, s)| s.conn == 0 && s.nth == i)
            );
            assert!(seen[0].header("x-request-id").is_some());
            assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
        });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let _up = Upstream::start(A, |s| Reply::ok(&s.path));
            let mut client = gw.client().await;
            let mut both = get("/one");
            both.extend_from_slice(&get("/two"));
            both.extend_from_slice(
                b"GET /three HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
            );
            client.send(&both).await;
            for path in ["/one", "/two", "/three"] {
                let r = client.response().await;
                assert_eq!(r.body, path.as_bytes());
            }
            assert!(client.closed_within(Duration::from_secs(1)).await);
        });
}

#[test]
fn expect_100_continue_is_answered_once_the_upstream_is_there() {
    World::http().cluster("c", &[A]).route_to("c").run(|gw| async move {
        let up = Upstream::start(A, |s| Reply::ok(&format!("{} bytes", s.body.len())));
        let mut client = gw.client().await;
        client
            .send(b"POST /up HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
            .await;
        let interim = client.response().await;
        assert_eq!(interim.status, 100);
        client.send(b"hello").await;
        let r = client.response().await;
        assert_eq!((r.status, &r.body[..]), (200, &b"5 bytes"[..]));
        assert_eq!(up.seen()[0].body, b"hello");
    });
}

#[test]
fn expect_100_continue_with_a_buffered_retry_body() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_route(|r| r.retry = Some(retry(1, RetryOn::FIVE_XX, None)))
        .run(|gw| async move {
            let up = Upstream::start(A, |s| {
                if s.nth == 0 && s.conn == 0 {
                    Reply::status(503, "busy")
                } else {
                    Reply::ok(&String::from_utf8_lossy(&s.body))
                }
            });
            let mut client = gw.client().await;
            client
                .send(b"PUT /x HTTP/1.1\r\nhost: svc\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
                .await;
            assert_eq!(client.response().await.status, 100);
            client.send(b"data").await;
            let r = client.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"data"[..]));
            assert_eq!(gw.stats.retries.get(), 1);
            assert!(up.seen().iter().all(|s| s.body == b"data"), "sent whole twice");
        });
}

/// A chunked body (no length: what an HTTP/2 caller or gRPC sends) is
/// streamed to the first try and, kept whole on the way, sent again to the
/// retry.
#[test]
fn a_streamed_chunked_body_within_the_buffer_is_replayed_to_a_retry() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_route(|r| r.retry = Some(retry(1, RetryOn::FIVE_XX, None)))
        .run(|gw| async move {
            let up = Upstream::start(A, |s| {
                if s.nth == 0 && s.conn == 0 {
                    Reply::status(503, "busy")
                } else {
                    Reply::ok("done")
                }
            });
            let mut client = gw.client().await;
            client
                .send(b"POST /x HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            // The body comes in pieces after the head: it is streamed.
            client.send(b"4\r\ndata\r\n").await;
            client.send(b"0\r\n\r\n").await;
            let r = client.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"done"[..]));
            assert_eq!(gw.stats.retries.get(), 1);
            let seen = up.seen();
            assert_eq!(seen.len(), 2);
            assert!(
                seen.iter().all(|s| s.body == b"4\r\ndata\r\n0\r\n\r\n"),
                "sent whole twice"
            );
        });
}

/// A streamed body larger than `retry.buffer_bytes` is sent once: its
/// failure is the answer.
#[test]
fn a_streamed_body_over_the_buffer_is_not_replayed() {
    let mut policy = retry(1, RetryOn::FIVE_XX, None);
    policy.buffer_bytes = 8;
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_route(move |r| r.retry = Some(policy))
        .run(|gw| async move {
            let up = Upstream::start(A, |_| Reply::status(503, "busy"));
            let mut client = gw.client().await;
            client
                .send(b"POST /x HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            client.send(b"10\r\n0123456789abcdef\r\n").await;
            client.send(b"0\r\n\r\n").await;
            let r = client.response().await;
            assert_eq!(r.status, 503);
            assert_eq!(gw.stats.retries.get(), 0);
            assert_eq!(up.seen().len(), 1);
        });
}

#[test]
fn a_stale_pooled_connection_is_resent_once_on_a_fresh_one() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            // Each connection answers one request, then closes on the next
            // without a word (as an upstream whose idle timeout just fired).
            let up = Upstream::start(A, |s| {
                if s.nth == 0 {
                    Reply::ok("fresh")
                } else {
                    Reply::Close
                }
            });
            let mut client = gw.client().await;
            client.send(&get("/a")).await;
            assert_eq!(client.response().await.status, 200);
            client.send(&get("/b")).await;
            let r = client.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"fresh"[..]));
            assert_eq!(up.connections(), 2);
            assert_eq!(gw.stats.retries.get(), 0, "a resend is not a retry");
            assert_eq!(gw.stats.upstream_reused.get(), 1);
            // A POST is not idempotent: never sent twice, the client gets the
            // 502 (the connection from the resend was pooled and dies the same
            // way).
            client
                .send(b"POST /c HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n")
                .await;
            let r = client.response().await;
            assert_eq!(r.status, 502);
            assert_eq!(r.header("x-meshgate-error"), Some("upstream_closed"));
            assert_eq!(up.connections(), 2, "no new connection for the POST");
        });
}

#[test]
fn per_try_timeout_moves_the_request_to_another_endpoint() {
    World::http()
        .cluster("c", &[A, B])
        .route_to("c")
        .with_route(|r| {
            r.retry = Some(retry(2, RetryOn::TIMEOUT, Some(Duration::from_millis(100))));
        })
        .run(|gw| async move {
            let _slow = Upstream::start(A, |_| Reply::ok("slow").after(Duration::from_secs(10)));
            let _fast = Upstream::start(B, |_| Reply::ok("fast"));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            let r = client.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"fast"[..]));
            assert_eq!(gw.stats.per_try_timeouts.get(), 1);
            assert_eq!(gw.stats.retries.get(), 1);
        });
}

#[test]
fn an_exhausted_retry_budget_returns_the_last_answer() {
    World::http()
        .cluster("c", &[A, B])
        .route_to("c")
        .with_route(|r| r.retry = Some(retry(3, RetryOn::SERVICE_UNAVAILABLE, None)))
        .with_cluster(|c| {
            c.limits.retry_budget = RetryBudget {
                percent: 0,
                min_concurrent: 0,
            }
        })
        .run(|gw| async move {
            let _a = Upstream::start(A, |_| Reply::status(503, "a"));
            let _b = Upstream::start(B, |_| Reply::status(503, "b"));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            let r = client.response().await;
            assert_eq!(r.status, 503, "the upstream's own 503");
            assert_eq!(r.header("x-meshgate-error"), None);
            assert_eq!(gw.stats.retries.get(), 0);
            assert_eq!(gw.stats.retry_overflows.get(), 1);
        });
}

#[test]
fn retries_stop_at_their_attempts() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_route(|r| r.retry = Some(retry(2, RetryOn::FIVE_XX, None)))
        .run(|gw| async move {
            let up = Upstream::start(A, |_| Reply::status(500, "no"));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            assert_eq!(client.response().await.status, 500);
            assert_eq!(up.seen().len(), 3, "one try and two retries");
            assert_eq!(gw.stats.retries.get(), 2);
        });
}

#[test]
fn each_timeout_gives_its_status_and_counter() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_route(|r| r.timeout = Duration::from_millis(500))
        .with_limits(|l| {
            l.header_timeout = Duration::from_secs(2);
            l.idle_timeout = Duration::from_secs(5);
        })
        .run(|gw| async move {
            // Connect timeout: 503.
            memory::fault(A, Some(ConnectFault::Hang));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            let r = client.response().await;
            assert_eq!(r.status, 503);
            assert_eq!(r.header("x-meshgate-error"), Some("connect_timeout"));
            assert_eq!(gw.stats.connect_timeouts.get(), 1);
            memory::fault(A, None);
            // The route's total timeout: 504.
            let up = Upstream::start(A, |s| match s.path.as_str() {
                "/slow" => Reply::ok("late").after(Duration::from_secs(3)),
                _ => Reply::ok("ok"),
            });
            client.send(&get("/slow")).await;
            let r = client.response().await;
            assert_eq!(r.status, 504);
            assert_eq!(gw.stats.request_timeouts.get(), 1);
            // Header timeout: 408, then closed.
            let mut slow = gw.client().await;
            slow.send(b"GET / HTTP/1.1\r\nhost").await;
            let r = slow.response().await;
            assert_eq!(r.status, 408);
            assert_eq!(gw.stats.header_timeouts.get(), 1);
            assert!(slow.closed_within(Duration::from_secs(1)).await);
            // Idle timeout: a quiet close (the first client leaves first, so
            // it is not counted).
            drop(client);
            let mut idle = gw.client().await;
            idle.send(&get("/")).await;
            assert_eq!(idle.response().await.status, 200);
            assert!(!idle.closed_within(Duration::from_secs(4)).await);
            assert!(idle.closed_within(Duration::from_secs(2)).await);
            assert_eq!(gw.stats.idle_timeouts.get(), 1);
            drop(up);
        });
}

#[test]
fn an_endpoint_failing_in_a_row_is_ejected_and_comes_back() {
    World::http()
        .cluster("c", &[A, B])
        .route_to("c")
        .with_cluster(|c| {
            c.outlier = Some(OutlierSettings {
                consecutive_failures: 2,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 50,
            })
        })
        .run(|gw| async move {
            let a = Upstream::start(A, |_| Reply::status(503, "a"));
            let b = Upstream::start(B, |_| Reply::ok("b"));
            let mut client = gw.client().await;
            // Round robin: A, B, A (A's second failure ejects it).
            for _ in 0..3 {
                client.send(&get("/")).await;
                client.response().await;
            }
            assert_eq!(a.seen().len(), 2);
            // Published with the shard's counters, once a second.
            gw.until(Duration::from_secs(2), "ejection counted", |g| {
                g.stats.outlier_ejections.get() == 1
            })
            .await;
            for _ in 0..6 {
                client.send(&get("/")).await;
                assert_eq!(client.response().await.body, b"b");
            }
            assert_eq!(a.seen().len(), 2, "no request to an ejected endpoint");
            // After the ejection, A is back in the rotation.
            runtime_sleep(Duration::from_secs(10)).await;
            gw.until(Duration::from_secs(2), "return counted", |g| {
                g.stats.outlier_returns.get() == 1
            })
            .await;
            for _ in 0..4 {
                client.send(&get("/")).await;
                client.response().await;
            }
            assert!(a.seen().len() > 2, "A serves again");
            assert!(b.seen().len() >= 8);
        });
}

async fn runtime_sleep(d: Duration) {
    crate::runtime::sleep(d).await;
}

#[test]
fn drain_closes_an_idle_connection_at_once_and_finishes_a_busy_one() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let _up = Upstream::start(A, |s| match s.path.as_str() {
                "/busy" => Reply::ok("done").after(Duration::from_millis(500)),
                _ => Reply::ok("ok"),
            });
            let mut idle = gw.client().await;
            idle.send(&get("/")).await;
            assert_eq!(idle.response().await.status, 200);
            let mut busy = gw.client().await;
            busy.send(&get("/busy")).await;
            runtime_sleep(Duration::from_millis(10)).await;
            gw.drain();
            // The shard notices on its next tick (100 ms).
            assert!(idle.closed_within(Duration::from_millis(200)).await);
            let r = busy.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"done"[..]));
            assert_eq!(r.header("connection"), Some("close"));
            assert!(busy.closed_within(Duration::from_millis(100)).await);
            gw.until(Duration::from_secs(1), "no connection open", |g| {
                g.stats.connections_active.get() == 0
            })
            .await;
        });
}

#[test]
fn a_response_cut_off_mid_body_resets_the_client() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let _up = Upstream::start(A, |_| Reply::CutOff {
                body_len: 100,
                sent: 40,
            });
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            let raw = client.read_to_end().await;
            assert!(raw.starts_with(b"HTTP/1.1 200"));
            assert!(raw.ends_with(&[b'x'; 40]), "the 40 bytes, then the end");
            assert!(
                client.was_reset(),
                "a reset, never a complete-looking close"
            );
            assert_eq!(gw.stats.requests.get(), 1);
        });
}

#[test]
fn a_published_snapshot_routes_the_next_request_of_a_kept_connection() {
    World::http()
        .cluster("old", &[A])
        .cluster("new", &[B])
        .route_to("old")
        .run(|gw| async move {
            let a = Upstream::start(A, |_| Reply::ok("old"));
            let b = Upstream::start(B, |_| Reply::ok("new"));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            assert_eq!(client.response().await.body, b"old");
            gw.publish(|s| {
                s.listeners[0].routes[0].target =
                    crate::route::RouteTarget::Cluster(crate::route::ClusterId(1))
            });
            client.send(&get("/")).await;
            assert_eq!(client.response().await.body, b"new");
            assert_eq!((a.seen().len(), b.seen().len()), (1, 1));
            gw.until(Duration::from_secs(1), "the shard saw generation 2", |g| {
                g.stats.generation.get() == 2
            })
            .await;
        });
}

#[test]
fn a_listener_rule_published_while_idle_refuses_the_next_request_and_closes() {
    use crate::route::authz::{IpNet, Policy, Rule};
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .run(|gw| async move {
            let up = Upstream::start(A, |_| Reply::ok("ok"));
            let mut client = gw.client().await;
            client.send(&get("/")).await;
            assert_eq!(client.response().await.status, 200);
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
            client.send(&get("/")).await;
            let r = client.response().await;
            assert_eq!(r.status, 403);
            assert_eq!(r.header("connection"), Some("close"));
            assert!(client.closed_within(Duration::from_millis(100)).await);
            assert_eq!(up.seen().len(), 1);
        });
}

#[test]
fn a_body_dribbled_below_the_minimum_rate_is_cut_off() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_limits(|l| {
            l.min_body_rate = 256;
            l.min_body_rate_grace = Duration::from_secs(10);
        })
        .run(|gw| async move {
            let up = Upstream::start(A, |s| Reply::ok(&format!("{}", s.body.len())));
            // One byte every 5 s: inside the 60 s idle timeout, far below
            // 256 B/s.
            let mut slow = gw.client().await;
            slow.send(b"POST /up HTTP/1.1\r\nhost: svc\r\ncontent-length: 1000\r\n\r\n")
                .await;
            let t0 = crate::runtime::now();
            let dribble = async {
                for _ in 0..20 {
                    slow.send(b"x").await;
                    runtime_sleep(Duration::from_secs(5)).await;
                }
            };
            crate::runtime::timeout(Duration::from_secs(12), dribble)
                .await
                .ok();
            let r = slow.response().await;
            assert_eq!(r.status, 408);
            assert_eq!(r.header("x-meshgate-error"), Some("slow_request_body"));
            assert!(crate::runtime::now() - t0 < Duration::from_secs(13));
            assert_eq!(gw.stats.slow_request_bodies.get(), 1);
            // A body at a decent rate (1000 bytes over 3 s) goes through.
            let mut ok = gw.client().await;
            ok.send(b"POST /up HTTP/1.1\r\nhost: svc\r\ncontent-length: 1000\r\n\r\n")
                .await;
            for _ in 0..10 {
                ok.send(&[b'y'; 100]).await;
                runtime_sleep(Duration::from_millis(300)).await;
            }
            let r = ok.response().await;
            assert_eq!((r.status, &r.body[..]), (200, &b"1000"[..]));
            assert_eq!(
                up.seen().len(),
                1,
                "the slow body never reached the upstream whole"
            );
        });
}

#[test]
fn too_many_header_fields_is_431() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_limits(|l| l.max_header_count = 4)
        .run(|gw| async move {
            let _up = Upstream::start(A, |_| Reply::ok("ok"));
            let mut c = gw.client().await;
            c.send(b"GET / HTTP/1.1\r\nhost: svc\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n")
                .await;
            assert_eq!(c.response().await.status, 200);
            c.send(b"GET / HTTP/1.1\r\nhost: svc\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n")
                .await;
            assert_eq!(c.response().await.status, 431);
        });
}

#[test]
fn connections_per_source_are_limited_per_address() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_limits(|l| l.max_connections_per_source = 2)
        .run(|gw| async move {
            let _up = Upstream::start(A, |_| Reply::ok("ok"));
            let mut first = gw.client().await;
            let mut second = gw.client().await;
            let mut third = gw.client().await;
            for c in [&mut first, &mut second] {
                c.send(&get("/")).await;
                assert_eq!(c.response().await.status, 200);
            }
            assert!(third.closed_within(Duration::from_millis(10)).await);
            assert_eq!(gw.stats.connections_limited.get(), 1);
            // Another address is not affected; a closed connection frees
            // its place.
            let mut other = Client::connect_from("10.9.9.9".parse().unwrap(), LISTENER).await;
            other.send(&get("/")).await;
            assert_eq!(other.response().await.status, 200);
            drop(first);
            runtime_sleep(Duration::from_millis(1)).await;
            let mut again = gw.client().await;
            again.send(&get("/")).await;
            assert_eq!(again.response().await.status, 200);
        });
}
