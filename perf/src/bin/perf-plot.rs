//! perf-plot: SVG pictures of one `perf/compare` run (see `oms_perf::plot`).
//!
//! `perf-plot REPORT_DIR OUT_DIR` writes `OUT_DIR/latency-spectrum.svg` (percentile spectrum
//! of every system at the common open-loop rate) and `OUT_DIR/throughput-p99.svg` (achieved
//! rate vs p99 over every open-loop run). A picture without data is skipped with a note.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use oms_perf::plot;

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: perf-plot REPORT_DIR OUT_DIR");
    };
    let (dir, out) = (PathBuf::from(dir), PathBuf::from(out));
    let runs = plot::load_reports(&dir).with_context(|| format!("reading {}", dir.display()))?;
    std::fs::create_dir_all(&out)?;
    for (name, svg) in [
        ("latency-spectrum.svg", plot::spectrum_svg(&runs)),
        ("throughput-p99.svg", plot::throughput_p99_svg(&runs)),
    ] {
        let path = out.join(name);
        match svg {
            Some(s) => {
                std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => eprintln!("perf-plot: no data for {name} in {}", dir.display()),
        }
    }
    Ok(())
}
