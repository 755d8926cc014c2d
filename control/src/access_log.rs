//! The access-log writer: one thread that takes the shards' batches of
//! rendered lines from a bounded queue and appends each to its file (or
//! stdout) with one write. A shard renders its records as its requests
//! finish and hands a batch over when it holds 64 KiB or on its 100 ms
//! tick, so a line reaches the file within about 120 ms. Shards never
//! wait on the writer: a full queue drops the batch and the shard counts
//! its records (`meshgate_access_log_dropped_total`).
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
use dataplane::telemetry::access_batch::LogBatch;

/// Batches the queue holds before shards start dropping them (each up to
/// about 64 KiB, some 130 JSON lines: 16 MiB, some 35,000 lines at most).
pub const QUEUE_BATCHES: usize = 256;

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
        let (queue, batches) = sync_channel(QUEUE_BATCHES);
        let files = Arc::new(Mutex::new(Files::default()));
        let reopen = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let worker = {
            let (files, reopen, stats) = (files.clone(), reopen.clone(), stats.clone());
            Worker::spawn("meshgate-access-log", move |stop| {
                write_loop(&batches, &files, &reopen, stop, &stats)
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

    /// The queue shards hand their batches to.
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

/// The writer thread: a batch at a time, one write each.
fn write_loop(
    batches: &Receiver<LogBatch>,
    files: &Mutex<Files>,
    reopen: &AtomicBool,
    stop: &AtomicBool,
    stats: &WriterStats,
) {
    loop {
        // Polled, never waited on: a shard's `try_send` to a receiver
        // blocked in `recv` would wake it with a futex call per batch.
        let batch = match batches.try_recv() {
            Ok(b) => Some(b),
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
        let Some(batch) = batch else {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            continue;
        };
        let written = if batch.path == STDOUT {
            io::stdout().lock().write_all(batch.lines.as_bytes())
        } else {
            let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
            files.write(&batch.path, batch.lines.as_bytes())
        };
        match written {
            Ok(()) => {
                stats.written.fetch_add(batch.records, Ordering::Relaxed);
            }
            Err(e) => {
                stats
                    .write_errors
                    .fetch_add(batch.records, Ordering::Relaxed);
                log::error!(
                    "access log {:?}: {} records lost: {e}",
                    batch.path,
                    batch.records
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of one JSON line with `status`.
    fn batch(path: &str, status: u16) -> LogBatch {
        LogBatch {
            path: path.into(),
            lines: format!("{{\"status\":{status}}}\n"),
            records: 1,
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
        writer.queue().send(batch(&a, 200)).unwrap();
        writer.queue().send(batch(&a, 503)).unwrap();
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
        writer.queue().send(batch(&a, 201)).unwrap();
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
