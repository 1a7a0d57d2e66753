//! The `{prefix}audit` topic: every node's audit records (who did what, when, with what
//! result), keyed by account so one account's records keep their order, kept forever.
//!
//! The node's audit file is the durable copy written first; this topic is the shared,
//! venue-wide copy that other systems (surveillance, a SIEM) consume. Records are handed to
//! librdkafka without blocking; a record librdkafka cannot queue or deliver is counted
//! ([`AuditProducer::failed`]) and stays in the node's file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Statistics};

use crate::config::KafkaConfig;
use crate::error::KafkaAdapterError;
use crate::stats::StatsContext;

/// Delivery outcomes of the audit producer.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub delivered: AtomicU64,
    /// Refused by librdkafka's queue or failed delivery (the record is in the node's file).
    pub failed: AtomicU64,
}

struct AuditContext {
    stats: StatsContext,
    counters: Arc<AuditCounters>,
}

impl ClientContext for AuditContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.stats(statistics);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.stats.error(error, reason);
    }
}

impl ProducerContext for AuditContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.counters.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                // Logged at the 1st, 2nd, 4th, 8th … failure, not per record: a broker
                // outage fails every record in flight at once (the count is the metric).
                let failed = self.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if failed.is_power_of_two() {
                    tracing::warn!(target: "oms_kafka", error = %e, failed_total = failed, "audit record delivery failed (the record is in the node's audit file)");
                }
                failed
            }
        };
    }
}

/// Produces audit records to `{prefix}audit` (idempotent, `acks=all`).
pub struct AuditProducer {
    producer: ThreadedProducer<AuditContext>,
    topic: String,
    counters: Arc<AuditCounters>,
}

impl AuditProducer {
    /// Creates the producer; does not wait for the broker (records queue in librdkafka).
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaAdapterError> {
        let mut c = cfg.base("audit-producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", "20")
            .set("message.timeout.ms", "300000");
        cfg.apply_extra(&mut c);
        let counters = Arc::new(AuditCounters::default());
        let ctx = AuditContext {
            stats: StatsContext::default(),
            counters: Arc::clone(&counters),
        };
        Ok(AuditProducer {
            producer: c.create_with_context(ctx)?,
            topic: cfg.topics().audit,
            counters,
        })
    }

    /// Queues one record: `key` = the account, `json` = the record as the API shows it.
    pub fn send(&self, key: &str, json: &[u8]) {
        let rec = BaseRecord::to(&self.topic).key(key).payload(json);
        if let Err((e, _)) = self.producer.send(rec) {
            tracing::warn!(target: "oms_kafka", error = %e, "audit record not queued");
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaAdapterError> {
        self.producer.flush(timeout)?;
        Ok(())
    }

    pub fn counters(&self) -> Arc<AuditCounters> {
        Arc::clone(&self.counters)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}
