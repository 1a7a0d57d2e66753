//! Redis health and write-back, off the hot path.
//!
//! The ring's batches only tell whether *they* reached Redis, and none are sent while the
//! store cools down or no order arrives, so `connected` cannot be derived from them. A probe
//! task on the store's runtime PINGs Redis every [`RedisConfig::probe_interval`] on a
//! connection of its own (with a generous reply bound, so a loaded machine does not flap it)
//! and publishes the answer in [`RedisStats::connected`].
//!
//! Completed records that could not be written while Redis was down or slow (answers given
//! from the local index) wait in a bounded [`Backlog`]; once a PING succeeds the probe writes
//! them back in pipelined chunks (best effort: a chunk that fails stays queued for the next
//! round; past the bound the oldest are dropped and counted), so retries of those keys are
//! answered from Redis again — by any node — soon after it returns.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::{RedisConfig, RedisStats};

/// Records per write-back pipeline.
const CHUNK: usize = 500;
/// Bound on one PING or one write-back chunk.
const PROBE_REPLY: Duration = Duration::from_secs(1);

/// One completed record to write back: Redis key, encoded value, TTL in seconds.
pub(crate) struct Pending {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) ttl_secs: u64,
}

/// Completed records waiting for Redis (bounded; the lock is taken only after a failure and
/// by the probe while it drains).
pub(crate) struct Backlog {
    queue: Mutex<VecDeque<Pending>>,
    cap: usize,
}

impl Backlog {
    pub(crate) fn new(cap: usize) -> Self {
        Backlog {
            queue: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    /// Queues records whose write failed; drops the oldest past the bound.
    pub(crate) fn push(&self, items: impl IntoIterator<Item = Pending>, stats: &RedisStats) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for it in items {
            if q.len() >= self.cap {
                q.pop_front();
                stats.writeback_dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(it);
        }
        stats
            .writeback_pending
            .store(q.len() as u64, Ordering::Relaxed);
    }

    fn take(&self, n: usize) -> Vec<Pending> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    fn put_back(&self, items: Vec<Pending>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for it in items.into_iter().rev() {
            q.push_front(it);
        }
    }

    fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Runs until every handle of the store is dropped (`alive` gone).
pub(crate) async fn probe(
    cfg: Arc<RedisConfig>,
    stats: Arc<RedisStats>,
    backlog: Arc<Backlog>,
    alive: Weak<()>,
) {
    let mut conn: Option<ConnectionManager> = None;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(cfg.probe_interval).await;
        if alive.strong_count() == 0 {
            return;
        }
        if conn.is_none() {
            conn = open(&cfg).await;
        }
        let ok = match conn.as_mut() {
            Some(c) => matches!(
                tokio::time::timeout(PROBE_REPLY, redis::cmd("PING").query_async::<String>(c))
                    .await,
                Ok(Ok(_))
            ),
            None => false,
        };
        failures = if ok { 0 } else { failures + 1 };
        if failures >= 3 {
            // Start afresh rather than wait on the manager's own reconnect schedule.
            conn = None;
        }
        let was = stats.connected.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(url = %cfg.url, "Redis answers again");
            } else {
                tracing::warn!(url = %cfg.url, "Redis does not answer");
            }
        }
        if ok && let Some(c) = conn.as_mut() {
            write_back(c, &backlog, &stats).await;
        }
    }
}

async fn open(cfg: &RedisConfig) -> Option<ConnectionManager> {
    let client = redis::Client::open(cfg.url.as_str()).ok()?;
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(PROBE_REPLY))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let limit = cfg.connect_timeout + Duration::from_millis(500);
    match tokio::time::timeout(limit, ConnectionManager::new_with_config(client, mcfg)).await {
        Ok(Ok(c)) => Some(c),
        _ => None,
    }
}

/// Writes the backlog in chunks while Redis keeps answering.
async fn write_back(conn: &mut ConnectionManager, backlog: &Backlog, stats: &RedisStats) {
    loop {
        let chunk = backlog.take(CHUNK);
        if chunk.is_empty() {
            break;
        }
        let mut pipe = redis::pipe();
        for p in &chunk {
            pipe.cmd("SET")
                .arg(p.key.as_str())
                .arg(p.value.as_slice())
                .arg("EX")
                .arg(p.ttl_secs)
                .ignore();
        }
        let res = tokio::time::timeout(PROBE_REPLY, pipe.query_async::<()>(conn)).await;
        if matches!(res, Ok(Ok(()))) {
            stats
                .written_back
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        } else {
            backlog.put_back(chunk);
            break;
        }
    }
    stats
        .writeback_pending
        .store(backlog.len() as u64, Ordering::Relaxed);
}
