//! Shared helpers for the integration tests: the server URL, unique prefixes, and a private
//! redis-server for the tests that stop Redis (never the shared one from scripts/services).

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oms_core::ports::{ClaimRequest, IdemKey};
use oms_core::{AccountId, IdempotencyKey};
use oms_redis::{RedisConfig, RedisIdempotencyStore};

/// `Some(url)` of the shared Redis, or `None` (after printing why) when services are skipped.
pub fn redis_url() -> Option<String> {
    if !services_enabled() {
        return None;
    }
    Some(std::env::var("OMS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390/".to_owned()))
}

/// Whether integration tests run; `OMS_SKIP_SERVICES=1` skips them (with a printed reason).
pub fn services_enabled() -> bool {
    if std::env::var("OMS_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!("skipped: OMS_SKIP_SERVICES=1 (no Redis for integration tests)");
        return false;
    }
    true
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "oms-test:{test}:{}:{t:x}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn config(url: &str, test: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.key_prefix = unique_prefix(test);
    c
}

/// Connects or fails the test with a message saying how to start Redis.
pub fn connect(cfg: RedisConfig) -> RedisIdempotencyStore {
    let url = cfg.url.clone();
    RedisIdempotencyStore::connect(cfg).unwrap_or_else(|e| {
        panic!(
            "cannot reach Redis at {url}: {e}\n\
             start it with `scripts/services up` (or set OMS_SKIP_SERVICES=1 to skip)"
        )
    })
}

pub fn key(account: &str, key: &str) -> IdemKey {
    IdemKey {
        account: AccountId::new(account).unwrap(),
        key: IdempotencyKey::new(key).unwrap(),
    }
}

pub fn claim(account: &str, k: &str, fingerprint: u64) -> ClaimRequest {
    ClaimRequest {
        key: key(account, k),
        fingerprint,
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A redis-server of the test's own on 127.0.0.1:`port`, killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server (install it: scripts/services up)");
        let me = OwnRedis {
            port,
            child: Some(child),
        };
        me.wait_ready();
        me
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "own redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
