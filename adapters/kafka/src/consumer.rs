//! [`OrderConsumer`]: a processor following `{prefix}orders` (ARCHITECTURE.md §9).
//!
//! One consumer serves both topologies: the in-process processor (assigned to every partition
//! from a checkpoint, no group join) and a separate processor process (member of the consumer
//! group `{prefix}processor`, so each partition — a set of symbols — has exactly one
//! processor). Offsets are never committed automatically: the processor calls
//! [`OrderConsumer::commit`] with the checkpoint of what it has *applied* (and, in production,
//! snapshotted), as in rust-rdkafka's at-least-once example. After a failover the new owner
//! re-reads from the committed offset; the engine is deterministic, so re-applying the tail
//! reproduces the same events (downstream consumers de-duplicate by exec id / order version).
//!
//! Halts are written to every partition, so a processor owning several partitions sees each
//! halt once per partition; applying a halt is idempotent (it sets a flag).

use std::sync::Arc;
use std::time::Duration;

use oms_core::codec;
use oms_core::command::Command;
use oms_core::ports::Checkpoint;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::KafkaAdapterError;
use crate::log::{TRACEPARENT_HEADER, TRACEPARENT_LEN, partition_count};
use crate::stats::{KafkaStats, StatsContext};

/// Where an [`OrderConsumer`] starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerStart {
    /// Join the group `{prefix}processor`; partitions and starting offsets (the committed
    /// ones, else the earliest) come from the group.
    Group,
    /// Read every partition from this checkpoint (no group join; commits still go to the
    /// group `{prefix}processor`).
    Checkpoint(Checkpoint),
}

/// One record of `orders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub partition: u32,
    pub offset: u64,
    pub command: Command,
    /// The record's `traceparent` header (the order's log-append span), when it has a
    /// well-formed version-00 one: a processor on any node continues the order's trace.
    pub traceparent: Option<[u8; TRACEPARENT_LEN]>,
}

/// Follows `{prefix}orders`; see the module documentation.
pub struct OrderConsumer {
    consumer: BaseConsumer<StatsContext>,
    topic: String,
    stats: Arc<KafkaStats>,
}

impl OrderConsumer {
    pub fn new(cfg: &KafkaConfig, start: ConsumerStart) -> Result<Self, KafkaAdapterError> {
        let mut c = cfg.base("orders-consumer");
        c.set("group.id", format!("{}processor", cfg.prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            // Records are applied as they arrive: do not let the broker sit on a fetch.
            .set("fetch.wait.max.ms", "10")
            .set(
                "session.timeout.ms",
                cfg.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout.as_millis() / 3).max(100).to_string(),
            );
        cfg.apply_extra(&mut c);
        let ctx = StatsContext::default();
        let stats = ctx.stats.clone();
        let consumer: BaseConsumer<StatsContext> = c.create_with_context(ctx)?;
        let topic = cfg.topics().orders;
        match start {
            ConsumerStart::Group => consumer.subscribe(&[&topic])?,
            ConsumerStart::Checkpoint(cp) => {
                let timeout = cfg.ack_timeout.max(Duration::from_secs(5));
                let n = partition_count(consumer.client(), &topic, timeout)?;
                let mut tpl = TopicPartitionList::new();
                for p in 0..n {
                    let off = cp.next_offset(p as u32) as i64;
                    tpl.add_partition_offset(&topic, p, Offset::Offset(off))?;
                }
                consumer.assign(&tpl)?;
            }
        }
        Ok(OrderConsumer {
            consumer,
            topic,
            stats,
        })
    }

    /// The next record, or `None` if none arrived within `timeout`.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<OrderRecord>, KafkaAdapterError> {
        Ok(self.poll_with_correlation(timeout)?.map(|(r, _)| r))
    }

    /// Like [`OrderConsumer::poll`], also returning the record's `correlation-id` header.
    pub fn poll_with_correlation(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(OrderRecord, Option<String>)>, KafkaAdapterError> {
        let Some(r) = self.consumer.poll(timeout) else {
            return Ok(None);
        };
        let m = r?;
        let corr = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "correlation-id")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        let traceparent = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == TRACEPARENT_HEADER)
                .and_then(|h| h.value)
                .and_then(|v| <[u8; TRACEPARENT_LEN]>::try_from(v).ok())
        });
        let command = codec::decode(m.payload().unwrap_or_default()).map_err(|source| {
            KafkaAdapterError::Codec {
                topic: self.topic.clone(),
                partition: m.partition(),
                offset: m.offset(),
                source,
            }
        })?;
        Ok(Some((
            OrderRecord {
                partition: m.partition() as u32,
                offset: m.offset() as u64,
                command,
                traceparent,
            },
            corr,
        )))
    }

    /// Commits `applied` (next offset per partition) synchronously. Call only after the
    /// records below it are applied (and, if the processor snapshots, snapshotted).
    pub fn commit(&self, applied: &Checkpoint) -> Result<(), KafkaAdapterError> {
        if applied.next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &(p, off) in &applied.next {
            tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(off as i64))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync)?;
        Ok(())
    }

    /// The group's committed offsets for the partitions currently assigned.
    pub fn committed(&self, timeout: Duration) -> Result<Checkpoint, KafkaAdapterError> {
        let mut cp = Checkpoint::start();
        // The list must not outlive this call: a live list from `committed()` makes dropping
        // the consumer hang (SERVICES.md pitfall 2).
        let tpl = self.consumer.committed(timeout)?;
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                cp.set(e.partition() as u32, o as u64);
            }
        }
        drop(tpl);
        Ok(cp)
    }

    /// The next offset this consumer will read, per assigned partition that has a position.
    /// Past transaction markers and aborted records too, so a reader that has consumed
    /// everything reaches the high watermark even when the log ends with a commit marker.
    pub fn positions(&self) -> Result<Vec<(u32, u64)>, KafkaAdapterError> {
        let tpl = self.consumer.position()?;
        let mut v: Vec<(u32, u64)> = tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some((e.partition() as u32, o as u64)),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Partitions currently assigned to this consumer.
    pub fn assignment(&self) -> Result<Vec<u32>, KafkaAdapterError> {
        let tpl = self.consumer.assignment()?;
        let mut v: Vec<u32> = tpl
            .elements()
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Records between the consumer's position and the high watermark, per partition
    /// (the consumer-lag metric).
    pub fn lag(&self, timeout: Duration) -> Result<u64, KafkaAdapterError> {
        let pos = self.consumer.position()?;
        let mut lag = 0u64;
        for e in pos.elements() {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.topic, e.partition(), timeout)?;
            if let Offset::Offset(o) = e.offset() {
                lag += (high - o).max(0) as u64;
            }
        }
        Ok(lag)
    }

    pub fn stats(&self) -> Arc<KafkaStats> {
        self.stats.clone()
    }
}
