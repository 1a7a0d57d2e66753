//! [`EventPublisher`]: the processor's events onto the event topics, off the critical path.
//!
//! The processor (matching) must never wait for Kafka, so `publish` only copies events into a
//! bounded queue and returns; when the queue is full the events are dropped and counted in
//! [`PublisherCounters::queue_full`] (an alert, not back-pressure: the order log remains the
//! source of truth and the topics can be rebuilt by replay). A background thread formats
//! JSON, hands records to librdkafka (idempotent, `acks=all`, lz4, batched by `linger.ms`)
//! which retries deliveries itself for up to `message.timeout.ms`, and counts the outcomes.
//!
//! Delivery reports are served by librdkafka's own polling thread ([`ThreadedProducer`]),
//! which blocks on the report queue and wakes as soon as a report arrives: pending events
//! reach 0 as soon as the broker has acknowledged them, not one report per 50 ms wake-up of
//! the formatting thread (an earlier version polled there, and drained ~55 events/s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oms_core::event::Event;
use oms_core::instrument::InstrumentTable;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Statistics};

use crate::config::{KafkaConfig, Topics};
use crate::error::KafkaAdapterError;
use crate::json::{EventTopic, event_json};
use crate::log::{SCHEMA_VERSION, TRACEPARENT_HEADER, TRACEPARENT_LEN};
use crate::settled::SettledPrefix;
use crate::stats::{KafkaStats, StatsContext};

/// `content-type` of an event record.
pub const EVENT_CONTENT_TYPE: &str = "application/json";
/// How long the background thread keeps flushing at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
/// Events formatted per wake-up of the formatting thread.
const DRAIN_BATCH: usize = 4096;
/// Wait before retrying a record refused because librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

/// Event publishing counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// Events accepted into the queue.
    pub enqueued: AtomicU64,
    /// Records acknowledged by the broker.
    pub produced: AtomicU64,
    /// Records that failed after librdkafka's retries.
    pub delivery_errors: AtomicU64,
    /// Events dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Events that could not be formatted (unknown symbol) or handed to librdkafka.
    pub dropped_invalid: AtomicU64,
    /// The accepted events (numbered in `enqueued` order) that are all acknowledged or
    /// failed, as a prefix: what cluster mode may commit as emitted.
    pub settled: SettledPrefix,
}

impl PublisherCounters {
    /// Events accepted but not yet acknowledged or failed.
    pub fn pending(&self) -> u64 {
        let r = Ordering::Relaxed;
        self.enqueued.load(r).saturating_sub(
            self.produced.load(r) + self.delivery_errors.load(r) + self.dropped_invalid.load(r),
        )
    }
}

struct PublisherContext {
    stats: StatsContext,
    counters: Arc<PublisherCounters>,
}

impl ClientContext for PublisherContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.stats(statistics);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.error(error, reason);
    }
}

impl ProducerContext for PublisherContext {
    /// The event's number in `enqueued` order (see [`PublisherCounters::settled`]).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        self.counters.settled.mark(seq as u64);
        match result {
            Ok(_) => self.counters.produced.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(target: "oms_kafka", error = %e, "event delivery failed");
                self.counters
                    .delivery_errors
                    .fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// An event and the `traceparent` its records carry (traces on, a traced order's events).
type Queued = (Event, Option<[u8; TRACEPARENT_LEN]>);

/// Publishes events to `executions`, `order-updates`, `prices` and `risk-events`.
pub struct EventPublisher {
    tx: Option<SyncSender<Queued>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<PublisherCounters>,
    stats: Arc<KafkaStats>,
}

impl EventPublisher {
    /// Creates the producer and starts the background thread. Does not wait for the broker
    /// (events queue up in librdkafka until it answers).
    pub fn new(
        cfg: &KafkaConfig,
        instruments: Arc<InstrumentTable>,
    ) -> Result<Self, KafkaAdapterError> {
        let mut c = cfg.base("events-producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", "5")
            .set("batch.size", cfg.batch_size.to_string())
            .set("message.timeout.ms", "300000");
        cfg.apply_extra(&mut c);
        let counters = Arc::new(PublisherCounters::default());
        let ctx = PublisherContext {
            stats: StatsContext::default(),
            counters: counters.clone(),
        };
        let stats = ctx.stats.stats.clone();
        let producer: ThreadedProducer<PublisherContext> = c.create_with_context(ctx)?;
        let (tx, rx) = sync_channel(cfg.event_queue_capacity.max(1));
        let topics = cfg.topics();
        let c2 = counters.clone();
        let worker = std::thread::Builder::new()
            .name("oms-kafka-events".into())
            .spawn(move || run(producer, rx, topics, instruments, c2))
            .map_err(|e| KafkaAdapterError::Topic {
                topic: "events".into(),
                reason: format!("cannot start publisher thread: {e}"),
            })?;
        Ok(EventPublisher {
            tx: Some(tx),
            worker: Some(worker),
            counters,
            stats,
        })
    }

    /// Enqueues copies of `events` without blocking; events beyond the queue's capacity are
    /// dropped and counted.
    pub fn publish(&self, events: &[Event]) {
        self.publish_traced(events, None);
    }

    /// [`EventPublisher::publish`], with a `traceparent` header on every record of
    /// `events` (the span of a traced order that produced them).
    pub fn publish_traced(&self, events: &[Event], traceparent: Option<[u8; TRACEPARENT_LEN]>) {
        let Some(tx) = &self.tx else { return };
        let mut ok = 0;
        for (i, e) in events.iter().enumerate() {
            match tx.try_send((e.clone(), traceparent)) {
                Ok(()) => ok += 1,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    let dropped = (events.len() - i) as u64;
                    self.counters
                        .queue_full
                        .fetch_add(dropped, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.counters.enqueued.fetch_add(ok, Ordering::Relaxed);
    }

    pub fn counters(&self) -> Arc<PublisherCounters> {
        self.counters.clone()
    }

    pub fn stats(&self) -> Arc<KafkaStats> {
        self.stats.clone()
    }

    /// Waits until every enqueued event is acknowledged or failed; false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.counters.pending() > 0 {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Drop for EventPublisher {
    /// Stops accepting events, lets the thread send what is queued and flush for up to 5 s.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run(
    producer: ThreadedProducer<PublisherContext>,
    rx: Receiver<Queued>,
    topics: Topics,
    table: Arc<InstrumentTable>,
    counters: Arc<PublisherCounters>,
) {
    let topic_name = |t: EventTopic| match t {
        EventTopic::Executions => topics.executions.as_str(),
        EventTopic::OrderUpdates => topics.order_updates.as_str(),
        EventTopic::Prices => topics.prices.as_str(),
        EventTopic::RiskEvents => topics.risk_events.as_str(),
    };
    // The number of the next event taken from the queue: events are taken in the order
    // `publish` accepted them, so this is their index in `enqueued`.
    let mut seq: u64 = 0;
    let mut open = true;
    while open {
        let first = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        let batch = first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(DRAIN_BATCH));
        for (event, traceparent) in batch {
            let this = seq;
            seq += 1;
            let Some(m) = event_json(&event, &table) else {
                counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
                counters.settled.mark(this);
                continue;
            };
            let mut headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: "schema-version",
                    value: Some(SCHEMA_VERSION),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some(EVENT_CONTENT_TYPE),
                });
            if let Some(t) = &traceparent {
                headers = headers.insert(Header {
                    key: TRACEPARENT_HEADER,
                    value: Some(&t[..]),
                });
            }
            if let Some(c) = &m.correlation_id {
                headers = headers.insert(Header {
                    key: "correlation-id",
                    value: Some(c.as_str()),
                });
            }
            let mut record = BaseRecord::with_opaque_to(topic_name(m.topic), this as usize)
                .key(m.key.as_str())
                .payload(m.json.as_slice())
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's buffer is full (broker slow or down): wait here, on
                        // our own thread, while its polling thread serves the reports; the
                        // bounded queue in front absorbs or drops.
                        record = r;
                        std::thread::sleep(QUEUE_FULL_WAIT);
                    }
                    Err((e, _)) => {
                        tracing::warn!(target: "oms_kafka", error = %e, "event not produced");
                        counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
                        counters.settled.mark(this);
                        break;
                    }
                }
            }
        }
    }
    if let Err(e) = producer.flush(SHUTDOWN_FLUSH) {
        tracing::warn!(target: "oms_kafka", error = %e, "event publisher flush at shutdown");
    }
}
