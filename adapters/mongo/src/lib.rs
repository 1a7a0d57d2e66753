//! # oms-mongo
//!
//! The MongoDB / DocumentDB projection of orders and executions (ARCHITECTURE.md §6): the
//! store behind the GET routes and the idempotency fallback, fed from the event stream by a
//! projector thread. It is never on the ring's critical path, so it favours never losing an
//! event (retry forever with backoff, idempotent writes) over latency.
//!
//! - [`MongoOrderStore`] implements [`oms_core::ports::OrderStore`]: version-guarded bulk
//!   upserts of orders, insert-or-ignore executions, queries by id, by idempotency key and
//!   by account with filters and a `(createdAt, orderId)` cursor.
//! - [`Projector`] is the loop that drains a channel of event batches into a store.
//! - [`doc`] is the document shape.
//! - [`MongoAudit`] is the venue-wide `audit` collection (every node's audit records).

mod audit;
pub mod doc;
mod projector;
mod store;

use std::time::Duration;

use thiserror::Error;

pub use audit::MongoAudit;
pub use projector::{
    EventBatch, Projector, ProjectorConfig, ProjectorExit, ProjectorSender, ProjectorStats,
};
pub use store::{MongoConfig, MongoOrderStore, MongoStats};

/// Why a store could not be built or a document read (per-call failures of the port are the
/// core's `StoreError`).
#[derive(Debug, Error)]
pub enum Error {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("mongodb: no answer within {0:?}")]
    Timeout(Duration),
    #[error("mongodb: cannot build the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("mongodb: the store must be created and called from a plain thread, not an async task")]
    AsyncContext,
    #[error("mongodb: undecodable document: {0}")]
    Decode(String),
}
