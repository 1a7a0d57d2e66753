//! [`MongoOrderStore`]: the core's [`OrderStore`] port on MongoDB / DocumentDB.
//!
//! Writes are raw `update` / `insert` commands with many statements, `ordered: false` and
//! `writeConcern: majority`: one round trip per chunk, portable to DocumentDB (which lacks the
//! 8.0 `bulkWrite` command). Orders are upserted with a version guard
//! (`{_id, version: {$lt: v}}`, upsert): when the stored version is newer the filter misses,
//! the upsert's insert hits a unique index and the server answers E11000, which here means
//! "already newer" and is not a failure. Which unique index reports it is up to the server
//! (SecantusDB reports `(account, idempotencyKey)` before `_id`), so an E11000 is confirmed by
//! reading the stored versions; only a stored version older than ours is a real conflict.
//!
//! The port is synchronous: the store blocks on a tokio runtime it owns (or was handed) and
//! must not be called from inside an async task. Every call is bounded by a timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use oms_core::ports::{IdemKey, OrderQuery, OrderStore, StoreError};
use oms_core::{AccountId, ExecutionReport, InstrumentTable, Order, OrderId};
use tokio::runtime::{Handle, Runtime};

use crate::Error;
use crate::doc::{execution_doc, idempotency_filter, order_doc, order_from_doc, symbol_name};

/// Settings of a [`MongoOrderStore`].
#[derive(Clone, Debug)]
pub struct MongoConfig {
    /// `mongodb://host:port/?directConnection=true` (or a DocumentDB URL).
    pub url: String,
    /// Database name (default `oms`).
    pub db: String,
    /// Bound on one write chunk (upserts or inserts).
    pub write_timeout: Duration,
    /// Bound on one query (GET routes).
    pub query_timeout: Duration,
    /// How long the driver looks for a usable server before an operation fails.
    pub server_selection_timeout: Duration,
    /// Statements per write command.
    pub chunk: usize,
}

impl MongoConfig {
    pub fn new(url: impl Into<String>) -> Self {
        MongoConfig {
            url: url.into(),
            db: "oms".to_owned(),
            write_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(2),
            server_selection_timeout: Duration::from_secs(2),
            chunk: 1000,
        }
    }
}

/// Counters for metrics, shared by clones of a store.
#[derive(Debug, Default)]
pub struct MongoStats {
    /// Failed calls (each returned an error).
    pub errors: AtomicU64,
    /// Order upserts skipped because the stored version was already newer or equal.
    pub stale_upserts: AtomicU64,
    /// Executions skipped as duplicates.
    pub duplicate_executions: AtomicU64,
    /// Orders not written because another order holds their unique key (an
    /// (account, idempotencyKey) pair reused by a different order id). Never retried.
    pub conflicts: AtomicU64,
    pub orders_written: AtomicU64,
    pub executions_written: AtomicU64,
}

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

/// The order/execution projection in MongoDB (ARCHITECTURE.md §6). Clones share the
/// connection pool and the counters.
#[derive(Clone)]
pub struct MongoOrderStore {
    rt: Rt,
    db: Database,
    orders: Collection<Document>,
    executions: Collection<Document>,
    cfg: Arc<MongoConfig>,
    instruments: Arc<InstrumentTable>,
    stats: Arc<MongoStats>,
}

impl std::fmt::Debug for MongoOrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoOrderStore")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// An index named so operators recognise it; `unique` and `partial` as MongoDB means them.
pub(crate) fn named_index(
    name: &str,
    keys: Document,
    unique: bool,
    partial: Option<Document>,
) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(unique.then_some(true))
                .partial_filter_expression(partial)
                .build(),
        )
        .build()
}

/// The indexes of `orders` (ARCHITECTURE.md §6).
fn order_indexes() -> Vec<IndexModel> {
    let idx = named_index;
    vec![
        idx("orderId_unique", doc! { "orderId": 1 }, true, None),
        idx(
            "account_idempotencyKey_unique",
            doc! { "account": 1, "idempotencyKey": 1 },
            true,
            Some(doc! { "idempotencyKey": { "$exists": true } }),
        ),
        // Serves the list route: account, newest first, orderId as the tie-break.
        idx(
            "account_createdAt",
            doc! { "account": 1, "createdAt": -1, "_id": -1 },
            false,
            None,
        ),
        idx("symbol", doc! { "symbol": 1 }, false, None),
        idx("status", doc! { "status": 1 }, false, None),
        idx("createdAt", doc! { "createdAt": -1 }, false, None),
    ]
}

fn execution_indexes() -> Vec<IndexModel> {
    vec![
        named_index("orderId", doc! { "orderId": 1 }, false, None),
        named_index("account_ts", doc! { "account": 1, "ts": -1 }, false, None),
    ]
}

/// Write errors of one command: `(statement index, code, message)`, and whether a write
/// concern error was reported.
fn write_errors(reply: &Document) -> (Vec<(usize, i32, String)>, Option<String>) {
    let mut out = Vec::new();
    if let Ok(errs) = reply.get_array("writeErrors") {
        for e in errs {
            if let Bson::Document(e) = e {
                let index = match e.get("index") {
                    Some(Bson::Int32(i)) => usize::try_from(*i).unwrap_or(usize::MAX),
                    Some(Bson::Int64(i)) => usize::try_from(*i).unwrap_or(usize::MAX),
                    _ => usize::MAX,
                };
                let code = match e.get("code") {
                    Some(Bson::Int32(c)) => *c,
                    Some(Bson::Int64(c)) => i32::try_from(*c).unwrap_or(-1),
                    _ => -1,
                };
                let msg = e.get_str("errmsg").unwrap_or("").to_owned();
                out.push((index, code, msg));
            }
        }
    }
    let wce = reply
        .get_document("writeConcernError")
        .ok()
        .map(|d| d.to_string());
    (out, wce)
}

const DUPLICATE_KEY: i32 = 11000;

/// The one-worker runtime an adapter object drives its client on.
pub(crate) fn own_runtime(name: &str) -> Result<Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// A client for `cfg.url` with the configured server-selection bound.
pub(crate) async fn open_client(
    cfg: &MongoConfig,
    app_name: &str,
) -> Result<Client, mongodb::error::Error> {
    let mut opts = ClientOptions::parse(&cfg.url).await?;
    opts.server_selection_timeout = Some(cfg.server_selection_timeout);
    opts.connect_timeout = Some(cfg.server_selection_timeout);
    opts.app_name.get_or_insert_with(|| app_name.to_owned());
    Client::with_options(opts)
}

impl MongoOrderStore {
    /// Connects with a runtime of its own and creates the indexes. Call from a plain thread.
    pub fn connect(cfg: MongoConfig, instruments: InstrumentTable) -> Result<Self, Error> {
        let rt = own_runtime("oms-mongo")?;
        Self::connect_on(Rt::Owned(Arc::new(rt)), cfg, instruments)
    }

    /// Connects using an existing multi-thread runtime and creates the indexes.
    pub fn connect_with_handle(
        handle: Handle,
        cfg: MongoConfig,
        instruments: InstrumentTable,
    ) -> Result<Self, Error> {
        Self::connect_on(Rt::Borrowed(handle), cfg, instruments)
    }

    fn connect_on(rt: Rt, cfg: MongoConfig, instruments: InstrumentTable) -> Result<Self, Error> {
        if Handle::try_current().is_ok() {
            return Err(Error::AsyncContext);
        }
        let client = rt.handle().block_on(open_client(&cfg, "oms"))?;
        let db = client.database(&cfg.db);
        let store = MongoOrderStore {
            orders: db.collection("orders"),
            executions: db.collection("executions"),
            db,
            rt,
            cfg: Arc::new(cfg),
            instruments: Arc::new(instruments),
            stats: Arc::new(MongoStats::default()),
        };
        store.ensure_indexes()?;
        Ok(store)
    }

    /// Creates the indexes (idempotent). Fails when the server cannot be reached.
    pub fn ensure_indexes(&self) -> Result<(), Error> {
        let limit = self.cfg.write_timeout + self.cfg.server_selection_timeout;
        let orders = self.orders.clone();
        let execs = self.executions.clone();
        let r = self.rt.handle().block_on(async move {
            tokio::time::timeout(limit, async {
                orders.create_indexes(order_indexes()).await?;
                execs.create_indexes(execution_indexes()).await?;
                Ok::<_, mongodb::error::Error>(())
            })
            .await
        });
        match r {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// Names of the indexes on `orders` (for checks and tests).
    pub fn order_index_names(&self) -> Result<Vec<String>, StoreError> {
        let orders = self.orders.clone();
        self.block(self.cfg.query_timeout, async move {
            orders.list_index_names().await
        })
    }

    pub fn stats(&self) -> Arc<MongoStats> {
        self.stats.clone()
    }

    pub fn config(&self) -> &MongoConfig {
        &self.cfg
    }

    /// The database (tests drop it; tools may read it).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `fut` to completion within `limit`, mapping driver errors to [`StoreError`].
    fn block<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        if Handle::try_current().is_ok() {
            return Err(StoreError::Other(
                "oms-mongo called from inside an async task".to_owned(),
            ));
        }
        let r = self
            .rt
            .handle()
            .block_on(async move { tokio::time::timeout(limit, fut).await });
        let err = match r {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => classify(&e),
            Err(_) => StoreError::Timeout(limit),
        };
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        Err(err)
    }

    fn run_command(&self, cmd: Document) -> Result<Document, StoreError> {
        let db = self.db.clone();
        self.block(
            self.cfg.write_timeout,
            async move { db.run_command(cmd).await },
        )
    }

    /// Stored versions of `ids` (absent ids are left out).
    fn stored_versions(&self, ids: &[String]) -> Result<HashMap<String, i64>, StoreError> {
        let orders = self.orders.clone();
        let filter = doc! { "_id": { "$in": ids } };
        let docs: Vec<Document> = self.block(self.cfg.query_timeout, async move {
            orders
                .find(filter)
                .projection(doc! { "version": 1 })
                .await?
                .try_collect()
                .await
        })?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let id = d.get_str("_id").ok()?.to_owned();
                let v = match d.get("version") {
                    Some(Bson::Int64(v)) => *v,
                    Some(Bson::Int32(v)) => i64::from(*v),
                    _ => return None,
                };
                Some((id, v))
            })
            .collect())
    }

    fn upsert_chunk(&self, chunk: &[&Order]) -> Result<(), StoreError> {
        let updates: Vec<Document> = chunk
            .iter()
            .map(|o| {
                let mut set = order_doc(o, &self.instruments);
                let id = set.remove("_id").unwrap_or(Bson::Null);
                doc! {
                    "q": { "_id": id, "version": { "$lt": i64::from(o.version) } },
                    "u": { "$set": set },
                    "upsert": true,
                }
            })
            .collect();
        let reply = self.run_command(doc! {
            "update": self.orders.name(),
            "updates": updates,
            "ordered": false,
            "writeConcern": { "w": "majority" },
        })?;
        let (errs, wce) = write_errors(&reply);
        if let Some(wce) = wce {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable(format!("write concern: {wce}")));
        }
        let mut dups = Vec::new();
        for (i, code, msg) in errs {
            if code == DUPLICATE_KEY && i < chunk.len() {
                dups.push(i);
            } else {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Other(format!(
                    "order upsert #{i} failed: {code} {msg}"
                )));
            }
        }
        let mut stale = 0u64;
        if !dups.is_empty() {
            let ids: Vec<String> = dups
                .iter()
                .map(|&i| chunk[i].order_id.to_string())
                .collect();
            let stored = self.stored_versions(&ids)?;
            for (&i, id) in dups.iter().zip(&ids) {
                let ours = i64::from(chunk[i].version);
                match stored.get(id) {
                    Some(&v) if v >= ours => stale += 1,
                    _ => {
                        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            order_id = %id,
                            account = %chunk[i].account,
                            "order not projected: a different order holds its unique key"
                        );
                    }
                }
            }
        }
        self.stats.stale_upserts.fetch_add(stale, Ordering::Relaxed);
        self.stats
            .orders_written
            .fetch_add(chunk.len() as u64 - dups.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn insert_chunk(&self, chunk: &[ExecutionReport]) -> Result<(), StoreError> {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|e| execution_doc(e, &self.instruments))
            .collect();
        let reply = self.run_command(doc! {
            "insert": self.executions.name(),
            "documents": docs,
            "ordered": false,
            "writeConcern": { "w": "majority" },
        })?;
        let (errs, wce) = write_errors(&reply);
        if let Some(wce) = wce {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable(format!("write concern: {wce}")));
        }
        let mut dups = 0u64;
        for (i, code, msg) in errs {
            if code == DUPLICATE_KEY {
                dups += 1;
            } else {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Other(format!(
                    "execution insert #{i} failed: {code} {msg}"
                )));
            }
        }
        self.stats
            .duplicate_executions
            .fetch_add(dups, Ordering::Relaxed);
        self.stats
            .executions_written
            .fetch_add(chunk.len() as u64 - dups, Ordering::Relaxed);
        Ok(())
    }

    fn find_one(&self, filter: Document) -> Result<Option<Order>, StoreError> {
        let orders = self.orders.clone();
        let d = self.block(self.cfg.query_timeout, async move {
            orders.find_one(filter).await
        })?;
        d.map(|d| order_from_doc(&d).map_err(|e| StoreError::Other(e.to_string())))
            .transpose()
    }
}

fn classify(e: &mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    match *e.kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

/// Keeps only the newest version of each order in `orders` (first occurrence order kept).
fn newest_per_order(orders: &[Order]) -> Vec<&Order> {
    let mut pos: HashMap<OrderId, usize> = HashMap::with_capacity(orders.len());
    let mut out: Vec<&Order> = Vec::with_capacity(orders.len());
    for o in orders {
        match pos.get(&o.order_id) {
            Some(&i) => {
                if o.version > out[i].version {
                    out[i] = o;
                }
            }
            None => {
                pos.insert(o.order_id, out.len());
                out.push(o);
            }
        }
    }
    out
}

impl OrderStore for MongoOrderStore {
    fn upsert_orders(&mut self, orders: &[Order]) -> Result<(), StoreError> {
        // Two versions of one order in one unordered command could race each other into an
        // upsert; writing only the newest is both safe and cheaper.
        let newest = newest_per_order(orders);
        for chunk in newest.chunks(self.cfg.chunk.max(1)) {
            self.upsert_chunk(chunk)?;
        }
        Ok(())
    }

    fn insert_executions(&mut self, execs: &[ExecutionReport]) -> Result<(), StoreError> {
        for chunk in execs.chunks(self.cfg.chunk.max(1)) {
            self.insert_chunk(chunk)?;
        }
        Ok(())
    }

    fn get_order(&mut self, account: &AccountId, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.find_one(doc! { "_id": id.to_string(), "account": account.as_str() })
    }

    fn find_by_idempotency_key(&mut self, key: &IdemKey) -> Result<Option<Order>, StoreError> {
        self.find_one(idempotency_filter(key))
    }

    fn list_orders(&mut self, q: &OrderQuery) -> Result<Vec<Order>, StoreError> {
        let mut filter = doc! { "account": q.account.as_str() };
        if let Some(s) = q.symbol {
            filter.insert("symbol", symbol_name(&self.instruments, s));
        }
        if let Some(st) = q.status {
            filter.insert("status", st.as_str());
        }
        if let Some((created, id)) = q.cursor {
            let created = i64::try_from(created).unwrap_or(i64::MAX);
            filter.insert(
                "$or",
                vec![
                    doc! { "createdAt": { "$lt": created } },
                    doc! { "createdAt": created, "_id": { "$lt": id.to_string() } },
                ],
            );
        }
        let limit = i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX);
        let orders = self.orders.clone();
        let docs: Vec<Document> = self.block(self.cfg.query_timeout, async move {
            orders
                .find(filter)
                .sort(doc! { "createdAt": -1, "_id": -1 })
                .limit(limit)
                .await?
                .try_collect()
                .await
        })?;
        docs.iter()
            .map(|d| order_from_doc(d).map_err(|e| StoreError::Other(e.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_are_read_from_the_reply() {
        let reply = doc! {
            "n": 1,
            "writeErrors": [
                { "index": 1, "code": 11000, "errmsg": "E11000 duplicate key" },
                { "index": 2i64, "code": 2, "errmsg": "bad" },
            ],
            "ok": 1.0,
        };
        let (errs, wce) = write_errors(&reply);
        assert_eq!(
            errs,
            vec![
                (1, 11000, "E11000 duplicate key".to_owned()),
                (2, 2, "bad".to_owned())
            ]
        );
        assert!(wce.is_none());
        let (_, wce) = write_errors(&doc! { "writeConcernError": { "code": 64 } });
        assert!(wce.is_some());
    }
}
