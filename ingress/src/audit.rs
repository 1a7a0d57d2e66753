//! The audit log: an append-only record of every state-changing request — who (account and
//! role), what (route and target), when, the correlation id and the result — including
//! refused ones (a denied admin halt is recorded with its 4xx).
//!
//! Records are appended as JSON lines to `<data-dir>/audit/audit.jsonl` by a writer thread
//! (never on the request's critical path beyond a channel send) and kept in a bounded
//! in-memory window for `GET /api/admin/audit`. The file is reloaded at start, so the window
//! survives restarts. The file is never rewritten, only appended to.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
    #[serde(flatten)]
    pub record: AuditRecord,
}

struct Window {
    next_seq: u64,
    records: VecDeque<Stored>,
}

/// The audit log of one node.
pub struct AuditLog {
    window: parking_lot::Mutex<Window>,
    writer: Option<crossbeam_channel::Sender<Stored>>,
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
        }
    }

    /// Opens (or creates) `<dir>/audit.jsonl`, loads its tail and starts the writer thread.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
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
        let (tx, rx) = crossbeam_channel::unbounded::<Stored>();
        std::thread::Builder::new()
            .name("oms-audit".into())
            .spawn(move || {
                let mut w = BufWriter::new(file);
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(s) = next {
                        if let Ok(line) = serde_json::to_string(&s) {
                            let _ = w.write_all(line.as_bytes());
                            let _ = w.write_all(b"\n");
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(e) = w.flush() {
                        tracing::error!(error = %e, "audit log write failed");
                    }
                }
            })?;
        Ok(AuditLog {
            window: parking_lot::Mutex::new(Window { next_seq, records }),
            writer: Some(tx),
        })
    }

    /// Appends one record.
    pub fn record(&self, record: AuditRecord) {
        let stored = {
            let mut w = self.window.lock();
            let s = Stored {
                seq: w.next_seq,
                ts: now_nanos(),
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

    /// Records of `account` (all when `None`) at or after `from` (ns), oldest first.
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
}
