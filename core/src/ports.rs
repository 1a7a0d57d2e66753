//! Ports: the traits through which the core reaches storage, implemented by `adapters/`.
//!
//! They are synchronous on purpose: the core knows nothing of async runtimes. Callers are
//! plain OS threads (the ring's stage threads, the processor, the projector); an adapter
//! backed by an async client owns or borrows a runtime and blocks on it inside the method.
//! Every method works on batches so an implementation can make one round trip, one fsync or
//! one Kafka batch for many orders.

use std::time::Duration;

use thiserror::Error;

use crate::command::Command;
use crate::event::ExecutionReport;
use crate::ids::{AccountId, IdempotencyKey, OrderId, SymbolId};
use crate::order::{Order, OrderStatus};

/// Position in a (possibly partitioned) log: the next offset to read, per partition.
/// The embedded journal has one partition (0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// `(partition, next offset)`, sorted by partition.
    pub next: Vec<(u32, u64)>,
}

impl Checkpoint {
    /// Replay everything.
    pub fn start() -> Self {
        Checkpoint::default()
    }

    pub fn next_offset(&self, partition: u32) -> u64 {
        self.next
            .iter()
            .find(|(p, _)| *p == partition)
            .map_or(0, |(_, o)| *o)
    }

    pub fn set(&mut self, partition: u32, next_offset: u64) {
        match self.next.iter_mut().find(|(p, _)| *p == partition) {
            Some(e) => e.1 = next_offset,
            None => {
                self.next.push((partition, next_offset));
                self.next.sort_unstable();
            }
        }
    }
}

/// Why the log could not do what was asked.
#[derive(Debug, Error)]
pub enum LogError {
    /// The log cannot take writes now (broker down, disk full); the batch is not durable.
    #[error("order log unavailable: {0}")]
    Unavailable(String),
    /// The batch did not become durable within the bound; it may or may not be.
    #[error("order log timed out after {0:?}")]
    Timeout(Duration),
    /// A record in the middle of the log is damaged: refuse to start rather than guess.
    #[error("order log corrupt at {location}: {reason}")]
    Corrupt { location: String, reason: String },
    #[error("order log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("order log record undecodable: {0}")]
    Codec(#[from] crate::codec::CodecError),
}

/// The order log: the single source of truth (ARCHITECTURE.md §6).
pub trait OrderLog: Send {
    /// Makes every command in `batch` durable, in order. Returns only once all are durable
    /// (group commit: one fsync or one producer flush for the whole batch). On error, none of
    /// the batch may be treated as accepted.
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError>;

    /// Calls `visit` for every durable record after `from`, in order (per partition for a
    /// partitioned log; records of one symbol are always in one partition). Returns the
    /// checkpoint after the last record visited.
    fn replay(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError>;

    /// [`OrderLog::replay`] visiting every copy of a command written to several partitions,
    /// with its partition, in each partition's order (cluster mode applies each copy to its
    /// partition's books: [`crate::Engine::apply_partition`]). The default, for a log of
    /// one partition, is `replay` as partition 0.
    fn replay_copies(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(u32, &Command),
    ) -> Result<Checkpoint, LogError> {
        self.replay(from, &mut |c| visit(0, c))
    }

    /// Pipelined mode: `Some` if this log can have several batches in flight. Then the
    /// caller hands batches over with [`OrderLog::submit`] (which returns without waiting for
    /// durability) and learns each one's outcome, in submission order, from the returned
    /// handle on another thread. `None` (the default): use [`OrderLog::append`].
    fn outcomes(&mut self) -> Option<Box<dyn AppendOutcomes>> {
        None
    }

    /// Hands `batch` to the log without waiting for it to be durable (pipelined mode only).
    /// An `Err` means nothing of the batch was handed over. The default appends synchronously,
    /// so its outcome is already known when it returns.
    fn submit(&mut self, batch: &[Command]) -> Result<BatchId, LogError> {
        self.append(batch).map(|()| 0)
    }

    /// The position right after the last record this log appended or replayed, if the log
    /// can tell (snapshots record it so a restart replays only the tail). `None` turns
    /// snapshots off for this log.
    fn position(&self) -> Option<Checkpoint> {
        None
    }
}

/// Identifies a batch handed to [`OrderLog::submit`].
pub type BatchId = u64;

/// The outcome side of a pipelined [`OrderLog`], used on a thread of its own.
pub trait AppendOutcomes: Send {
    /// Blocks until batch `id` is decided, bounded by the log's own timeout. The answer means
    /// what [`OrderLog::append`]'s means: `Ok` durable; `Unavailable` known not to be in the
    /// log; `Timeout` may be in the log (the caller voids it). Called once per batch, in
    /// submission order.
    fn wait(&mut self, id: BatchId) -> Result<(), LogError>;

    /// The log position right after the last batch [`AppendOutcomes::wait`] reported
    /// durable (see [`OrderLog::position`]); `None` if the log cannot tell.
    fn position(&self) -> Option<Checkpoint> {
        None
    }
}

/// Why a store (idempotency, orders) failed; callers fall back or retry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    #[error("store error: {0}")]
    Other(String),
}

/// `(account, key)`: idempotency keys are scoped per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdemKey {
    pub account: AccountId,
    pub key: IdempotencyKey,
}

/// A response kept for replays: HTTP status and the exact body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A claim on a key for a request whose body hashes to `fingerprint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    pub key: IdemKey,
    pub fingerprint: u64,
}

/// The verdict on a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First sight of this key: the caller owns it until it completes or releases it.
    New,
    /// Done before with the same body: answer with the stored response.
    Replay(StoredResponse),
    /// Another request with this key is still in flight (409 `IDEMPOTENCY_KEY_IN_USE`).
    InFlight,
    /// Used before with a different body (422 `IDEMPOTENCY_KEY_REUSED`).
    Mismatch,
}

/// The final response for a claimed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub key: IdemKey,
    pub fingerprint: u64,
    pub response: StoredResponse,
}

/// Idempotency records (ARCHITECTURE.md §4, §6). Keys live [`IDEMPOTENCY_TTL`].
pub trait IdempotencyStore: Send {
    /// Claims keys; `out` receives one verdict per request, in order. A key repeated within
    /// the batch is `InFlight` for every occurrence after the first.
    fn claim_batch(
        &mut self,
        claims: &[ClaimRequest],
        now_ms: u64,
        out: &mut Vec<Claim>,
    ) -> Result<(), StoreError>;

    /// Stores final responses (state done, TTL from `now_ms`).
    fn complete_batch(&mut self, done: &[Completion], now_ms: u64) -> Result<(), StoreError>;

    /// Forgets claims whose requests will never execute (overload, log unavailable), so the
    /// client may retry with the same key.
    fn release_batch(&mut self, keys: &[IdemKey]) -> Result<(), StoreError>;
}

/// How long idempotency keys are remembered: 24 h.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(86_400);

/// A page request for an account's orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    pub account: AccountId,
    pub symbol: Option<SymbolId>,
    pub status: Option<OrderStatus>,
    pub limit: usize,
    /// Continue after this `(created_at, order_id)` (exclusive).
    pub cursor: Option<(u64, OrderId)>,
}

/// The order/execution projection and its queries (MongoDB in production, memory embedded).
pub trait OrderStore: Send {
    /// Upserts orders; a stored order with a version ≥ the incoming one is left alone, so
    /// at-least-once replays are harmless.
    fn upsert_orders(&mut self, orders: &[Order]) -> Result<(), StoreError>;

    /// Inserts executions; duplicates (same exec id) are ignored.
    fn insert_executions(&mut self, execs: &[ExecutionReport]) -> Result<(), StoreError>;

    /// One order of `account` (another account's order is `None`).
    fn get_order(&mut self, account: &AccountId, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// The order placed with an idempotency key (fallback when the idempotency store is down).
    fn find_by_idempotency_key(&mut self, key: &IdemKey) -> Result<Option<Order>, StoreError>;

    /// A page of `query.account`'s orders, newest first.
    fn list_orders(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError>;
}

/// Something that wants the processor's event stream (Kafka publisher, Mongo projector,
/// WebSocket hub). Called on the processor thread once per applied batch: it must not block
/// (queue and return), so a slow consumer never slows matching.
pub trait EventSink: Send {
    fn publish(&mut self, events: &[crate::event::Event]);

    /// How far what this sink was given has *settled* (delivered, or given up on and counted
    /// as an error): `None` for a sink that keeps nothing in flight that anyone hands over
    /// (WebSocket). Cluster mode commits a partition's emission progress only once every
    /// leader sink has settled the events up to it, so a killed leader's successor re-emits
    /// what may not have arrived (at-least-once) instead of skipping it.
    fn progress(&self) -> Option<SinkProgress> {
        None
    }
}

/// See [`EventSink::progress`]. Counts are of the events the sink accepted, in the order
/// `publish` gave them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkProgress {
    /// Events accepted so far.
    pub accepted: u64,
    /// Length of the prefix of the accepted events that has settled.
    pub settled: u64,
}
