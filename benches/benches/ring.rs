//! The ingress ring alone (issue 3): events/s through four dependent stages, next to a
//! harness-overhead baseline, and oms's real validate ▶ idempotency ▶ risk ▶ publish stages
//! driven through `Pipeline::submit` without HTTP.
//!
//! - `baseline/buffer_write`: the producer loop alone — the same slot contents written into a
//!   preallocated `Vec<Slot>` (index & mask), no ring, no consumer. Subtract it from the ring
//!   figures to get the ring's own cost.
//! - `baseline/crossbeam_spsc`: the same item `(Work, AccountId)` sent by value through a
//!   bounded crossbeam channel to ONE consumer thread that counts (one stage, not four).
//! - `ring4/<wait>/<publish>`: `disruptor` 4.4 multi-producer ring of oms's own `Slot`, four
//!   trivial stages in dependency order each touching the slot, the last counting; the
//!   producer publishes `EVENTS` events (single `publish`, or `batch_publish` of 64) and the
//!   timer stops when the last stage has seen them all. Wait strategies: oms's
//!   `PreciseSleep(20 µs)` (the default `--wait-strategy sleep`), oms's `Yield`, and
//!   `BusySpinWithSpinLoopHint` — 4 spinning stages plus the producer on 2 cores oversubscribe.
//! - `pipeline/<wait>`: oms's real stages (validate, idempotency with the local index, R1
//!   risk, publish with group commit) over an in-memory `OrderLog` that discards, fed by
//!   `TASKS` concurrent tokio tasks calling `Pipeline::submit` with unique idempotency keys
//!   over 1000 accounts; a thread stands in for the processor and releases each accepted
//!   order's risk reservation (`Feedback::Done`), so R1 never fills up.
//!
//! Run: `cargo bench -p oms-benches --bench ring -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use disruptor::wait_strategies::WaitStrategy;
use disruptor::{BusySpinWithSpinLoopHint, Producer, build_multi_producer};
use oms_core::command::{Command, RiskDecision};
use oms_core::idempotency::AnswerIndex;
use oms_core::ports::{Checkpoint, LogError, OrderLog};
use oms_core::{AccountId, IdempotencyKey, InstrumentTable, Money, RiskConfig, RiskEngine};
use oms_ingress::config::{StageLayout, WaitKind};
use oms_ingress::metrics::Metrics;
use oms_ingress::pipeline::handoff::{Durable, Feedback};
use oms_ingress::pipeline::idempotency::{Completer, IdempotencyStage};
use oms_ingress::pipeline::slot::{RawPlace, Reply, Slot, SlotData, Work};
use oms_ingress::pipeline::stages::{self, PublishConfig, PublishStage};
use oms_ingress::pipeline::{Pipeline, PreciseSleep, RingConfig, Stages, Yield};
use oms_journal::AnswerStore;

/// oms's default `--ring-size`.
const RING: usize = 16_384;
/// Events per timed iteration of the trivial-stage benches.
const EVENTS: u64 = 65_536;
/// Orders per timed iteration of the real-stage bench, and the tasks submitting them.
const ORDERS: u64 = 20_000;
const TASKS: u64 = 256;
const ACCOUNTS: usize = 1000;

fn raw_place() -> RawPlace {
    let mut raw = RawPlace::default();
    assert!(raw.symbol.set("BTC-USD"));
    assert!(raw.side.set("BUY"));
    assert!(raw.quantity.set("0.001"));
    let mut price = oms_ingress::pipeline::slot::Text::<48>::default();
    assert!(price.set("45000.00"));
    raw.price = Some(price);
    raw
}

/// What the producer writes into a slot: the same fields an HTTP task writes for a place.
#[derive(Clone, Copy)]
struct Item {
    raw: RawPlace,
    key: IdempotencyKey,
    account: AccountId,
}

impl Item {
    fn new() -> Self {
        Item {
            raw: raw_place(),
            key: IdempotencyKey::new("bench-key-0001").expect("valid key"),
            account: AccountId::new("acct-0001").expect("valid account"),
        }
    }

    #[inline]
    fn fill(&self, d: &mut SlotData, i: u64) {
        d.work = Work::Place {
            raw: self.raw,
            key: self.key,
            fingerprint: i,
            cmd: None,
        };
        d.account = self.account;
        d.correlation_id = None;
    }
}

/// A trivial stage: touches the slot's fingerprint.
fn touch(d: &mut SlotData, k: u64) -> u64 {
    match &mut d.work {
        Work::Place { fingerprint, .. } => {
            *fingerprint = fingerprint.wrapping_mul(31).wrapping_add(k);
            *fingerprint
        }
        _ => 0,
    }
}

fn spin_until(counter: &AtomicU64, target: u64) {
    while counter.load(Ordering::Acquire) < target {
        // The waiting bench thread must not steal a core from the stages (2 cores).
        std::thread::yield_now();
    }
}

fn baseline(c: &mut Criterion) {
    let item = Item::new();
    let mut g = c.benchmark_group("baseline");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("buffer_write", |b| {
        let mut buf: Vec<Slot> = (0..RING).map(|_| Slot::new()).collect();
        let mask = RING as u64 - 1;
        let mut seq = 0u64;
        b.iter(|| {
            for _ in 0..EVENTS {
                let slot = &mut buf[(seq & mask) as usize];
                item.fill(slot.data_mut(), seq);
                black_box(&*slot);
                seq += 1;
            }
        });
    });
    g.bench_function("crossbeam_spsc", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<(Work, AccountId)>(RING);
        let seen = Arc::new(AtomicU64::new(0));
        let consumer = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut acc = 0u64;
                for (w, a) in rx {
                    if let Work::Place { fingerprint, .. } = w {
                        acc = acc.wrapping_add(fingerprint ^ a.0.as_bytes().len() as u64);
                    }
                    n += 1;
                    if n.is_multiple_of(64) {
                        seen.store(n, Ordering::Release);
                    }
                }
                black_box(acc);
            })
        };
        let mut sent = 0u64;
        b.iter(|| {
            for _ in 0..EVENTS {
                let mut d = SlotData {
                    work: Work::Place {
                        raw: item.raw,
                        key: item.key,
                        fingerprint: 0,
                        cmd: None,
                    },
                    account: item.account,
                    correlation_id: None,
                    trace: None,
                    ticket: None,
                };
                item.fill(&mut d, sent);
                tx.send((d.work, d.account)).expect("consumer alive");
                sent += 1;
            }
            spin_until(&seen, sent);
        });
        drop(tx);
        consumer.join().expect("consumer");
    });
    g.finish();
}

fn ring4_with<W: WaitStrategy + 'static>(c: &mut Criterion, name: &str, wait: W) {
    let item = Item::new();
    let mut g = c.benchmark_group(format!("ring4/{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    let seen = Arc::new(AtomicU64::new(0));
    let last = {
        let seen = Arc::clone(&seen);
        let mut n = 0u64;
        let mut acc = 0u64;
        move |s: &Slot, _seq: i64, eob: bool| {
            // SAFETY: the disruptor hands this slot to this (last) stage only after the three
            // before it are done with it, and no producer rewrites it until we return.
            acc = acc.wrapping_add(touch(unsafe { s.data() }, 4));
            n += 1;
            if eob {
                black_box(acc);
                seen.store(n, Ordering::Release);
            }
        }
    };
    let mut producer = build_multi_producer(RING, Slot::new, wait)
        // SAFETY (all four stages): each stage is the slot's only owner while it runs; the
        // disruptor orders stage N+1 after stage N and the producer after the last stage.
        .handle_events_with(|s: &Slot, _, _| {
            // SAFETY: see above.
            touch(unsafe { s.data() }, 1);
        })
        .and_then()
        .handle_events_with(|s: &Slot, _, _| {
            // SAFETY: see above.
            touch(unsafe { s.data() }, 2);
        })
        .and_then()
        .handle_events_with(|s: &Slot, _, _| {
            // SAFETY: see above.
            touch(unsafe { s.data() }, 3);
        })
        .and_then()
        .handle_events_with(last)
        .build();
    let mut published = 0u64;
    g.bench_function("publish", |b| {
        b.iter(|| {
            for _ in 0..EVENTS {
                let i = published;
                producer.publish(|s: &mut Slot| item.fill(s.data_mut(), i));
                published += 1;
            }
            spin_until(&seen, published);
        });
    });
    g.bench_function("batch_publish_64", |b| {
        b.iter(|| {
            for _ in 0..EVENTS / 64 {
                let base = published;
                producer.batch_publish(64, |iter| {
                    for (k, s) in iter.enumerate() {
                        item.fill(s.data_mut(), base + k as u64);
                    }
                });
                published += 64;
            }
            spin_until(&seen, published);
        });
    });
    g.finish();
    drop(producer); // joins the stage threads
}

fn ring4(c: &mut Criterion) {
    ring4_with(c, "sleep20us", PreciseSleep(Duration::from_micros(20)));
    ring4_with(c, "yield", Yield);
    ring4_with(c, "busyspin_hint", BusySpinWithSpinLoopHint);
}

/// An order log that keeps nothing (measures the stages, not a disk or a broker).
struct DiscardLog {
    appended: u64,
}

impl OrderLog for DiscardLog {
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.appended += batch.len() as u64;
        black_box(batch);
        Ok(())
    }

    fn replay(
        &mut self,
        _from: &Checkpoint,
        _visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        Ok(Checkpoint::start())
    }
}

fn real_pipeline(wait: WaitKind) -> (Pipeline, std::thread::JoinHandle<()>) {
    let table = Arc::new(InstrumentTable::demo());
    let metrics = Arc::new(Metrics::default());
    let risk = RiskEngine::new(
        &table,
        RiskConfig {
            max_open_orders: 1_000_000,
            dev_default_equity: Some(Money::parse("1000000000").expect("money")),
            ..RiskConfig::default()
        },
    );
    let (idem_tx, completer_rx) = crossbeam_channel::unbounded();
    let (stage_tx, idem_rx) = crossbeam_channel::unbounded();
    // Answers go to an answer store in a scratch directory, as in `oms serve`.
    let answers_dir =
        std::env::temp_dir().join(format!("oms-bench-answers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&answers_dir);
    let (answers, _) = AnswerStore::open(
        &answers_dir,
        86_400_000,
        0,
        &mut |_| {},
        &mut |_, _, _, _| {},
    )
    .expect("answer store");
    let answers_reader = answers.reader();
    let answered_tx = stage_tx.clone();
    Completer::spawn(answers, None, completer_rx, stage_tx, Arc::clone(&metrics))
        .expect("completer thread");
    let (feedback_tx, feedback_rx) = crossbeam_channel::unbounded();
    let (processor_tx, processor_rx) = crossbeam_channel::unbounded::<Vec<Durable>>();
    // Stands in for the processor: every accepted order is "done" at once (its reservation
    // released), so the R1 book stays small however many orders the bench pushes.
    let processor = {
        let feedback_tx = feedback_tx.clone();
        std::thread::spawn(move || {
            for batch in processor_rx {
                let fb: Vec<Feedback> = batch
                    .iter()
                    .filter_map(|d| match &d.cmd {
                        Command::Place(p) if matches!(p.risk, RiskDecision::Accepted { .. }) => {
                            Some(Feedback::Done {
                                account: p.account,
                                order_id: p.order_id,
                            })
                        }
                        _ => None,
                    })
                    .collect();
                if !fb.is_empty() && feedback_tx.send(fb).is_err() {
                    break;
                }
            }
        })
    };
    let publish = PublishStage::new(
        Box::new(DiscardLog { appended: 0 }),
        Arc::clone(&table),
        Arc::clone(&metrics),
        idem_tx,
        feedback_tx,
        processor_tx,
        PublishConfig {
            record_traces: None,
            max_batch: 1024,
            max_in_flight: 8,
            test_stall: Duration::ZERO,
            answered_to: Some(answered_tx),
            doubts_to: None,
        },
    );
    let pipeline = Pipeline::start(
        RingConfig {
            size: RING,
            wait,
            layout: StageLayout::Threads,
            pin: Vec::new(),
            ack_timeout: Duration::from_secs(10),
            ring_full_wait: Duration::from_secs(10),
        },
        Stages {
            validate: stages::validate_stage(Arc::clone(&table), Arc::clone(&metrics)),
            idempotency: IdempotencyStage::new(
                AnswerIndex::new(),
                answers_reader,
                None,
                idem_rx,
                1,
                1024,
                Arc::clone(&metrics),
            ),
            risk: stages::risk_stage(risk, feedback_rx, Arc::clone(&metrics)),
            publish,
        },
        metrics,
    );
    (pipeline, processor)
}

fn pipeline(c: &mut Criterion) {
    let accounts: Arc<Vec<AccountId>> = Arc::new(
        (0..ACCOUNTS)
            .map(|i| AccountId::new(&format!("acct-{i:04}")).expect("valid account"))
            .collect(),
    );
    let raw = raw_place();
    let next_key = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ORDERS));
    for (name, wait) in [("sleep20us", WaitKind::Sleep), ("yield", WaitKind::Yield)] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (pl, processor) = real_pipeline(wait);
        let pl = Arc::new(pl);
        let statuses = Arc::new([const { AtomicU64::new(0) }; 4]); // 201, 422, other json, error
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        let mut tasks = Vec::with_capacity(TASKS as usize);
                        for _ in 0..TASKS {
                            let (pl, accounts, next_key, statuses) = (
                                Arc::clone(&pl),
                                Arc::clone(&accounts),
                                Arc::clone(&next_key),
                                Arc::clone(&statuses),
                            );
                            tasks.push(tokio::spawn(async move {
                                for _ in 0..ORDERS / TASKS {
                                    let n = next_key.fetch_add(1, Ordering::Relaxed);
                                    let key = IdempotencyKey::new(&format!("k{n}")).expect("key");
                                    let account = accounts[n as usize % ACCOUNTS];
                                    let reply = pl
                                        .submit(Instant::now(), move |d| {
                                            d.work = Work::Place {
                                                raw,
                                                key,
                                                fingerprint: n,
                                                cmd: None,
                                            };
                                            d.account = account;
                                            d.correlation_id = None;
                                        })
                                        .await;
                                    let i = match reply {
                                        Reply::Json { status: 201, .. } => 0,
                                        Reply::Json { status: 422, .. } => 1,
                                        Reply::Json { .. } => 2,
                                        Reply::Error(_) => 3,
                                    };
                                    statuses[i].fetch_add(1, Ordering::Relaxed);
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                    });
                }
                start.elapsed()
            });
        });
        let s: Vec<u64> = statuses.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        eprintln!(
            "pipeline/{name}: replies 201={} 422={} other-json={} error={}",
            s[0], s[1], s[2], s[3]
        );
        drop(rt); // ends the workers and their thread-local producer clones
        drop(Arc::into_inner(pl).expect("last pipeline handle")); // stops the stages
        processor.join().expect("processor stand-in");
    }
    g.finish();
}

criterion_group!(benches, baseline, ring4, pipeline);
criterion_main!(benches);
