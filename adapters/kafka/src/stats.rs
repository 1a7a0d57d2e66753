//! librdkafka statistics reduced to the few numbers the metrics endpoint exports.
//!
//! librdkafka emits a large JSON document every `statistics.interval.ms` on its own thread;
//! we keep only totals in atomics so `/metrics` reads them without locks or parsing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::Statistics;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// The latest statistics of one client (all zero until the first report).
#[derive(Debug, Default)]
pub struct KafkaStats {
    txmsgs: AtomicI64,
    rxmsgs: AtomicI64,
    tx_errors: AtomicU64,
    tx_retries: AtomicU64,
    req_timeouts: AtomicU64,
    msg_cnt: AtomicU64,
    rtt_avg_us: AtomicI64,
    reports: AtomicU64,
    errors: AtomicU64,
}

/// A copy of [`KafkaStats`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages sent (producer) since the client started.
    pub txmsgs: i64,
    /// Messages received (consumer).
    pub rxmsgs: i64,
    /// Σ over brokers of transmission errors.
    pub tx_errors: u64,
    /// Σ over brokers of retried requests.
    pub tx_retries: u64,
    /// Σ over brokers of requests that timed out.
    pub req_timeouts: u64,
    /// Messages waiting in the producer queue (in librdkafka, not yet acknowledged).
    pub msg_cnt: u64,
    /// Mean broker round-trip time over brokers with samples, microseconds.
    pub rtt_avg_us: i64,
    /// How many statistics reports arrived.
    pub reports: u64,
    /// Client-level errors reported by librdkafka (broker down, all brokers down, …).
    pub errors: u64,
}

impl KafkaStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = Ordering::Relaxed;
        StatsSnapshot {
            txmsgs: self.txmsgs.load(r),
            rxmsgs: self.rxmsgs.load(r),
            tx_errors: self.tx_errors.load(r),
            tx_retries: self.tx_retries.load(r),
            req_timeouts: self.req_timeouts.load(r),
            msg_cnt: self.msg_cnt.load(r),
            rtt_avg_us: self.rtt_avg_us.load(r),
            reports: self.reports.load(r),
            errors: self.errors.load(r),
        }
    }

    fn record(&self, s: &Statistics) {
        let r = Ordering::Relaxed;
        let (mut txerrs, mut retries, mut timeouts, mut rtt_sum, mut rtt_n) = (0, 0, 0, 0, 0);
        for b in s.brokers.values() {
            txerrs += b.txerrs;
            retries += b.txretries;
            timeouts += b.req_timeouts;
            if let Some(w) = &b.rtt
                && w.cnt > 0
            {
                rtt_sum += w.avg;
                rtt_n += 1;
            }
        }
        self.txmsgs.store(s.txmsgs, r);
        self.rxmsgs.store(s.rxmsgs, r);
        self.tx_errors.store(txerrs, r);
        self.tx_retries.store(retries, r);
        self.req_timeouts.store(timeouts, r);
        self.msg_cnt.store(s.msg_cnt, r);
        if rtt_n > 0 {
            self.rtt_avg_us.store(rtt_sum / rtt_n, r);
        }
        self.reports.fetch_add(1, r);
    }
}

/// A client context that feeds [`KafkaStats`] and logs client errors through `tracing`.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatsContext {
    pub(crate) stats: Arc<KafkaStats>,
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "oms_kafka", %error, reason, "kafka client error");
    }
}

impl ConsumerContext for StatsContext {}
