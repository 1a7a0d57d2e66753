//! Raw producer rate against the broker: the ceiling for any Kafka-backed order path.
//!
//! oms's Kafka publish rate only means something next to what the same broker accepts from a
//! plain, well-configured rdkafka producer with the same durability settings (acks=all,
//! idempotent), so `oms-perf kafka-produce` measures exactly that, with many sends in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::report::{Latency, MAX_LATENCY_US};
use crate::traffic::{Mix, Traffic};

/// Settings of a raw produce run.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic (created with `partitions` if missing).
    pub topic: String,
    /// Partitions when creating the topic.
    pub partitions: i32,
    /// Messages to send.
    pub messages: u64,
    /// Maximum sends awaiting delivery.
    pub inflight: usize,
    /// `linger.ms`.
    pub linger_ms: f64,
}

/// Result of a raw produce run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceReport {
    /// Mode name (`kafka-produce`).
    pub mode: String,
    /// Brokers.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// Messages acknowledged.
    pub delivered: u64,
    /// Delivery failures.
    pub errors: u64,
    /// Mean payload size in bytes.
    pub mean_payload_bytes: f64,
    /// Seconds from first send to last acknowledgement.
    pub elapsed_s: f64,
    /// Acknowledged messages per second.
    pub rate: f64,
    /// Enqueue-to-acknowledgement latency, microseconds.
    pub latency_us: Latency,
}

impl ProduceReport {
    /// One-line human summary.
    pub fn summary(&self) -> String {
        format!(
            "kafka-produce {} topic={}: {} delivered ({} errors) in {:.2}s = {:.0} msg/s, ack latency us p50={} p99={} max={}",
            self.brokers,
            self.topic,
            self.delivered,
            self.errors,
            self.elapsed_s,
            self.rate,
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.max
        )
    }
}

async fn ensure_topic(cfg: &ProduceConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .context("admin client")?;
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin
        .create_topics([&topic], &opts)
        .await
        .context("create_topics")?
    {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Produces `messages` order-shaped JSON records (key = symbol) and reports the rate.
pub async fn run(cfg: ProduceConfig) -> Result<ProduceReport> {
    ensure_topic(&cfg).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("compression.type", "lz4")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create()
        .context("producer")?;
    // Warm the connection and metadata so the first timed send does not pay for them.
    producer
        .send(
            FutureRecord::to(&cfg.topic).key("warmup").payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .context("warm-up send")?;

    let mut traffic = Traffic::new(
        Mix {
            cancel_frac: 0.0,
            retry_frac: 0.0,
            ..Mix::default()
        },
        42,
        "kp",
        0,
    );
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut pending: VecDeque<(Instant, DeliveryFuture)> = VecDeque::with_capacity(cfg.inflight);
    let (mut delivered, mut errors, mut bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut last_progress = start;
    for i in 0..cfg.messages {
        let op = traffic.next_op();
        let body = op.body.unwrap_or_default();
        let payload = format!(
            r#"{{"eventType":"ORDER_PLACED","seq":{i},"account":"{}","idempotencyKey":"{}","order":{body}}}"#,
            op.account,
            op.key.unwrap_or_default()
        );
        bytes += payload.len() as u64;
        let symbol = body.get(11..18).unwrap_or("BTC/USD").to_string();
        loop {
            let rec = FutureRecord::to(&cfg.topic).key(&symbol).payload(&payload);
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push_back((Instant::now(), f));
                    break;
                }
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    if !settle_one(&mut pending, &mut hist, &mut delivered, &mut errors).await {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Err((e, _)) => return Err(e).context("send"),
            }
        }
        while pending.len() >= cfg.inflight {
            settle_one(&mut pending, &mut hist, &mut delivered, &mut errors).await;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "[oms-perf] kafka-produce t={:.0}s delivered={delivered}",
                start.elapsed().as_secs_f64()
            );
        }
    }
    while settle_one(&mut pending, &mut hist, &mut delivered, &mut errors).await {}
    let elapsed = start.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(10)).ok();
    Ok(ProduceReport {
        mode: "kafka-produce".into(),
        brokers: cfg.brokers.clone(),
        topic: cfg.topic.clone(),
        delivered,
        errors,
        mean_payload_bytes: bytes as f64 / cfg.messages.max(1) as f64,
        elapsed_s: elapsed,
        rate: delivered as f64 / elapsed,
        latency_us: Latency::of(&hist),
    })
}

/// Awaits the oldest pending delivery; false if none was pending.
async fn settle_one(
    pending: &mut VecDeque<(Instant, DeliveryFuture)>,
    hist: &mut hdrhistogram::Histogram<u64>,
    delivered: &mut u64,
    errors: &mut u64,
) -> bool {
    let Some((t0, f)) = pending.pop_front() else {
        return false;
    };
    match f.await {
        Ok(Ok(_)) => {
            *delivered += 1;
            hist.saturating_record((t0.elapsed().as_micros() as u64).max(1));
        }
        _ => *errors += 1,
    }
    true
}
