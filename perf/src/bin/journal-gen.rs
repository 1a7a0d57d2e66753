//! `journal-gen`: writes an embedded journal of N place commands straight to disk, as
//! `oms serve` would have logged them, for restart benchmarks (`perf/restart`) without
//! driving millions of HTTP requests first.
//!
//! Orders come in crossing pairs (a resting limit, then an opposite limit at the same price
//! from another account), so most end FILLED and the books stay small, like a busy market;
//! every order carries an idempotency key, as the load generator's do. Timestamps are recent,
//! so the idempotency answers are live (within their 24 h TTL) at the restart.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use oms_core::command::{Command, PlaceOrder, RiskDecision};
use oms_core::ports::OrderLog;
use oms_core::{AccountId, IdempotencyKey, InstrumentTable, OrderId, OrderRequest, validate};
use oms_journal::{FsyncPolicy, Journal, JournalConfig};

#[derive(Parser)]
#[command(
    name = "journal-gen",
    about = "Write an oms journal of N orders for restart benchmarks"
)]
struct Args {
    /// oms `--data-dir` (the journal goes to `<dir>/journal/`; must not exist yet).
    #[arg(long)]
    data_dir: PathBuf,
    /// Place commands to write.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Distinct accounts.
    #[arg(long, default_value_t = 2_000)]
    accounts: u64,
    /// Every Nth pair is left resting (open orders) instead of crossing.
    #[arg(long, default_value_t = 10)]
    open_every: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.data_dir.join("journal").exists(),
        "{} already has a journal",
        args.data_dir.display()
    );
    std::fs::create_dir_all(&args.data_dir)?;
    let (mut journal, _) = Journal::open(
        &args.data_dir,
        JournalConfig {
            fsync: FsyncPolicy::Never,
            ..JournalConfig::default()
        },
    )
    .context("opening the journal")?;
    let table = InstrumentTable::demo();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let start_ts = now - args.orders * 1_000;
    let accounts: Vec<AccountId> = (0..args.accounts)
        .map(|i| AccountId::new(&format!("gen{i}")).expect("account"))
        .collect();
    let mut batch = Vec::with_capacity(512);
    let started = std::time::Instant::now();
    for i in 0..args.orders {
        let pair = i / 2;
        let resting = pair % args.open_every.max(1) == 0;
        // Buys rest below sells for the open pairs; crossing pairs meet at one price.
        let (side, price) = match (i % 2 == 0, resting) {
            (true, false) => ("BUY", 45_000 + pair % 50),
            (false, false) => ("SELL", 45_000 + pair % 50),
            (true, true) => ("BUY", 44_000 - pair % 500),
            (false, true) => ("SELL", 46_000 + pair % 500),
        };
        let px = format!("{price}");
        let order = validate(
            &table,
            &OrderRequest {
                symbol: "BTC/USD",
                side,
                quantity: "0.001",
                price: Some(&px),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let account = accounts[((pair * 2 + i % 2) % args.accounts) as usize];
        let key = format!("gen-{i}");
        batch.push(Command::Place(PlaceOrder {
            order_id: OrderId(u128::from(i + 1) << 64 | u128::from(i)),
            account,
            order,
            ts: start_ts + i * 1_000,
            idempotency_key: Some(IdempotencyKey::new(&key).expect("key")),
            fingerprint: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            correlation_id: None,
            risk: RiskDecision::Unchecked,
        }));
        if batch.len() == batch.capacity() {
            journal.append(&batch)?;
            batch.clear();
        }
    }
    journal.append(&batch)?;
    journal.sync()?;
    println!(
        "wrote {} orders to {} in {:.1} s",
        args.orders,
        args.data_dir.join("journal").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
