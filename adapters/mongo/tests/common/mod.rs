//! Shared helpers for the integration tests: the server URL, unique database names, order
//! and execution fixtures, and a private SecantusDB for the test that stops MongoDB.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oms_core::{
    AccountId, ExecutionReport, IdempotencyKey, InstrumentTable, Liquidity, Order, OrderId,
    OrderStatus, OrderType, Price, Qty, Side, SymbolId, TimeInForce,
};
use oms_mongo::{MongoConfig, MongoOrderStore};

/// Whether integration tests run; `OMS_SKIP_SERVICES=1` skips them (with a printed reason).
pub fn services_enabled() -> bool {
    if std::env::var("OMS_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!("skipped: OMS_SKIP_SERVICES=1 (no MongoDB for integration tests)");
        return false;
    }
    true
}

/// `Some(url)` of the shared MongoDB, or `None` (after printing why) when services are skipped.
pub fn mongo_url() -> Option<String> {
    if !services_enabled() {
        return None;
    }
    Some(
        std::env::var("OMS_MONGO_URL")
            .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned()),
    )
}

/// A database name no other test (or run) uses.
pub fn unique_db(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "oms_test_{test}_{}_{t:x}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects to a fresh database or fails the test saying how to start MongoDB.
pub fn connect(url: &str, test: &str) -> MongoOrderStore {
    let mut cfg = MongoConfig::new(url);
    cfg.db = unique_db(test);
    connect_cfg(cfg)
}

pub fn connect_cfg(cfg: MongoConfig) -> MongoOrderStore {
    let url = cfg.url.clone();
    MongoOrderStore::connect(cfg, InstrumentTable::demo()).unwrap_or_else(|e| {
        panic!(
            "cannot reach MongoDB at {url}: {e}\n\
             start it with `scripts/services up` (or set OMS_SKIP_SERVICES=1 to skip)"
        )
    })
}

/// Drops the test's database (best effort) when it goes out of scope.
pub struct DropDb(pub MongoOrderStore);

impl Drop for DropDb {
    fn drop(&mut self) {
        let db = self.0.database().clone();
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _ = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), db.drop()).await });
        }
    }
}

pub fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// A distinct, time-ordered order id for `n`.
pub fn oid(n: u64) -> OrderId {
    OrderId((0x0190_0000_0000_7000_u128 << 64) | (0x8000_u128 << 48) | u128::from(n))
}

/// An order of `account` number `n`, created at `created` ns, at `version`.
pub fn order(account: &str, n: u64, created: u64, version: u32) -> Order {
    let status = match version {
        0 | 1 => OrderStatus::Accepted,
        2 => OrderStatus::PartiallyFilled,
        _ => OrderStatus::Filled,
    };
    let filled = match status {
        OrderStatus::Accepted => 0,
        OrderStatus::PartiallyFilled => 400,
        _ => 1000,
    };
    Order {
        order_id: oid(n),
        client_order_id: None,
        account: acct(account),
        symbol: SymbolId((n % 3) as u16),
        side: if n.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        quantity: Qty(1000),
        price: Some(Price(4_500_000 + n as i64)),
        status,
        filled_quantity: Qty(filled),
        filled_notional: i128::from(filled) * i128::from(4_500_000 + n as i64),
        created_at: created,
        updated_at: created + u64::from(version),
        version,
        idempotency_key: Some(IdempotencyKey::new(&format!("key-{n}")).unwrap().into()),
        reject_reason: None,
    }
}

pub fn execution(exec_id: u64, o: &Order) -> ExecutionReport {
    ExecutionReport {
        exec_id,
        trade_id: exec_id / 2,
        order_id: o.order_id,
        account: o.account,
        symbol: o.symbol,
        side: o.side,
        last_qty: Qty(100),
        last_px: o.price.unwrap_or_default(),
        cum_qty: Qty(100),
        leaves_qty: Qty(900),
        avg_px: o.price.unwrap_or_default(),
        liquidity: Liquidity::Maker,
        ts: o.created_at + 1,
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// `secantusd-py` from the venv `scripts/services` installs (or `$OMS_SECANTUSD`).
pub fn secantusd() -> PathBuf {
    if let Ok(p) = std::env::var("OMS_SECANTUSD") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.services/venv/bin/secantusd-py")
}

/// A SecantusDB of the test's own on 127.0.0.1:`port`, stopped on drop.
pub struct OwnMongo {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl OwnMongo {
    pub fn start(port: u16, dir: PathBuf) -> OwnMongo {
        std::fs::create_dir_all(&dir).unwrap();
        let bin = secantusd();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): run `scripts/services up` once to install it",
                    bin.display()
                )
            });
        let me = OwnMongo {
            port,
            dir,
            child: Some(child),
        };
        me.wait_listening();
        me
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own secantusd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        self.stop();
    }
}
