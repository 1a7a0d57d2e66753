//! [`OrderArchive`]: the redb database and the queries the REST read path needs.
//!
//! Writes are batched by the caller (the engine evicts many finished orders at once) and each
//! batch is one write transaction with redb's default immediate durability, so a batch is
//! either wholly on disk when `put_batch` returns or wholly absent after a crash. Reads open a
//! read transaction each: a consistent snapshot that never blocks, and is never blocked by,
//! the writer. Memory is bounded by redb's page cache (set at open), not by the archive size.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use oms_core::{AccountId, ClientOrderId, OrderId, OrderStatus, SymbolId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::ArchiveError;
use crate::keys::{
    SUFFIX_LEN, account_prefix, client_id_prefix, list_value, parse_list_value, parse_suffix,
    with_suffix,
};
use crate::record::{self, ArchivedOrder};

/// order id → row (layout in [`crate::record`]).
const ORDERS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("orders");
/// (account, created_at, order_id) → (symbol, status) (layout in [`crate::keys`]).
const BY_ACCOUNT: TableDefinition<'_, &[u8], [u8; 3]> = TableDefinition::new("by_account");
/// (account, client_order_id, created_at, order_id) → () (layout in [`crate::keys`]).
const BY_CLIENT_ID: TableDefinition<'_, &[u8], ()> = TableDefinition::new("by_client_id");

/// Page cache of [`OrderArchive::open`]: 64 MiB (redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The on-disk archive of finished orders. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct OrderArchive {
    db: Arc<Database>,
}

impl std::fmt::Debug for OrderArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderArchive").finish_non_exhaustive()
    }
}

impl OrderArchive {
    /// Opens the archive at `path`, creating it if the file does not exist, with a page cache
    /// of [`DEFAULT_CACHE_BYTES`]. Only one process (and one `OrderArchive` per process) may
    /// hold the file; share it by cloning.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`OrderArchive::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, ArchiveError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        // Create the tables once, so read transactions never meet a missing table.
        let txn = db.begin_write()?;
        txn.open_table(ORDERS)?;
        txn.open_table(BY_ACCOUNT)?;
        txn.open_table(BY_CLIENT_ID)?;
        txn.commit()?;
        Ok(OrderArchive { db: Arc::new(db) })
    }

    /// Stores `orders` in one durable write transaction: on return every order is on disk; a
    /// crash before that leaves none of them. An order already archived (same id) is replaced,
    /// its index entries moved, so putting the same batch twice changes nothing.
    pub fn put_batch(&self, orders: &[ArchivedOrder]) -> Result<(), ArchiveError> {
        let txn = self.db.begin_write()?;
        {
            let mut rows = txn.open_table(ORDERS)?;
            let mut by_account = txn.open_table(BY_ACCOUNT)?;
            let mut by_cid = txn.open_table(BY_CLIENT_ID)?;
            for o in orders {
                let old = match rows.get(o.order_id.0)? {
                    Some(row) => Some(record::decode_meta(o.order_id, row.value())?),
                    None => None,
                };
                if let Some(old) = old {
                    let key = with_suffix(account_prefix(&old.account), old.created_at, o.order_id);
                    by_account.remove(key.as_slice())?;
                    if let Some(cid) = &old.client_order_id {
                        let prefix = client_id_prefix(&old.account, cid);
                        by_cid
                            .remove(with_suffix(prefix, old.created_at, o.order_id).as_slice())?;
                    }
                }
                rows.insert(o.order_id.0, record::encode(o).as_slice())?;
                let key = with_suffix(account_prefix(&o.account), o.created_at, o.order_id);
                by_account.insert(key.as_slice(), list_value(o.symbol, o.status))?;
                if let Some(cid) = &o.client_order_id {
                    let prefix = client_id_prefix(&o.account, cid);
                    by_cid.insert(with_suffix(prefix, o.created_at, o.order_id).as_slice(), ())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The archived order `id` if it belongs to `account`; another account's order is `None`,
    /// indistinguishable from an unknown id.
    pub fn get(
        &self,
        account: &AccountId,
        id: OrderId,
    ) -> Result<Option<ArchivedOrder>, ArchiveError> {
        let txn = self.db.begin_read()?;
        let rows = txn.open_table(ORDERS)?;
        let Some(row) = rows.get(id.0)? else {
            return Ok(None);
        };
        let order = record::decode(id, row.value())?;
        Ok((order.account == *account).then_some(order))
    }

    /// The newest (by `(created_at, order_id)`) archived order of `account` with client order
    /// id `cid`.
    pub fn by_client_id(
        &self,
        account: &AccountId,
        cid: &ClientOrderId,
    ) -> Result<Option<ArchivedOrder>, ArchiveError> {
        let txn = self.db.begin_read()?;
        let by_cid = txn.open_table(BY_CLIENT_ID)?;
        let prefix = client_id_prefix(account, cid);
        let lo = with_suffix(prefix.clone(), 0, OrderId(0));
        let hi = with_suffix(prefix, u64::MAX, OrderId(u128::MAX));
        let Some(entry) = by_cid.range(lo.as_slice()..=hi.as_slice())?.next_back() else {
            return Ok(None);
        };
        let (key, _) = entry?;
        let (_, id) = parse_suffix(key.value()).ok_or_else(|| corrupt_index(key.value()))?;
        let rows = txn.open_table(ORDERS)?;
        let row = rows.get(id.0)?.ok_or_else(|| corrupt_index(key.value()))?;
        Ok(Some(record::decode(id, row.value())?))
    }

    /// Up to `limit` archived orders of `account`, newest first by `(created_at, order_id)`,
    /// strictly before the cursor `before` when given, keeping only `symbol` / `status` when
    /// given. The next page's cursor is the last returned order's `(created_at, order_id)`.
    ///
    /// Filters are applied on the index, so skipped orders cost a 3-byte index value each and
    /// no row read; a filter that matches nothing still scans the account's whole history.
    pub fn list(
        &self,
        account: &AccountId,
        before: Option<(u64, OrderId)>,
        symbol: Option<SymbolId>,
        status: Option<OrderStatus>,
        limit: usize,
    ) -> Result<Vec<ArchivedOrder>, ArchiveError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.db.begin_read()?;
        let by_account = txn.open_table(BY_ACCOUNT)?;
        let rows = txn.open_table(ORDERS)?;
        let prefix = account_prefix(account);
        let lo = with_suffix(prefix.clone(), 0, OrderId(0));
        let (hi_key, hi) = match before {
            Some((t, id)) => (with_suffix(prefix, t, id), Bound::Excluded(())),
            None => (
                with_suffix(prefix, u64::MAX, OrderId(u128::MAX)),
                Bound::Included(()),
            ),
        };
        let hi = hi.map(|()| hi_key.as_slice());
        for entry in by_account
            .range::<&[u8]>((Bound::Included(lo.as_slice()), hi))?
            .rev()
        {
            let (key, value) = entry?;
            let key = key.value();
            let (sym, st) = parse_list_value(value.value()).ok_or_else(|| corrupt_index(key))?;
            if symbol.is_some_and(|s| s != sym) || status.is_some_and(|s| s != st) {
                continue;
            }
            let (_, id) = parse_suffix(key).ok_or_else(|| corrupt_index(key))?;
            let row = rows.get(id.0)?.ok_or_else(|| corrupt_index(key))?;
            out.push(record::decode(id, row.value())?);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Number of archived orders.
    pub fn len(&self) -> Result<u64, ArchiveError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(ORDERS)?.len()?)
    }

    /// Whether the archive holds no order.
    pub fn is_empty(&self) -> Result<bool, ArchiveError> {
        Ok(self.len()? == 0)
    }
}

/// An index entry that does not decode or points at no row: the tables disagree, which one
/// write transaction per batch (indexes and rows together) should make impossible.
fn corrupt_index(key: &[u8]) -> ArchiveError {
    let shown = key.len().saturating_sub(SUFFIX_LEN);
    ArchiveError::Corrupt {
        key: format!("index key {:?}...", String::from_utf8_lossy(&key[..shown])),
        reason: "index entry does not decode or has no order row",
    }
}
