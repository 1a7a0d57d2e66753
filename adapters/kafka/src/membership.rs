//! Cluster membership on Kafka (docs/scale-out.md): which node leads which partition of
//! `{prefix}orders`, and where to reach it.
//!
//! - [`GroupMember`]: this node's membership of the consumer group `{prefix}oms-cluster`,
//!   subscribed to `orders`. The group's assignment *is* the leadership: exactly one member
//!   holds a partition at a time, and Kafka's eager rebalance revokes a partition from its old
//!   holder (whose revoke callback returns first) before assigning it to the new one. The
//!   member never reads through the group: its partitions are paused at once (every node
//!   replicates the whole log with a separate, assigned consumer), so polling only drives
//!   heartbeats and rebalances. No home-made consensus: a node that stops heartbeating for
//!   `session.timeout.ms` loses its partitions.
//! - [`Directory`]: the owner table. On every change a node appends an [`Announcement`]
//!   (node id, URL, partitions held) to the one-partition topic `{prefix}members`; every node
//!   tails it. For each partition the newest announcement that claims it names the owner, so a
//!   dead node's last claim is superseded by its successor's, which is written later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::KafkaAdapterError;
use crate::log::partition_count;
use crate::stats::StatsContext;

/// Told by [`GroupMember`] when leadership changes. Runs on the polling thread, inside the
/// rebalance: `revoked` must stop all leader work on those partitions before it returns (the
/// next holder starts only after every member's revoke returned).
pub trait OwnershipListener: Send + Sync {
    /// Returns, per revoked partition, the next offset whose events this node has emitted as
    /// leader: committed to the group before the partition moves, so the next leader emits
    /// from there (see [`GroupMember::committed`]).
    fn revoked(&self, partitions: &[u32]) -> Vec<(u32, u64)>;
    fn assigned(&self, partitions: &[u32]);
}

struct MemberContext {
    stats: StatsContext,
    listener: Arc<dyn OwnershipListener>,
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.stats(statistics);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.error(error, reason);
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<u32> {
    let mut v: Vec<u32> = tpl
        .elements()
        .iter()
        .map(|e| e.partition() as u32)
        .collect();
    v.sort_unstable();
    v
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let emitted = self.listener.revoked(&partitions_of(tpl));
            let topic = tpl.elements().first().map(|e| e.topic().to_owned());
            if let (Some(topic), false) = (topic, emitted.is_empty())
                && let Err(e) = commit_offsets(c, &topic, &emitted, CommitMode::Sync)
            {
                tracing::warn!(error = %e, "could not commit the emitted offsets at revoke");
            }
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Leadership only: the data is read by the replica's own consumer.
            if let Err(e) = c.pause(tpl) {
                tracing::warn!(error = %e, "could not pause the leadership consumer");
            }
            self.listener.assigned(&partitions_of(tpl));
        }
    }
}

/// This node's seat in the consumer group `{prefix}oms-cluster`.
pub struct GroupMember {
    consumer: BaseConsumer<MemberContext>,
    topic: String,
}

impl GroupMember {
    /// Joins the group (the first assignment arrives through [`GroupMember::poll`]).
    pub fn join(
        cfg: &KafkaConfig,
        listener: Arc<dyn OwnershipListener>,
    ) -> Result<Self, KafkaAdapterError> {
        let mut c = cfg.base("cluster-member");
        c.set("group.id", format!("{}oms-cluster", cfg.prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("partition.assignment.strategy", "roundrobin")
            .set(
                "session.timeout.ms",
                cfg.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout.as_millis() / 3).max(100).to_string(),
            );
        cfg.apply_extra(&mut c);
        let ctx = MemberContext {
            stats: StatsContext::default(),
            listener,
        };
        let consumer: BaseConsumer<MemberContext> = c.create_with_context(ctx)?;
        let topic = cfg.topics().orders;
        consumer.subscribe(&[&topic])?;
        Ok(GroupMember { consumer, topic })
    }

    /// Drives heartbeats and rebalances (the listener runs in here). Call every ~100 ms.
    pub fn poll(&self, timeout: Duration) {
        if let Some(Err(e)) = self.consumer.poll(timeout) {
            tracing::debug!(error = %e, "cluster member poll");
        }
    }

    /// Commits, per partition, the next offset whose events this node has emitted as leader
    /// (asynchronously; the revoke commits synchronously).
    pub fn commit_emitted(&self, emitted: &[(u32, u64)]) -> Result<(), KafkaAdapterError> {
        if emitted.is_empty() {
            return Ok(());
        }
        commit_offsets(&self.consumer, &self.topic, emitted, CommitMode::Async)?;
        Ok(())
    }

    /// What the previous leaders of `partitions` committed as emitted (`None`: nothing yet).
    pub fn committed(
        &self,
        partitions: &[u32],
        timeout: Duration,
    ) -> Result<Vec<(u32, Option<u64>)>, KafkaAdapterError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p as i32);
        }
        let got = self.consumer.committed_offsets(tpl, timeout)?;
        let v = got
            .elements()
            .iter()
            .map(|e| {
                let off = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o as u64),
                    _ => None,
                };
                (e.partition() as u32, off)
            })
            .collect();
        // The list must not outlive the call (SERVICES.md pitfall 2).
        drop(got);
        Ok(v)
    }

    /// The high watermark (next offset to be written) of every partition of `orders`: a new
    /// leader waits until its replica has applied up to these before it takes requests.
    pub fn high_watermarks(&self, timeout: Duration) -> Result<Vec<u64>, KafkaAdapterError> {
        let n = partition_count(self.consumer.client(), &self.topic, timeout)?;
        let mut v = Vec::with_capacity(n as usize);
        for p in 0..n {
            let (_, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout)?;
            v.push(high.max(0) as u64);
        }
        Ok(v)
    }

    /// Leaves the group at once (revoke callback included), so the partitions move without
    /// waiting for the session timeout.
    pub fn leave(self) {
        self.consumer.unsubscribe();
        // A last poll serves the revoke; dropping closes the consumer.
        self.consumer.poll(Duration::from_millis(100));
    }
}

fn commit_offsets<C: ConsumerContext>(
    c: &BaseConsumer<C>,
    topic: &str,
    offsets: &[(u32, u64)],
    mode: CommitMode,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(o as i64))?;
    }
    c.commit(&tpl, mode)
}

/// One node's claim in `{prefix}members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub node: String,
    /// Base URL other nodes forward requests to (`http://host:port`).
    pub url: String,
    pub partitions: Vec<u32>,
}

impl Announcement {
    /// `v1 <node> <url> <p,p,…>` (node ids and URLs have no spaces).
    fn encode(&self) -> String {
        let parts: Vec<String> = self.partitions.iter().map(u32::to_string).collect();
        format!("v1 {} {} {}", self.node, self.url, parts.join(","))
    }

    fn decode(s: &str) -> Option<Announcement> {
        let mut it = s.split(' ');
        if it.next()? != "v1" {
            return None;
        }
        let node = it.next()?.to_string();
        let url = it.next()?.to_string();
        let list = it.next().unwrap_or("");
        let partitions = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u32>>>()?
        };
        Some(Announcement {
            node,
            url,
            partitions,
        })
    }
}

/// The owner of a partition as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub url: String,
}

/// Writes this node's announcements and tails everyone's (see the module docs).
pub struct Directory {
    producer: ThreadedProducer<DefaultProducerContext>,
    consumer: BaseConsumer,
    topic: String,
    /// Newest announcement per node, with its offset.
    latest: HashMap<String, (i64, Announcement)>,
    timeout: Duration,
}

impl Directory {
    pub fn open(cfg: &KafkaConfig) -> Result<Self, KafkaAdapterError> {
        let topic = cfg.topics().members;
        let mut p = cfg.base("cluster-directory");
        p.set("acks", "all")
            .set("linger.ms", "0")
            .set("statistics.interval.ms", "0");
        cfg.apply_extra(&mut p);
        let producer: ThreadedProducer<DefaultProducerContext> = p.create()?;
        let mut c = cfg.base("cluster-directory-reader");
        c.set("group.id", format!("{}oms-directory", cfg.prefix))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "50")
            .set("statistics.interval.ms", "0");
        cfg.apply_extra(&mut c);
        let consumer: BaseConsumer = c.create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(Directory {
            producer,
            consumer,
            topic,
            latest: HashMap::new(),
            timeout: cfg.ack_timeout.max(Duration::from_secs(2)),
        })
    }

    /// Appends `a` and waits until the broker has it.
    pub fn announce(&self, a: &Announcement) -> Result<(), KafkaAdapterError> {
        let value = a.encode();
        self.producer
            .send(
                BaseRecord::<str, str>::to(&self.topic)
                    .key(&a.node)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)?;
        self.producer.flush(self.timeout)?;
        Ok(())
    }

    /// Reads what arrived; `true` if the table may have changed.
    pub fn poll(&mut self, timeout: Duration) -> bool {
        let mut changed = false;
        let mut wait = timeout;
        while let Some(r) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            let Ok(m) = r else { continue };
            let Some(a) = m
                .payload()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(Announcement::decode)
            else {
                continue;
            };
            self.latest.insert(a.node.clone(), (m.offset(), a));
            changed = true;
        }
        changed
    }

    /// The owner of each of `partitions` partitions (`None`: nobody claims it now).
    pub fn owners(&self, partitions: u32) -> Vec<Option<Owner>> {
        let mut best: Vec<Option<(i64, &Announcement)>> = vec![None; partitions as usize];
        for (off, a) in self.latest.values() {
            for &p in &a.partitions {
                let Some(slot) = best.get_mut(p as usize) else {
                    continue;
                };
                if slot.is_none_or(|(o, _)| *off > o) {
                    *slot = Some((*off, a));
                }
            }
        }
        best.into_iter()
            .map(|b| {
                b.map(|(_, a)| Owner {
                    node: a.node.clone(),
                    url: a.url.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        for parts in [vec![], vec![3], vec![0, 2, 5]] {
            let a = Announcement {
                node: "oms-1".into(),
                url: "http://127.0.0.1:8081".into(),
                partitions: parts,
            };
            assert_eq!(Announcement::decode(&a.encode()), Some(a));
        }
        assert_eq!(Announcement::decode("v2 x y 1"), None);
        assert_eq!(Announcement::decode("v1 x y 1,z"), None);
    }
}
