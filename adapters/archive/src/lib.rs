//! # oms-archive
//!
//! The engine keeps only live orders in memory; finished (terminal) orders are evicted and
//! handed to this archive so the binary can still answer `GET /api/orders/{id}`, the order
//! list (newest first, cursor pages, symbol/status filters) and `clientOrderId` look-ups for
//! them, with memory bounded by a fixed page cache instead of growing with history.
//!
//! The store is [redb](https://docs.rs/redb): an embedded, crash-safe, copy-on-write B-tree
//! file with MVCC (one writer, any number of concurrent readers that see a consistent
//! snapshot). Each [`OrderArchive::put_batch`] is one write transaction with immediate
//! durability: when it returns the whole batch is on disk, and a crash before that leaves
//! none of it.
//!
//! Three tables (layouts in [`keys`] and [`record`]):
//! - `orders`: order id → compact metadata header + the order's REST JSON, verbatim;
//! - `by_account`: (account, created_at, order_id) → (symbol, status), so a page of the list
//!   is a reverse range scan that filters without reading the JSON of skipped orders;
//! - `by_client_id`: (account, client_order_id, created_at, order_id) → (), so the newest
//!   order with a client id is the last key of a prefix range.

pub mod error;
pub mod keys;
pub mod record;
mod store;

pub use error::ArchiveError;
pub use record::ArchivedOrder;
pub use store::{DEFAULT_CACHE_BYTES, OrderArchive};
