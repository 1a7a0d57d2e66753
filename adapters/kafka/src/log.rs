//! [`KafkaLog`]: the order log on `{prefix}orders` (ARCHITECTURE.md §2 stage 4, §6).
//!
//! `append` is a group commit: every command of the ring's batch is handed to librdkafka at
//! once (idempotent producer, `acks=all`, lz4), then the publish thread waits, bounded by
//! `ack_timeout`, until librdkafka has reported every delivery. The answer on failure is
//! precise, because an order reported as not durable must never execute later
//! (docs/kafka.md, "Failure semantics"):
//!
//! - `Ok(())`: every record is acknowledged by all in-sync replicas.
//! - [`LogError::Unavailable`]: every record of the batch is *known* not to be in the log
//!   (librdkafka status `NOT_PERSISTED`: never sent, or purged from the queue before being
//!   sent, or refused by the broker with a definite error). The caller may release the
//!   idempotency keys; nothing of the batch can appear later.
//! - [`LogError::Timeout`]: at least one record was in flight when we gave up
//!   (`POSSIBLY_PERSISTED`). Its fate is unknown and the caller must treat the batch as
//!   "outcome unknown", never as "rejected".
//!
//! Records are keyed by symbol name so one book's commands stay in one partition, in order.
//! A halt (kill switch) has no symbol: it is written to *every* partition so each processor
//! partition sees it in order with its own commands; replay visits only partition 0's copy.
//!
//! `replay` reads all partitions to their end with an assigned consumer (no group join) and merges the partitions by command timestamp, which
//! reproduces the ring's global order (the timestamp is taken in that order), keeping each
//! partition's own order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use oms_core::codec;
use oms_core::command::Command;
use oms_core::instrument::InstrumentTable;
use oms_core::ports::{AppendOutcomes, BatchId, Checkpoint, LogError, OrderLog};
use parking_lot::{Condvar, Mutex};
use rdkafka::bindings::{rd_kafka_message_status, rd_kafka_msg_status_t};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::KafkaAdapterError;
use crate::stats::{KafkaStats, StatsContext};

/// Value of the `schema-version` header on every record oms writes.
pub const SCHEMA_VERSION: &str = "1";
/// `content-type` of an `orders` record: [`oms_core::codec`]'s binary encoding.
pub const COMMAND_CONTENT_TYPE: &str = "application/x-oms-command";
/// Key of a halt record (written to every partition).
pub const HALT_KEY: &str = "$halt";
/// The W3C Trace Context header on an `orders` record (the order's log-append span) and on
/// an event record (the span that handed the event over), when traces are on.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The `traceparent` of each command of the batch about to be appended, by index (shared
/// with the caller, which fills it before `append`/`submit`; see
/// [`KafkaLog::trace_headers`]). A side channel because the core's log port carries
/// commands only, and the core knows nothing of tracing.
pub type Traceparents = Arc<Mutex<Vec<Option<[u8; TRACEPARENT_LEN]>>>>;

/// How long, after giving up on a batch, we wait for librdkafka to report the purged records
/// (so that we can tell "not persisted" from "possibly persisted").
const PURGE_GRACE: Duration = Duration::from_millis(200);
/// Replay pauses a partition whose merge buffer holds this many records.
const REPLAY_BUFFER_HIGH: usize = 20_000;

/// Delivery accounting of one batch in flight.
#[derive(Debug)]
struct Inflight {
    id: BatchId,
    /// Records handed to librdkafka; `usize::MAX` while the batch is still being handed over.
    expected: usize,
    acked: usize,
    not_persisted: usize,
    possibly_persisted: usize,
    first_error: Option<String>,
    /// Handing the batch over stopped early with this error (some records may be in flight).
    send_error: Option<LogError>,
    deadline: Instant,
    /// `(partition, offset + 1)` of the newest acknowledged record per partition.
    next: Vec<(u32, u64)>,
}

impl Inflight {
    fn reported(&self) -> usize {
        self.acked + self.not_persisted + self.possibly_persisted
    }

    fn complete(&self) -> bool {
        self.expected != usize::MAX && self.reported() >= self.expected
    }
}

/// What the producer's delivery callback and the outcome waiter share: the batches in flight
/// (a handful; searched linearly), a condition variable signalled when one completes, and the
/// producer (to purge it when a batch fails).
struct Shared {
    batches: Mutex<VecDeque<Inflight>>,
    done: Condvar,
    producer: Mutex<Weak<ThreadedProducer<LogContext>>>,
    ack_timeout: Duration,
    /// The log position after the last record replayed or acknowledged, for snapshots
    /// (`None` until a replay tells where the log ended). Outcomes are learnt in submission
    /// order and each partition is written in that order, so after batch `k` is acknowledged
    /// every record of batches up to `k` is below this position (records of an earlier batch
    /// that failed with an unknown outcome too: they are voided, never applied).
    position: Mutex<Option<Checkpoint>>,
    /// The broker refused a record because it holds a newer epoch of this producer's id
    /// (see [`KafkaLog::heal`]).
    fenced: AtomicBool,
}

/// Producer context: counts delivery reports (on librdkafka's polling thread) and wakes the
/// waiter when a batch is complete.
struct LogContext {
    stats: StatsContext,
    shared: Arc<Shared>,
}

impl ClientContext for LogContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.stats(statistics);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.error(error, reason);
    }
}

impl ProducerContext for LogContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let mut q = self.shared.batches.lock();
        let Some(b) = q.iter_mut().find(|b| b.id == id as BatchId) else {
            return; // a record of a batch already decided
        };
        match result {
            Ok(m) => {
                b.acked += 1;
                let (p, next) = (m.partition() as u32, m.offset() as u64 + 1);
                match b.next.iter_mut().find(|(q, _)| *q == p) {
                    Some(e) => e.1 = e.1.max(next),
                    None => b.next.push((p, next)),
                }
            }
            Err((err, msg)) => {
                // SAFETY: `msg.ptr()` is the live librdkafka message of this delivery report;
                // rd_kafka_message_status only reads it.
                let status = unsafe { rd_kafka_message_status(msg.ptr()) };
                if status == rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED {
                    b.not_persisted += 1;
                } else {
                    b.possibly_persisted += 1;
                }
                if matches!(
                    err.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
                ) {
                    self.shared.fenced.store(true, Ordering::Relaxed);
                }
                if b.first_error.is_none() {
                    b.first_error = Some(err.to_string());
                }
            }
        }
        if b.complete() {
            self.shared.done.notify_all();
        }
    }
}

impl Shared {
    /// Waits until batch `id` is fully reported or its deadline passes; true if every record
    /// was acknowledged and the whole batch was handed over.
    fn wait_reported(&self, id: BatchId) -> bool {
        let mut q = self.batches.lock();
        loop {
            let Some(b) = q.iter().find(|b| b.id == id) else {
                return false;
            };
            if b.complete() {
                return b.send_error.is_none() && b.acked == b.expected;
            }
            let deadline = b.deadline;
            if Instant::now() >= deadline {
                return false;
            }
            self.done.wait_until(&mut q, deadline);
        }
    }

    /// Forgets batch `id` (later reports of it are ignored).
    fn remove(&self, id: BatchId) -> Option<Inflight> {
        let mut q = self.batches.lock();
        let i = q.iter().position(|b| b.id == id)?;
        q.remove(i)
    }

    /// Gives up on batch `id`: purges what librdkafka still holds (which fails every later
    /// batch in flight too; each is then decided by its own wait), waits briefly for the
    /// purge reports and classifies the batch.
    fn abandon(&self, id: BatchId) -> LogError {
        if let Some(p) = self.producer.lock().upgrade() {
            p.purge(PurgeConfig::default().queue().inflight());
        }
        let grace = Instant::now() + PURGE_GRACE;
        let mut q = self.batches.lock();
        while q.iter().any(|b| b.id == id && !b.complete()) {
            if self.done.wait_until(&mut q, grace).timed_out() {
                break;
            }
        }
        drop(q);
        let Some(b) = self.remove(id) else {
            return LogError::Timeout(self.ack_timeout);
        };
        let expected = if b.expected == usize::MAX {
            // Still being handed over when the deadline passed: count it as unknown.
            b.reported() + 1
        } else {
            b.expected
        };
        let unknown = expected.saturating_sub(b.reported()) + b.possibly_persisted;
        let detail = b.first_error.clone().unwrap_or_default();
        if unknown > 0 {
            tracing::warn!(target: "oms_kafka", unknown, %detail, "order log append: outcome unknown");
            return LogError::Timeout(self.ack_timeout);
        }
        match b.send_error {
            Some(e) => e,
            None => LogError::Unavailable(if detail.is_empty() {
                "records not delivered".into()
            } else {
                detail
            }),
        }
    }

    /// The outcome of batch `id`, with the meaning of [`OrderLog::append`]'s.
    fn outcome(&self, id: BatchId) -> Result<(), LogError> {
        if self.wait_reported(id) {
            if let Some(b) = self.remove(id) {
                self.advance(&b);
            }
            return Ok(());
        }
        Err(self.abandon(id))
    }

    /// Moves the position past an acknowledged batch.
    fn advance(&self, b: &Inflight) {
        if let Some(pos) = self.position.lock().as_mut() {
            for &(p, next) in &b.next {
                if next > pos.next_offset(p) {
                    pos.set(p, next);
                }
            }
        }
    }
}

/// [`AppendOutcomes`] of a [`KafkaLog`]: waits on the delivery reports (see module docs).
struct KafkaOutcomes {
    shared: Arc<Shared>,
}

impl AppendOutcomes for KafkaOutcomes {
    fn wait(&mut self, id: BatchId) -> Result<(), LogError> {
        self.shared.outcome(id)
    }

    fn position(&self) -> Option<Checkpoint> {
        self.shared.position.lock().clone()
    }
}

/// The order log on Kafka. See the module documentation for the failure semantics.
pub struct KafkaLog {
    producer: Arc<ThreadedProducer<LogContext>>,
    shared: Arc<Shared>,
    stats: Arc<KafkaStats>,
    cfg: KafkaConfig,
    topic: String,
    /// Symbol name by `SymbolId`: the record key.
    keys: Vec<String>,
    partitions: i32,
    /// Id of the last batch handed over.
    generation: BatchId,
    buf: Vec<u8>,
    rebuilds: u64,
    /// Transactional mode: `init_transactions` done on the current producer.
    txn_ready: bool,
    /// Transactional mode: the producer must be replaced (and so the old epoch fenced)
    /// before the next batch.
    txn_poisoned: bool,
    /// Traces on: the `traceparent` of each command of the next batch.
    traces: Option<Traceparents>,
}

/// How long a transactional append may spend aborting after a failed commit.
const ABORT_TIMEOUT: Duration = Duration::from_millis(500);

fn build_producer(
    cfg: &KafkaConfig,
    stats: &Arc<KafkaStats>,
    shared: &Arc<Shared>,
) -> Result<Arc<ThreadedProducer<LogContext>>, KafkaAdapterError> {
    let ack_ms = cfg.ack_timeout.as_millis().max(1);
    let mut c = cfg.base("orders-producer");
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set(
            "linger.ms",
            format!("{:.3}", cfg.linger.as_secs_f64() * 1e3),
        )
        .set("batch.size", cfg.batch_size.to_string())
        .set("message.timeout.ms", ack_ms.to_string())
        .set("request.timeout.ms", ack_ms.max(1_000).to_string())
        .set("queue.buffering.max.messages", "1000000")
        // Never let a metadata request create the topic with a partition count we did
        // not choose; a missing topic is an error at start.
        .set("allow.auto.create.topics", "false");
    if let Some(id) = &cfg.transactional_id {
        c.set("transactional.id", id).set(
            "transaction.timeout.ms",
            (ack_ms * 5).max(10_000).to_string(),
        );
    }
    cfg.apply_extra(&mut c);
    let ctx = LogContext {
        stats: StatsContext {
            stats: stats.clone(),
        },
        shared: Arc::clone(shared),
    };
    let producer = Arc::new(c.create_with_context::<_, ThreadedProducer<LogContext>>(ctx)?);
    *shared.producer.lock() = Arc::downgrade(&producer);
    Ok(producer)
}

impl KafkaLog {
    /// Connects to `cfg.brokers` and checks that `{prefix}orders` exists (its partition count
    /// is needed to write halts). Fails if the broker does not answer within `ack_timeout`.
    pub fn new(
        cfg: &KafkaConfig,
        instruments: &InstrumentTable,
    ) -> Result<Self, KafkaAdapterError> {
        let stats = Arc::new(KafkaStats::default());
        let shared = Arc::new(Shared {
            batches: Mutex::new(VecDeque::new()),
            done: Condvar::new(),
            producer: Mutex::new(Weak::new()),
            ack_timeout: cfg.ack_timeout,
            position: Mutex::new(None),
            fenced: AtomicBool::new(false),
        });
        let producer = build_producer(cfg, &stats, &shared)?;
        let topic = cfg.topics().orders;
        let partitions = partition_count(producer.client(), &topic, cfg.ack_timeout)?;
        Ok(KafkaLog {
            producer,
            shared,
            stats,
            cfg: cfg.clone(),
            topic,
            keys: instruments.iter().map(|i| i.symbol.clone()).collect(),
            partitions,
            generation: 0,
            buf: Vec::with_capacity(256),
            rebuilds: 0,
            txn_ready: false,
            txn_poisoned: false,
            traces: None,
        })
    }

    /// Turns on the `traceparent` header: the caller writes the value for each command of a
    /// batch (by index; `None` for an untraced one) into the returned vector before handing
    /// the batch over, and the record of command `i` carries entry `i`. A batch with no
    /// entries (e.g. voids) gets no header. Never called when traces are off, so the append
    /// path then takes no lock for it.
    pub fn trace_headers(&mut self) -> Traceparents {
        self.traces
            .get_or_insert_with(Traceparents::default)
            .clone()
    }

    /// An idempotent producer that hit a fatal error (e.g. the broker lost its producer
    /// state) refuses every later record; replace it. Records the old one still held were
    /// already reported as failed (purged before the report), or are decided as unknown at
    /// their deadline.
    ///
    /// Likewise an idempotent (not transactional) producer the broker *fenced*: after a purge
    /// of in-flight records librdkafka bumps the producer's epoch, and a broker that then
    /// answers `PRODUCER_FENCED` / `INVALID_PRODUCER_EPOCH` to it (seen with the test broker
    /// after it hung for 3 s) refuses every later record of that producer id, voids
    /// included, so the node would answer 503 forever. A new producer gets a new id. This is
    /// safe for the in-doubt records: the broker holds a newer epoch of the old id, so no
    /// request of the old producer can still be appended. (A fenced *transactional*
    /// producer means another process took its `transactional.id`; it is not replaced.)
    fn heal(&mut self) -> Result<(), LogError> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(target: "oms_kafka", ?code, reason, "order log producer fatal; recreating it");
        } else if self.cfg.transactional_id.is_none()
            && self.shared.fenced.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(target: "oms_kafka", "order log producer fenced by the broker; recreating it");
        } else if !self.txn_poisoned {
            return Ok(());
        }
        let producer = build_producer(&self.cfg, &self.stats, &self.shared)
            .map_err(|e| LogError::Unavailable(e.to_string()))?;
        self.producer = producer;
        self.rebuilds += 1;
        self.txn_ready = false;
        self.txn_poisoned = false;
        Ok(())
    }

    /// How many times the producer was recreated after a fatal error.
    pub fn producer_rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// librdkafka statistics of the producer (for `/metrics`).
    pub fn stats(&self) -> Arc<KafkaStats> {
        self.stats.clone()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Batches handed over whose outcome has not been taken yet.
    pub fn in_flight(&self) -> usize {
        self.shared.batches.lock().len()
    }

    fn send_one(
        &mut self,
        cmd: &Command,
        trace: Option<&[u8; TRACEPARENT_LEN]>,
        deadline: Instant,
        expected: &mut usize,
    ) -> Result<(), LogError> {
        self.buf.clear();
        codec::encode(cmd, &mut self.buf);
        let (key, targets): (&str, Option<i32>) = match cmd.symbol() {
            Some(s) => {
                let k = self.keys.get(usize::from(s.0)).ok_or_else(|| {
                    LogError::Unavailable(format!("symbol id {} not in the instrument table", s.0))
                })?;
                (k.as_str(), None)
            }
            None => (HALT_KEY, Some(self.partitions)),
        };
        let corr = match cmd {
            Command::Place(p) => p.correlation_id,
            Command::Cancel(c) => c.correlation_id,
            Command::Amend(a) => a.correlation_id,
            Command::CancelAll(c) => c.correlation_id,
            Command::Halt(_) | Command::Void(_) => None,
        };
        let copies = targets.unwrap_or(1);
        for part in 0..copies {
            let mut headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: "schema-version",
                    value: Some(SCHEMA_VERSION),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some(COMMAND_CONTENT_TYPE),
                });
            if let Some(c) = &corr {
                headers = headers.insert(Header {
                    key: "correlation-id",
                    value: Some(c.as_str()),
                });
            }
            if let Some(t) = trace {
                headers = headers.insert(Header {
                    key: TRACEPARENT_HEADER,
                    value: Some(&t[..]),
                });
            }
            let mut record = BaseRecord::with_opaque_to(&self.topic, self.generation as usize)
                .key(key)
                .payload(&self.buf[..])
                .headers(headers);
            if targets.is_some() {
                record = record.partition(part);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => {
                        *expected += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if Instant::now() >= deadline {
                            return Err(LogError::Timeout(self.cfg.ack_timeout));
                        }
                        record = r;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err((e, _)) => return Err(LogError::Unavailable(e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// Hands every record of `batch` to librdkafka as a new batch in flight. `Err` only if
    /// nothing was handed over; an error after some records is kept for the outcome.
    fn hand_over(&mut self, batch: &[Command], deadline: Instant) -> Result<BatchId, LogError> {
        self.generation = self.generation.wrapping_add(1) % (usize::MAX as BatchId - 1);
        let id = self.generation;
        self.shared.batches.lock().push_back(Inflight {
            id,
            expected: usize::MAX, // not complete until every record is handed over
            acked: 0,
            not_persisted: 0,
            possibly_persisted: 0,
            first_error: None,
            send_error: None,
            deadline,
            next: Vec::new(),
        });
        let mut expected = 0;
        let mut failure = None;
        let traces = self.traces.clone();
        let traces = traces.as_ref().map(|t| t.lock());
        for (i, cmd) in batch.iter().enumerate() {
            let trace = traces
                .as_ref()
                .and_then(|t| t.get(i))
                .and_then(Option::as_ref);
            if let Err(e) = self.send_one(cmd, trace, deadline, &mut expected) {
                failure = Some(e);
                break;
            }
        }
        drop(traces);
        if expected == 0
            && let Some(e) = failure
        {
            self.shared.remove(id);
            return Err(e);
        }
        let mut q = self.shared.batches.lock();
        if let Some(b) = q.iter_mut().find(|b| b.id == id) {
            b.expected = expected;
            b.send_error = failure;
            if b.complete() {
                self.shared.done.notify_all();
            }
        }
        Ok(id)
    }

    /// Transactional append: begin, produce, commit; on failure abort. Only a commit whose
    /// outcome we could not learn (commit failed *and* abort failed) is `Timeout`; the
    /// producer is then replaced so that the next `init_transactions` with the same
    /// `transactional.id` fences the old epoch (the coordinator aborts its open transaction).
    fn append_txn(&mut self, batch: &[Command], deadline: Instant) -> Result<(), LogError> {
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let unavailable = |e: KafkaError| LogError::Unavailable(e.to_string());
        if !self.txn_ready {
            if let Err(e) = self.producer.init_transactions(remaining()) {
                self.txn_poisoned = true;
                return Err(unavailable(e));
            }
            self.txn_ready = true;
        }
        if let Err(e) = self.producer.begin_transaction() {
            self.txn_poisoned = true;
            return Err(unavailable(e));
        }
        let mut failure = None;
        let mut acked = None;
        match self.hand_over(batch, deadline) {
            // Wait for the delivery reports ourselves first: rdkafka's `commit_transaction`
            // flushes by polling in 100 ms steps, which would make every batch cost 100 ms.
            Ok(id) => {
                if !self.shared.wait_reported(id) {
                    let b = self.shared.remove(id);
                    failure = Some(
                        b.and_then(|b| b.send_error.or(b.first_error.map(LogError::Unavailable)))
                            .unwrap_or_else(|| {
                                LogError::Unavailable("records not acknowledged in time".into())
                            }),
                    );
                } else {
                    acked = self.shared.remove(id);
                }
            }
            Err(e) => failure = Some(e),
        }
        if failure.is_none() {
            match self.producer.commit_transaction(remaining()) {
                Ok(()) => {
                    if let Some(b) = &acked {
                        self.shared.advance(b);
                    }
                    return Ok(());
                }
                Err(e) => failure = Some(unavailable(e)),
            }
        }
        let cause = failure.unwrap_or_else(|| LogError::Unavailable("commit failed".into()));
        match self.producer.abort_transaction(ABORT_TIMEOUT) {
            // Aborted: no read_committed reader will ever see these records.
            Ok(()) => Err(cause),
            Err(e) => {
                tracing::warn!(target: "oms_kafka", error = %e, "order log: abort failed; outcome unknown");
                self.txn_poisoned = true;
                Err(LogError::Timeout(self.cfg.ack_timeout))
            }
        }
    }

    /// [`OrderLog::replay`] that also reports each record's partition and offset.
    pub fn replay_records(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(u32, u64, &Command),
    ) -> Result<Checkpoint, KafkaAdapterError> {
        let end = replay_topic(&self.cfg, &self.topic, from, Copies::First, visit)?;
        self.replayed(&end);
        Ok(end)
    }

    /// A replay reached `end`: appends continue from there (see [`Shared::position`]).
    fn replayed(&self, end: &Checkpoint) {
        let mut pos = self.shared.position.lock();
        match pos.as_mut() {
            Some(p) => {
                for &(q, next) in &end.next {
                    if next > p.next_offset(q) {
                        p.set(q, next);
                    }
                }
            }
            None => *pos = Some(end.clone()),
        }
    }
}

impl OrderLog for KafkaLog {
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
        if batch.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.ack_timeout;
        self.heal()?;
        if self.cfg.transactional_id.is_some() {
            return self.append_txn(batch, deadline);
        }
        let id = self.hand_over(batch, deadline)?;
        self.shared.outcome(id)
    }

    /// Pipelined appends (several batches in flight), except in transactional mode, where
    /// each batch is one transaction committed before the next begins.
    fn outcomes(&mut self) -> Option<Box<dyn AppendOutcomes>> {
        if self.cfg.transactional_id.is_some() {
            return None;
        }
        Some(Box::new(KafkaOutcomes {
            shared: Arc::clone(&self.shared),
        }))
    }

    fn submit(&mut self, batch: &[Command]) -> Result<BatchId, LogError> {
        if self.cfg.transactional_id.is_some() {
            return self.append(batch).map(|()| 0);
        }
        self.heal()?;
        let deadline = Instant::now() + self.cfg.ack_timeout;
        self.hand_over(batch, deadline)
    }

    fn replay(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        self.replay_records(from, &mut |_, _, c| visit(c))
            .map_err(to_log_error)
    }

    fn replay_copies(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(u32, &Command),
    ) -> Result<Checkpoint, LogError> {
        let end = replay_topic(
            &self.cfg,
            &self.topic,
            from,
            Copies::Each,
            &mut |p, _, c| visit(p, c),
        )
        .map_err(to_log_error)?;
        self.replayed(&end);
        Ok(end)
    }

    fn position(&self) -> Option<Checkpoint> {
        self.shared.position.lock().clone()
    }
}

/// Which copies of a symbol-less command (written to every partition) a replay visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Copies {
    /// Partition 0's: the command once, as the single-node processor applied it.
    First,
    /// Every partition's, as cluster mode's replicas apply them (each to its partition).
    Each,
}

/// Maps adapter errors onto the port's error.
pub(crate) fn to_log_error(e: KafkaAdapterError) -> LogError {
    match e {
        KafkaAdapterError::Timeout(d) => LogError::Timeout(d),
        KafkaAdapterError::Codec {
            topic,
            partition,
            offset,
            source,
        } => LogError::Corrupt {
            location: format!("{topic}/{partition}@{offset}"),
            reason: source.to_string(),
        },
        KafkaAdapterError::Inconsistent { location, reason } => {
            LogError::Corrupt { location, reason }
        }
        other => LogError::Unavailable(other.to_string()),
    }
}

/// Number of partitions of `topic` (an error if it does not exist).
pub(crate) fn partition_count<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaAdapterError> {
    let md = client.fetch_metadata(Some(topic), timeout)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| KafkaAdapterError::MissingTopic(topic.to_owned()))?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(KafkaAdapterError::MissingTopic(topic.to_owned()));
    }
    Ok(t.partitions().len() as i32)
}

/// One partition's state during a replay.
struct PartState {
    id: i32,
    /// Next offset to visit.
    next: i64,
    /// The consumer reported the end of the partition (`enable.partition.eof`).
    eof: bool,
    buf: VecDeque<(i64, Command)>,
    paused: bool,
}

impl PartState {
    fn done(&self) -> bool {
        self.eof
    }
}

/// Reads `topic` from `from` to its end, merging partitions by command timestamp (ties:
/// lower partition first). Symbol-less commands (halts, cancel-all of every symbol) are
/// visited from partition 0 only.
///
/// The end of each partition is the consumer's end-of-partition event, not the high
/// watermark from ListOffsets: tansu 0.6 answers ListOffsets(latest) with the base offset of
/// the last batch + 1, which would stop a replay inside the last batch.
pub(crate) fn replay_topic(
    cfg: &KafkaConfig,
    topic: &str,
    from: &Checkpoint,
    copies: Copies,
    visit: &mut dyn FnMut(u32, u64, &Command),
) -> Result<Checkpoint, KafkaAdapterError> {
    let timeout = cfg.ack_timeout.max(Duration::from_secs(5));
    let mut c = cfg.base("orders-replay");
    c.set("group.id", format!("{}replay", cfg.prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("allow.auto.create.topics", "false")
        // A checkpoint outside the log (records deleted, or the topic recreated behind it)
        // means the source of truth lost records: refuse, never skip or restart.
        .set("auto.offset.reset", "error");
    cfg.apply_extra(&mut c);
    let consumer: BaseConsumer<StatsContext> = c.create_with_context(StatsContext::default())?;
    let n = partition_count(consumer.client(), topic, timeout)?;
    let mut parts = Vec::with_capacity(n as usize);
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        let (low, _) = consumer.fetch_watermarks(topic, p, timeout)?;
        let next = from.next_offset(p as u32) as i64;
        if next < low {
            return Err(KafkaAdapterError::Inconsistent {
                location: format!("{topic}/{p}@{next}"),
                reason: format!("checkpoint below the log start {low} (records deleted)"),
            });
        }
        tpl.add_partition_offset(topic, p, Offset::Offset(next))?;
        parts.push(PartState {
            id: p,
            next,
            eof: false,
            buf: VecDeque::new(),
            paused: false,
        });
    }
    let mut out = from.clone();
    consumer.assign(&tpl)?;
    let idle_limit = timeout;
    let mut last_progress = Instant::now();
    loop {
        // Visit while every unfinished partition has a head (so the merge is exact).
        loop {
            let ready = parts.iter().all(|p| !p.buf.is_empty() || p.done());
            let best = parts
                .iter()
                .filter_map(|p| p.buf.front().map(|(_, c)| (c.ts(), p.id)))
                .min();
            match best {
                Some((_, id)) if ready => {
                    let st = &mut parts[id as usize];
                    let (off, cmd) = st.buf.pop_front().expect("head exists");
                    if st.paused && st.buf.len() < REPLAY_BUFFER_HIGH / 4 {
                        let mut t = TopicPartitionList::new();
                        t.add_partition(topic, id);
                        consumer.resume(&t)?;
                        st.paused = false;
                    }
                    // Symbol-less commands (halts, cancel-all of every symbol) were written to
                    // every partition: visit one copy, or each (`copies`).
                    if cmd.symbol().is_some() || id == 0 || copies == Copies::Each {
                        visit(id as u32, off as u64, &cmd);
                    }
                    out.set(id as u32, off as u64 + 1);
                }
                _ => break,
            }
        }
        if parts.iter().all(|p| p.done() && p.buf.is_empty()) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_progress.elapsed() > idle_limit {
                    // A fetch beyond the end of a partition gets no data and no end event
                    // from some brokers (tansu): tell that case apart from a silent broker.
                    for st in parts.iter().filter(|p| !p.eof) {
                        if let Ok((_, high)) = consumer.fetch_watermarks(topic, st.id, timeout)
                            && st.next > high
                            && st.buf.is_empty()
                        {
                            return Err(KafkaAdapterError::Inconsistent {
                                location: format!("{topic}/{}@{}", st.id, st.next),
                                reason: format!("checkpoint beyond the log end {high}"),
                            });
                        }
                    }
                    return Err(KafkaAdapterError::Timeout(idle_limit));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // End of the readable log (past any transaction markers): nothing more below
                // the watermark will come.
                if let Some(st) = parts.get_mut(p as usize) {
                    st.eof = true;
                }
                last_progress = Instant::now();
            }
            Some(Err(e))
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
                ) =>
            {
                return Err(KafkaAdapterError::Inconsistent {
                    location: topic.to_owned(),
                    reason: "checkpoint outside the log (records deleted or topic recreated)"
                        .into(),
                });
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                let off = m.offset();
                let Some(st) = parts.get_mut(p as usize) else {
                    continue;
                };
                if off < st.next {
                    continue;
                }
                let payload = m.payload().unwrap_or_default();
                let cmd = codec::decode(payload).map_err(|source| KafkaAdapterError::Codec {
                    topic: topic.to_owned(),
                    partition: p,
                    offset: off,
                    source,
                })?;
                st.next = off + 1;
                st.buf.push_back((off, cmd));
                if st.buf.len() >= REPLAY_BUFFER_HIGH && !st.paused {
                    let mut t = TopicPartitionList::new();
                    t.add_partition(topic, p);
                    consumer.pause(&t)?;
                    st.paused = true;
                }
            }
        }
    }
    for st in &parts {
        if st.next as u64 > out.next_offset(st.id as u32) {
            out.set(st.id as u32, st.next as u64);
        }
    }
    Ok(out)
}
