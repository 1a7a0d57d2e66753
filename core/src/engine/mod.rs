//! The processor: applies the order log, one command at a time, and emits events.
//!
//! It is the single writer of the books, the orders and the processor's risk state, and a
//! pure function of the commands it is given: the same log produces the same event stream
//! and the same [`Engine::state_hash`], and a [`Engine::snapshot`] taken anywhere restores to
//! an engine that continues exactly as the original would have. Everything outside (the
//! ring, the journal, Kafka, the HTTP queries) talks to it through [`Engine::apply`] and the
//! read-only queries below.
//!
//! Hot state is bounded: the engine holds every open order but only the newest
//! [`EngineConfig::retain_terminal`] terminal ones (by the order in which they ended). Older
//! terminal orders are evicted at the end of the [`Engine::apply`] that pushed them past the
//! bound and handed out through [`Engine::take_evicted`], so the binary can archive them; the
//! queries below then no longer find them. Which orders are evicted, and when, depends only
//! on the log, so the eviction stream is as deterministic as the event stream.

mod apply;
mod capture;
mod snapshot;
mod store;

use std::collections::{BTreeSet, VecDeque};

use ahash::AHashMap;

use crate::book::{BookConfig, MatchEvent, OrderBook, StpMode};
use crate::candles::{CandleStore, DEFAULT_CANDLES_KEPT};
use crate::command::Command;
use crate::event::{Candle, CandleInterval, Event, Trade};
use crate::ids::{AccountId, ClientOrderId, OrderId, SymbolId};
use crate::instrument::InstrumentTable;
use crate::order::{Order, Side};
use crate::ports::OrderQuery;
use crate::risk::{RiskConfig, RiskEngine};

pub use capture::Capture;
pub use snapshot::{SNAPSHOT_VERSION, SnapshotError};
use store::OrderStore;

/// Recent trades kept per symbol unless configured otherwise.
pub const DEFAULT_RECENT_TRADES: usize = 1000;

/// Terminal orders held unless configured otherwise.
pub const DEFAULT_RETAIN_TERMINAL: usize = 100_000;

/// How the processor is set up. Not part of the snapshot: restore with the same config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub stp: StpMode,
    pub risk: RiskConfig,
    /// Trades kept per symbol for `GET /api/trades/{symbol}`.
    pub recent_trades: usize,
    /// The most terminal orders (filled, canceled, rejected, expired) held; older ones are
    /// evicted to [`Engine::take_evicted`]. 0 evicts every order as soon as it ends.
    pub retain_terminal: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            stp: StpMode::default(),
            risk: RiskConfig::default(),
            recent_trades: DEFAULT_RECENT_TRADES,
            retain_terminal: DEFAULT_RETAIN_TERMINAL,
        }
    }
}

/// The deterministic processor. See the module docs.
#[derive(Debug)]
pub struct Engine {
    instruments: InstrumentTable,
    cfg: EngineConfig,
    books: Vec<OrderBook>,
    risk: RiskEngine,
    /// Every open order and the held terminal ones.
    orders: OrderStore,
    /// Per account: `(created_at, order_id)` of every held order, for newest-first pages.
    by_account: AHashMap<AccountId, BTreeSet<(u64, OrderId)>>,
    /// The held terminal orders, in the order they ended (oldest first): the eviction queue.
    terminal: VecDeque<OrderId>,
    /// Evicted orders not yet taken by [`Engine::take_evicted`].
    evicted: Vec<Order>,
    /// Per symbol, oldest first.
    trades: Vec<VecDeque<Trade>>,
    candles: CandleStore,
    /// Per symbol: ids depend only on that symbol's own commands, so a node that applies the
    /// partitions of the log in another interleaving issues the same ids (cluster mode).
    next_exec_id: Vec<u64>,
    next_trade_id: Vec<u64>,
    /// Reused buffers (no allocation per command for them).
    scratch: Vec<MatchEvent>,
    candle_scratch: Vec<Candle>,
}

impl Engine {
    pub fn new(instruments: InstrumentTable, cfg: EngineConfig) -> Self {
        let n = instruments.len();
        Engine {
            books: (0..n)
                .map(|i| OrderBook::new(SymbolId(i as u16), BookConfig { stp: cfg.stp }))
                .collect(),
            risk: RiskEngine::new(&instruments, cfg.risk.clone()),
            orders: OrderStore::default(),
            by_account: AHashMap::new(),
            terminal: VecDeque::new(),
            evicted: Vec::new(),
            trades: vec![VecDeque::new(); n],
            candles: CandleStore::new(n, DEFAULT_CANDLES_KEPT),
            next_exec_id: vec![1; n],
            next_trade_id: vec![1; n],
            scratch: Vec::with_capacity(64),
            candle_scratch: Vec::with_capacity(CandleInterval::ALL.len()),
            instruments,
            cfg,
        }
    }

    /// Makes room for `orders` order records up front, so the maps never rehash (and stall
    /// the processor for the copy) while they grow to that size.
    pub fn reserve(&mut self, orders: usize) {
        let more = orders.saturating_sub(self.orders.len());
        self.orders.reserve(more);
        let queue = orders.min(self.cfg.retain_terminal.saturating_add(1));
        self.terminal
            .reserve(queue.saturating_sub(self.terminal.len()));
    }

    /// Applies one command of the log, appending what happened to `out`.
    pub fn apply(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        match cmd {
            Command::Place(p) => self.place(p, out),
            Command::Cancel(c) => self.cancel(c, out),
            Command::Amend(a) => self.amend(a, out),
            Command::Halt(h) => self.risk.set_halt(&h.scope, h.halted),
            // Replay drops voided places before they reach the engine (see `Command::Void`);
            // the marker itself changes no state.
            Command::Void(_) => {}
            Command::CancelAll(c) => self.cancel_all(c, out),
        }
        self.evict_excess();
    }

    /// Moves the orders evicted since the last call to the end of `out`, oldest first (the
    /// order they ended in). Appends without allocating once `out` has grown to a batch.
    pub fn take_evicted(&mut self, out: &mut Vec<Order>) {
        out.append(&mut self.evicted);
    }

    /// Number of terminal orders held (at most [`EngineConfig::retain_terminal`] between
    /// commands).
    pub fn terminal_held(&self) -> usize {
        self.terminal.len()
    }

    /// Evicts the oldest terminal orders until at most `retain_terminal` are held.
    fn evict_excess(&mut self) {
        while self.terminal.len() > self.cfg.retain_terminal {
            let Some(id) = self.terminal.pop_front() else {
                break;
            };
            let order = self.orders.remove(&id);
            debug_assert!(order.is_some(), "terminal order {id} not held");
            let Some(order) = order else {
                continue;
            };
            if let Some(set) = self.by_account.get_mut(&order.account) {
                set.remove(&(order.created_at, id));
                if set.is_empty() {
                    self.by_account.remove(&order.account);
                }
            }
            self.evicted.push(order);
        }
    }

    /// The order of `account` with this `clientOrderId`: the open one if there is one, else
    /// the newest order still held that carried it.
    pub fn order_by_client_id(
        &self,
        account: &AccountId,
        client_order_id: &ClientOrderId,
    ) -> Option<&Order> {
        if let Some(id) = self.risk.open_by_client_order_id(account, client_order_id) {
            return self.orders.get(&id);
        }
        self.by_account
            .get(account)?
            .iter()
            .rev()
            .filter_map(|(_, id)| self.orders.get(id))
            .find(|o| o.client_order_id.as_ref() == Some(client_order_id))
    }

    /// Ids of `account`'s open orders, oldest first, optionally of one symbol and/or side.
    pub fn open_orders_of(
        &self,
        account: &AccountId,
        symbol: Option<SymbolId>,
        side: Option<Side>,
    ) -> Vec<OrderId> {
        let Some(set) = self.by_account.get(account) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|(_, id)| self.orders.get(id))
            .filter(|o| o.status.is_open())
            .filter(|o| symbol.is_none_or(|s| o.symbol == s))
            .filter(|o| side.is_none_or(|s| o.side == s))
            .map(|o| o.order_id)
            .collect()
    }

    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.get(&id)
    }

    /// A page of one account's orders, newest first, after `query.cursor` (exclusive).
    pub fn list_orders(&self, query: &OrderQuery) -> Vec<&Order> {
        let Some(set) = self.by_account.get(&query.account) else {
            return Vec::new();
        };
        let upper = match query.cursor {
            Some(c) => std::ops::Bound::Excluded(c),
            None => std::ops::Bound::Unbounded,
        };
        set.range((std::ops::Bound::Unbounded, upper))
            .rev()
            .filter_map(|(_, id)| self.orders.get(id))
            .filter(|o| query.symbol.is_none_or(|s| o.symbol == s))
            .filter(|o| query.status.is_none_or(|s| o.status == s))
            .take(query.limit)
            .collect()
    }

    pub fn risk(&self) -> &RiskEngine {
        &self.risk
    }

    /// # Panics
    /// If `symbol` is not in the instrument table.
    pub fn book(&self, symbol: SymbolId) -> &OrderBook {
        &self.books[symbol.0 as usize]
    }

    /// The newest `limit` trades of `symbol`, newest first.
    pub fn recent_trades(&self, symbol: SymbolId, limit: usize) -> Vec<Trade> {
        self.trades
            .get(symbol.0 as usize)
            .map(|t| t.iter().rev().take(limit).copied().collect())
            .unwrap_or_default()
    }

    /// The newest `limit` candles, oldest first.
    pub fn candles(&self, symbol: SymbolId, interval: CandleInterval, limit: usize) -> Vec<Candle> {
        self.candles.candles(symbol, interval, limit)
    }

    pub fn instruments(&self) -> &InstrumentTable {
        &self.instruments
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Number of orders held (open and held terminal ones).
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// A stable 64-bit FNV-1a hash of the canonical state (books, orders, accounts,
    /// positions, reservations, counters, trades, candles, the eviction queue and any evicted
    /// orders not yet taken): equal hashes across runs and machines mean equal state.
    pub fn state_hash(&self) -> u64 {
        self.capture().state_hash()
    }

    /// A stable hash of the books of `symbols` (see `encode_symbols`): equal on every node
    /// that applied the same commands of those symbols, in any interleaving with the rest.
    pub fn symbols_state_hash(&self, symbols: &dyn Fn(SymbolId) -> bool) -> u64 {
        let mut body = Vec::with_capacity(1 << 12);
        self.encode_symbols(symbols, &mut body);
        snapshot::fnv1a64(&body)
    }

    /// Applies `cmd` as one partition's copy of it: a cancel-all of every symbol (written to
    /// every partition of a partitioned log) cancels only the orders of `symbols` here, so
    /// each partition's books depend on that partition's commands alone. Anything else is
    /// [`Engine::apply`].
    pub fn apply_partition(
        &mut self,
        cmd: &Command,
        symbols: &dyn Fn(SymbolId) -> bool,
        out: &mut Vec<Event>,
    ) {
        match cmd {
            Command::CancelAll(c) if c.symbol.is_none() => {
                self.cancel_all_where(c, symbols, out);
                self.evict_excess();
            }
            _ => self.apply(cmd, out),
        }
    }

    /// A versioned, checksummed binary image of the whole state.
    pub fn snapshot(&self) -> Vec<u8> {
        self.capture().encode()
    }

    /// The [`Engine::state_hash`] of the engine a snapshot image restores to (with the
    /// config it was taken with), computed from the bytes alone (so a writer thread can hash
    /// without touching the engine). Only for the current layout: an older one is
    /// [`SnapshotError::Version`].
    pub fn snapshot_state_hash(bytes: &[u8]) -> Result<u64, SnapshotError> {
        match snapshot::open(bytes)? {
            (SNAPSHOT_VERSION, body) => Ok(snapshot::fnv1a64(body)),
            // An older layout restores to a different body: only a restore can tell.
            (v, _) => Err(SnapshotError::Version(v)),
        }
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes; `instruments` must be the table
    /// the snapshot was taken with. A damaged or foreign image is an error, never a guess.
    ///
    /// Evicted orders the snapshot still held untaken come back in [`Engine::take_evicted`].
    /// If `cfg.retain_terminal` is below what the snapshot holds, the excess is evicted here
    /// (and also comes out of [`Engine::take_evicted`]).
    pub fn restore(
        instruments: InstrumentTable,
        cfg: EngineConfig,
        bytes: &[u8],
    ) -> Result<Engine, SnapshotError> {
        let (version, body) = snapshot::open(bytes)?;
        let mut e = Engine::new(instruments, cfg);
        e.decode_state(version, body)?;
        // The clientOrderId index is derived from the open orders, not stored.
        for o in e.orders.values() {
            if let Some(c) = o.client_order_id
                && o.status.is_open()
            {
                e.risk.index_client_order_id(o.account, c, o.order_id);
            }
        }
        e.evict_excess();
        Ok(e)
    }
}
