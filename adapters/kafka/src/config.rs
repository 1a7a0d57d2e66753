//! Connection settings and topic names shared by every Kafka component.
//!
//! One struct so `oms serve --log kafka`, `oms processor` and `oms admin create-topics` build
//! their clients from the same values; every default here is the documented production default
//! (docs/kafka.md), tests only shorten timeouts.

use std::time::Duration;

use rdkafka::ClientConfig;

/// Settings for all oms Kafka clients.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Prepended to every topic name (`""` in production, a random one per test).
    pub prefix: String,
    /// `linger.ms` of the order-log producer: how long librdkafka waits to fill a batch.
    pub linger: Duration,
    /// `batch.size` in bytes.
    pub batch_size: usize,
    /// Bound on one `append` (produce + all acks); also librdkafka's `message.timeout.ms`.
    pub ack_timeout: Duration,
    /// `compression.type` (lz4 by default).
    pub compression: String,
    /// `client.id` prefix (the component name is appended).
    pub client_id: String,
    /// `statistics.interval.ms` (0 turns statistics off).
    pub stats_interval: Duration,
    /// Capacity of the event publisher's queue, in events; beyond it events are dropped and
    /// counted rather than blocking the processor.
    pub event_queue_capacity: usize,
    /// Consumer `session.timeout.ms` (tansu joins take about half of it: keep it short).
    pub session_timeout: Duration,
    /// Order log only: write each `append` batch as one Kafka transaction with this
    /// `transactional.id` (unique per publishing process, stable across its restarts). A
    /// failed batch is then aborted — invisible to every `read_committed` reader — instead of
    /// "possibly persisted" (docs/kafka.md, "Failure semantics"). Costs two round trips more
    /// per batch. `None` (default): idempotent producer without transactions.
    pub transactional_id: Option<String>,
    /// Extra librdkafka properties applied last (security, tuning).
    pub extra: Vec<(String, String)>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            prefix: String::new(),
            linger: Duration::from_micros(500),
            batch_size: 1 << 20,
            ack_timeout: Duration::from_secs(2),
            compression: "lz4".into(),
            client_id: "oms".into(),
            stats_interval: Duration::from_secs(5),
            event_queue_capacity: 65_536,
            session_timeout: Duration::from_secs(6),
            transactional_id: None,
            extra: Vec::new(),
        }
    }
}

impl KafkaConfig {
    /// Defaults with these brokers and topic prefix.
    pub fn new(brokers: impl Into<String>, prefix: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            prefix: prefix.into(),
            ..KafkaConfig::default()
        }
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.prefix)
    }

    /// The settings every client shares.
    pub(crate) fn base(&self, component: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{component}", self.client_id))
            // Murmur2 like the Java client, so any producer puts a symbol in the same partition.
            .set("partitioner", "murmur2_random")
            .set(
                "statistics.interval.ms",
                self.stats_interval.as_millis().to_string(),
            );
        c
    }

    pub(crate) fn apply_extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
    }
}

/// The topic names for a prefix: the five of [`Topics::all`], the cluster directory and the
/// audit topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub orders: String,
    pub executions: String,
    pub order_updates: String,
    pub prices: String,
    pub risk_events: String,
    /// Cluster mode's leader directory (one partition; not in [`Topics::all`]).
    pub members: String,
    /// Every node's audit records, keyed by account, kept forever (not in [`Topics::all`]).
    pub audit: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Topics {
            orders: format!("{prefix}orders"),
            executions: format!("{prefix}executions"),
            order_updates: format!("{prefix}order-updates"),
            prices: format!("{prefix}prices"),
            risk_events: format!("{prefix}risk-events"),
            members: format!("{prefix}members"),
            audit: format!("{prefix}audit"),
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.orders,
            &self.executions,
            &self.order_updates,
            &self.prices,
            &self.risk_events,
        ]
    }
}
