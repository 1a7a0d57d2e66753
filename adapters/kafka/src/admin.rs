//! Topic creation and the readiness probe.
//!
//! Topics are created explicitly (never by produce-time auto-creation, which picks a
//! partition count we don't choose — SERVICES.md) with the settings of
//! `deploy/k8s/kafka-topics`: `orders` is kept forever (it is the source of truth), the event
//! topics for 7 days. Creation is idempotent so `oms admin create-topics` can run on every
//! deploy.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Topics;
use crate::error::KafkaAdapterError;

/// Retention of the event topics: 7 days.
const EVENT_RETENTION_MS: &str = "604800000";

/// Creates the topics for `prefix` (`orders`, `executions`, `order-updates`, `prices`,
/// `risk-events`, cluster mode's one-partition `members`, and `audit`); topics that already exist
/// are left as they are. Returns the names of the
/// topics that were created now.
pub fn create_topics(
    brokers: &str,
    prefix: &str,
    partitions: i32,
    replication_factor: i32,
    min_insync_replicas: i32,
) -> Result<Vec<String>, KafkaAdapterError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "oms-admin")
        .create()?;
    let topics = Topics::new(prefix);
    let isr = min_insync_replicas.to_string();
    let mut specs: Vec<NewTopic<'_>> = topics
        .all()
        .into_iter()
        .map(|name| {
            let retention = if name == topics.orders {
                "-1"
            } else {
                EVENT_RETENTION_MS
            };
            NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            )
            .set("min.insync.replicas", &isr)
            .set("retention.ms", retention)
            .set("cleanup.policy", "delete")
        })
        .collect();
    // Cluster mode's leader directory: one partition (one total order of announcements),
    // kept forever (a few records per rebalance).
    specs.push(
        NewTopic::new(
            &topics.members,
            1,
            TopicReplication::Fixed(replication_factor),
        )
        .set("min.insync.replicas", &isr)
        .set("retention.ms", "-1")
        .set("cleanup.policy", "delete"),
    );
    // The audit trail: keyed by account, kept forever like the order log.
    specs.push(
        NewTopic::new(
            &topics.audit,
            partitions,
            TopicReplication::Fixed(replication_factor),
        )
        .set("min.insync.replicas", &isr)
        .set("retention.ms", "-1")
        .set("cleanup.policy", "delete"),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics(&specs, &opts))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaAdapterError::Topic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(created)
}

/// Readiness probe: succeeds once a broker answers a metadata request within `timeout`.
pub fn wait_ready(brokers: &str, timeout: Duration) -> Result<(), KafkaAdapterError> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "oms-ready")
        .create()?;
    let md = probe
        .fetch_metadata(None, timeout)
        .map_err(|_| KafkaAdapterError::Timeout(timeout))?;
    if md.brokers().is_empty() {
        return Err(KafkaAdapterError::Timeout(timeout));
    }
    Ok(())
}

/// The partition count of `{prefix}orders` (cluster mode sizes its ownership table by it).
pub fn orders_partitions(cfg: &crate::KafkaConfig) -> Result<u32, KafkaAdapterError> {
    let c: rdkafka::consumer::BaseConsumer = cfg.base("metadata").create()?;
    let n = crate::log::partition_count(
        c.client(),
        &cfg.topics().orders,
        cfg.ack_timeout.max(Duration::from_secs(5)),
    )?;
    Ok(n as u32)
}
