//! Throughput of the Kafka order-log publish path vs a raw rdkafka `FutureProducer`.
//!
//! `cargo run --release -p oms-kafka --example kafka_publish_bench` against
//! `OMS_KAFKA_BROKERS` (default 127.0.0.1:9092). Both sides use the same producer settings
//! (idempotent, acks=all, lz4, linger 0.5 ms), the same 3-partition topic layout, the same
//! keys (symbol names) and the same payloads (encoded commands). `KafkaLog::append` is a
//! synchronous group commit, so its rate depends on the batch size the ring hands it; the raw
//! producer keeps every message in flight at once (its upper bound). `BENCH_TXN=1` runs the
//! order log in transactional mode.

use std::time::{Duration, Instant};

use futures::future::join_all;
use oms_core::codec;
use oms_core::command::{Command, PlaceOrder, RiskDecision};
use oms_core::ids::{AccountId, IdempotencyKey, OrderId, SymbolId};
use oms_core::instrument::InstrumentTable;
use oms_core::num::{Price, Qty};
use oms_core::order::{OrderType, Side, TimeInForce};
use oms_core::ports::OrderLog;
use oms_core::validate::ValidatedOrder;
use oms_kafka::{KafkaConfig, KafkaLog, create_topics};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn command(i: u64) -> Command {
    Command::Place(PlaceOrder {
        order_id: OrderId(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        account: AccountId::new(&format!("acct-{}", i % 1000)).unwrap(),
        order: ValidatedOrder {
            symbol: SymbolId((i % 3) as u16),
            side: if i.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            quantity: Qty(1000),
            price: Some(Price(4_500_000 + (i % 100) as i64)),
            client_order_id: None,
        },
        ts: 1_700_000_000_000_000_000 + i,
        idempotency_key: Some(IdempotencyKey::new(&format!("key-{i}")).unwrap()),
        fingerprint: i,
        correlation_id: None,
        risk: RiskDecision::Accepted {
            reserved: oms_core::num::Money(4_500_000_000),
        },
    })
}

fn main() {
    let brokers = std::env::var("OMS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let scale: u64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let table = InstrumentTable::demo();
    let mut payload = Vec::new();
    codec::encode(&command(1), &mut payload);
    println!(
        "message: {} bytes value, key = symbol (7 bytes)",
        payload.len()
    );

    let prefix = format!("bench-{stamp}-raw.");
    create_topics(&brokers, &prefix, 3, 1, 1).expect("create topics");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "0.5")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    let topic = format!("{prefix}orders");
    let total = 200_000 * scale;
    let encoded = |i: u64| {
        let c = command(i);
        let mut v = Vec::new();
        codec::encode(&c, &mut v);
        (table.get(c.symbol().unwrap()).symbol.clone(), v)
    };
    let payloads: Vec<(String, Vec<u8>)> = (0..total)
        .map(|i| {
            let c = command(i);
            let mut v = Vec::new();
            codec::encode(&c, &mut v);
            (table.get(c.symbol().unwrap()).symbol.clone(), v)
        })
        .collect();
    let mut rates = Vec::new();
    for (batch, total) in [
        (1usize, 2_000 * scale),
        (64, 64_000 * scale),
        (512, 200_000 * scale),
    ] {
        let prefix = format!("bench-{stamp}-b{batch}.");
        create_topics(&brokers, &prefix, 3, 1, 1).expect("create topics");
        let mut cfg = KafkaConfig::new(&brokers, &prefix);
        if std::env::var("BENCH_TXN").as_deref() == Ok("1") {
            // Transactional order log (one transaction per append).
            cfg.transactional_id = Some(format!("{prefix}log"));
        }
        let mut log = KafkaLog::new(&cfg, &table).expect("log");
        let cmds: Vec<Command> = (0..total).map(command).collect();
        log.append(&cmds[..batch]).expect("warm-up");
        let start = Instant::now();
        let mut lat = Vec::new();
        for chunk in cmds[batch..].chunks(batch) {
            let t = Instant::now();
            log.append(chunk).expect("append");
            lat.push(t.elapsed());
        }
        let el = start.elapsed();
        let n = (total as usize - batch) as f64;
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        let rate = n / el.as_secs_f64();
        println!(
            "KafkaLog::append batch {batch:>3}: {rate:>10.0} msg/s  ({n} msgs in {el:.2?}; append p50 {:?} p99 {:?})",
            p(0.5),
            p(0.99)
        );
        if batch == 512 {
            let start = Instant::now();
            let mut n = 0u64;
            log.replay(&oms_core::ports::Checkpoint::start(), &mut |_| n += 1)
                .expect("replay");
            let el = start.elapsed();
            println!(
                "KafkaLog::replay (3 partitions, timestamp merge): {:>10.0} msg/s ({n} msgs in {el:.2?})",
                n as f64 / el.as_secs_f64()
            );
        }
        // The same synchronous pattern with a raw FutureProducer: send the batch, await all.
        let raw_msgs: Vec<(String, Vec<u8>)> = (0..total).map(encoded).collect();
        let start = Instant::now();
        for chunk in raw_msgs[batch..].chunks(batch) {
            let futs: Vec<_> = chunk
                .iter()
                .map(|(k, v)| {
                    producer
                        .send_result(
                            FutureRecord::to(&topic)
                                .key(k.as_str())
                                .payload(v.as_slice()),
                        )
                        .map_err(|(e, _)| e)
                        .expect("enqueue")
                })
                .collect();
            for r in futures::executor::block_on(join_all(futs)) {
                r.expect("delivery").expect("delivered");
            }
        }
        let raw_rate = n / start.elapsed().as_secs_f64();
        println!(
            "raw FutureProducer batch {batch:>3}: {raw_rate:>10.0} msg/s (send batch, await all)"
        );
        rates.push((batch, rate, raw_rate));
    }

    let start = Instant::now();
    let futs: Vec<_> = payloads
        .iter()
        .map(|(k, v)| {
            producer
                .send_result(
                    FutureRecord::to(&topic)
                        .key(k.as_str())
                        .payload(v.as_slice()),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let results = futures::executor::block_on(join_all(futs));
    let el = start.elapsed();
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(ok as u64, total, "raw deliveries failed");
    let raw = total as f64 / el.as_secs_f64();
    println!("raw FutureProducer (all in flight): {raw:>10.0} msg/s  ({total} msgs in {el:.2?})");
    for (batch, r, rr) in rates {
        println!(
            "batch {batch:>3}: KafkaLog / raw same batching = {:.2}; KafkaLog / raw all-in-flight = {:.2}",
            r / rr,
            r / raw
        );
    }
    std::thread::sleep(Duration::from_millis(10));
}
