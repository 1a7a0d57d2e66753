//! [`RedisIdempotencyStore`]: the core's [`IdempotencyStore`] port on a Redis server.
//!
//! The port is synchronous and called from the ring's stage thread, so the store blocks on a
//! tokio runtime it owns (or one it was handed) and must never be called from inside an
//! async task. Every method sends its whole batch as one pipeline: one round trip per batch,
//! never one per order. Each batch is bounded by [`RedisConfig::batch_timeout`]; a failure
//! opens a short cool-down during which calls fail at once without touching the network, so a
//! Redis outage costs the hot path nothing beyond the first timed-out batch. The
//! [`ConnectionManager`] reconnects by itself when Redis comes back. Health (`connected`)
//! and the write-back of completions that failed meanwhile live in [`crate::health`].

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oms_core::ports::{
    Claim, ClaimRequest, Completion, IDEMPOTENCY_TTL, IdemKey, IdempotencyStore, StoreError,
};
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::{Handle, Runtime};

use crate::Error;
use crate::health::{self, Backlog, Pending};
use crate::record::{self, Record};

/// Settings of a [`RedisIdempotencyStore`].
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Keys are `{key_prefix}:{account}:{key}` (default `idempotency`).
    pub key_prefix: String,
    /// Bound on one pipelined batch; past it the call fails with [`StoreError::Timeout`].
    pub batch_timeout: Duration,
    /// TTL of a pending claim: a crashed node's claims expire after this.
    pub claim_ttl: Duration,
    /// TTL of a completed record (24 h).
    pub done_ttl: Duration,
    /// Bound on establishing a TCP connection (the first one at start too).
    pub connect_timeout: Duration,
    /// After a failed batch, calls fail at once for this long, then one probes Redis again.
    pub cooldown: Duration,
    /// How often the health probe PINGs Redis (and writes the backlog back).
    pub probe_interval: Duration,
    /// Completed records kept for write-back while Redis is down; the oldest are dropped
    /// past this bound.
    pub writeback_capacity: usize,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: "idempotency".to_owned(),
            batch_timeout: Duration::from_millis(50),
            claim_ttl: Duration::from_secs(30),
            done_ttl: IDEMPOTENCY_TTL,
            connect_timeout: Duration::from_secs(1),
            cooldown: Duration::from_millis(250),
            probe_interval: Duration::from_millis(500),
            writeback_capacity: 100_000,
        }
    }
}

/// Counters the caller exports as metrics. Shared by all clones of a store.
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Batches that failed (error or timeout), each counted once.
    pub errors: AtomicU64,
    /// Of `errors`, those that hit the batch timeout.
    pub timeouts: AtomicU64,
    /// Calls refused without a round trip during the cool-down after an error.
    pub short_circuited: AtomicU64,
    /// Batches (pipelines) sent.
    pub batches: AtomicU64,
    /// Claims answered `Replay`.
    pub replays: AtomicU64,
    /// Records found in Redis that this crate cannot decode (answered `InFlight`).
    pub undecodable: AtomicU64,
    /// Whether the last health probe (PING) was answered.
    pub connected: AtomicBool,
    /// Completed records written back after Redis was down or slow.
    pub written_back: AtomicU64,
    /// Completed records waiting to be written back.
    pub writeback_pending: AtomicU64,
    /// Completed records dropped from a full write-back queue.
    pub writeback_dropped: AtomicU64,
}

/// Where the store's futures run.
#[derive(Clone)]
enum Rt {
    Owned(Arc<Runtime>),
    Borrowed(Handle),
}

impl Rt {
    fn handle(&self) -> &Handle {
        match self {
            Rt::Owned(rt) => rt.handle(),
            Rt::Borrowed(h) => h,
        }
    }
}

/// Idempotency records in Redis (ARCHITECTURE.md §6). Clone it to give each calling thread
/// its own handle: clones share the connection (multiplexed) and the counters.
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    rt: Rt,
    conn: ConnectionManager,
    cfg: Arc<RedisConfig>,
    stats: Arc<RedisStats>,
    /// Until when calls fail without a round trip (per clone).
    down_until: Option<Instant>,
    /// Scratch for building key strings.
    key_buf: String,
    /// Completions to write back once Redis answers (shared by clones).
    backlog: Arc<Backlog>,
    /// Keeps the health probe running while any clone exists.
    _alive: Arc<()>,
}

impl std::fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// Connects with a runtime of its own (one worker thread). Call from a plain thread.
    pub fn connect(cfg: RedisConfig) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("oms-redis")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Self::connect_on(Rt::Owned(Arc::new(rt)), cfg)
    }

    /// Connects using an existing multi-thread runtime (its workers drive the connection).
    pub fn connect_with_handle(handle: Handle, cfg: RedisConfig) -> Result<Self, Error> {
        Self::connect_on(Rt::Borrowed(handle), cfg)
    }

    fn connect_on(rt: Rt, cfg: RedisConfig) -> Result<Self, Error> {
        if Handle::try_current().is_ok() {
            return Err(Error::AsyncContext);
        }
        let client = redis::Client::open(cfg.url.as_str())?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.batch_timeout.max(Duration::from_millis(1))))
            // Few, short reconnect attempts: when they are exhausted the next call starts a
            // fresh reconnect, so a returning Redis is found within about a second.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let limit = cfg.connect_timeout + Duration::from_millis(500);
        let conn = rt.handle().block_on(async {
            tokio::time::timeout(limit, ConnectionManager::new_with_config(client, mcfg)).await
        });
        let conn = match conn {
            Ok(c) => c?,
            Err(_) => return Err(Error::ConnectTimeout(limit)),
        };
        let cfg = Arc::new(cfg);
        let stats = Arc::new(RedisStats::default());
        stats.connected.store(true, Ordering::Relaxed);
        let backlog = Arc::new(Backlog::new(cfg.writeback_capacity));
        let alive = Arc::new(());
        rt.handle().spawn(health::probe(
            cfg.clone(),
            stats.clone(),
            backlog.clone(),
            Arc::downgrade(&alive),
        ));
        Ok(RedisIdempotencyStore {
            rt,
            conn,
            cfg,
            stats,
            down_until: None,
            key_buf: String::new(),
            backlog,
            _alive: alive,
        })
    }

    /// The counters (errors, timeouts, …), shared with every clone.
    pub fn stats(&self) -> Arc<RedisStats> {
        self.stats.clone()
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &IdemKey) -> String {
        let mut s = String::new();
        write_key(&mut s, &self.cfg.key_prefix, key);
        s
    }

    /// Sends `pipe` as one round trip within the batch timeout.
    fn run(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, StoreError> {
        if Handle::try_current().is_ok() {
            return Err(StoreError::Other(
                "oms-redis called from inside an async task".to_owned(),
            ));
        }
        if let Some(until) = self.down_until {
            if Instant::now() < until {
                self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Unavailable(
                    "redis failed recently (cooling down)".to_owned(),
                ));
            }
            self.down_until = None;
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let limit = self.cfg.batch_timeout;
        let conn = &mut self.conn;
        let res = self.rt.handle().block_on(async move {
            tokio::time::timeout(limit, pipe.query_async::<Vec<Value>>(conn)).await
        });
        let err = match res {
            Ok(Ok(values)) => return Ok(values),
            Ok(Err(e)) if e.is_timeout() => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                StoreError::Timeout(limit)
            }
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => {
                StoreError::Unavailable(e.to_string())
            }
            Ok(Err(e)) => StoreError::Other(e.to_string()),
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                StoreError::Timeout(limit)
            }
        };
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.down_until = Some(Instant::now() + self.cfg.cooldown);
        tracing::warn!(error = %err, "redis idempotency batch failed");
        Err(err)
    }

    fn verdict(&self, old: &Value, fingerprint: u64) -> Result<Claim, StoreError> {
        let bytes = match old {
            Value::Nil | Value::Okay => return Ok(Claim::New),
            Value::BulkString(b) => b.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            other => {
                return Err(StoreError::Other(format!(
                    "unexpected reply to SET NX GET: {other:?}"
                )));
            }
        };
        Ok(match record::decode(bytes) {
            Some(Record::Done {
                fingerprint: f,
                response,
            }) if f == fingerprint => {
                self.stats.replays.fetch_add(1, Ordering::Relaxed);
                Claim::Replay(response)
            }
            Some(Record::Pending { fingerprint: f }) if f == fingerprint => Claim::InFlight,
            Some(_) => Claim::Mismatch,
            None => {
                self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                Claim::InFlight
            }
        })
    }
}

fn write_key(buf: &mut String, prefix: &str, key: &IdemKey) {
    buf.clear();
    buf.reserve(prefix.len() + 2 + key.account.as_str().len() + key.key.as_str().len());
    buf.push_str(prefix);
    buf.push(':');
    buf.push_str(key.account.as_str());
    buf.push(':');
    buf.push_str(key.key.as_str());
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Deletes a key only while it is still a pending claim: a completed record is never
/// released (the order it answers did execute).
const RELEASE_LUA: &str = "local v = redis.call('GET', KEYS[1]) \
     if v and string.sub(v, 1, 8) == 'pending ' then return redis.call('DEL', KEYS[1]) end \
     return 0";

impl IdempotencyStore for RedisIdempotencyStore {
    fn claim_batch(
        &mut self,
        claims: &[ClaimRequest],
        _now_ms: u64,
        out: &mut Vec<Claim>,
    ) -> Result<(), StoreError> {
        if claims.is_empty() {
            return Ok(());
        }
        // A key repeated within the batch is InFlight after its first occurrence; only first
        // occurrences go to Redis.
        let mut seen: HashSet<&IdemKey> = HashSet::with_capacity(claims.len());
        let first: Vec<bool> = claims.iter().map(|c| seen.insert(&c.key)).collect();
        let ttl = millis(self.cfg.claim_ttl);
        let mut pipe = redis::pipe();
        for (c, _) in claims.iter().zip(&first).filter(|(_, f)| **f) {
            write_key(&mut self.key_buf, &self.cfg.key_prefix, &c.key);
            pipe.cmd("SET")
                .arg(self.key_buf.as_str())
                .arg(record::encode_pending(c.fingerprint))
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .arg("GET");
        }
        let replies = self.run(&pipe)?;
        let sent = first.iter().filter(|f| **f).count();
        if replies.len() != sent {
            return Err(StoreError::Other(format!(
                "redis answered {} replies to {sent} claims",
                replies.len()
            )));
        }
        let mut replies = replies.iter();
        let start = out.len();
        for (c, is_first) in claims.iter().zip(&first) {
            let verdict = match is_first.then(|| replies.next()).flatten() {
                Some(old) => self.verdict(old, c.fingerprint),
                None => Ok(Claim::InFlight),
            };
            match verdict {
                Ok(v) => out.push(v),
                Err(e) => {
                    out.truncate(start);
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn complete_batch(&mut self, done: &[Completion], _now_ms: u64) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let ttl = self.cfg.done_ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        for d in done {
            write_key(&mut self.key_buf, &self.cfg.key_prefix, &d.key);
            pipe.cmd("SET")
                .arg(self.key_buf.as_str())
                .arg(record::encode_done(d.fingerprint, &d.response))
                .arg("EX")
                .arg(ttl)
                .ignore();
        }
        self.run(&pipe).map(drop).inspect_err(|_| {
            // Answered from the local index meanwhile: write these back once Redis answers.
            let prefix = &self.cfg.key_prefix;
            self.backlog.push(
                done.iter().map(|d| {
                    let mut key = String::new();
                    write_key(&mut key, prefix, &d.key);
                    Pending {
                        key,
                        value: record::encode_done(d.fingerprint, &d.response),
                        ttl_secs: ttl,
                    }
                }),
                &self.stats,
            );
        })
    }

    fn release_batch(&mut self, keys: &[IdemKey]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            write_key(&mut self.key_buf, &self.cfg.key_prefix, k);
            pipe.cmd("EVAL")
                .arg(RELEASE_LUA)
                .arg(1)
                .arg(self.key_buf.as_str())
                .ignore();
        }
        self.run(&pipe).map(drop)
    }
}
