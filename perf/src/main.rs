//! `oms-perf`: load generator, raw Kafka producer and comparison table.
//!
//! Subcommands: `run` (open or closed loop against a loopback HTTP target), `kafka-produce`
//! (the broker's raw producer ceiling) and `table` (the side-by-side table from a directory of
//! JSON reports). Every run prints a one-line summary on stdout and, with `--json FILE`, the
//! full report; progress goes to stderr once per second.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use oms_perf::kafka_produce::{self, ProduceConfig};
use oms_perf::loadgen::{self, Config, Mode};
use oms_perf::table;
use oms_perf::target::{check_brokers, parse_target};
use oms_perf::traffic::Mix;

#[derive(Parser)]
#[command(name = "oms-perf", about = "Load generator and measurements for oms")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LoopMode {
    /// Fixed request rate; latency from the intended send time.
    Open,
    /// Fixed concurrency; maximum throughput.
    Closed,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send order traffic to an HTTP target (loopback only).
    Run(RunArgs),
    /// Produce order-shaped records straight to Kafka with rdkafka (acks=all, idempotent).
    KafkaProduce(ProduceArgs),
    /// Print the comparison table from the reports written by perf/compare.
    Table {
        /// Directory with LABEL.closed.json, LABEL.open.json, kafka-raw.json, replay.txt.
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Target base URL (must resolve to 127.0.0.0/8 or ::1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Loop mode.
    #[arg(long, value_enum, default_value = "closed")]
    mode: LoopMode,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 100_000_000)]
    requests: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Fraction of new orders that are MARKET.
    #[arg(long, default_value_t = 0.1)]
    market_frac: f64,
    /// Fraction of requests that cancel an earlier order.
    #[arg(long, default_value_t = 0.05)]
    cancel_frac: f64,
    /// Fraction of requests that retry an earlier key with the same body.
    #[arg(long, default_value_t = 0.02)]
    retry_frac: f64,
    /// Number of accounts (acct-0 .. acct-N-1).
    #[arg(long, default_value_t = 1000)]
    accounts: u32,
    /// Cluster mode, leader-aware client: send only accounts whose partition of the order
    /// log (Kafka's murmur2 of the account, modulo `--partitions`) is in this list, e.g. the
    /// partitions the target node leads (`GET /api/cluster`), so no request is forwarded.
    #[arg(long, value_delimiter = ',')]
    led_partitions: Vec<u32>,
    /// Partitions of the order log, for `--led-partitions`.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// PRNG seed for the traffic mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the full JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No per-second progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Kafka bootstrap servers (loopback only).
    #[arg(long, env = "OMS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic (created if missing).
    #[arg(long, default_value = "perf-raw")]
    topic: String,
    /// Partitions when creating the topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Messages to produce.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Maximum sends awaiting acknowledgement.
    #[arg(long, default_value_t = 10_000)]
    inflight: usize,
    /// linger.ms
    #[arg(long, default_value_t = 1.0)]
    linger_ms: f64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

fn write_json(path: Option<&PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_vec_pretty(value)?)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => {
            if !(0.0..=1.0).contains(&(a.cancel_frac + a.retry_frac))
                || !(0.0..=1.0).contains(&a.market_frac)
            {
                bail!("fractions must be within [0, 1] and cancel + retry ≤ 1");
            }
            let mode = match a.mode {
                LoopMode::Closed => Mode::Closed,
                LoopMode::Open if a.rate > 0.0 => Mode::Open { rate: a.rate },
                LoopMode::Open => bail!("--rate must be > 0"),
            };
            let cfg = Config {
                target: parse_target(&a.target)?,
                mode,
                connections: a.connections.max(1),
                requests: a.requests,
                duration: Duration::from_secs_f64(a.duration),
                timeout: Duration::from_secs_f64(a.timeout),
                mix: Mix {
                    market_frac: a.market_frac,
                    cancel_frac: a.cancel_frac,
                    retry_frac: a.retry_frac,
                    accounts: a.accounts,
                    only_accounts: led_accounts(a.accounts, a.partitions, &a.led_partitions)?,
                    ..Mix::default()
                },
                seed: a.seed,
                progress: !a.quiet,
                threads: a.threads,
            };
            let report = runtime(a.threads)?.block_on(loadgen::run(cfg))?;
            write_json(a.json.as_ref(), &report)?;
            println!("{}", report.summary());
        }
        Cmd::KafkaProduce(a) => {
            check_brokers(&a.brokers)?;
            let cfg = ProduceConfig {
                brokers: a.brokers,
                topic: a.topic,
                partitions: a.partitions,
                messages: a.messages,
                inflight: a.inflight.max(1),
                linger_ms: a.linger_ms,
            };
            let report = runtime(2)?.block_on(kafka_produce::run(cfg))?;
            write_json(a.json.as_ref(), &report)?;
            println!("{}", report.summary());
        }
        Cmd::Table { dir } => print!("{}", table::render(&dir)?),
    }
    Ok(())
}

/// The account numbers of `0..accounts` whose order-log partition is in `led` (None when `led`
/// is empty: every account).
fn led_accounts(
    accounts: u32,
    partitions: u32,
    led: &[u32],
) -> Result<Option<std::sync::Arc<Vec<u32>>>> {
    if led.is_empty() {
        return Ok(None);
    }
    let ids: Vec<u32> = (0..accounts)
        .filter(|n| {
            let p = oms_kafka::partition_for(format!("acct-{n}").as_bytes(), partitions.max(1));
            led.contains(&p)
        })
        .collect();
    anyhow::ensure!(
        !ids.is_empty(),
        "no account of 0..{accounts} falls in partitions {led:?} of {partitions}"
    );
    Ok(Some(std::sync::Arc::new(ids)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn led_accounts_are_exactly_those_of_the_led_partitions() {
        assert!(led_accounts(1000, 6, &[]).unwrap().is_none());
        let all = led_accounts(1000, 6, &[0, 1, 2, 3, 4, 5]).unwrap().unwrap();
        assert_eq!(all.len(), 1000);
        let mut total = 0;
        for p in 0..6 {
            let ids = led_accounts(1000, 6, &[p]).unwrap().unwrap();
            assert!(
                ids.iter()
                    .all(|n| oms_kafka::partition_for(format!("acct-{n}").as_bytes(), 6) == p)
            );
            total += ids.len();
        }
        assert_eq!(total, 1000, "every account in exactly one partition");
        assert!(led_accounts(0, 6, &[1]).is_err());
    }
}
