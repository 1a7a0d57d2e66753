//! Broker outage: with our own tansu (on a free port) killed, `append` fails within the
//! bound and says whether anything may have reached the log; after a restart appends work
//! again with the same `KafkaLog`.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use oms_core::instrument::InstrumentTable;
use oms_core::ports::{Checkpoint, LogError, OrderLog};
use oms_kafka::{KafkaConfig, KafkaLog, create_topics, wait_ready};

#[test]
fn append_fails_within_the_bound_while_the_broker_is_down_and_recovers() {
    outage(false);
}

#[test]
fn transactional_append_fails_within_the_bound_and_recovers() {
    outage(true);
}

fn outage(transactional: bool) {
    if broker_or_skip().is_none() {
        return; // services unavailable and skipping allowed
    }
    let mut broker = OwnBroker::start();
    let b = broker.brokers();
    let p = prefix("outage");
    create_topics(&b, &p, 2, 1, 1).unwrap();
    let mut cfg = KafkaConfig::new(&b, &p);
    cfg.ack_timeout = Duration::from_millis(1000);
    if transactional {
        cfg.transactional_id = Some(format!("{p}log"));
    }
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    log.append(&stream(1, 10)).expect("append while up");

    broker.stop();
    assert!(wait_ready(&b, Duration::from_millis(300)).is_err());
    for round in 0..3 {
        let start = Instant::now();
        let err = log
            .append(&stream(100 + round * 10, 10))
            .expect_err("append with the broker down");
        let took = start.elapsed();
        // The bound: ack_timeout plus the purge grace (200 ms) and some scheduling slack.
        // Transactional: + the abort attempt (500 ms).
        let bound = if transactional { 2_100 } else { 1_600 };
        assert!(took < Duration::from_millis(bound), "append took {took:?}");
        // Nothing could reach a dead broker: the batch is known not to be in the log. In
        // transactional mode librdkafka may report the aborted batch as "possibly persisted"
        // (so `Timeout`); both are safe there, as the aborted transaction is invisible to the
        // read_committed readers.
        let ok = if transactional {
            matches!(err, LogError::Unavailable(_) | LogError::Timeout(_))
        } else {
            matches!(err, LogError::Unavailable(_))
        };
        assert!(ok, "round {round}: expected Unavailable, got {err}");
    }

    broker.restart();
    // Memory storage: the restarted broker is empty; recreate the topics like a deploy would.
    create_topics(&b, &p, 2, 1, 1).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let batch = stream(1_000, 10);
    loop {
        match log.append(&batch) {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < end,
                    "append still failing after restart: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    log.append(&stream(2_000, 5))
        .expect("second append after restart");
    // Exactly the acknowledged batches are in the (new) log: none of the failed ones
    // appeared later.
    let mut got = Vec::new();
    log.replay(&Checkpoint::start(), &mut |c| got.push(c.ts()))
        .unwrap();
    let mut want: Vec<u64> = batch.iter().map(|c| c.ts()).collect();
    want.extend(2_000..2_005);
    assert_eq!(got, want);
}

/// Pipelined appends: the broker is killed with four batches in flight (frozen first, so none
/// can be acknowledged before the kill). Every batch is decided within the bound, none is
/// reported durable, and after a restart the log holds exactly the batches acknowledged
/// since: nothing of a failed batch is delivered later, nothing acknowledged is missing or
/// doubled.
///
/// It was `#[ignore]`d as flaky: the idempotent producer could stay `ProducerFenced` for more
/// than 20 s after the restart. That was the log's bug, not the broker's: a producer the
/// broker fenced after its epoch bump was never replaced. `KafkaLog::heal` now replaces it.
#[test]
fn broker_killed_with_several_batches_in_flight() {
    if broker_or_skip().is_none() {
        return; // services unavailable and skipping allowed
    }
    let mut broker = OwnBroker::start();
    let b = broker.brokers();
    let p = prefix("inflight");
    create_topics(&b, &p, 2, 1, 1).unwrap();
    let mut cfg = KafkaConfig::new(&b, &p);
    cfg.ack_timeout = Duration::from_millis(1000);
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    let mut outcomes = log.outcomes().expect("the Kafka log is pipelined");
    // A first append on a fresh broker also fetches metadata and a producer id, which can
    // take longer than the 1 s bound on a loaded machine: the outage is what is under test.
    let warm = Instant::now() + Duration::from_secs(20);
    while let Err(e) = log.submit(&stream(1, 10)).and_then(|id| outcomes.wait(id)) {
        assert!(Instant::now() < warm, "append while up: {e}");
    }

    broker.freeze();
    let ids: Vec<_> = (0..4)
        .map(|i| log.submit(&stream(100 + i * 10, 10)).expect("hand over"))
        .collect();
    assert!(
        log.in_flight() >= 3,
        "batches in flight at the kill: {}",
        log.in_flight()
    );
    broker.stop();
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let r = outcomes.wait(*id);
        assert!(
            matches!(r, Err(LogError::Unavailable(_) | LogError::Timeout(_))),
            "batch {i} with the broker dead: {r:?}"
        );
    }
    // Each batch's own bound (1 s + 200 ms grace) runs from its submission, so all four
    // are decided within about one bound, with generous slack for a loaded machine.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "four outcomes took {took:?}");
    assert_eq!(log.in_flight(), 0);

    broker.restart();
    create_topics(&b, &p, 2, 1, 1).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let mut acked: Vec<u64> = Vec::new();
    let mut round = 0;
    while acked.len() < 30 {
        let batch = stream(5_000 + round * 10, 10);
        round += 1;
        // Three in flight at once again, decided in order.
        let id = log.submit(&batch).expect("hand over");
        match outcomes.wait(id) {
            Ok(()) => acked.extend(batch.iter().map(|c| c.ts())),
            Err(e) => {
                assert!(
                    Instant::now() < end,
                    "append still failing after restart: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let mut inflight = Vec::new();
    for r in 0..3 {
        let batch = stream(9_000 + r * 10, 10);
        inflight.push((log.submit(&batch).expect("hand over"), batch));
    }
    for (id, batch) in inflight {
        outcomes.wait(id).expect("pipelined append after restart");
        acked.extend(batch.iter().map(|c| c.ts()));
    }
    let mut got = Vec::new();
    log.replay(&Checkpoint::start(), &mut |c| got.push(c.ts()))
        .unwrap();
    assert_eq!(
        got, acked,
        "the log after the restart: exactly the acknowledged batches"
    );
}

#[test]
fn wait_ready_fails_fast_on_a_closed_port() {
    let start = Instant::now();
    assert!(wait_ready("127.0.0.1:1", Duration::from_millis(500)).is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
}
