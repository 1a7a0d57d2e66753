//! KafkaLog and OrderConsumer against the real broker (`OMS_KAFKA_BROKERS`).

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use oms_core::command::Command;
use oms_core::instrument::InstrumentTable;
use oms_core::ports::{Checkpoint, OrderLog};
use oms_kafka::{ConsumerStart, KafkaLog, OrderConsumer, create_topics};

fn replay_all(log: &mut KafkaLog, from: &Checkpoint) -> (Vec<Command>, Checkpoint) {
    let mut got = Vec::new();
    let cp = log.replay(from, &mut |c| got.push(*c)).expect("replay");
    (got, cp)
}

/// Timestamps per symbol, in order (short to print on failure; commands are compared
/// in full separately).
fn by_symbol(cmds: &[Command]) -> HashMap<Option<u16>, Vec<u64>> {
    let mut m: HashMap<_, Vec<_>> = HashMap::new();
    for c in cmds {
        m.entry(c.symbol().map(|s| s.0)).or_default().push(c.ts());
    }
    m
}

fn ts(cmds: &[Command]) -> Vec<u64> {
    cmds.iter().map(Command::ts).collect()
}

#[test]
fn append_batches_then_replay_returns_exactly_them_in_order() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "replay", 3);
    let table = InstrumentTable::demo();
    let mut log = KafkaLog::new(&cfg, &table).expect("log");
    assert_eq!(log.partitions(), 3);

    let mut all = Vec::new();
    for (i, size) in [1usize, 64, 200, 7].into_iter().enumerate() {
        let batch = stream(1_000 + (i as u64) * 1_000, size);
        log.append(&batch).expect("append");
        all.extend(batch);
    }
    // A halt goes to every partition but is replayed once.
    let h = halt(9_000);
    log.append(&[h]).expect("append halt");
    all.push(h);

    let (got, cp) = replay_all(&mut log, &Checkpoint::start());
    // Timestamps increase in append order, so the timestamp merge reproduces it exactly.
    assert_eq!(ts(&got), ts(&all));
    assert!(got == all, "records differ in content");
    // Per symbol (= per partition) order is the append order.
    assert_eq!(by_symbol(&got), by_symbol(&all));
    // The symbols were spread over more than one partition, and the checkpoint covers
    // every record, including the halt copies.
    assert!(cp.next.len() >= 2, "all symbols in one partition: {cp:?}");
    let total: u64 = cp.next.iter().map(|(_, o)| o).sum();
    assert_eq!(total as usize, all.len() - 1 + 3);

    // Replay again from the end: nothing.
    let (none, cp2) = replay_all(&mut log, &cp);
    assert!(none.is_empty());
    assert_eq!(cp2, cp);
}

#[test]
fn replay_from_a_checkpoint_returns_only_the_later_records() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "ckpt", 4);
    let table = InstrumentTable::demo();
    let mut log = KafkaLog::new(&cfg, &table).expect("log");
    let first = stream(10, 50);
    log.append(&first).unwrap();
    let (got, cp) = replay_all(&mut log, &Checkpoint::start());
    assert_eq!(ts(&got), ts(&first));
    assert!(got == first);

    let second = stream(100, 30);
    log.append(&second[..10]).unwrap();
    log.append(&second[10..]).unwrap();
    let (got2, cp2) = replay_all(&mut log, &cp);
    assert_eq!(ts(&got2), ts(&second));
    assert!(got2 == second);
    let (again, _) = replay_all(&mut log, &cp2);
    assert!(again.is_empty());
}

#[test]
fn checkpoint_beyond_the_log_is_refused() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "beyond", 1);
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    log.append(&stream(1, 3)).unwrap();
    let mut cp = Checkpoint::start();
    cp.set(0, 1_000);
    let err = log.replay(&cp, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, oms_core::ports::LogError::Corrupt { .. }),
        "{err}"
    );
}

#[test]
fn missing_topic_is_a_clear_error() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = oms_kafka::KafkaConfig::new(&b, prefix("missing"));
    let err = KafkaLog::new(&cfg, &InstrumentTable::demo())
        .err()
        .expect("no topic");
    assert!(err.to_string().contains("orders"), "{err}");
}

#[test]
fn create_topics_is_idempotent() {
    let Some(b) = broker_or_skip() else { return };
    let p = prefix("admin");
    let created = create_topics(&b, &p, 2, 1, 1).unwrap();
    // The five of ARCHITECTURE §6, cluster mode's one-partition `members` and `audit`.
    assert_eq!(created.len(), 7, "{created:?}");
    for t in ["members", "audit"] {
        assert!(
            created.iter().any(|c| c.ends_with(&format!(".{t}"))),
            "{t}: {created:?}"
        );
    }
    let again = create_topics(&b, &p, 2, 1, 1).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn consumer_from_checkpoint_follows_the_log() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "follow", 3);
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    let first = stream(1, 20);
    log.append(&first).unwrap();
    let (_, cp) = {
        let mut v = Vec::new();
        let cp = log
            .replay(&Checkpoint::start(), &mut |c| v.push(*c))
            .unwrap();
        (v, cp)
    };
    let mut consumer = OrderConsumer::new(&cfg, ConsumerStart::Checkpoint(cp)).unwrap();
    let second = stream(100, 25);
    log.append(&second).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while got.len() < second.len() && Instant::now() < end {
        if let Some(r) = consumer.poll(Duration::from_millis(100)).unwrap() {
            got.push(r.command);
        }
    }
    assert_eq!(by_symbol(&got), by_symbol(&second));
}

#[test]
fn group_consumer_commits_after_processing_and_resumes_there() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "group", 2);
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    let first = stream(1, 30);
    log.append(&first).unwrap();

    let applied = {
        let mut c = OrderConsumer::new(&cfg, ConsumerStart::Group).unwrap();
        let mut applied = Checkpoint::start();
        let mut n = 0;
        let end = Instant::now() + Duration::from_secs(30);
        while n < first.len() {
            assert!(
                Instant::now() < end,
                "group consumer got {n}/{}",
                first.len()
            );
            if let Some(r) = c.poll(Duration::from_millis(200)).unwrap() {
                n += 1;
                applied.set(r.partition, r.offset + 1);
            }
        }
        c.commit(&applied).unwrap();
        assert_eq!(c.committed(Duration::from_secs(5)).unwrap(), applied);
        applied
    };
    let second = stream(500, 12);
    log.append(&second).unwrap();
    let mut c = OrderConsumer::new(&cfg, ConsumerStart::Group).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < second.len() {
        assert!(
            Instant::now() < end,
            "resumed consumer got {}/{}",
            got.len(),
            second.len()
        );
        if let Some(r) = c.poll(Duration::from_millis(200)).unwrap() {
            assert!(
                r.offset >= applied.next_offset(r.partition),
                "re-read a committed record"
            );
            got.push(r.command);
        }
    }
    assert_eq!(by_symbol(&got), by_symbol(&second));
}

#[test]
fn transactional_appends_replay_exactly_and_in_order() {
    let Some(b) = broker_or_skip() else { return };
    let mut cfg = setup(&b, "txn", 3);
    cfg.transactional_id = Some(format!("{}log", cfg.prefix));
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    let mut all = Vec::new();
    for (i, size) in [1usize, 40, 3].into_iter().enumerate() {
        let batch = stream(1_000 * (i as u64 + 1), size);
        log.append(&batch).expect("transactional append");
        all.extend(batch);
    }
    let (got, cp) = replay_all(&mut log, &Checkpoint::start());
    assert_eq!(ts(&got), ts(&all));
    assert!(got == all);
    // Transaction markers occupy offsets: the checkpoint is past them, and a replay from it
    // finds nothing.
    let (none, _) = replay_all(&mut log, &cp);
    assert!(none.is_empty());
}

#[test]
fn traceparent_headers_ride_on_the_records_and_are_read_back() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "traceparent", 3);
    let mut log = KafkaLog::new(&cfg, &InstrumentTable::demo()).unwrap();
    let mut consumer =
        OrderConsumer::new(&cfg, ConsumerStart::Checkpoint(Checkpoint::start())).unwrap();
    let traces = log.trace_headers();
    let batch = stream(1, 3);
    let tp = |i: u8| -> [u8; oms_kafka::TRACEPARENT_LEN] {
        let s = format!("00-4bf92f3577b34da6a3ce929d0e0e473{i}-00f067aa0ba902b{i}-01");
        s.as_bytes().try_into().unwrap()
    };
    // The second command is untraced: its record has no header.
    *traces.lock() = vec![Some(tp(1)), None, Some(tp(3))];
    log.append(&batch).unwrap();
    // A batch with no entries (voids, or traces cleared) carries no header at all.
    traces.lock().clear();
    let later = stream(100, 1);
    log.append(&later).unwrap();

    let mut got = HashMap::new();
    let end = Instant::now() + Duration::from_secs(15);
    while got.len() < 4 && Instant::now() < end {
        if let Some(r) = consumer.poll(Duration::from_millis(100)).unwrap() {
            got.insert(r.command.ts(), r.traceparent);
        }
    }
    assert_eq!(got.len(), 4, "records read back: {got:?}");
    assert_eq!(got[&batch[0].ts()], Some(tp(1)));
    assert_eq!(got[&batch[1].ts()], None);
    assert_eq!(got[&batch[2].ts()], Some(tp(3)));
    assert_eq!(got[&later[0].ts()], None);
}
