//! Configuration of `oms serve`: flags, `OMS_*` environment variables and an optional TOML
//! file, in that order of precedence. Every default is visible in `oms serve --help`.
//!
//! The TOML file uses the long flag names with `_` or `-` (`bind = "0.0.0.0:8080"`,
//! `ring_size = 65536`); its values become defaults underneath the environment, so an
//! operator can keep a file in a ConfigMap and still override one value with an env var.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
    /// `Authorization: Bearer <JWT>` (HS256, `sub` = account).
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

    /// Order records the maps are sized for at start (0: grow on demand; a growth past a
    /// million orders copies the map and stalls the processor for a moment).
    #[arg(long, env = "OMS_RESERVE_ORDERS", default_value_t = 0)]
    pub reserve_orders: usize,

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

    /// Authentication mode.
    #[arg(long, env = "OMS_AUTH", value_enum, default_value = "off")]
    pub auth: AuthMode,

    /// HS256 secret for `--auth jwt`.
    #[arg(long, env = "OMS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

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

    /// Largest accepted request body in bytes.
    #[arg(long, env = "OMS_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,

    /// On SIGTERM, keep serving this long (readiness already failing) before closing.
    #[arg(long, env = "OMS_SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,

    /// Log format.
    #[arg(long, env = "OMS_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Node id (seeds order ids; distinct per node).
    #[arg(long, env = "OMS_NODE_ID", default_value_t = 1)]
    pub node_id: u64,

    /// Test hook: every journal append sleeps this long first (failure tests).
    #[arg(long, env = "OMS_TEST_STALL_LOG_MS", default_value_t = 0, hide = true)]
    pub test_stall_log_ms: u64,
}

/// Applies a TOML config file as environment defaults (flags and real env vars still win).
pub fn apply_config_file(path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {} is not valid TOML: {e}", path.display()))?;
    for (key, value) in table {
        let env = format!("OMS_{}", key.replace('-', "_").to_ascii_uppercase());
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
        if std::env::var_os(&env).is_none() {
            // SAFETY: called once at start-up from `main`, before any other thread exists.
            unsafe { std::env::set_var(&env, text) };
        }
    }
    Ok(())
}
