//! Active health checks: one thread (never a shard) running the data
//! plane's io_uring runtime, with one task per checked endpoint. A task
//! probes its endpoint every `interval_ms` (plus jitter) with a TCP connect
//! or an HTTP `GET` (pass: a status in `statuses`; over TLS, verified as
//! requests are, for a `[clusters.tls]` cluster), feeds the result to a
//! [`HealthTracker`], and on a transition asks the [`Gateway`] to publish a
//! snapshot with the endpoint's health changed. Every 200 ms the thread
//! compares its tasks with the configuration in force and starts, stops or
//! restarts tasks (a restarted task starts from the endpoint's last known
//! state).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use dataplane::http::{self, Limits, Parse};
use dataplane::net::Stack;
use dataplane::net::{ByteStream, Plain};
use dataplane::proxy::http2;
use dataplane::proxy::upstream_conn::UpstreamConn;
use dataplane::runtime::{self, RuntimeConfig, timeout_at};
use dataplane::tls::{ClientTls, TlsStream};
use dataplane::upstream::XorShift;
use dataplane::upstream::health::{
    HealthThresholds, HealthTracker, Transition, next_check_delay, status_passes,
};

use crate::config::{HealthConfig, HealthProtocol};
use crate::running::{Gateway, HealthTarget};

/// The health-check thread.
#[derive(Debug)]
pub struct HealthChecker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl HealthChecker {
    /// Starts the thread; it runs until [`HealthChecker::shutdown`].
    pub fn start(gateway: Arc<Gateway>) -> io::Result<HealthChecker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("meshgate-health".into())
            .spawn(move || {
                // A small ring: a few probes at a time, small responses.
                let config = RuntimeConfig {
                    ring_entries: 256,
                    recv_buffers: 64,
                    recv_buffer_size: 4096,
                    ..RuntimeConfig::default()
                };
                if let Err(e) = runtime::block_on(&config, supervise(gateway, flag)) {
                    log::error!("health checks could not start: {e}");
                }
            })?;
        Ok(HealthChecker { stop, thread })
    }

    /// Stops every check and joins the thread.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Keeps one task per checked endpoint, in step with the configuration.
async fn supervise(gateway: Arc<Gateway>, stop: Arc<AtomicBool>) {
    let mut tasks: HashMap<(String, SocketAddr), Task> = HashMap::new();
    let mut seed = 0x6A09_E667_F3BC_C908u64 ^ std::process::id() as u64;
    let mut generation = 0;
    while !stop.load(Ordering::Relaxed) {
        let now_generation = gateway.generation();
        if now_generation != generation {
            generation = now_generation;
            let targets = gateway.health_targets();
            tasks.retain(|key, task| {
                let keep = targets.iter().any(|t| {
                    (&t.cluster, &t.addr) == (&key.0, &key.1)
                        && t.settings == task.settings
                        && same_tls(&t.tls, &task.tls)
                });
                if !keep {
                    task.handle.abort();
                }
                keep
            });
            for t in targets {
                let key = (t.cluster.clone(), t.addr);
                if tasks.contains_key(&key) {
                    continue;
                }
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (settings, tls) = (t.settings.clone(), t.tls.clone());
                let handle = runtime::spawn(check_loop(gateway.clone(), t, seed));
                tasks.insert(
                    key,
                    Task {
                        settings,
                        tls,
                        handle,
                    },
                );
            }
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    for (_, task) in tasks {
        task.handle.abort();
    }
}

/// A running check and what it was started with (a change restarts it).
struct Task {
    settings: HealthConfig,
    tls: Option<ClientTls>,
    handle: runtime::JoinHandle<()>,
}

/// The same compiled TLS configuration (a reload builds a new one).
fn same_tls(a: &Option<ClientTls>, b: &Option<ClientTls>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    }
}

/// Probes one endpoint forever.
async fn check_loop(gateway: Arc<Gateway>, target: HealthTarget, seed: u64) {
    let h = &target.settings;
    let thresholds = HealthThresholds {
        healthy: h.healthy,
        unhealthy: h.unhealthy,
    };
    let mut tracker = HealthTracker::new();
    if target.unhealthy {
        // Start from the last verdict: unhealthy until `healthy` passes.
        for _ in 0..thresholds.unhealthy.max(1) {
            tracker.record(false, &thresholds);
        }
    }
    let interval = Duration::from_millis(h.interval_ms);
    let mut rng = XorShift::new(seed);
    // Spread the first probes of many endpoints over one interval.
    runtime::sleep(
        next_check_delay(Duration::ZERO, 0, 0) + interval.mul_f64(rng.below(1000) as f64 / 1000.0),
    )
    .await;
    loop {
        let result = probe(target.addr, h, target.tls.as_ref(), target.http2).await;
        if let Err(why) = &result {
            log::debug!("health: {} of {:?}: {why}", target.addr, target.cluster);
        }
        match tracker.record(result.is_ok(), &thresholds) {
            Some(Transition::BecameHealthy) => {
                gateway.set_endpoint_health(&target.cluster, target.addr, true, "check passed");
            }
            Some(Transition::BecameUnhealthy) => {
                let why = result.err().unwrap_or_default();
                gateway.set_endpoint_health(&target.cluster, target.addr, false, &why);
            }
            None => {}
        }
        runtime::sleep(next_check_delay(interval, h.jitter_percent, rng.next_u64())).await;
    }
}

/// One probe: `Err` says why it failed.
async fn probe(
    addr: SocketAddr,
    h: &HealthConfig,
    tls: Option<&ClientTls>,
    http2: bool,
) -> Result<(), String> {
    let deadline = runtime::now() + Duration::from_millis(h.timeout_ms);
    let conn = match timeout_at(deadline, Stack::Kernel.connect(addr)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".into()),
    };
    if h.protocol == HealthProtocol::Tcp {
        return Ok(());
    }
    let mut conn = match tls {
        None => UpstreamConn::Plain(Plain(conn)),
        Some(tls) => {
            let left = deadline.saturating_duration_since(runtime::now());
            match TlsStream::connect(conn, tls, addr, left).await {
                Ok(t) => UpstreamConn::Tls(Box::new(t)),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let (lo, hi) = (h.statuses[0], h.statuses[1]);
    let judge = |status: u16| {
        if status_passes(status, (lo, hi)) {
            Ok(())
        } else {
            Err(format!("status {status} outside {lo}..={hi}"))
        }
    };
    if http2 {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = addr.to_string();
        let get = http2::client::get_status(conn, scheme, &authority, &h.path);
        return match timeout_at(deadline, get).await {
            Ok(Ok(status)) => judge(status),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out waiting for the response".into()),
        };
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: meshgate-health/{}\r\nconnection: close\r\n\r\n",
        h.path,
        env!("CARGO_PKG_VERSION")
    );
    match timeout_at(deadline, conn.write_owned(request.into_bytes())).await {
        Ok((Ok(()), _)) => {}
        Ok((Err(e), _)) => return Err(format!("send: {e}")),
        Err(_) => return Err("timed out sending the request".into()),
    }
    let limits = Limits::default();
    let mut buf = Vec::with_capacity(1024);
    loop {
        match http::parse_response(&buf, "GET", &limits) {
            Ok(Parse::Complete(head)) if (100..200).contains(&head.status) => {
                let n = head.head_len;
                buf.drain(..n);
                continue;
            }
            Ok(Parse::Complete(head)) => return judge(head.status),
            Ok(Parse::Partial) => {}
            Err(e) => return Err(format!("bad response: {e}")),
        }
        match timeout_at(deadline, conn.read_into(&mut buf)).await {
            Ok(Ok(0)) => return Err("closed before a response".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("receive: {e}")),
            Err(_) => return Err("timed out waiting for the response".into()),
        }
    }
}
