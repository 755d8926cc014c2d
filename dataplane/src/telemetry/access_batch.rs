//! A shard's access-log lines on their way to the writer thread. Records
//! are rendered as their requests finish into one buffer per file, and a
//! buffer travels to the writer as a [`LogBatch`] when it reaches
//! [`BATCH_BYTES`] or when the shard's housekeeping tick takes it. There
//! is no allocation per record: one buffer per batch, sized once.
//!
//! Sans-IO: the shard sends the batches this hands out (`proxy::observe`).

use super::access_log::{AccessRecord, DateCache};

/// A batch is handed over once it holds this many bytes.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Rendered lines for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// The file, as configured (`stdout` included).
    pub path: String,
    /// Whole lines, each ending in `\n`.
    pub lines: String,
    /// How many lines.
    pub records: u64,
}

impl LogBatch {
    fn new(path: &str) -> LogBatch {
        LogBatch {
            path: path.to_owned(),
            // Room for a full batch and the line that fills it.
            lines: String::with_capacity(BATCH_BYTES + 4096),
            records: 0,
        }
    }
}

/// The batches a shard is filling, one per file.
#[derive(Debug, Default)]
pub struct Batches {
    open: Vec<LogBatch>,
    dates: DateCache,
}

impl Batches {
    /// Renders `record` into the batch for `path`; returns that batch once
    /// it is full (a fresh one takes its place).
    pub fn push(&mut self, path: &str, record: &AccessRecord<'_>) -> Option<LogBatch> {
        let at = match self.open.iter().position(|b| b.path == path) {
            Some(at) => at,
            None => {
                self.open.push(LogBatch::new(path));
                self.open.len() - 1
            }
        };
        let batch = &mut self.open[at];
        record.render_with(&mut batch.lines, &mut self.dates);
        batch.records += 1;
        (batch.lines.len() >= BATCH_BYTES).then(|| std::mem::replace(batch, LogBatch::new(path)))
    }

    /// Every batch holding a line, taken (the tick and the shard's end);
    /// nothing is kept.
    pub fn take(&mut self) -> Vec<LogBatch> {
        let mut taken = std::mem::take(&mut self.open);
        taken.retain(|b| b.records > 0);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::access_log::LogFormat;

    fn record<'a>(format: &'a LogFormat, path: &'a str) -> AccessRecord<'a> {
        AccessRecord {
            format,
            start_unix_us: 0,
            duration_us: 1,
            request_id: None,
            trace_id: None,
            spiffe_id: None,
            client: "127.0.0.1:1".parse().unwrap(),
            listener: "l",
            route: None,
            cluster: None,
            endpoint: None,
            method: "GET",
            authority: None,
            path,
            protocol: "HTTP/1.1",
            status: Some(200),
            error: None,
            authz_rule: None,
            bytes_in: 0,
            bytes_out: 0,
            upstream_ttfb_us: None,
            attempts: 1,
            tls_version: None,
            tls_cipher: None,
            sni: None,
        }
    }

    #[test]
    fn lines_gather_per_file_until_a_batch_is_full() {
        let json = LogFormat::Json;
        let mut batches = Batches::default();
        assert_eq!(batches.push("a.log", &record(&json, "/1")), None);
        assert_eq!(batches.push("b.log", &record(&json, "/2")), None);
        assert_eq!(batches.push("a.log", &record(&json, "/3")), None);
        let taken = batches.take();
        assert_eq!(taken.len(), 2);
        assert_eq!((taken[0].path.as_str(), taken[0].records), ("a.log", 2));
        assert_eq!(taken[0].lines.lines().count(), 2);
        assert!(taken[0].lines.contains("\"path\":\"/3\""));
        assert_eq!((taken[1].path.as_str(), taken[1].records), ("b.log", 1));
        assert!(batches.take().is_empty(), "taking leaves nothing behind");

        let long = "/".repeat(1000);
        let mut full = None;
        let mut pushed = 0;
        while full.is_none() {
            full = batches.push("a.log", &record(&json, &long));
            pushed += 1;
        }
        let full = full.unwrap();
        assert_eq!(full.records, pushed);
        assert!(full.lines.len() >= BATCH_BYTES);
        assert_eq!(full.lines.lines().count() as u64, pushed);
        assert!(
            batches.take().is_empty(),
            "the full batch left with its last line"
        );
    }
}
