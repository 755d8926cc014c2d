//! HTTP/2 through a real shard on virtual time: an `h2` client on the
//! in-memory network speaking h2c to the listener (its streams served by
//! the HTTP/1.1 request path), and an in-process `h2` origin behind an
//! `h2c` cluster (multiplexing, a refused stream sent again). Timeouts of
//! minutes run in microseconds.

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;

use super::harness::*;
use crate::net::memory;
use crate::net::{Plain, Stream};
use crate::proxy::http2::client::{self, H2Conn};
use crate::proxy::upstream_conn::UpstreamConn;
use crate::route::UpstreamProtocol;
use crate::runtime;

/// An HTTP/2 client connection (prior knowledge) to the gateway.
async fn h2_client() -> H2Conn {
    let conn = memory::connect(LISTENER).await.expect("connect");
    let conn = UpstreamConn::Plain(Plain(Stream::from(conn)));
    client::start(conn, None, Duration::from_secs(3600))
        .await
        .expect("HTTP/2 handshake")
}

/// One GET on `conn`: status and body.
async fn h2_get(conn: &H2Conn, path: &str) -> Result<(u16, Vec<u8>), h2::Error> {
    let mut send = conn.send.clone();
    poll_fn(|cx| send.poll_ready(cx)).await?;
    let request = ::http::Request::get(format!("http://svc{path}"))
        .body(())
        .expect("request");
    let (response, _) = send.send_request(request, true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(data) = poll_fn(|cx| body.poll_data(cx)).await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
        bytes.extend_from_slice(&data);
    }
    Ok((status, bytes))
}

fn h2c_world() -> World {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_limits(|l| l.http2.h2c = true)
}

#[test]
fn concurrent_streams_on_one_connection_are_each_served() {
    h2c_world().run(|gw| async move {
        let up = Upstream::start(A, |s| Reply::ok(&s.path));
        let conn = h2_client().await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let conn = conn.clone();
                runtime::spawn(async move { h2_get(&conn, &format!("/{i}")).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let (status, body) = task.await.expect("response");
            assert_eq!((status, body), (200, format!("/{i}").into_bytes()));
        }
        assert_eq!(gw.stats.h2_connections.get(), 1);
        assert_eq!(gw.stats.h2_streams.get(), 20);
        assert_eq!(up.seen().len(), 20);
    });
}

#[test]
fn an_idle_connection_gets_goaway_after_the_idle_timeout() {
    h2c_world()
        .with_limits(|l| l.idle_timeout = Duration::from_secs(120))
        .run(|gw| async move {
            let _up = Upstream::start(A, |_| Reply::ok("x"));
            let conn = h2_client().await;
            assert_eq!(h2_get(&conn, "/").await.expect("served").0, 200);
            // Two virtual minutes later, the gateway has let it go.
            gw.until(Duration::from_secs(180), "the idle GOAWAY", |g| {
                g.stats.idle_timeouts.get() == 1
            })
            .await;
            assert!(
                h2_get(&conn, "/").await.is_err(),
                "a closed connection served"
            );
        });
}

/// An in-process HTTP/2 origin on `addr`: answers `200 <path>`, except
/// that it refuses (REFUSED_STREAM) the first `refuse` streams it sees.
fn h2_origin(addr: std::net::SocketAddr, refuse: usize) -> runtime::JoinHandle<()> {
    let mut listener = memory::listen(addr).expect("origin address free");
    let refused = std::rc::Rc::new(std::cell::Cell::new(0));
    runtime::spawn(async move {
        while let Ok(conn) = listener.accept().await {
            let refused = refused.clone();
            runtime::spawn(crate::proxy::http2::serve_with(
                Plain(Stream::from(conn)),
                move |request, mut respond| {
                    let refused = refused.clone();
                    async move {
                        if refused.get() < refuse {
                            refused.set(refused.get() + 1);
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            return;
                        }
                        let body = Bytes::from(request.uri().path().to_owned());
                        let mut response = ::http::Response::new(());
                        response
                            .headers_mut()
                            .insert("content-length", ::http::HeaderValue::from(body.len()));
                        if let Ok(mut send) = respond.send_response(response, false) {
                            let _ = send.send_data(body, true);
                        }
                    }
                },
            ));
        }
    })
}

#[test]
fn an_h2c_cluster_multiplexes_requests_on_one_connection() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_cluster(|c| c.protocol = UpstreamProtocol::H2c)
        .run(|gw| async move {
            let _origin = h2_origin(A, 0);
            // Ten clients at once, HTTP/1.1 each.
            let mut clients = Vec::new();
            for i in 0..10 {
                let mut c = gw.client().await;
                c.send(&get(&format!("/{i}"))).await;
                clients.push(c);
            }
            for (i, mut c) in clients.into_iter().enumerate() {
                let r = c.response().await;
                assert_eq!((r.status, r.body), (200, format!("/{i}").into_bytes()));
            }
            // Those that came before the connection was up waited for it.
            assert_eq!(gw.stats.h2_upstream_connections.get(), 1);
            assert_eq!(gw.stats.h2_upstream_streams.get(), 10);
        });
}

#[test]
fn a_stream_refused_unprocessed_goes_again_on_a_new_connection() {
    World::http()
        .cluster("c", &[A])
        .route_to("c")
        .with_cluster(|c| c.protocol = UpstreamProtocol::H2c)
        .run(|gw| async move {
            let _origin = h2_origin(A, 1);
            let mut c = gw.client().await;
            c.send(&get("/once")).await;
            let r = c.response().await;
            assert_eq!((r.status, r.body), (200, b"/once".to_vec()));
            assert_eq!(gw.stats.h2_upstream_unprocessed.get(), 1);
            assert_eq!(gw.stats.h2_upstream_connections.get(), 2);
            assert_eq!(gw.stats.retries.get(), 0);
        });
}
