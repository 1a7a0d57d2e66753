//! SVG pictures of a `perf/compare` run, read the way HdrHistogram's plotter and wrk2 reports
//! are read: the latency percentile spectrum of each system at the same open-loop rate, and
//! throughput against p99 over every open-loop run (the sweep).
//!
//! Input: the directory `perf/compare` writes — `LABEL.MODE….json` [`Report`]s, the latency
//! spectrum in `latencyUs.spectrum`. Output: self-contained SVG (no script, no font files),
//! so the pictures render on any Git host next to `perf/RESULTS.md`. Hand-written SVG keeps
//! this a few hundred lines instead of a plotting stack in the build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::report::Report;

/// Colours per series, in label order (colour-blind-safe Okabe–Ito palette).
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];
const W: f64 = 860.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Percentiles beyond this are drawn at it (the spectrum's last point is 100 %).
const MAX_NINES: f64 = 6.0;

/// The reports of one run, by label (file name up to the first `.`) then by file stem.
pub fn load_reports(dir: &Path) -> std::io::Result<BTreeMap<String, BTreeMap<String, Report>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Report>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some((label, _)) = stem.split_once('.') else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // Other JSON in the directory (kafka-raw.json, …) is not a load report: skip it.
        if let Ok(r) = serde_json::from_str::<Report>(&text) {
            out.entry(label.to_owned())
                .or_default()
                .insert(stem.to_owned(), r);
        }
    }
    Ok(out)
}

/// A log-scale axis mapping `[lo, hi]` (positive) to pixels.
struct LogAxis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl LogAxis {
    fn new(lo: f64, hi: f64, from: f64, to: f64) -> Self {
        // Whole decades, so the grid lines are 1-2-5 values.
        let lo = 10f64.powf(lo.max(1e-9).log10().floor());
        let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
        LogAxis { lo, hi, from, to }
    }
    fn px(&self, v: f64) -> f64 {
        let t = (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.from + t * (self.to - self.from)
    }
    fn ticks(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut d = self.lo;
        while d <= self.hi * 1.0001 {
            for m in [1.0, 2.0, 5.0] {
                let t = d * m;
                if t <= self.hi * 1.0001 {
                    v.push(t);
                }
            }
            d *= 10.0;
        }
        v
    }
}

/// Milliseconds as axis text.
fn ms_text(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{} µs", (ms * 1000.0).round())
    }
}

fn header(o: &mut String, title: &str, subtitle: &str) {
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>
<text x="{LEFT}" y="38" fill="#555555">{}</text>
"##,
        esc(title),
        esc(subtitle)
    );
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn legend(o: &mut String, labels: &[(String, &str)]) {
    for (i, (label, colour)) in labels.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let x = W - RIGHT + 20.0;
        let _ = writeln!(
            o,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0,
            esc(label)
        );
    }
}

fn polyline(o: &mut String, pts: &[(f64, f64)], colour: &str, dots: bool) {
    let mut p = String::new();
    for (x, y) in pts {
        let _ = write!(p, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        o,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        p.trim_end()
    );
    if dots {
        for (x, y) in pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#
            );
        }
    }
}

/// `x` of a quantile on the "number of nines" axis: 0 → 0, 0.9 → 1, 0.99 → 2, …
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(10f64.powf(-MAX_NINES)).log10()).clamp(0.0, MAX_NINES)
}

/// The latency spectrum of each label's `LABEL.open.json` (all at the same rate).
pub fn spectrum_svg(runs: &BTreeMap<String, BTreeMap<String, Report>>) -> Option<String> {
    let series: Vec<(&String, &Report)> = runs
        .iter()
        .filter_map(|(l, r)| r.get(&format!("{l}.open")).map(|r| (l, r)))
        .filter(|(_, r)| !r.latency_us.spectrum.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    let all = series.iter().flat_map(|(_, r)| {
        r.latency_us
            .spectrum
            .iter()
            .map(|(_, v)| *v as f64 / 1000.0)
    });
    let (lo, hi) = all.fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    let y = LogAxis::new(lo.max(0.001), hi, H - BOTTOM, TOP);
    let x_px = |n: f64| LEFT + n / MAX_NINES * (W - LEFT - RIGHT);
    let rate = series[0].1.target_rate.unwrap_or(0.0);
    let mut o = String::new();
    header(
        &mut o,
        "Latency by percentile (open loop, from intended send time)",
        &format!("{rate:.0} requests/s offered to every system; log scales"),
    );
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            ms_text(t)
        );
    }
    for (n, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let px = x_px(n as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{}" stroke="#e0e0e0"/><text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0
    );
    let mut keys = Vec::new();
    for (i, (label, r)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64)> = r
            .latency_us
            .spectrum
            .iter()
            .map(|(q, v)| (x_px(nines(*q)), y.px(*v as f64 / 1000.0)))
            .collect();
        polyline(&mut o, &pts, colour, false);
        keys.push((
            format!(
                "{label} (p99 {})",
                ms_text(r.latency_us.p99 as f64 / 1000.0)
            ),
            colour,
        ));
    }
    legend(&mut o, &keys);
    o.push_str("</svg>\n");
    Some(o)
}

/// Achieved throughput against p99 over every open-loop report of each label.
pub fn throughput_p99_svg(runs: &BTreeMap<String, BTreeMap<String, Report>>) -> Option<String> {
    let mut series: Vec<(&String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(l, rs)| {
            let mut pts: Vec<(f64, f64)> = rs
                .values()
                .filter(|r| r.mode == "open" && r.count > 0)
                .map(|r| (r.achieved_rate, r.latency_us.p99.max(1) as f64 / 1000.0))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (l, pts)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    series.sort_by(|a, b| a.0.cmp(b.0));
    let max_rate = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(r, _)| *r))
        .fold(1f64, f64::max);
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    let y = LogAxis::new(lo.max(0.001), hi, H - BOTTOM, TOP);
    let step = nice_step(max_rate / 5.0);
    let x_max = (max_rate / step).ceil() * step;
    let x_px = |r: f64| LEFT + r / x_max * (W - LEFT - RIGHT);
    let mut o = String::new();
    header(
        &mut o,
        "Throughput vs p99 latency (open loop)",
        "each point one open-loop run; p99 from intended send time, log scale",
    );
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            ms_text(t)
        );
    }
    let mut r = 0.0;
    while r <= x_max * 1.0001 {
        let px = x_px(r);
        let _ = writeln!(
            o,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{}" stroke="#e0e0e0"/><text x="{px:.1}" y="{}" text-anchor="middle">{r:.0}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
        r += step;
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">achieved requests/s</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0
    );
    let mut keys = Vec::new();
    for (i, (label, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let px: Vec<(f64, f64)> = pts.iter().map(|(r, v)| (x_px(*r), y.px(*v))).collect();
        polyline(&mut o, &px, colour, true);
        keys.push(((*label).clone(), colour));
    }
    legend(&mut o, &keys);
    o.push_str("</svg>\n");
    Some(o)
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let d = 10f64.powf(raw.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * d)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, Replay};

    fn report(mode: &str, rate: f64, p99: u64, spectrum: Vec<(f64, u64)>) -> Report {
        Report {
            mode: mode.into(),
            latency_from: "intended".into(),
            target: "http://x".into(),
            connections: 1,
            threads: 1,
            target_rate: Some(rate),
            request_limit: 0,
            duration_limit_s: 1.0,
            elapsed_s: 1.0,
            count: 100,
            ok: 100,
            errors: 0,
            cancel_rejected: 0,
            errors_by_code: BTreeMap::new(),
            not_sent: 0,
            achieved_rate: rate,
            latency_us: Latency {
                min: 1,
                mean: 1.0,
                p50: 1,
                p90: 1,
                p99,
                p999: p99,
                max: p99,
                spectrum,
            },
            ops: BTreeMap::new(),
            replay: Replay {
                replayed: 0,
                missing: 0,
            },
        }
    }

    #[test]
    fn draws_one_line_per_system_and_one_point_per_open_run() {
        let mut runs: BTreeMap<String, BTreeMap<String, Report>> = BTreeMap::new();
        let spec = vec![(0.0, 100), (0.9, 200), (0.99, 900), (1.0, 5_000)];
        runs.entry("echo".into()).or_default().insert(
            "echo.open".into(),
            report("open", 1000.0, 150, spec.clone()),
        );
        let oms = runs.entry("oms-kafka".into()).or_default();
        oms.insert("oms-kafka.open".into(), report("open", 1000.0, 900, spec));
        oms.insert(
            "oms-kafka.half".into(),
            report("open", 3000.0, 2500, vec![]),
        );
        oms.insert(
            "oms-kafka.closed".into(),
            report("closed", 9000.0, 9000, vec![]),
        );
        let s = spectrum_svg(&runs).expect("a spectrum");
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert!(s.contains("oms-kafka (p99 900 µs)"), "{s}");
        let t = throughput_p99_svg(&runs).expect("a sweep plot");
        assert_eq!(t.matches("<polyline").count(), 2);
        // echo: 1 open run; oms-kafka: 2 open runs (the closed one is not a sweep point).
        assert_eq!(t.matches("<circle").count(), 3, "{t}");
    }

    #[test]
    fn percentile_axis_counts_nines() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nice_step(180.0), 200.0);
    }
}
