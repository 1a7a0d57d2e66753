//! The embedded journal: append throughput by batch size and fsync policy, and replay
//! throughput of 1 M records (target: < 1 s).
//!
//! Files live in `CARGO_TARGET_TMPDIR` (the target directory's disk, not a tmpfs), so the
//! `every_batch` figures include a real `fdatasync`.
//!
//! Run: `cargo bench -p oms-benches --bench journal`

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oms_core::command::{Command, PlaceOrder, RiskDecision};
use oms_core::ids::{AccountId, IdempotencyKey, OrderId, ShortStr, SymbolId};
use oms_core::num::{Money, Price, Qty};
use oms_core::order::{OrderType, Side, TimeInForce};
use oms_core::ports::{Checkpoint, OrderLog};
use oms_core::validate::ValidatedOrder;
use oms_journal::{FsyncPolicy, Journal, JournalConfig};

const REPLAY_RECORDS: u64 = 1_000_000;

/// A realistic limit order with an idempotency key and client order id (~110 bytes encoded).
fn place(i: u64) -> Command {
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
            quantity: Qty(1 + (i % 500) as i64),
            price: Some(Price(6_000_000 + (i % 200) as i64)),
            client_order_id: Some(ShortStr::new(&format!("cl-{i}")).unwrap()),
        },
        ts: 1_700_000_000_000_000_000 + i,
        idempotency_key: Some(IdempotencyKey::new(&format!("idem-{i}")).unwrap()),
        fingerprint: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        correlation_id: None,
        risk: RiskDecision::Accepted {
            reserved: Money(60_000_000),
        },
    })
}

fn bench_root() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal/append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let policies = [
        ("every_batch", FsyncPolicy::EveryBatch),
        (
            "interval_1ms",
            FsyncPolicy::Interval(Duration::from_millis(1)),
        ),
        ("never", FsyncPolicy::Never),
    ];
    for (name, fsync) in policies {
        for batch in [1usize, 64, 512] {
            let root = bench_root();
            let cfg = JournalConfig {
                fsync,
                ..JournalConfig::default()
            };
            let (mut j, _) = Journal::open(root.path(), cfg).unwrap();
            let cmds: Vec<Command> = (0..batch as u64).map(place).collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(name, batch), &cmds, |b, cmds| {
                b.iter(|| j.append(black_box(cmds)).unwrap());
            });
            drop(j);
        }
    }
    g.finish();
}

fn write_log(dir: &Path, n: u64) {
    let cfg = JournalConfig {
        fsync: FsyncPolicy::Never,
        ..JournalConfig::default()
    };
    let (mut j, _) = Journal::open(dir, cfg).unwrap();
    let mut batch = Vec::with_capacity(1024);
    let mut i = 0;
    while i < n {
        batch.clear();
        batch.extend((i..(i + 1024).min(n)).map(place));
        j.append(&batch).unwrap();
        i += batch.len() as u64;
    }
    j.sync().unwrap();
}

fn replay(c: &mut Criterion) {
    let root = bench_root();
    write_log(root.path(), REPLAY_RECORDS);
    let mut g = c.benchmark_group("journal/replay");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(REPLAY_RECORDS));
    let visit_all = |j: &mut Journal| {
        let mut n = 0u64;
        j.replay(&Checkpoint::start(), &mut |c| {
            black_box(c);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, REPLAY_RECORDS);
    };
    {
        let (mut j, _) = Journal::open(root.path(), JournalConfig::default()).unwrap();
        g.bench_function("1m_records", |b| b.iter(|| visit_all(&mut j)));
    }
    // Open (recovery scans and CRC-checks every segment) plus replay: a cold start.
    g.bench_function("open_and_1m_records", |b| {
        b.iter(|| {
            let (mut j, report) = Journal::open(root.path(), JournalConfig::default()).unwrap();
            assert_eq!(report.records, REPLAY_RECORDS);
            visit_all(&mut j);
        })
    });
    g.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
