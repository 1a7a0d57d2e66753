//! The audit log: an append-only record of every state-changing request — who (account and
//! role), what (route and target), when, the correlation id and the result — including
//! refused ones (a denied admin halt is recorded with its 4xx).
//!
//! Records are appended as JSON lines to `<data-dir>/audit/audit.jsonl` by a writer thread
//! (never on the request's critical path beyond a channel send) and kept in a bounded
//! in-memory window for `GET /api/admin/audit`. The file is reloaded at start, so the window
//! survives restarts. The file is never rewritten, only appended to.
//!
//! The file is the node's durable copy, written first. After it, a second thread copies the
//! records to the venue-wide [`AuditSink`]s — the Kafka `audit` topic and the MongoDB `audit`
//! collection when configured — so a slow or absent sink never delays the file. With MongoDB
//! configured, `GET /api/admin/audit` reads every node's records from it ([`AuditQuery`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Records kept in memory for queries (older ones stay in the file).
pub const AUDIT_WINDOW: usize = 100_000;

/// What a caller did and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub account: String,
    /// The caller's role, as the request context knows it.
    pub role: String,
    /// The route, e.g. `POST /api/orders`, or a system action such as
    /// `CANCEL_ALL_AFTER_EXPIRED`.
    pub action: String,
    /// The path's target (order id, client order id), if any.
    pub target: Option<String>,
    pub correlation_id: Option<String>,
    /// HTTP status of the answer.
    pub status: u16,
    /// Error code of a refused request.
    pub code: Option<String>,
    /// Extra facts (e.g. the orders a cancel-all canceled).
    pub detail: Option<String>,
}

/// A stored record: sequence number and time added.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub seq: u64,
    /// Nanoseconds since the epoch.
    pub ts: u64,
    /// The node that recorded it (`seq` counts per node); empty in files older than this field.
    #[serde(default)]
    pub node: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// A venue-wide copy of the audit records (Kafka topic, MongoDB collection).
pub trait AuditSink: Send {
    /// For logs and metrics.
    fn name(&self) -> &'static str;
    /// Stores `batch`, oldest first; an error is retried a few times, then counted (the
    /// node's file keeps the records either way).
    fn write(&mut self, batch: &[Stored]) -> Result<(), String>;
}

/// The answer of an [`AuditQuery`].
pub type QueryFuture = Pin<Box<dyn Future<Output = Result<Vec<Stored>, String>> + Send>>;

/// Every node's records, for `GET /api/admin/audit` (MongoDB when configured).
pub trait AuditQuery: Send + Sync {
    fn name(&self) -> &'static str;
    /// Records of `account` (all when `None`) at or after `from` (ns), oldest first.
    fn query(&self, account: Option<String>, from: u64, limit: usize) -> QueryFuture;
}

/// Counters of the copies to the sinks.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records stored by a sink (counted once per sink).
    pub written: AtomicU64,
    /// Records a sink did not take after its retries, or that found the copy queue full.
    pub failed: AtomicU64,
}

/// Attempts per batch and sink before its records are counted as failed.
const SINK_ATTEMPTS: u32 = 3;
/// Batches waiting for the sinks; beyond it a batch is counted as failed for every sink.
const SINK_QUEUE: usize = 1024;

struct Window {
    next_seq: u64,
    records: VecDeque<Stored>,
}

/// The audit log of one node.
pub struct AuditLog {
    window: parking_lot::Mutex<Window>,
    writer: Option<crossbeam_channel::Sender<Stored>>,
    node: String,
    remote: Option<Arc<dyn AuditQuery>>,
    sink_stats: Arc<SinkStats>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl AuditLog {
    /// Memory only (tests, and when no data directory is writable).
    pub fn in_memory() -> Self {
        AuditLog {
            window: parking_lot::Mutex::new(Window {
                next_seq: 1,
                records: VecDeque::new(),
            }),
            writer: None,
            node: String::new(),
            remote: None,
            sink_stats: Arc::default(),
        }
    }

    /// Opens (or creates) `<dir>/audit.jsonl`, loads its tail and starts the writer thread
    /// (no venue-wide copies).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_with(dir, "", Vec::new(), None)
    }

    /// [`AuditLog::open`] for node `node`, copying every record to `sinks` after the file and
    /// answering queries from `remote` when given.
    pub fn open_with(
        dir: &Path,
        node: &str,
        sinks: Vec<Box<dyn AuditSink>>,
        remote: Option<Arc<dyn AuditQuery>>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path: PathBuf = dir.join("audit.jsonl");
        let mut records = VecDeque::new();
        let mut next_seq = 1;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                // A torn last line (crash mid-write) is skipped, not fatal.
                let Ok(line) = line else { break };
                if let Ok(s) = serde_json::from_str::<Stored>(&line) {
                    next_seq = s.seq + 1;
                    if records.len() == AUDIT_WINDOW {
                        records.pop_front();
                    }
                    records.push_back(s);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let sink_stats = Arc::new(SinkStats::default());
        let to_sinks = if sinks.is_empty() {
            None
        } else {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<Stored>>(SINK_QUEUE);
            let stats = Arc::clone(&sink_stats);
            std::thread::Builder::new()
                .name("oms-audit-sinks".into())
                .spawn(move || copy_to_sinks(sinks, &rx, &stats))?;
            Some(tx)
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Stored>();
        let stats = Arc::clone(&sink_stats);
        std::thread::Builder::new()
            .name("oms-audit".into())
            .spawn(move || {
                let mut w = BufWriter::new(file);
                let mut batch: Vec<Stored> = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(s) = next {
                        if let Ok(line) = serde_json::to_string(&s) {
                            let _ = w.write_all(line.as_bytes());
                            let _ = w.write_all(b"\n");
                        }
                        if to_sinks.is_some() {
                            batch.push(s);
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(e) = w.flush() {
                        tracing::error!(error = %e, "audit log write failed");
                    }
                    if let Some(tx) = &to_sinks
                        && !batch.is_empty()
                    {
                        let n = batch.len() as u64;
                        if tx.try_send(std::mem::take(&mut batch)).is_err() {
                            stats.failed.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
            })?;
        Ok(AuditLog {
            window: parking_lot::Mutex::new(Window { next_seq, records }),
            writer: Some(tx),
            node: node.to_owned(),
            remote,
            sink_stats,
        })
    }

    /// Appends one record.
    pub fn record(&self, record: AuditRecord) {
        let stored = {
            let mut w = self.window.lock();
            let s = Stored {
                seq: w.next_seq,
                ts: now_nanos(),
                node: self.node.clone(),
                record,
            };
            w.next_seq += 1;
            if w.records.len() == AUDIT_WINDOW {
                w.records.pop_front();
            }
            w.records.push_back(s.clone());
            s
        };
        if let Some(tx) = &self.writer {
            let _ = tx.send(stored);
        }
    }

    /// Where queries read every node's records (MongoDB), if configured.
    pub fn remote(&self) -> Option<&Arc<dyn AuditQuery>> {
        self.remote.as_ref()
    }

    /// Counters of the venue-wide copies.
    pub fn sink_stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.sink_stats)
    }

    /// This node's records of `account` (all when `None`) at or after `from` (ns), oldest
    /// first, from the in-memory window.
    pub fn query(&self, account: Option<&str>, from: u64, limit: usize) -> Vec<Stored> {
        let w = self.window.lock();
        w.records
            .iter()
            .filter(|s| s.ts >= from)
            .filter(|s| account.is_none_or(|a| s.record.account == a))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The sink thread: each batch to each sink, a few attempts each, then counted as failed.
fn copy_to_sinks(
    mut sinks: Vec<Box<dyn AuditSink>>,
    rx: &crossbeam_channel::Receiver<Vec<Stored>>,
    stats: &SinkStats,
) {
    while let Ok(batch) = rx.recv() {
        let n = batch.len() as u64;
        for sink in &mut sinks {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match sink.write(&batch) {
                    Ok(()) => {
                        stats.written.fetch_add(n, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if attempt < SINK_ATTEMPTS => {
                        tracing::warn!(sink = sink.name(), attempt, error = %e, "audit copy failed; retrying");
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    }
                    Err(e) => {
                        tracing::error!(sink = sink.name(), records = n, error = %e, "audit copy failed; the records stay in the node's audit file");
                        stats.failed.fetch_add(n, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(account: &str, status: u16) -> AuditRecord {
        AuditRecord {
            account: account.into(),
            role: "trader".into(),
            action: "POST /api/admin/halt".into(),
            target: None,
            correlation_id: Some("c1".into()),
            status,
            code: (status >= 400).then(|| "FORBIDDEN".into()),
            detail: None,
        }
    }

    #[test]
    fn records_survive_a_reopen_and_filter_by_account() {
        let dir = std::env::temp_dir().join(format!("oms-audit-{}", now_nanos()));
        {
            let log = AuditLog::open(&dir).unwrap();
            log.record(rec("a", 403));
            log.record(rec("b", 200));
            // Let the writer thread drain (dropping the log closes its channel).
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let log = AuditLog::open(&dir).unwrap();
        let a = log.query(Some("a"), 0, 10);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].record, rec("a", 403));
        log.record(rec("a", 200));
        let all = log.query(None, 0, 10);
        assert_eq!(all.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct Collect(Arc<parking_lot::Mutex<Vec<(String, u64)>>>);
    impl AuditSink for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn write(&mut self, batch: &[Stored]) -> Result<(), String> {
            self.0
                .lock()
                .extend(batch.iter().map(|s| (s.node.clone(), s.seq)));
            Ok(())
        }
    }

    struct Broken(Arc<AtomicU64>);
    impl AuditSink for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn write(&mut self, _: &[Stored]) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err("down".into())
        }
    }

    #[test]
    fn sinks_get_every_record_after_the_file_and_a_failing_sink_is_counted() {
        let dir = std::env::temp_dir().join(format!("oms-audit-sinks-{}", now_nanos()));
        let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicU64::new(0));
        let log = AuditLog::open_with(
            &dir,
            "n1",
            vec![
                Box::new(Broken(Arc::clone(&attempts))),
                Box::new(Collect(Arc::clone(&got))),
            ],
            None,
        )
        .unwrap();
        for i in 0..5 {
            log.record(rec(&format!("a{i}"), 200));
        }
        let stats = log.sink_stats();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (stats.written.load(Ordering::Relaxed) < 5
            || stats.failed.load(Ordering::Relaxed) < 5)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = got.lock().clone();
        assert_eq!(
            got,
            (1..=5).map(|s| ("n1".to_owned(), s)).collect::<Vec<_>>(),
            "every record, in order, tagged with the node"
        );
        // The file has them too, with the node.
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().all(|l| l.contains("\"node\":\"n1\"")));
        // The broken sink was tried SINK_ATTEMPTS times per batch, its records counted failed.
        assert_eq!(stats.written.load(Ordering::Relaxed), 5);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 5);
        assert_eq!(
            attempts.load(Ordering::Relaxed) % u64::from(SINK_ATTEMPTS),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
