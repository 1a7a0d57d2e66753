//! # oms-kafka
//!
//! Kafka (rdkafka, bundled librdkafka) adapters for oms (ARCHITECTURE.md §6, §9):
//!
//! - [`KafkaLog`]: the order log on topic `{prefix}orders`, an [`oms_core::ports::OrderLog`].
//!   `append` is a synchronous group commit called from the ring's publish thread: one Kafka
//!   batch for many orders, bounded by `ack_timeout`, with a precise answer about what may
//!   have reached the broker when it fails (see `docs/kafka.md`).
//! - [`OrderConsumer`]: follows `{prefix}orders` for a processor (in-process, or a separate
//!   process in the consumer group `{prefix}processor`), committing offsets only after the
//!   processor has applied the records.
//! - [`EventPublisher`]: the processor's events as seed-shaped JSON on `executions`,
//!   `order-updates`, `prices` and `risk-events`. Never on the critical path: a bounded
//!   queue, a background thread, drops counted.
//! - [`GroupMember`], [`Directory`]: cluster membership — which node leads which partition
//!   of `orders`, and where to reach it (docs/scale-out.md).
//! - [`admin`]: topic creation and the readiness probe.
//!
//! Everything here is synchronous (plain OS threads) like the ports it implements: the
//! core knows nothing of async runtimes, and librdkafka has its own I/O threads anyway.

pub mod admin;
mod audit;
mod config;
mod consumer;
mod error;
mod json;
mod log;
mod membership;
mod partition;
mod publisher;
mod settled;
mod stats;

pub use admin::{create_topics, orders_partitions, wait_ready};
pub use audit::{AuditCounters, AuditProducer};
pub use config::{KafkaConfig, Topics};
pub use consumer::{ConsumerStart, OrderConsumer, OrderRecord};
pub use error::KafkaAdapterError;
pub use json::{EventMessage, EventTopic, event_json, rfc3339};
pub use log::{KafkaLog, SCHEMA_VERSION, TRACEPARENT_HEADER, TRACEPARENT_LEN, Traceparents};
pub use membership::{Announcement, Directory, GroupMember, Owner, OwnershipListener};
pub use partition::{murmur2, partition_for};
pub use publisher::{EventPublisher, PublisherCounters};
pub use settled::SettledPrefix;
pub use stats::{KafkaStats, StatsSnapshot};
