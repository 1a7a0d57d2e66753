//! `ws-fanout`: WebSocket fan-out benchmark. Opens N subscribers to `/ws` (`trades` and
//! `book` of the symbols the load generator trades), runs the open-loop order flow against
//! the same server, and reports the event→client latency (client receive wall clock minus the
//! envelope `ts`, which is when the processor published the events) next to the ack
//! throughput and latency of the order flow. Run it with `--subscribers 0` for the baseline.
//!
//! Loopback only, like every perf tool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::Parser;
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use oms_perf::loadgen::{self, Config, Mode};
use oms_perf::target::parse_target;
use oms_perf::traffic::Mix;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "ws-fanout", about = "WebSocket fan-out benchmark for oms")]
struct Args {
    /// Target base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// WebSocket subscribers (0 = baseline without any).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Book depth each subscriber asks for.
    #[arg(long, default_value_t = 10)]
    depth: u32,
    /// Order rate (open loop), requests/s.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds of order flow.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// HTTP keep-alive connections of the order flow.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Client runtime threads (subscribers and order flow share them).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Accounts of the order flow.
    #[arg(long, default_value_t = 1000)]
    accounts: u32,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Nanoseconds since the epoch of `2026-12-02T06:30:00.123456Z` (RFC 3339 UTC, micros).
fn parse_ts(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 27 || b[26] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs * 1_000_000_000 + us * 1000).ok()
}

/// Per-subscriber results.
struct Sub {
    hist: Histogram<u64>,
    messages: u64,
    closed_early: bool,
}

async fn subscriber(
    url: String,
    symbols: Vec<String>,
    depth: u32,
    stop: Arc<AtomicU64>,
) -> Result<Sub> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("connect /ws")?;
    let mut args = Vec::new();
    for s in &symbols {
        args.push(serde_json::json!({"channel":"trades","symbol":s}));
        args.push(serde_json::json!({"channel":"book","symbol":s,"depth":depth}));
    }
    ws.send(Message::text(
        serde_json::json!({"op":"subscribe","id":1,"args":args}).to_string(),
    ))
    .await?;
    let mut sub = Sub {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        messages: 0,
        closed_early: false,
    };
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        let m = match next {
            Err(_) if stop.load(Ordering::Relaxed) == 1 => break,
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => {
                sub.closed_early = stop.load(Ordering::Relaxed) == 0;
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(t) = m else {
            if let Message::Close(_) = m {
                sub.closed_early = stop.load(Ordering::Relaxed) == 0;
                break;
            }
            continue;
        };
        let now = now_nanos();
        sub.messages += 1;
        // Only updates measure the event path (snapshots are taken on request).
        if !t.contains("\"type\":\"update\"") {
            continue;
        }
        if let Some(i) = t.find("\"ts\":\"")
            && let Some(ts) = t.get(i + 6..i + 33).and_then(parse_ts)
        {
            let us = now.saturating_sub(ts) / 1000;
            let _ = sub.hist.record(us.max(1));
        }
    }
    Ok(sub)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let target = parse_target(&a.target)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ws_url = format!("{}/ws", a.target.trim_end_matches('/').replacen("http://", "ws://", 1));
        let symbols = vec!["BTC/USD".to_owned(), "ETH/USD".to_owned(), "SOL/USD".to_owned()];
        let stop = Arc::new(AtomicU64::new(0));
        let mut subs = Vec::with_capacity(a.subscribers);
        for i in 0..a.subscribers {
            subs.push(tokio::spawn(subscriber(
                ws_url.clone(),
                symbols.clone(),
                a.depth,
                Arc::clone(&stop),
            )));
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Let the subscriptions and their snapshots settle before the flow starts.
        tokio::time::sleep(Duration::from_secs(if a.subscribers > 0 { 2 } else { 0 })).await;
        let cfg = Config {
            target,
            mode: Mode::Open { rate: a.rate },
            connections: a.connections.max(1),
            requests: u64::MAX,
            duration: Duration::from_secs_f64(a.duration),
            timeout: Duration::from_secs(10),
            mix: Mix {
                accounts: a.accounts,
                ..Mix::default()
            },
            seed: 1,
            progress: false,
            threads: a.threads,
        };
        let report = loadgen::run(cfg).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(1, Ordering::Relaxed);
        let mut hist: Histogram<u64> = Histogram::new_with_bounds(1, 60_000_000, 3)?;
        let (mut messages, mut dropped, mut failed) = (0u64, 0usize, 0usize);
        for s in subs {
            match s.await? {
                Ok(s) => {
                    hist.add(&s.hist)?;
                    messages += s.messages;
                    dropped += usize::from(s.closed_early);
                }
                Err(_) => failed += 1,
            }
        }
        println!("orders: {}", report.summary());
        println!(
            "ws: subscribers={} (failed to connect {failed}, closed by the server {dropped}) messages={messages} \
             event→client us p50={} p90={} p99={} p99.9={} max={} (n={})",
            a.subscribers,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.9),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
            hist.len()
        );
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_envelope_timestamp() {
        assert_eq!(parse_ts("1970-01-01T00:00:00.000001Z"), Some(1000));
        assert_eq!(
            parse_ts("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000_123_456_000)
        );
        assert_eq!(
            parse_ts("2000-02-29T00:00:00.000000Z"),
            Some(951_782_400_000_000_000)
        );
        assert_eq!(parse_ts("nope"), None);
    }
}
