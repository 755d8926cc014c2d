//! The span exporter: one thread that takes the shards' finished traces
//! from a bounded queue, batches them (a second, or 512 spans, whichever
//! comes first) and posts each batch to the configured collectors — OTLP
//! over HTTP (protobuf or JSON) and Zipkin v2 JSON — with a timeout and
//! two retries. Shards never wait on it: a full queue drops and the shard
//! counts it; a collector that is down costs dropped spans (counted here),
//! nothing else.
//!
//! Where spans go ([`ExportSettings`]) comes from `[tracing]` and changes
//! with an apply; `model` names the spans, `otlp` and `zipkin` encode
//! them, `post` sends them.

mod model;
mod otlp;
mod post;
mod zipkin;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dataplane::proxy::context::SpanQueue;
use dataplane::telemetry::trace::FinishedTrace;

pub use post::Endpoint;

use crate::worker::Worker;

/// Finished traces the queue holds before shards start dropping them.
pub const QUEUE_TRACES: usize = 8192;

/// Spans posted per batch at most.
const BATCH_SPANS: usize = 512;

/// How long spans wait for a batch to fill.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Tries per batch and collector (the first and two retries).
const TRIES: u32 = 3;

/// How a collector takes spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OtlpProtobuf,
    OtlpJson,
    Zipkin,
}

impl Format {
    /// The metrics label.
    pub fn exporter(self) -> &'static str {
        match self {
            Format::OtlpProtobuf | Format::OtlpJson => "otlp",
            Format::Zipkin => "zipkin",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::OtlpProtobuf => "application/x-protobuf",
            Format::OtlpJson | Format::Zipkin => "application/json",
        }
    }
}

/// One collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub endpoint: Endpoint,
    pub format: Format,
    pub timeout: Duration,
}

/// Where spans go, from `[tracing]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportSettings {
    pub service_name: String,
    pub collectors: Vec<Collector>,
}

/// Figures of one exporter (`otlp`, `zipkin`), for the metrics.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans lost: every try of their batch failed.
    pub failed: AtomicU64,
}

/// The exporter's figures, by exporter.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub otlp: CollectorStats,
    pub zipkin: CollectorStats,
}

impl ExportStats {
    /// The figures of the exporter `format` belongs to.
    pub fn of(&self, format: Format) -> &CollectorStats {
        match format {
            Format::OtlpProtobuf | Format::OtlpJson => &self.otlp,
            Format::Zipkin => &self.zipkin,
        }
    }
}

/// The exporter thread and what talks to it.
#[derive(Debug)]
pub struct SpanExporter {
    queue: SpanQueue,
    settings: Arc<Mutex<ExportSettings>>,
    pub stats: Arc<ExportStats>,
    worker: Worker,
}

impl SpanExporter {
    /// Starts the exporter thread (it sends nothing until configured).
    pub fn start() -> io::Result<SpanExporter> {
        let (queue, traces) = sync_channel(QUEUE_TRACES);
        let settings = Arc::new(Mutex::new(ExportSettings::default()));
        let stats = Arc::new(ExportStats::default());
        let worker = {
            let (settings, stats) = (settings.clone(), stats.clone());
            Worker::spawn("meshgate-spans", move |stop| {
                export_loop(&traces, &settings, stop, &stats)
            })?
        };
        Ok(SpanExporter {
            queue,
            settings,
            stats,
            worker,
        })
    }

    /// The queue shards hand finished traces to.
    pub fn queue(&self) -> SpanQueue {
        self.queue.clone()
    }

    /// Sends the next batches with `settings`.
    pub fn configure(&self, settings: ExportSettings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// Posts what is queued, then stops the thread (once the shards
    /// stopped, so nothing more arrives).
    pub fn shutdown(&self) {
        self.worker.shutdown();
    }
}

/// The exporter thread: collects a batch, then posts it to each collector.
fn export_loop(
    traces: &Receiver<Box<FinishedTrace>>,
    settings: &Mutex<ExportSettings>,
    stop: &AtomicBool,
    stats: &ExportStats,
) {
    let mut batch: Vec<model::Span> = Vec::new();
    let mut protobuf = Vec::new();
    let mut since: Option<Instant> = None;
    loop {
        let wait = since.map_or(Duration::from_millis(100), |t| {
            FLUSH_EVERY.saturating_sub(t.elapsed())
        });
        let stopping = stop.load(Ordering::Relaxed);
        // Polled, never waited on: a shard's `try_send` to a receiver
        // blocked in `recv` would wake it with a futex call per trace.
        match traces.try_recv() {
            Ok(t) => {
                batch.extend(model::spans(&t));
                since.get_or_insert_with(Instant::now);
            }
            Err(TryRecvError::Empty) => {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
            Err(TryRecvError::Disconnected) => {
                flush(&mut batch, &mut protobuf, settings, stats);
                return;
            }
        }
        let due = since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
        if batch.len() >= BATCH_SPANS || due || (stopping && !batch.is_empty()) {
            flush(&mut batch, &mut protobuf, settings, stats);
            since = None;
        }
        if stopping && batch.is_empty() && traces.try_recv().is_err() {
            return;
        }
    }
}

/// Posts `batch` to every collector, then empties it. `protobuf` is the
/// OTLP body's buffer, kept from batch to batch.
fn flush(
    batch: &mut Vec<model::Span>,
    protobuf: &mut Vec<u8>,
    settings: &Mutex<ExportSettings>,
    stats: &ExportStats,
) {
    if batch.is_empty() {
        return;
    }
    let settings = settings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for c in &settings.collectors {
        let json;
        let body: &[u8] = match c.format {
            Format::OtlpProtobuf => {
                otlp::protobuf_into(&settings.service_name, batch, protobuf);
                protobuf
            }
            Format::OtlpJson => {
                json = otlp::json(&settings.service_name, batch);
                json.as_bytes()
            }
            Format::Zipkin => {
                json = zipkin::json(&settings.service_name, batch);
                json.as_bytes()
            }
        };
        let s = stats.of(c.format);
        let n = batch.len() as u64;
        match post_with_retries(c, body) {
            Ok(()) => {
                s.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                s.failed.fetch_add(n, Ordering::Relaxed);
                log::warn!(
                    "tracing: {} collector {}: {n} spans dropped: {e}",
                    c.format.exporter(),
                    c.endpoint
                );
            }
        }
    }
    batch.clear();
}

/// Posts `body`, retrying a failed connection, a 429 or a 5xx after a
/// short pause; a 4xx other than 429 is not retried (the collector
/// refuses the batch itself).
fn post_with_retries(c: &Collector, body: &[u8]) -> Result<(), String> {
    let mut last = String::new();
    for n in 0..TRIES {
        if n > 0 {
            std::thread::sleep(Duration::from_millis(100 << n));
        }
        match post::post(&c.endpoint, c.format.content_type(), body, c.timeout) {
            Ok(status) if (200..300).contains(&status) => return Ok(()),
            Ok(status) if status == 429 || status >= 500 => last = format!("status {status}"),
            Ok(status) => return Err(format!("refused with status {status}")),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{last} ({TRIES} tries)"))
}
