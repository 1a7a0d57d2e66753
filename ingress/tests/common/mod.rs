//! Shared harness for the black-box HTTP tests: runs the real `oms` binary on a free port with
//! a fresh data directory, talks to it with a real HTTP client, kills it on drop.
//!
//! A module of the crate's one test binary (tests/main.rs); each topic uses a subset of it.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Value, json};

/// The binary under test: the one cargo built for this test run, or `OMS_TEST_BIN` (to run
/// the suite against another build, e.g. a release binary).
pub fn bin() -> String {
    std::env::var("OMS_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_oms").to_string())
}

/// How long a started server may take to answer 200 on `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for asynchronous effects (matching, settlement) to become visible.
pub const EVENTUALLY: Duration = Duration::from_secs(5);

/// A running `oms serve`.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the current process (changes on restart).
    pub base: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// `ulimit -n` of the server process, when a test sets one.
    nofile: Option<u64>,
    pub client: Client,
}

/// An HTTP answer, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error body ("" when absent).
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.field` of an error body.
    pub fn field(&self) -> Option<&str> {
        self.json["error"]["field"].as_str()
    }

    /// Asserts the status, printing the body on failure; returns self for chaining.
    #[track_caller]
    pub fn expect(self, status: u16, what: &str) -> Resp {
        assert_eq!(
            self.status, status,
            "{what}: expected HTTP {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// Asserts an error answer: status, stable code, and the documented error-body shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str, what: &str) -> Resp {
        let r = self.expect(status, what);
        assert_eq!(r.code(), code, "{what}: error code in {}", r.text);
        assert!(
            r.json["error"]["message"].is_string(),
            "{what}: error.message must be a string: {}",
            r.text
        );
        assert!(
            r.json["error"]
                .as_object()
                .is_some_and(|o| o.contains_key("field")),
            "{what}: error.field must be present (null or a name): {}",
            r.text
        );
        let cid = r.json["correlationId"].as_str().unwrap_or("");
        assert!(!cid.is_empty(), "{what}: correlationId missing: {}", r.text);
        assert_eq!(
            r.header("x-correlation-id"),
            Some(cid),
            "{what}: the body's correlationId must be the X-Correlation-Id header"
        );
        r
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

static KEY_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh idempotency key, unique within this test process.
pub fn key(tag: &str) -> String {
    let n = KEY_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{n}", std::process::id())
}

/// A LIMIT order body (numbers as strings, as a careful client sends them).
pub fn limit(symbol: &str, side: &str, qty: &str, price: &str) -> Value {
    json!({"symbol": symbol, "side": side, "quantity": qty, "price": price, "orderType": "LIMIT"})
}

/// A MARKET order body.
pub fn market(symbol: &str, side: &str, qty: &str) -> Value {
    json!({"symbol": symbol, "side": side, "quantity": qty, "orderType": "MARKET"})
}

/// The seed's order body, with JSON numbers.
pub fn seed_order() -> Value {
    json!({"symbol":"BTC/USD","side":"BUY","quantity":0.1,"price":45000,"orderType":"LIMIT"})
}

/// A decimal string (or number) as f64, for comparisons in tests.
#[track_caller]
pub fn dec(v: &Value) -> f64 {
    match v {
        Value::String(s) => s
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a decimal string: {v}")),
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("expected a decimal, got {other}"),
    }
}

/// Whether `s` looks like `2026-11-24T01:02:03.456789Z` (RFC 3339 UTC, microseconds).
pub fn is_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 26].contains(&i) || c.is_ascii_digit())
}

impl Server {
    /// Starts `oms serve` with defaults on a free port and a fresh data directory.
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Starts `oms serve` with extra flags.
    pub async fn start_with(extra: &[&str]) -> Server {
        Self::start_with_env(extra, &[]).await
    }

    /// Starts `oms serve` with extra flags under an open-file limit (`ulimit -n nofile`).
    pub async fn start_with_nofile(extra: &[&str], nofile: u64) -> Server {
        Self::start_full(extra, &[], Some(nofile)).await
    }

    /// Starts `oms serve` with extra flags and `OMS_*` environment variables.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_full(extra, env, None).await
    }

    async fn start_full(extra: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("oms-test-")
            .tempdir()
            .expect("temp dir");
        let mut s = Server {
            child: None,
            base: String::new(),
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nofile,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
        };
        s.spawn().await;
        s
    }

    /// The scratch directory (holds `data/` and `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines the server printed (for failure messages).
    pub fn log_tail(&self) -> String {
        let mut f = match File::open(self.log_path()) {
            Ok(f) => f,
            Err(e) => return format!("<no log: {e}>"),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    }

    async fn spawn(&mut self) {
        let port = free_port();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let mut cmd = Command::new(bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("OMS_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: the closure runs in the forked child before exec and only calls
            // setrlimit(2), which is async-signal-safe; it touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin()));
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "oms serve {:?} exited with {status} before it was ready; log:\n{}",
                    self.args,
                    self.log_tail()
                );
            }
            let ready = self
                .client
                .get(self.url("/ready"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if matches!(ready, Ok(ref r) if r.status().as_u16() == 200) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "oms serve {:?} was not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.args,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends SIGKILL without reaping (usable while other tasks still hold `&Server`); a
    /// following [`Server::restart`] reaps it and starts a new process.
    pub fn signal_kill(&self) {
        if let Some(c) = &self.child {
            let pid = c.id() as libc::pid_t;
            // SAFETY: kill(2) on the pid of a child we own and have not reaped yet, so the pid
            // cannot have been reused by another process.
            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
            assert_eq!(rc, 0, "kill -9 {pid}");
        }
    }

    /// SIGKILL: the process gets no chance to flush or clean up (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as libc::pid_t;
            // SAFETY: kill(2) on the pid of a child we own and have not reaped yet, so the pid
            // cannot have been reused by another process.
            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
            assert_eq!(rc, 0, "kill -9 {pid}");
            let _ = c.wait();
        }
    }

    /// Crash the server and start it again on the same data directory.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Crash the server and start it again on the same data directory with other flags.
    pub async fn restart_with(&mut self, extra: &[&str]) {
        self.kill9();
        self.args = extra.iter().map(|s| s.to_string()).collect();
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one request. `account` goes in `X-Account-Id`; `body` is sent as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        account: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(a) = account {
            rb = rb.header("X-Account-Id", a);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; server log:\n{}", self.log_tail()));
        read(r).await
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        account: Option<&str>,
        headers: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method.clone(), self.url(path))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(a) = account {
            rb = rb.header("X-Account-Id", a);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; server log:\n{}", self.log_tail()));
        read(r).await
    }

    pub async fn get(&self, path: &str, account: Option<&str>) -> Resp {
        self.send(Method::GET, path, account, &[], None).await
    }

    /// `POST /api/orders` with `X-Idempotency-Key`.
    pub async fn place(&self, account: &str, key: &str, body: &Value) -> Resp {
        self.send(
            Method::POST,
            "/api/orders",
            Some(account),
            &[("X-Idempotency-Key", key)],
            Some(body),
        )
        .await
    }

    /// Places an order that must be accepted and waits until `GET /api/orders/{id}` shows it
    /// (so the book and the lists include it); returns the 201 body. Reads right after the
    /// acknowledgement are tested on their own in `http_orders`.
    pub async fn place_ok(&self, account: &str, body: &Value) -> Value {
        let r = self.place(account, &key("ok"), body).await;
        assert_eq!(r.status, 201, "placing {body} for {account}: {}", r.text);
        assert_eq!(r.json["status"], "ACCEPTED", "{}", r.text);
        let id = r.json["orderId"].as_str().expect("orderId");
        self.wait_order(account, id, "visible", |_| true).await;
        r.json
    }

    pub async fn order(&self, account: &str, id: &str) -> Resp {
        self.get(&format!("/api/orders/{id}"), Some(account)).await
    }

    pub async fn cancel(&self, account: &str, id: &str) -> Resp {
        self.send(
            Method::DELETE,
            &format!("/api/orders/{id}"),
            Some(account),
            &[],
            None,
        )
        .await
    }

    pub async fn amend(&self, account: &str, id: &str, body: &Value) -> Resp {
        self.send(
            Method::PATCH,
            &format!("/api/orders/{id}"),
            Some(account),
            &[],
            Some(body),
        )
        .await
    }

    pub async fn halt(&self, body: &Value) -> Resp {
        self.send(Method::POST, "/api/admin/halt", None, &[], Some(body))
            .await
    }

    /// Polls `GET /api/orders/{id}` until `pred` holds (at most [`EVENTUALLY`]); returns the
    /// last order seen and panics with it if the predicate never held.
    pub async fn wait_order(
        &self,
        account: &str,
        id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let r = self.order(account, id).await;
            if r.status == 200 && pred(&r.json) {
                return r.json;
            }
            if Instant::now() > deadline {
                panic!(
                    "order {id} of {account}: never {what}; last answer {} {}",
                    r.status, r.text
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the order has the given status.
    pub async fn wait_status(&self, account: &str, id: &str, status: &str) -> Value {
        self.wait_order(account, id, status, |o| o["status"] == status)
            .await
    }

    /// `GET /api/account`, polled until `pred` holds (at most [`EVENTUALLY`]): balances follow
    /// the processor, which runs just behind the acknowledgement. Returns the last answer
    /// either way, so the caller's assertions report what was seen.
    pub async fn account_when(&self, account: &str, pred: impl Fn(&Value) -> bool) -> Resp {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let r = self.get("/api/account", Some(account)).await;
            if (r.status == 200 && pred(&r.json)) || Instant::now() > deadline {
                return r.expect(200, "GET /api/account");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every order of the account, following `nextCursor` (newest first).
    pub async fn all_orders(&self, account: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/orders?limit=1000{query}");
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(&urlencode(c));
            }
            let r = self.get(&path, Some(account)).await.expect(200, &path);
            out.extend(
                r.json["orders"]
                    .as_array()
                    .expect("orders array")
                    .iter()
                    .cloned(),
            );
            match r.json["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
            assert!(out.len() < 1_000_000, "pagination does not end");
        }
    }

    /// [`Server::all_orders`], polled until it lists `n` orders (at most [`EVENTUALLY`]):
    /// lists follow the processor, just behind the acknowledgement. Returns the last list.
    pub async fn orders_when(&self, account: &str, query: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let list = self.all_orders(account, query).await;
            if list.len() == n || Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The signed position of `account` in `symbol` (0 when absent).
    pub async fn position(&self, account: &str, symbol: &str) -> f64 {
        let r = self
            .get("/api/positions", Some(account))
            .await
            .expect(200, "positions");
        r.json["positions"]
            .as_array()
            .expect("positions array")
            .iter()
            .find(|p| p["symbol"] == symbol)
            .map_or(0.0, |p| dec(&p["quantity"]))
    }

    /// Sum of every `oms_http_requests_total` sample in `/metrics`.
    pub async fn http_requests_total(&self) -> f64 {
        let r = self.get("/metrics", None).await.expect(200, "/metrics");
        r.text
            .lines()
            .filter(|l| l.starts_with("oms_http_requests_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The `METHOD /path` routes in docs/api.md's route table.
pub fn documented_routes() -> Vec<(String, String)> {
    let md = include_str!("../../../docs/api.md");
    md.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (method, rest) = rest.split_once(' ')?;
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) {
                return None;
            }
            let path: String = rest
                .chars()
                .take_while(|c| *c != '`' && *c != '?' && *c != ' ')
                .collect();
            Some((method.to_string(), path))
        })
        .collect()
}

/// An instrument table file (`--instruments`): the default BTC/USD and ETH/USD with BTC/USD's
/// max notional and min quantity replaced. Keep the returned file alive while the server runs.
pub fn instruments_with_btc(max_notional: &str, min_qty: &str) -> tempfile::NamedTempFile {
    let text = format!(
        r#"account_currency = "USD"

[[instrument]]
symbol = "BTC/USD"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "{min_qty}"
max_qty = "100"
min_notional = "10"
max_notional = "{max_notional}"
price_band_pct = "5"
initial_margin_pct = "10"
max_position = "50"
reference_price = "45000.00"

[[instrument]]
symbol = "ETH/USD"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "1000"
min_notional = "10"
max_notional = "5000000"
price_band_pct = "5"
initial_margin_pct = "10"
max_position = "500"
reference_price = "2500.00"
"#
    );
    let f = tempfile::Builder::new()
        .prefix("oms-instruments-")
        .suffix(".toml")
        .tempfile()
        .expect("instruments file");
    std::fs::write(f.path(), text).expect("write instruments");
    f
}

/// An HS256 JWT with the given claims, signed independently of the server's verifier.
pub fn jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}

/// Seconds since the Unix epoch (token lifetimes in tests).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `host:port` of a server.
pub fn addr_of(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads from a raw connection until EOF or `wait` passes. Returns what was read and whether
/// the server closed the connection (EOF or reset) within `wait`.
pub async fn read_until_close(
    stream: &mut tokio::net::TcpStream,
    wait: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status, lower-cased head and body of a raw HTTP/1.1 answer.
pub fn parse_raw(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}
