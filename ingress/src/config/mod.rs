//! Configuration of `oms serve`: flags, `OMS_*` environment variables and an optional TOML
//! file, in that order of precedence. Every default is visible in `oms serve --help`.
//!
//! The TOML file uses the long flag names with `_` or `-` (`bind = "0.0.0.0:8080"`,
//! `ring_size = 65536`); its values become the flags' defaults (clap's own defaults are
//! replaced before parsing), underneath the environment, so an operator can keep a file in a
//! ConfigMap and still override one value with an env var. The process environment is never
//! written.

pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// A rate limit as configured: `count` requests per `period`, with a burst of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    pub count: u32,
    pub period: std::time::Duration,
}

impl std::str::FromStr for RateSpec {
    type Err = String;

    /// `30/s`, `30/1s`, `600/1m`, `1000/1h`, `5/500ms`.
    fn from_str(s: &str) -> Result<Self, String> {
        use std::time::Duration;
        let bad = || format!("'{s}' is not a rate like 30/s, 600/1m or 5/500ms (or off)");
        let (n, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let p = p.trim();
        let split = p.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = p.split_at(split);
        let num: u64 = if num.is_empty() {
            1
        } else {
            num.parse().map_err(|_| bad())?
        };
        let period = match unit {
            "ms" => Duration::from_millis(num),
            "s" => Duration::from_secs(num),
            "m" => Duration::from_secs(num * 60),
            "h" => Duration::from_secs(num * 3600),
            _ => return Err(bad()),
        };
        if count == 0 || period.is_zero() {
            return Err(bad());
        }
        Ok(RateSpec { count, period })
    }
}

/// A limit that may be `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub Option<RateSpec>);

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "off" => Ok(Rate(None)),
            r => r.parse().map(|r| Rate(Some(r))),
        }
    }
}

/// Which order log backs the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogKind {
    /// Segmented file journal under `--data-dir` (no services needed).
    Embedded,
    /// Kafka topic `orders` (`--kafka-brokers`).
    Kafka,
}

/// When the embedded journal calls fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// One fsync per batch before acknowledging (no acknowledged order is lost on power loss).
    Batch,
    /// At most every `--fsync-interval-ms` (acknowledged = written to the OS).
    Interval,
    /// Never (benchmarks; survives a process crash, not a power loss).
    Never,
}

/// Which thread encodes a snapshot image (the processor always captures the state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SnapshotEncode {
    /// `background` with 4 or more CPUs, else `processor` (measured: on 2 shared cores the
    /// background encode competes with the processor and the HTTP workers, and the order
    /// chunks it shares are copied while it runs, so it is no faster and uses more memory).
    Auto,
    /// The processor encodes the image itself and stops for that long.
    Processor,
    /// The snapshot thread encodes it; the processor stops only for the capture.
    Background,
}

impl SnapshotEncode {
    /// `Auto` resolved for this machine.
    pub fn resolve(self) -> SnapshotEncode {
        match self {
            SnapshotEncode::Auto => {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                if cpus >= 4 {
                    SnapshotEncode::Background
                } else {
                    SnapshotEncode::Processor
                }
            }
            mode => mode,
        }
    }
}

/// How ring consumers wait when idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitKind {
    /// Park until woken by the previous stage (no idle CPU; the default).
    Park,
    /// Poll every 20 µs with a short sleep.
    Sleep,
    /// Yield the CPU (lower latency, burns idle CPU).
    Yield,
    /// Busy-spin (lowest latency; only with dedicated, pinned cores).
    Spin,
}

/// How the four ring stages are laid out on threads (docs/design.md "Threads").
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StageLayout {
    /// `fused` on machines with fewer than 6 cores, `threads` otherwise.
    Auto,
    /// Validate + idempotency + risk on one thread, publish on another.
    Fused,
    /// One thread per stage.
    Threads,
}

impl StageLayout {
    /// Whether validate, idempotency and risk share one thread on this machine.
    pub fn fused(self) -> bool {
        match self {
            StageLayout::Fused => true,
            StageLayout::Threads => false,
            StageLayout::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()) < 6,
        }
    }
}

/// Where GET routes read orders from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryStore {
    /// The in-process processor state (single node).
    Memory,
    /// MongoDB projection (multi-node deployments).
    Mongo,
}

/// What happens to journal segments no kept snapshot needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RetentionMode {
    /// Keep every segment (disk grows with the log).
    Keep,
    /// Delete them.
    Delete,
    /// Move them to `<data-dir>/journal/archive/` (for an external backup job).
    Archive,
}

/// Authentication mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Account from `X-Account-Id` (default `demo`); development only.
    Off,
    /// `Authorization: Bearer <JWT>`: `sub` = account, `roles` = permissions (HS256 with
    /// `--jwt-secret`, RS256/ES256 with `--jwt-jwks`).
    Jwt,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// `oms serve` settings.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OMS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory for the embedded journal and snapshots.
    #[arg(long, env = "OMS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Order log backend.
    #[arg(long = "log", env = "OMS_LOG", value_enum, default_value = "embedded")]
    pub log: LogKind,

    /// Journal fsync policy.
    #[arg(long, env = "OMS_FSYNC", value_enum, default_value = "batch")]
    pub fsync: FsyncMode,

    /// Interval for `--fsync interval`.
    #[arg(long, env = "OMS_FSYNC_INTERVAL_MS", default_value_t = 5)]
    pub fsync_interval_ms: u64,

    /// Journal segment size in MiB.
    #[arg(long, env = "OMS_SEGMENT_MIB", default_value_t = 64)]
    pub segment_mib: u64,

    /// Write a snapshot after this many applied commands (0: not by count).
    #[arg(long, env = "OMS_SNAPSHOT_EVERY_COMMANDS", default_value_t = 100_000)]
    pub snapshot_every_commands: u64,

    /// Write a snapshot after this many seconds with new commands (0: not by time).
    #[arg(long, env = "OMS_SNAPSHOT_EVERY_SECS", default_value_t = 60)]
    pub snapshot_every_secs: u64,

    /// Which thread encodes a snapshot: `processor` (it stops for the encode), `background`
    /// (the snapshot thread; the processor stops only to capture the state), or `auto`
    /// (background with 4 or more CPUs).
    #[arg(long, env = "OMS_SNAPSHOT_ENCODE", value_enum, default_value = "auto")]
    pub snapshot_encode: SnapshotEncode,

    /// Order records the maps are sized for at start (0: grow on demand; a growth past a
    /// million orders copies the map and stalls the processor for a moment).
    #[arg(long, env = "OMS_RESERVE_ORDERS", default_value_t = 0)]
    pub reserve_orders: usize,

    /// Finished orders (filled, canceled, rejected, expired) kept in memory, newest first;
    /// older ones move to the on-disk archive and are still found by every order route.
    #[arg(long, env = "OMS_RETAIN_TERMINAL_ORDERS", default_value_t = oms_core::engine::DEFAULT_RETAIN_TERMINAL)]
    pub retain_terminal_orders: usize,

    /// Directory of the archive of finished orders (default `<data-dir>/archive`).
    #[arg(long, env = "OMS_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,

    /// Snapshots kept (the newest; an older one is used if the newest is damaged).
    #[arg(long, env = "OMS_SNAPSHOT_KEEP", default_value_t = 3)]
    pub snapshot_keep: usize,

    /// Snapshot directory (default `<data-dir>/snapshots`).
    #[arg(long, env = "OMS_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// Journal segments wholly before the oldest kept snapshot: keep, delete or archive
    /// (to `<data-dir>/journal/archive/`).
    #[arg(
        long,
        env = "OMS_JOURNAL_RETENTION",
        value_enum,
        default_value = "keep"
    )]
    pub journal_retention: RetentionMode,

    /// Kafka bootstrap servers (with `--log kafka`, and for event topics when set).
    #[arg(long, env = "OMS_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Prefix for every Kafka topic name (e.g. `prod.`).
    #[arg(long, env = "OMS_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// Create the Kafka topics at start if they do not exist (production: use the Job).
    #[arg(long, env = "OMS_KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,

    /// Partitions of topics created at start.
    #[arg(long, env = "OMS_KAFKA_PARTITIONS", default_value_t = 3)]
    pub kafka_partitions: i32,

    /// Replication factor of topics created at start (production: 3).
    #[arg(long, env = "OMS_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,

    /// min.insync.replicas of topics created at start (production: 2).
    #[arg(long, env = "OMS_KAFKA_MIN_INSYNC", default_value_t = 1)]
    pub kafka_min_insync: i32,

    /// Kafka producer linger in microseconds.
    #[arg(long, env = "OMS_KAFKA_LINGER_US", default_value_t = 500)]
    pub kafka_linger_us: u64,

    /// Extra librdkafka settings for every Kafka client of this node, `KEY=VALUE`, repeatable
    /// (comma-separated in the environment or an array in the config file), applied after
    /// oms's own: e.g. `fetch.wait.max.ms=100` for a broker that long-polls fetches.
    #[arg(long = "kafka-option", env = "OMS_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_kafka_option)]
    pub kafka_options: Vec<(String, String)>,

    /// Redis URL for shared idempotency records (fast path; the log index is the fallback).
    #[arg(long, env = "OMS_REDIS_URL")]
    pub redis_url: Option<String>,

    /// MongoDB URL for the orders/executions projection.
    #[arg(long, env = "OMS_MONGO_URL")]
    pub mongo_url: Option<String>,

    /// MongoDB database name.
    #[arg(long, env = "OMS_MONGO_DB", default_value = "oms")]
    pub mongo_db: String,

    /// Where GET routes read orders from.
    #[arg(long, env = "OMS_QUERY_STORE", value_enum, default_value = "memory")]
    pub query_store: QueryStore,

    /// Authentication mode (`off` is for development only and logs a warning).
    #[arg(long, env = "OMS_AUTH", value_enum, default_value = "off")]
    pub auth: AuthMode,

    /// HS256 secret for `--auth jwt` (at least 32 bytes).
    #[arg(long, env = "OMS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// JWKS file with the RS256/ES256 public keys accepted by `--auth jwt` (selected by `kid`).
    #[arg(long, env = "OMS_JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,

    /// Required `iss` claim (unchecked when absent).
    #[arg(long, env = "OMS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim (unchecked when absent).
    #[arg(long, env = "OMS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "OMS_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Per-account limit on order writes (place, cancel, amend, halt): `N/PERIOD` such as
    /// `30/s` or `600/1m` (a bucket of N refilled over PERIOD), or `off`.
    #[arg(long, env = "OMS_RATE_LIMIT_ORDERS", default_value = "off")]
    pub rate_limit_orders: Rate,

    /// Per-account limit on authenticated reads (orders, positions, account), like
    /// `--rate-limit-orders`.
    #[arg(long, env = "OMS_RATE_LIMIT_QUERIES", default_value = "off")]
    pub rate_limit_queries: Rate,

    /// Most connections served at once; more are refused with 503 (after evicting an idle
    /// one if possible). Clamped below the process's open-file limit.
    #[arg(long, env = "OMS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// A request head (line and headers) must arrive within this time of its first byte
    /// (and a new connection's first request within this time of connecting).
    #[arg(long, env = "OMS_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// A keep-alive connection with no request for this long is closed.
    #[arg(long, env = "OMS_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Bound on a whole request, body included (408 after it); must exceed the ack timeout.
    #[arg(long, env = "OMS_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Largest request head (line and headers) in bytes; larger is 431.
    #[arg(long, env = "OMS_MAX_HEADER_BYTES", default_value_t = 65_536)]
    pub max_header_bytes: usize,

    /// Instrument table (TOML); the built-in BTC/USD, ETH/USD, SOL/USD when absent.
    #[arg(long, env = "OMS_INSTRUMENTS")]
    pub instruments: Option<PathBuf>,

    /// Equity (account currency) of accounts seen for the first time (dev mode).
    #[arg(long, env = "OMS_DEFAULT_EQUITY", default_value = "1000000")]
    pub default_equity: String,

    /// Maximum open orders per account.
    #[arg(long, env = "OMS_MAX_OPEN_ORDERS", default_value_t = 1000)]
    pub max_open_orders: u32,

    /// Ring size (power of two).
    #[arg(long, env = "OMS_RING_SIZE", default_value_t = 16384)]
    pub ring_size: usize,

    /// Largest batch the publish stage appends at once.
    #[arg(long, env = "OMS_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,

    /// Batches that may wait for the order log at once (pipelined appends; Kafka). Answers
    /// still leave in log order. At least 2.
    #[arg(long, env = "OMS_LOG_IN_FLIGHT", default_value_t = 8)]
    pub log_in_flight: usize,

    /// Ring stage layout: one thread per stage, or validate+idempotency+risk fused on one.
    #[arg(long, env = "OMS_STAGES", value_enum, default_value = "threads")]
    pub stages: StageLayout,

    /// How idle ring consumers wait.
    #[arg(long, env = "OMS_WAIT_STRATEGY", value_enum, default_value = "park")]
    pub wait_strategy: WaitKind,

    /// Cores to pin the four ring stages and the processor to, e.g. `2,3,4,5,6`
    /// (empty = no pinning; missing cores are skipped with a warning).
    #[arg(long, env = "OMS_PIN_CORES", value_delimiter = ',', default_value = "")]
    pub pin_cores: Vec<String>,

    /// Bound on how long a request waits for its acknowledgement before 503.
    #[arg(long, env = "OMS_ACK_TIMEOUT_MS", default_value_t = 2000)]
    pub ack_timeout_ms: u64,

    /// How long a request waits for room in a full ring before 503 `OVERLOADED`.
    #[arg(long, env = "OMS_RING_FULL_WAIT_MS", default_value_t = 50)]
    pub ring_full_wait_ms: u64,

    /// Most items in one `POST`/`DELETE /api/orders/batch`.
    #[arg(long, env = "OMS_MAX_BATCH_ORDERS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_batch_orders: u64,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "OMS_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,

    /// On SIGTERM, keep serving this long (readiness already failing) before closing.
    #[arg(long, env = "OMS_SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,

    /// Log format.
    #[arg(long, env = "OMS_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// OpenTelemetry traces: the OTLP/HTTP collector to export to (e.g.
    /// `http://127.0.0.1:4318`; `/v1/traces` is added when the URL has no path). Off when
    /// unset: then nothing on the hot path records anything (docs/observability.md, "Traces").
    #[arg(long, env = "OMS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Share of the traces that start at this node to sample, 0 to 1 (requests carrying a
    /// `traceparent` follow their caller's decision).
    #[arg(long, env = "OMS_TRACE_SAMPLE_RATIO", default_value_t = 1.0)]
    pub trace_sample_ratio: f64,

    /// Node id: distinct per node and stable across its restarts (cluster mode: its name in
    /// the leader directory, e.g. the pod name `oms-2`). Default: the hostname.
    #[arg(long, env = "OMS_NODE_ID")]
    pub node_id: Option<String>,

    /// Cluster mode (docs/scale-out.md): several nodes on one Kafka log, each leading some
    /// partitions. Needs `--log kafka`.
    #[arg(long, env = "OMS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cluster: bool,

    /// Cluster mode: how long the group waits for a silent node before its partitions move
    /// to the others (Kafka `session.timeout.ms`).
    #[arg(long, env = "OMS_CLUSTER_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    pub cluster_session_timeout_ms: u64,

    /// Cluster mode: write the order log in Kafka transactions (`transactional.id` =
    /// `{prefix}oms-{node id}`), so a failed append is aborted and no replica ever applies it.
    /// Use it on Apache Kafka / MSK; off by default because tansu 0.6 (the test broker) lets
    /// `read_committed` readers past open transactions (docs/scale-out.md, "In-doubt appends").
    #[arg(long, env = "OMS_CLUSTER_TRANSACTIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cluster_transactions: bool,

    /// Cluster mode: the base URL other nodes forward this node's requests to
    /// (default: `http://<bind address>`).
    #[arg(long, env = "OMS_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// WebSocket `/ws` limits.
    #[command(flatten)]
    pub ws: crate::config::ws::WsArgs,

    /// Test hook: every journal append sleeps this long first (failure tests).
    #[arg(long, env = "OMS_TEST_STALL_LOG_MS", default_value_t = 0, hide = true)]
    pub test_stall_log_ms: u64,
}

impl ServeArgs {
    /// `--node-id`, else the hostname, else `oms`.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node_id {
            return n.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own and
        // NUL-terminates it when it fits; we read only up to the first NUL.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        match std::str::from_utf8(&buf[..end]) {
            Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
            _ => "oms".to_string(),
        }
    }

    /// A number distinct per node, seeding order ids and correlation ids: the node id if it
    /// is one, else a hash of it.
    pub fn node_seed(&self) -> u64 {
        let name = self.node_name();
        name.parse().unwrap_or_else(|_| {
            name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        })
    }

    /// Where other cluster nodes reach this one.
    pub fn advertised_url(&self) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }
}

/// `KEY=VALUE` of `--kafka-option`.
fn parse_kafka_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE (a librdkafka setting), got '{s}'"
        )),
    }
}

/// A TOML config file's values as `(flag name, value text)` pairs, in file order.
///
/// Keys are flag names with `_` or `-`; arrays become comma-separated lists. The caller makes
/// them the flags' defaults, so flags and `OMS_*` environment variables still win — without
/// touching the process environment.
pub fn config_file_values(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {} is not valid TOML: {e}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => anyhow::bail!("config key {key}: unsupported value {other}"),
            };
            Ok((key.replace('_', "-"), text))
        })
        .collect()
}

/// Makes the config file's values the defaults of `cmd`'s matching flags (by long name);
/// an unknown key is an error naming it.
pub fn apply_defaults(
    mut cmd: clap::Command,
    values: &[(String, String)],
) -> anyhow::Result<clap::Command> {
    for (key, value) in values {
        let id = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .map(|a| a.get_id().clone())
            .ok_or_else(|| anyhow::anyhow!("config file: unknown key '{key}'"))?;
        let value = value.clone();
        cmd = cmd.mut_arg(id, move |a| a.default_value(value));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn rates_parse() {
        let r: RateSpec = "30/s".parse().unwrap();
        assert_eq!((r.count, r.period.as_secs()), (30, 1));
        assert_eq!("600/1m".parse::<RateSpec>().unwrap().period.as_secs(), 60);
        assert_eq!(
            "5/500ms".parse::<RateSpec>().unwrap().period.as_millis(),
            500
        );
        for bad in ["30", "0/s", "x/s", "30/", "30/1d", "30/0s"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
        assert_eq!("off".parse::<Rate>().unwrap(), Rate(None));
    }

    #[test]
    fn kafka_options_are_key_value_pairs_from_flags_or_the_file() {
        let m = Cli::command()
            .try_get_matches_from([
                "oms",
                "--kafka-option",
                "fetch.wait.max.ms=100",
                "--kafka-option",
                "socket.nagle.disable = true",
            ])
            .unwrap();
        let args = Cli::from_arg_matches(&m).unwrap().serve;
        assert_eq!(
            args.kafka_options,
            [
                ("fetch.wait.max.ms".to_owned(), "100".to_owned()),
                ("socket.nagle.disable".to_owned(), "true".to_owned())
            ]
        );
        for bad in ["fetch.wait.max.ms", "=1"] {
            assert!(
                Cli::command()
                    .try_get_matches_from(["oms", "--kafka-option", bad])
                    .is_err(),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oms.toml");
        std::fs::write(&f, "kafka_option = [\"linger.ms=1\", \"acks=all\"]\n").unwrap();
        let cmd = apply_defaults(Cli::command(), &config_file_values(&f).unwrap()).unwrap();
        let args = Cli::from_arg_matches(&cmd.try_get_matches_from(["oms"]).unwrap())
            .unwrap()
            .serve;
        assert_eq!(args.kafka_options.len(), 2);
        assert_eq!(args.kafka_options[1], ("acks".to_owned(), "all".to_owned()));
    }

    #[test]
    fn file_values_become_defaults_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oms.toml");
        std::fs::write(
            &f,
            "ring_size = 128\nrate-limit-orders = \"30/s\"\npin_cores = [\"1\", \"2\"]\n",
        )
        .unwrap();
        let values = config_file_values(&f).unwrap();
        let cmd = apply_defaults(Cli::command(), &values).unwrap();
        let m = cmd
            .try_get_matches_from(["oms", "--ring-size", "256"])
            .unwrap();
        let args = Cli::from_arg_matches(&m).unwrap().serve;
        assert_eq!(args.ring_size, 256, "a flag beats the file");
        assert_eq!(
            args.rate_limit_orders.0.unwrap().count,
            30,
            "the file beats the default"
        );
        assert_eq!(args.pin_cores, ["1", "2"]);
        std::fs::write(&f, "no_such_flag = 1\n").unwrap();
        let values = config_file_values(&f).unwrap();
        assert!(apply_defaults(Cli::command(), &values).is_err());
    }
}
