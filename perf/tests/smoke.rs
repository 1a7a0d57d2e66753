//! Smoke test of the harness: perf-echo on a free port, the generator in both modes.
//!
//! The full comparison needs release builds and real services and is not part of CI; this
//! keeps the generator, its report and the echo server honest in a few seconds.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oms_perf::loadgen::{self, Config, Mode};
use oms_perf::report::Report;
use oms_perf::target::parse_target;
use oms_perf::traffic::Mix;

struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_echo() -> (Echo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perf-echo"))
        .args(["--bind", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn perf-echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read listening line");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .expect("listening line")
        .to_string();
    (Echo(child), format!("http://{addr}"))
}

fn check(r: &Report) {
    assert!(r.count > 0, "no responses: {r:?}");
    assert_eq!(r.errors, 0, "errors: {:?}", r.errors_by_code);
    assert_eq!(r.ok, r.count);
    let l = &r.latency_us;
    assert!(
        l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(r.achieved_rate > 0.0);
    assert!(r.ops.contains_key("place"));
}

#[test]
fn generator_against_echo_both_modes() {
    let (_echo, url) = spawn_echo();

    // Closed loop, in-process.
    let cfg = Config {
        target: parse_target(&url).unwrap(),
        mode: Mode::Closed,
        connections: 4,
        requests: 2_000,
        duration: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        mix: Mix {
            cancel_frac: 0.1,
            retry_frac: 0.1,
            ..Mix::default()
        },
        seed: 7,
        progress: false,
        threads: 1,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let closed = rt.block_on(loadgen::run(cfg)).unwrap();
    check(&closed);
    assert_eq!(closed.mode, "closed");
    assert!(closed.count <= 2_000);
    let json = serde_json::to_string(&closed).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.count, closed.count);

    // Open loop, through the binary and its --json file.
    let out = std::env::temp_dir().join(format!("oms-perf-smoke-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_oms-perf"))
        .args([
            "run",
            "--target",
            &url,
            "--mode",
            "open",
            "--rate",
            "200",
            "--duration",
            "2",
        ])
        .args(["--connections", "4", "--threads", "1", "--quiet", "--json"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let open: Report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    check(&open);
    assert_eq!(open.mode, "open");
    assert_eq!(open.latency_from, "intended-send-time");
    assert_eq!(open.not_sent, 0);
    // 200/s for 2 s: exactly 400 scheduled, all sent and answered.
    assert_eq!(open.count, 400);
    assert!(
        (open.achieved_rate - 200.0).abs() < 40.0,
        "{}",
        open.achieved_rate
    );
}

#[test]
fn refuses_non_loopback_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_oms-perf"))
        .args(["run", "--target", "http://10.1.2.3:80", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
}
