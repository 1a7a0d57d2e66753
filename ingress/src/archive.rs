//! The archive of finished orders (issue 11, "bounded hot state").
//!
//! The engine holds open orders and only the newest `--retain-terminal-orders` finished ones;
//! the processor hands every order the engine evicts to this thread, which renders its REST
//! JSON once (the exact bytes `GET /api/orders/{id}` returned before eviction) and writes it
//! to the embedded [`OrderArchive`] (redb) in batches.
//!
//! Reads of evicted orders go through the same thread, as messages queued *behind* the
//! evictions: a request first asks the engine on the processor thread and, on a miss, that
//! closure sends the archive look-up from the processor thread itself. The look-up therefore
//! reaches this thread after every eviction that preceded it, and the thread commits pending
//! writes before it reads, so an order is never invisible between the two stores.
//!
//! Crash safety: a snapshot must not describe an engine without orders the archive has not
//! stored yet. The processor sends [`ArchiveMsg::Flush`] before each snapshot and the
//! snapshot thread waits for its answer before writing the file; a crash before that leaves
//! the previous snapshot, whose log tail replays (and re-evicts) those orders again. Writes
//! are upserts, so replays are harmless.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use oms_archive::{ArchiveError, ArchivedOrder, OrderArchive};
use oms_core::{AccountId, ClientOrderId, InstrumentTable, Order, OrderId, OrderStatus, SymbolId};
use oms_wire::{ApiError, OrderJson};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Largest number of orders written in one transaction.
const MAX_BATCH: usize = 4096;

/// A page query against the archive (the engine's `OrderQuery` over evicted orders).
#[derive(Clone, Copy, Debug)]
pub struct ArchiveQuery {
    pub account: AccountId,
    /// Strictly older than this `(created_at, order_id)`.
    pub before: Option<(u64, OrderId)>,
    pub symbol: Option<SymbolId>,
    pub status: Option<OrderStatus>,
    pub limit: usize,
}

/// What an archive look-up answers: the stored orders (REST JSON and list keys).
pub type Found = Result<Vec<ArchivedOrder>, ApiError>;

/// A message to the archive thread.
pub enum ArchiveMsg {
    /// Orders the engine evicted, oldest first.
    Put(Vec<Order>),
    /// One order of `account` (at most one result).
    Get {
        account: AccountId,
        id: OrderId,
        reply: oneshot::Sender<Found>,
    },
    /// The newest order of `account` that carried `cid` (at most one result).
    ByClientId {
        account: AccountId,
        cid: ClientOrderId,
        reply: oneshot::Sender<Found>,
    },
    /// A page, newest first.
    List {
        query: ArchiveQuery,
        reply: oneshot::Sender<Found>,
    },
    /// Answered once everything sent before is durable.
    Flush(Sender<()>),
    /// Commit, close the file and stop the thread; answered once closed.
    Close(Sender<()>),
}

/// The sending side, cloned wherever evictions or look-ups originate.
#[derive(Clone)]
pub struct Archiver {
    tx: Sender<ArchiveMsg>,
}

impl Archiver {
    /// Starts the archive thread, which opens the archive at `path` itself: opening a large
    /// redb file that was not closed cleanly (kill -9) first checks the whole file — ~0.6 s
    /// at 600 MB — and that need not delay the start: messages sent meanwhile wait in the
    /// queue (a read of an archived order waits, it never misses). A file that cannot be
    /// opened is retried every second, counted in `oms_archive_errors_total`, as a failing
    /// write is.
    pub fn open_in_background(
        path: std::path::PathBuf,
        table: Arc<InstrumentTable>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Archiver> {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("oms-archive".into())
            .spawn(move || {
                let archive = loop {
                    match OrderArchive::open(&path) {
                        Ok(a) => break a,
                        Err(e) => {
                            metrics.archive_errors.inc();
                            tracing::error!(error = %e, path = %path.display(), "cannot open the order archive; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                };
                run(archive, &table, &metrics, &rx);
            })?;
        Ok(Archiver { tx })
    }

    /// Commits what is pending and closes the archive file cleanly (so the next open needs
    /// no check of the whole file); waits at most `bound`. Later messages are dropped.
    pub fn close(&self, bound: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(ArchiveMsg::Close(tx));
        rx.recv_timeout(bound).is_ok()
    }

    /// Queues a message (the thread outlives every sender, so this cannot fail while the
    /// process runs; a send after it stopped is dropped).
    pub fn send(&self, msg: ArchiveMsg) {
        let _ = self.tx.send(msg);
    }

    /// Blocks until everything queued before is durable (bounded).
    pub fn flush(&self, bound: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(ArchiveMsg::Flush(tx));
        rx.recv_timeout(bound).is_ok()
    }
}

fn archived(table: &InstrumentTable, o: &Order) -> ArchivedOrder {
    ArchivedOrder {
        order_id: o.order_id,
        account: o.account,
        client_order_id: o.client_order_id,
        symbol: o.symbol,
        status: o.status,
        created_at: o.created_at,
        json: OrderJson::rest(table, o),
    }
}

fn store_error(e: &ArchiveError) -> ApiError {
    ApiError::new(
        503,
        "OVERLOADED",
        format!("the order archive is unavailable: {e}"),
    )
    .retry_after(1)
}

/// Writes `batch` until it is durable; a failing disk is retried (reads wait meanwhile, so
/// nothing is ever answered from a state the archive does not hold).
fn commit(archive: &OrderArchive, batch: &mut Vec<ArchivedOrder>, metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    loop {
        match archive.put_batch(batch) {
            Ok(()) => {
                metrics.orders_archived.inc_by(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(e) => {
                metrics.archive_errors.inc();
                tracing::error!(error = %e, orders = batch.len(), "archiving evicted orders failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn run(
    archive: OrderArchive,
    table: &InstrumentTable,
    metrics: &Metrics,
    rx: &Receiver<ArchiveMsg>,
) {
    let mut batch: Vec<ArchivedOrder> = Vec::with_capacity(MAX_BATCH);
    loop {
        let msg = if batch.is_empty() {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(m) => m,
                // Nothing else queued: make what we have durable now.
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    commit(&archive, &mut batch, metrics);
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    commit(&archive, &mut batch, metrics);
                    return;
                }
            }
        };
        match msg {
            ArchiveMsg::Put(orders) => {
                batch.extend(orders.iter().map(|o| archived(table, o)));
                if batch.len() >= MAX_BATCH {
                    commit(&archive, &mut batch, metrics);
                }
            }
            ArchiveMsg::Flush(done) => {
                commit(&archive, &mut batch, metrics);
                let _ = done.send(());
            }
            ArchiveMsg::Close(done) => {
                commit(&archive, &mut batch, metrics);
                drop(archive);
                let _ = done.send(());
                return;
            }
            ArchiveMsg::Get { account, id, reply } => {
                commit(&archive, &mut batch, metrics);
                let r = archive.get(&account, id).map(|o| o.into_iter().collect());
                let _ = reply.send(r.map_err(|e| store_error(&e)));
            }
            ArchiveMsg::ByClientId {
                account,
                cid,
                reply,
            } => {
                commit(&archive, &mut batch, metrics);
                let r = archive
                    .by_client_id(&account, &cid)
                    .map(|o| o.into_iter().collect());
                let _ = reply.send(r.map_err(|e| store_error(&e)));
            }
            ArchiveMsg::List { query: q, reply } => {
                commit(&archive, &mut batch, metrics);
                let r = archive.list(&q.account, q.before, q.symbol, q.status, q.limit);
                let _ = reply.send(r.map_err(|e| store_error(&e)));
            }
        }
    }
}
