//! Run statistics: what each connection records and what a run reports.
//!
//! Each connection owns a [`Stats`] (no sharing, no locks on the hot path); they are merged
//! once at the end into a [`Report`], which is the JSON contract read by `perf/compare` and
//! the smoke test.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::traffic::OpKind;

/// Highest latency the histogram tracks, in microseconds (60 s); larger values saturate.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Per-connection counters and latency histogram.
#[derive(Debug)]
pub struct Stats {
    /// Latency in microseconds of every request that got a response.
    pub hist: Histogram<u64>,
    /// Responses received (any status).
    pub count: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Non-2xx responses and transport failures, by `"STATUS CODE"` / `"transport:WHAT"`.
    pub errors: BTreeMap<String, u64>,
    /// Per request kind: status → count.
    pub ops: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Retries answered with `Idempotent-Replayed: true`.
    pub replayed: u64,
    /// Retries answered without it.
    pub replay_missing: u64,
    /// Cancels answered 404/409 (the order had already filled or gone): a business outcome
    /// of crossing traffic, counted in `errors` but not a failure of the server.
    pub cancel_rejected: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            count: 0,
            ok: 0,
            errors: BTreeMap::new(),
            ops: BTreeMap::new(),
            replayed: 0,
            replay_missing: 0,
            cancel_rejected: 0,
        }
    }

    /// Records one HTTP response. `code` is the error code from the JSON error body, if any.
    pub fn response(
        &mut self,
        kind: OpKind,
        latency_us: u64,
        status: u16,
        code: Option<&str>,
        replayed: bool,
    ) {
        self.hist.saturating_record(latency_us.max(1));
        self.count += 1;
        *self
            .ops
            .entry(kind.name())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            let key = match code {
                Some(c) => format!("{status} {c}"),
                None => status.to_string(),
            };
            *self.errors.entry(key).or_default() += 1;
            if kind == OpKind::Cancel && (status == 404 || status == 409) {
                self.cancel_rejected += 1;
            }
        }
        if kind == OpKind::Retry && (200..300).contains(&status) {
            if replayed {
                self.replayed += 1;
            } else {
                self.replay_missing += 1;
            }
        }
    }

    /// Records a request that got no HTTP response.
    pub fn transport_error(&mut self, kind: OpKind, what: &str) {
        let key = format!("transport:{what}");
        *self.errors.entry(key.clone()).or_default() += 1;
        *self
            .ops
            .entry(kind.name())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.count += other.count;
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (op, m) in &other.ops {
            let dst = self.ops.entry(op).or_default();
            for (k, v) in m {
                *dst.entry(k.clone()).or_default() += v;
            }
        }
        self.replayed += other.replayed;
        self.replay_missing += other.replay_missing;
        self.cancel_rejected += other.cancel_rejected;
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// The percentile spectrum, HdrHistogram-style (5 ticks per half-distance to 100 %):
    /// `[quantile, value_us]` pairs, what `perf-plot` draws.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spectrum: Vec<(f64, u64)>,
}

impl Latency {
    /// Percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                spectrum: Vec::new(),
            };
        }
        Self {
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            spectrum: h
                .iter_quantiles(5)
                .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
                .collect(),
        }
    }
}

/// Retry outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    /// 2xx retries with `Idempotent-Replayed: true`.
    pub replayed: u64,
    /// 2xx retries without it (a server without idempotency, e.g. perf-echo).
    pub missing: u64,
}

/// The result of one run; written with `--json FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `open` or `closed`.
    pub mode: String,
    /// Where latency is measured from: intended send time (open) or actual send time (closed).
    pub latency_from: String,
    /// Target URL.
    pub target: String,
    /// Keep-alive connections.
    pub connections: usize,
    /// Client runtime worker threads.
    pub threads: usize,
    /// Requested rate (open loop), requests/s.
    pub target_rate: Option<f64>,
    /// Request bound.
    pub request_limit: u64,
    /// Time bound, seconds.
    pub duration_limit_s: f64,
    /// Seconds from the first scheduled send to the last response.
    pub elapsed_s: f64,
    /// Responses received.
    pub count: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Non-2xx responses plus transport failures.
    pub errors: u64,
    /// Of `errors`: cancels answered 404/409 because the order was no longer open.
    #[serde(default)]
    pub cancel_rejected: u64,
    /// Errors by `"STATUS CODE"` or `"transport:WHAT"`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Open loop: requests scheduled but never sent because the time bound hit first.
    pub not_sent: u64,
    /// Responses per second.
    pub achieved_rate: f64,
    /// Latency percentiles in microseconds.
    pub latency_us: Latency,
    /// Per request kind: status (or `transport:…`) → count.
    pub ops: BTreeMap<String, BTreeMap<String, u64>>,
    /// Retry outcomes.
    pub replay: Replay,
}

impl Report {
    /// The one-line human summary.
    pub fn summary(&self) -> String {
        let l = &self.latency_us;
        let rate = match self.target_rate {
            Some(r) => format!(" at {r:.0}/s"),
            None => String::new(),
        };
        format!(
            "{mode}{rate} {target} conns={c}: {n} responses in {e:.2}s = {ar:.0}/s, errors={err} (cancel of non-open {cr}), not_sent={ns}, \
             latency us p50={p50} p90={p90} p99={p99} p99.9={p999} max={max}",
            mode = self.mode,
            target = self.target,
            c = self.connections,
            n = self.count,
            e = self.elapsed_s,
            ar = self.achieved_rate,
            err = self.errors,
            cr = self.cancel_rejected,
            ns = self.not_sent,
            p50 = l.p50,
            p90 = l.p90,
            p99 = l.p99,
            p999 = l.p999,
            max = l.max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for v in 1..=1000 {
            a.response(OpKind::Place, v, 201, None, false);
        }
        b.response(OpKind::Retry, 5000, 201, None, true);
        b.response(OpKind::Place, 10, 422, Some("INSUFFICIENT_MARGIN"), false);
        b.transport_error(OpKind::Cancel, "io");
        a.merge(&b);
        assert_eq!((a.count, a.ok, a.replayed), (1002, 1001, 1));
        assert_eq!(a.errors["422 INSUFFICIENT_MARGIN"], 1);
        assert_eq!(a.errors["transport:io"], 1);
        let l = Latency::of(&a.hist);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!((5000..=5010).contains(&l.max), "{}", l.max);
    }
}
