//! The side-by-side table printed by `perf/compare` (`oms-perf table DIR`).
//!
//! Absolute numbers on a shared 2-core machine drift from run to run; ratios taken within one
//! run do not. The table therefore shows every figure next to its ratio to the HTTP stack's
//! limit (`echo`) and to the seed's design (`seedline`), all read from the JSON reports of a
//! single `perf/compare` invocation.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::kafka_produce::ProduceReport;
use crate::report::Report;

/// Rows in display order: (label in file names, description).
pub const ROWS: [(&str, &str); 5] = [
    ("echo", "perf-echo (bare hyper + serde)"),
    ("oms-fsync", "oms embedded, fsync batch"),
    ("oms-nofsync", "oms embedded, fsync never"),
    ("oms-kafka", "oms Kafka+Redis+Mongo"),
    ("seedline", "seedline (seed design)"),
];

/// `LABEL.sweep.json`, written by perf/compare (format in its header).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sweep {
    pub target: String,
    pub max_rate: f64,
    pub points: Vec<SweepPoint>,
}

/// One open-loop run of a sweep; latencies in µs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepPoint {
    pub pct: u32,
    pub rate: f64,
    pub achieved_rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors: u64,
    #[serde(default)]
    pub cancel_rejected: u64,
    pub not_sent: u64,
}

fn load_sweep(dir: &Path, label: &str) -> Option<Sweep> {
    let text = std::fs::read_to_string(dir.join(format!("{label}.sweep.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn load(dir: &Path, name: &str) -> Option<Report> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a > 0.0 && a / b < 0.1 => format!("{:.3}×", a / b),
        Some(b) if b > 0.0 && a > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// Builds the markdown table (and the Kafka / replay lines) from the reports in `dir`.
pub fn render(dir: &Path) -> Result<String> {
    let closed = |l: &str| load(dir, &format!("{l}.closed.json"));
    let open = |l: &str| load(dir, &format!("{l}.open.json"));
    let echo_max = closed("echo").map(|r| r.achieved_rate);
    let seed_max = closed("seedline").map(|r| r.achieved_rate);
    let seed_open = open("seedline");
    let rate = ROWS
        .iter()
        .find_map(|(l, _)| open(l).and_then(|r| r.target_rate));
    let mut out = String::new();
    let rate_s = rate.map_or("–".into(), |r| format!("{r:.0}"));
    writeln!(
        out,
        "| target | max req/s (closed) | ÷ echo | ÷ seedline | errors | p50 µs @ {rate_s}/s | p99 µs | p99.9 µs | p99 ÷ seedline | open errors |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut notes = Vec::new();
    for (label, desc) in ROWS {
        let c = closed(label);
        let o = open(label);
        if c.is_none() && o.is_none() {
            let why = std::fs::read_to_string(dir.join(format!("{label}.skip")))
                .unwrap_or_else(|_| "not run".into());
            writeln!(out, "| {desc} | skipped | | | | | | | | |")?;
            notes.push(format!("- {desc}: {}", why.trim()));
            continue;
        }
        let (max, cerr) = c.as_ref().map_or(("–".into(), "–".into()), |c| {
            (
                format!("{:.0}", c.achieved_rate),
                (c.errors - c.cancel_rejected).to_string(),
            )
        });
        let (echo_r, seed_r) = c.as_ref().map_or(("–".into(), "–".into()), |c| {
            (
                ratio(c.achieved_rate, echo_max),
                ratio(c.achieved_rate, seed_max),
            )
        });
        let (p50, p99, p999, oerr, p99r) = match &o {
            Some(o) => (
                o.latency_us.p50.to_string(),
                o.latency_us.p99.to_string(),
                o.latency_us.p999.to_string(),
                format!(
                    "{}{}",
                    o.errors - o.cancel_rejected,
                    if o.not_sent > 0 {
                        format!(" (+{} not sent)", o.not_sent)
                    } else {
                        String::new()
                    }
                ),
                ratio(
                    o.latency_us.p99 as f64,
                    seed_open.as_ref().map(|s| s.latency_us.p99 as f64),
                ),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into(), "–".into()),
        };
        writeln!(
            out,
            "| {desc} | {max} | {echo_r} | {seed_r} | {cerr} | {p50} | {p99} | {p999} | {p99r} | {oerr} |"
        )?;
        for r in [&c, &o].into_iter().flatten() {
            if !r.errors_by_code.is_empty() {
                notes.push(format!(
                    "- {desc} ({}): errors {:?}",
                    r.mode, r.errors_by_code
                ));
            }
        }
    }
    let mut sweep = String::new();
    for (label, desc) in ROWS {
        let Some(sw) = load_sweep(dir, label) else {
            continue;
        };
        for p in &sw.points {
            writeln!(
                sweep,
                "| {desc} | {}% | {:.0} | {:.0} | {} | {} | {} | {} |",
                p.pct,
                p.rate,
                p.achieved_rate,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                p.errors - p.cancel_rejected + p.not_sent
            )?;
        }
    }
    if !sweep.is_empty() {
        writeln!(
            out,
            "\nOpen-loop sweep at a percentage of each target's own max (latency from the intended send time):\n"
        )?;
        writeln!(
            out,
            "| target | % of max | rate req/s | achieved | p50 µs | p99 µs | p99.9 µs | errors + not sent |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        out.push_str(&sweep);
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("kafka-raw.json"))
        && let Ok(k) = serde_json::from_str::<ProduceReport>(&text)
    {
        let oms_kafka = closed("oms-kafka").map(|r| r.achieved_rate);
        writeln!(
            out,
            "\nKafka: raw rdkafka produce (acks=all, idempotent, lz4, {:.0} B) {:.0} msg/s; oms on Kafka publishes {} orders/s ({} of raw)",
            k.mean_payload_bytes,
            k.rate,
            oms_kafka.map_or("–".into(), |r| format!("{r:.0}")),
            oms_kafka.map_or("–".into(), |r| ratio(r, Some(k.rate)))
        )?;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("replay.txt")) {
        writeln!(out, "\nRestart-to-ready (replay):")?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            writeln!(out, "- {}", line.trim())?;
        }
    }
    writeln!(
        out,
        "\n¹ errors exclude cancels answered 404/409 (order already filled or gone); every non-2xx is listed below."
    )?;
    if !notes.is_empty() {
        writeln!(out, "\nNotes:\n{}", notes.join("\n"))?;
    }
    Ok(out)
}
