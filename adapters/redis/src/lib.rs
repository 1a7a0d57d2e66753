//! # oms-redis
//!
//! Idempotency records in Redis (ARCHITECTURE.md §4, §6): the fast path that lets the ring's
//! idempotency stage answer replays, in-flight duplicates and key reuse without touching the
//! order store. Redis is not the guard: when it is down or slow a call fails within its
//! bound and the caller falls back to the order store / log index, so this crate favours
//! failing fast and recovering by itself over retrying.
//!
//! - [`RedisIdempotencyStore`] implements [`oms_core::ports::IdempotencyStore`] with one
//!   pipelined round trip per batch (`SET NX PX GET` claims, `SET EX 86400` completions).
//! - A health probe keeps `connected` true to what Redis answers and writes back the
//!   completions that failed while it was down (module `health`).
//! - [`record`] is the value format (`pending <fp>` / `done <fp> <status>\n<body>`).

mod health;
pub mod record;
mod store;

use std::time::Duration;

use thiserror::Error;

pub use store::{RedisConfig, RedisIdempotencyStore, RedisStats};

/// Why a store could not be built (per-call failures are the core's `StoreError`).
#[derive(Debug, Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("redis: cannot build the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("redis: the store must be created and called from a plain thread, not an async task")]
    AsyncContext,
}
