//! The access-log writer: one thread that takes the shards' finished
//! request records from a bounded queue, renders them, and appends them
//! to each listener's file (or stdout) in batches. Shards never wait on
//! it: a full queue drops the record and the shard counts it
//! (`meshgate_access_log_dropped_total`).
//!
//! Files are opened before a configuration that names them goes live
//! ([`AccessLogWriter::prepare`], so a path that cannot be opened refuses
//! the start or the apply with the listener named) and reopened on
//! request ([`AccessLogWriter::reopen`]: SIGUSR1, `meshctl log reopen`),
//! for logrotate.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dataplane::proxy::context::AccessLogQueue;

use crate::worker::Worker;
use dataplane::route::Snapshot;
use dataplane::telemetry::access_log::AccessRecord;

/// Records the queue holds before shards start dropping them.
pub const QUEUE_RECORDS: usize = 16_384;

/// Records written per batch at most (one write per file per batch).
const BATCH: usize = 1024;

/// How long the writer sleeps when the queue is empty (the longest a
/// record waits before it is written).
const POLL: Duration = Duration::from_millis(20);

/// The file name that means standard output.
const STDOUT: &str = "stdout";

/// Figures of the writer, for the metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records written.
    pub written: AtomicU64,
    /// Records lost to a failed open or write.
    pub write_errors: AtomicU64,
    /// Times the files were reopened.
    pub reopens: AtomicU64,
}

/// The writer thread and what talks to it.
#[derive(Debug)]
pub struct AccessLogWriter {
    queue: AccessLogQueue,
    files: Arc<Mutex<Files>>,
    reopen: Arc<AtomicBool>,
    pub stats: Arc<WriterStats>,
    worker: Worker,
}

/// The open files, by path as configured.
#[derive(Debug, Default)]
struct Files(HashMap<String, File>);

impl Files {
    /// Opens `path` for appending unless it is open already.
    fn open(&mut self, path: &str) -> io::Result<()> {
        if path == STDOUT || self.0.contains_key(path) {
            return Ok(());
        }
        let file = open_append(path)?;
        self.0.insert(path.to_owned(), file);
        Ok(())
    }

    /// Appends `bytes` to `path`, opening it if need be.
    fn write(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.open(path)?;
        match self.0.get_mut(path) {
            Some(file) => file.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Closes and opens every file again (logrotate moved them).
    fn reopen_all(&mut self) -> Vec<(String, io::Error)> {
        let mut failed = Vec::new();
        for (path, file) in &mut self.0 {
            match open_append(path) {
                Ok(f) => *file = f,
                Err(e) => failed.push((path.clone(), e)),
            }
        }
        failed
    }
}

fn open_append(path: &str) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLogWriter {
    /// Starts the writer thread.
    pub fn start() -> io::Result<AccessLogWriter> {
        let (queue, records) = sync_channel(QUEUE_RECORDS);
        let files = Arc::new(Mutex::new(Files::default()));
        let reopen = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let worker = {
            let (files, reopen, stats) = (files.clone(), reopen.clone(), stats.clone());
            Worker::spawn("meshgate-access-log", move |stop| {
                write_loop(&records, &files, &reopen, stop, &stats)
            })?
        };
        Ok(AccessLogWriter {
            queue,
            files,
            reopen,
            stats,
            worker,
        })
    }

    /// The queue shards hand records to.
    pub fn queue(&self) -> AccessLogQueue {
        self.queue.clone()
    }

    /// Opens every file `snapshot`'s listeners log to that is not open
    /// yet. `Err` names the listener and the path.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<(), String> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        for l in &snapshot.listeners {
            if let Some(spec) = &l.access_log {
                files.open(&spec.path).map_err(|e| {
                    format!(
                        "listener {:?}: access_log.path {:?}: {e}",
                        l.name, spec.path
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Reopens every file before the next batch is written.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Writes what is queued, then stops the thread (once the shards
    /// stopped, so nothing more arrives).
    pub fn shutdown(&self) {
        self.worker.shutdown();
    }
}

/// The writer thread: a batch at a time, each file written once per batch.
fn write_loop(
    records: &Receiver<AccessRecord>,
    files: &Mutex<Files>,
    reopen: &AtomicBool,
    stop: &AtomicBool,
    stats: &WriterStats,
) {
    let mut lines: HashMap<String, String> = HashMap::new();
    loop {
        // Polled, never waited on: a shard's `try_send` to a receiver
        // blocked in `recv` would wake it with a futex call per record.
        let first = match records.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => {
                std::thread::sleep(POLL);
                None
            }
            Err(TryRecvError::Disconnected) => return,
        };
        if reopen.swap(false, Ordering::Relaxed) {
            let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
            for (path, e) in files.reopen_all() {
                log::error!("access log {path:?}: reopen failed: {e}");
            }
            stats.reopens.fetch_add(1, Ordering::Relaxed);
            log::info!("access log files reopened");
        }
        let Some(first) = first else {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            continue;
        };
        for record in std::iter::once(first).chain(records.try_iter().take(BATCH - 1)) {
            let text = match lines.get_mut(&record.spec.path) {
                Some(text) => text,
                None => lines.entry(record.spec.path.clone()).or_default(),
            };
            record.render(text);
        }
        let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
        for (path, text) in &mut lines {
            if text.is_empty() {
                continue;
            }
            let count = text.matches('\n').count() as u64;
            let written = if path == STDOUT {
                io::stdout().lock().write_all(text.as_bytes())
            } else {
                files.write(path, text.as_bytes())
            };
            match written {
                Ok(()) => {
                    stats.written.fetch_add(count, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.write_errors.fetch_add(count, Ordering::Relaxed);
                    log::error!("access log {path:?}: {count} records lost: {e}");
                }
            }
            text.clear();
        }
        drop(files);
        // A burst does not keep its buffers.
        lines.retain(|_, text| text.capacity() < 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::telemetry::access_log::{AccessLogSpec, LogFormat};

    fn record(path: &str, status: u16) -> AccessRecord {
        AccessRecord {
            spec: Arc::new(AccessLogSpec {
                path: path.into(),
                format: LogFormat::Json,
                sample_percent: 100.0,
            }),
            start_unix_us: 0,
            duration_us: 1,
            request_id: None,
            trace_id: None,
            spiffe_id: None,
            client: "127.0.0.1:1".parse().unwrap(),
            listener: "l".into(),
            route: None,
            cluster: None,
            endpoint: None,
            method: "GET".into(),
            authority: None,
            path: "/".into(),
            protocol: "HTTP/1.1",
            status: Some(status),
            error: None,
            authz_rule: None,
            bytes_in: 0,
            bytes_out: 0,
            upstream_ttfb_us: None,
            attempts: 0,
            tls_version: None,
            tls_cipher: None,
            sni: None,
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn records_reach_their_files_and_a_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("meshgate-alog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.log").to_string_lossy().into_owned();
        let writer = AccessLogWriter::start().unwrap();
        writer.queue().send(record(&a, 200)).unwrap();
        writer.queue().send(record(&a, 503)).unwrap();
        wait_for("two lines", || {
            std::fs::read_to_string(&a).is_ok_and(|t| t.lines().count() == 2)
        });
        let text = std::fs::read_to_string(&a).unwrap();
        assert!(
            text.lines().nth(1).unwrap().contains("\"status\":503"),
            "{text}"
        );
        // logrotate: move the file away, ask for a reopen, write again.
        let rotated = dir.join("a.log.1");
        std::fs::rename(&a, &rotated).unwrap();
        writer.reopen();
        wait_for("the reopen", || {
            writer.stats.reopens.load(Ordering::Relaxed) == 1
        });
        writer.queue().send(record(&a, 201)).unwrap();
        wait_for("the new file", || {
            std::fs::read_to_string(&a).is_ok_and(|t| t.contains("\"status\":201"))
        });
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            2
        );
        writer.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prepare_names_the_listener_and_path_it_cannot_open() {
        let writer = AccessLogWriter::start().unwrap();
        let text = r#"
            [[listeners]]
            name = "public"
            address = "127.0.0.1:0"
            access_log = { path = "/nonexistent-dir/x.log" }
            [[routes]]
            listener = "public"
            cluster = "c"
            [[clusters]]
            name = "c"
            endpoints = ["127.0.0.1:1"]
        "#;
        let config =
            crate::config::Config::from_toml_str(text, "t.toml", std::path::Path::new("/"))
                .unwrap();
        let snapshot = config.compile(1).unwrap();
        let e = writer.prepare(&snapshot).unwrap_err();
        assert!(
            e.contains("listener \"public\"") && e.contains("/nonexistent-dir/x.log"),
            "{e}"
        );
        writer.shutdown();
    }
}
