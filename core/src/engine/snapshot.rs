//! The canonical binary image of the engine: snapshots and the state hash.
//!
//! One serializer serves both, so "same hash" means "same snapshot body". Everything kept in
//! hash maps is written sorted by key, so the bytes depend only on the state, never on
//! insertion history or hasher seeds. Layout: magic, version, body, CRC-32 of everything
//! before it. Little-endian throughout.
//!
//! Version 2 appends the eviction queue (held terminal orders in the order they ended) and
//! the evicted orders not yet taken, so a restore evicts exactly what the original would
//! have and loses nothing it had not handed out. Version 1 images (no queue) still restore:
//! the queue is rebuilt from the terminal orders by `(updated_at, order_id)`, the time each
//! ended, which differs from the original only in the order of orders that ended in the same
//! command.

use thiserror::Error;

use crate::book::RestingOrder;
use crate::codes::RejectCode;
use crate::event::{Candle, CandleInterval, Trade};
use crate::ids::{AccountId, IDEMPOTENCY_KEY_MAX, OrderId, OrderKey, ShortStr, SymbolId};
use crate::num::{Money, Price, Qty};
use crate::order::{Order, OrderStatus, OrderType, Side, TimeInForce};
use crate::risk::{AccountState, OrderRisk, Position};

use super::Engine;
use super::capture::Capture;

const MAGIC: &[u8; 8] = b"OMSSNAP\0";
/// Current snapshot layout version.
pub const SNAPSHOT_VERSION: u16 = 3;
/// The oldest layout [`Engine::restore`] still reads.
const OLDEST_VERSION: u16 = 1;

/// A snapshot that cannot be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("not an oms snapshot")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    Version(u16),
    #[error("snapshot checksum mismatch")]
    Checksum,
    #[error("snapshot truncated")]
    Truncated,
    #[error("snapshot has an invalid {0}")]
    Invalid(&'static str),
    #[error("snapshot was taken with a different instrument table")]
    InstrumentMismatch,
}

/// FNV-1a, 64 bit.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(super) fn write_header(out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
}

pub(super) fn seal(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks magic, version and CRC; returns the layout version and the body.
pub(super) fn open(bytes: &[u8]) -> Result<(u16, &[u8]), SnapshotError> {
    if bytes.len() < MAGIC.len() + 2 + 4 {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
            SnapshotError::Truncated
        } else {
            SnapshotError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(data) != crc {
        return Err(SnapshotError::Checksum);
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if !(OLDEST_VERSION..=SNAPSHOT_VERSION).contains(&version) {
        return Err(SnapshotError::Version(version));
    }
    Ok((version, &data[10..]))
}

struct W<'a>(&'a mut Vec<u8>);

impl W<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
            None => self.u8(0),
        }
    }
    fn side(&mut self, s: Side) {
        self.u8(match s {
            Side::Buy => 0,
            Side::Sell => 1,
        });
    }
    fn order(&mut self, o: &Order) {
        self.u128(o.order_id.0);
        self.opt_bytes(o.client_order_id.as_ref().map(|c| c.as_bytes()));
        self.bytes(o.account.as_str().as_bytes());
        self.u16(o.symbol.0);
        self.side(o.side);
        self.u8(u8::from(o.order_type == OrderType::Limit));
        self.u8(tif_tag(o.time_in_force));
        self.u8(u8::from(o.post_only));
        self.i64(o.quantity.0);
        self.opt_i64(o.price.map(|p| p.0));
        self.u8(status_tag(o.status));
        self.i64(o.filled_quantity.0);
        self.i128(o.filled_notional);
        self.u64(o.created_at);
        self.u64(o.updated_at);
        self.u32(o.version);
        self.opt_bytes(o.idempotency_key.as_ref().map(|k| k.as_bytes()));
        self.u8(o.reject_reason.map_or(0, |c| c as u8));
    }
    fn trade(&mut self, t: &Trade) {
        self.u64(t.trade_id);
        self.u16(t.symbol.0);
        self.i64(t.price.0);
        self.i64(t.qty.0);
        self.side(t.aggressor);
        self.u128(t.maker_order_id.0);
        self.u128(t.taker_order_id.0);
        self.u64(t.ts);
    }
}

struct R<'a> {
    buf: &'a [u8],
    pos: usize,
}

type Res<T> = Result<T, SnapshotError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(SnapshotError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Res<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::Invalid("flag")),
        }
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn i128(&mut self) -> Res<i128> {
        Ok(i128::from_le_bytes(self.arr()?))
    }
    fn u128(&mut self) -> Res<u128> {
        Ok(u128::from_le_bytes(self.arr()?))
    }
    fn str(&mut self) -> Res<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| SnapshotError::Invalid("string"))
    }
    fn account(&mut self) -> Res<AccountId> {
        AccountId::new(self.str()?).map_err(|_| SnapshotError::Invalid("account"))
    }
    fn opt_short<const N: usize>(&mut self) -> Res<Option<ShortStr<N>>> {
        if !self.bool()? {
            return Ok(None);
        }
        ShortStr::new(self.str()?)
            .map(Some)
            .map_err(|_| SnapshotError::Invalid("string"))
    }
    fn opt_i64(&mut self) -> Res<Option<i64>> {
        if self.bool()? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }
    fn side(&mut self) -> Res<Side> {
        match self.u8()? {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            _ => Err(SnapshotError::Invalid("side")),
        }
    }
    fn symbol(&mut self, n: usize) -> Res<SymbolId> {
        let s = self.u16()?;
        if (s as usize) < n {
            Ok(SymbolId(s))
        } else {
            Err(SnapshotError::Invalid("symbol"))
        }
    }
    fn count(&mut self) -> Res<usize> {
        let n = self.u64()? as usize;
        // Every element takes at least one byte: a larger count is damage, not a huge state.
        if n > self.buf.len() - self.pos {
            return Err(SnapshotError::Invalid("count"));
        }
        Ok(n)
    }
    fn order(&mut self, n: usize) -> Res<Order> {
        let order_id = OrderId(self.u128()?);
        let client_order_id = self.opt_short()?;
        let account = self.account()?;
        let symbol = self.symbol(n)?;
        let side = self.side()?;
        let order_type = if self.bool()? {
            OrderType::Limit
        } else {
            OrderType::Market
        };
        let time_in_force = match self.u8()? {
            0 => TimeInForce::Gtc,
            1 => TimeInForce::Ioc,
            2 => TimeInForce::Fok,
            _ => return Err(SnapshotError::Invalid("time in force")),
        };
        Ok(Order {
            order_id,
            client_order_id,
            account,
            symbol,
            side,
            order_type,
            time_in_force,
            post_only: self.bool()?,
            quantity: Qty(self.i64()?),
            price: self.opt_i64()?.map(Price),
            status: *OrderStatus::ALL
                .get(self.u8()? as usize)
                .ok_or(SnapshotError::Invalid("status"))?,
            filled_quantity: Qty(self.i64()?),
            filled_notional: self.i128()?,
            created_at: self.u64()?,
            updated_at: self.u64()?,
            version: self.u32()?,
            idempotency_key: self.opt_short::<IDEMPOTENCY_KEY_MAX>()?.map(OrderKey::from),
            reject_reason: match self.u8()? {
                0 => None,
                c => Some(RejectCode::from_u8(c).ok_or(SnapshotError::Invalid("reason"))?),
            },
        })
    }
    fn trade(&mut self, n: usize) -> Res<Trade> {
        Ok(Trade {
            trade_id: self.u64()?,
            symbol: self.symbol(n)?,
            price: Price(self.i64()?),
            qty: Qty(self.i64()?),
            aggressor: self.side()?,
            maker_order_id: OrderId(self.u128()?),
            taker_order_id: OrderId(self.u128()?),
            ts: self.u64()?,
        })
    }
}

fn status_tag(s: OrderStatus) -> u8 {
    OrderStatus::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

fn tif_tag(t: TimeInForce) -> u8 {
    match t {
        TimeInForce::Gtc => 0,
        TimeInForce::Ioc => 1,
        TimeInForce::Fok => 2,
    }
}

impl Capture {
    /// Consumes the capture part by part: each large part (reservations, the order chunks
    /// it holds alone, each book's resting nodes) is freed as soon as it is written, so the
    /// image grows while the capture shrinks and the peak is about the image alone.
    ///
    /// The reservations are sorted by value, in place: through references, the
    /// hash-ordered entries made the write a random walk over them (106 of 194 ms at 600 k
    /// open orders); sorted by value the write takes 9 ms.
    pub(super) fn encode_state(mut self, out: &mut Vec<u8>) {
        let mut w = W(out);
        w.u16(self.symbols.len() as u16);
        for symbol in self.symbols.iter() {
            w.bytes(symbol.as_bytes());
        }
        for (exec, trade) in self.next_exec_id.iter().zip(&self.next_trade_id) {
            w.u64(*exec);
            w.u64(*trade);
        }

        // Risk: flags, marks, accounts by id, reservations by order id.
        w.u8(u8::from(self.global_halt));
        for p in &self.last_price {
            w.i64(p.0);
        }
        let mut accounts: Vec<&AccountState> = self.accounts.iter().collect();
        accounts.sort_unstable_by_key(|a| a.id);
        w.u64(accounts.len() as u64);
        for a in accounts {
            w.bytes(a.id.as_str().as_bytes());
            w.i64(a.equity.0);
            w.i64(a.realized.0);
            w.i64(a.used.0);
            w.i64(a.reserved.0);
            w.u32(a.open_orders);
            w.u8(u8::from(a.halted));
            for p in &a.positions {
                w.i64(p.qty);
                w.i128(p.cost);
                w.i64(p.realized.0);
                w.i64(p.open_buy);
                w.i64(p.open_sell);
            }
        }
        self.reservations.sort_unstable_by_key(|(id, _)| *id);
        w.u64(self.reservations.len() as u64);
        for (id, o) in &self.reservations {
            w.u128(id.0);
            w.bytes(self.accounts[o.account as usize].id.as_str().as_bytes());
            w.u16(o.symbol.0);
            w.side(o.side);
            w.opt_i64(o.price.map(|p| p.0));
            w.i64(o.quantity.0);
            w.i64(o.leaves.0);
            w.i64(o.reserved.0);
        }
        drop(std::mem::take(&mut self.reservations));

        // Orders by id.
        let mut orders: Vec<&Order> = self.orders.values().collect();
        orders.sort_unstable_by_key(|o| o.order_id);
        w.u64(orders.len() as u64);
        for o in orders {
            w.order(o);
        }
        drop(self.orders);

        // Books in priority order; trades and candles oldest first.
        for book in self.books {
            w.u64(book.len() as u64);
            for ro in book.iter() {
                w.u128(ro.order_id.0);
                w.bytes(ro.account.as_str().as_bytes());
                w.side(ro.side);
                w.i64(ro.price.0);
                w.i64(ro.leaves.0);
                w.u8(u8::from(ro.post_only));
            }
        }
        for t in &self.trades {
            w.u64(t.len() as u64);
            for tr in t {
                w.trade(tr);
            }
        }
        w.u64(self.candles.len() as u64);
        for c in &self.candles {
            w.u16(c.symbol.0);
            w.u8(c.interval as u8);
            w.u64(c.open_time);
            w.i64(c.open.0);
            w.i64(c.high.0);
            w.i64(c.low.0);
            w.i64(c.close.0);
            w.i64(c.volume.0);
            w.u32(c.trades);
        }

        // Eviction queue oldest first, then evicted orders not yet taken, oldest first.
        w.u64(self.terminal.len() as u64);
        for id in &self.terminal {
            w.u128(id.0);
        }
        w.u64(self.evicted.len() as u64);
        for o in &self.evicted {
            w.order(o);
        }
    }
}

impl Engine {
    /// The state of the books of `symbols` only: counters, resting orders in priority order,
    /// every open order of those symbols, recent trades and candles. Two engines that applied
    /// the same commands of those symbols, whatever else they applied and in whatever
    /// interleaving with other symbols, encode the same bytes (cluster mode compares the
    /// partitions of its replicas with this).
    pub(super) fn encode_symbols(&self, symbols: &dyn Fn(SymbolId) -> bool, out: &mut Vec<u8>) {
        let mut w = W(out);
        for (i, ins) in self.instruments.iter().enumerate() {
            if !symbols(SymbolId(i as u16)) {
                continue;
            }
            w.bytes(ins.symbol.as_bytes());
            w.u64(self.next_exec_id[i]);
            w.u64(self.next_trade_id[i]);
            let book = &self.books[i];
            w.u64(book.len() as u64);
            for ro in book.resting_orders() {
                w.u128(ro.order_id.0);
                w.bytes(ro.account.as_str().as_bytes());
                w.side(ro.side);
                w.i64(ro.price.0);
                w.i64(ro.leaves.0);
                w.u8(u8::from(ro.post_only));
                if let Some(o) = self.orders.get(&ro.order_id) {
                    w.order(o);
                }
            }
            w.u64(self.trades[i].len() as u64);
            for tr in &self.trades[i] {
                w.trade(tr);
            }
            for c in self.candles.all().filter(|c| c.symbol.0 as usize == i) {
                w.u8(c.interval as u8);
                w.u64(c.open_time);
                w.i64(c.open.0);
                w.i64(c.high.0);
                w.i64(c.low.0);
                w.i64(c.close.0);
                w.i64(c.volume.0);
                w.u32(c.trades);
            }
        }
    }

    /// Fills a freshly built engine from a snapshot body of layout `version`.
    pub(super) fn decode_state(&mut self, version: u16, body: &[u8]) -> Result<(), SnapshotError> {
        let mut r = R { buf: body, pos: 0 };
        let n = self.instruments.len();
        if r.u16()? as usize != n {
            return Err(SnapshotError::InstrumentMismatch);
        }
        for ins in self.instruments.iter() {
            if r.str()? != ins.symbol {
                return Err(SnapshotError::InstrumentMismatch);
            }
        }
        if version >= 3 {
            for i in 0..n {
                self.next_exec_id[i] = r.u64()?;
                self.next_trade_id[i] = r.u64()?;
            }
        } else {
            // Layouts 1–2 kept one counter for all symbols: every symbol continues above it,
            // so no id is ever issued twice.
            let (exec, trade) = (r.u64()?, r.u64()?);
            self.next_exec_id.fill(exec);
            self.next_trade_id.fill(trade);
        }

        let risk = &mut self.risk;
        risk.global_halt = r.bool()?;
        for i in 0..n {
            risk.last_price[i] = Price(r.i64()?);
        }
        let configured = std::mem::take(&mut risk.accounts);
        for _ in 0..r.count()? {
            let id = r.account()?;
            let mut a = AccountState {
                id,
                equity: Money(r.i64()?),
                realized: Money(r.i64()?),
                used: Money(r.i64()?),
                reserved: Money(r.i64()?),
                open_orders: r.u32()?,
                halted: r.bool()?,
                positions: Vec::with_capacity(n),
            };
            for _ in 0..n {
                a.positions.push(Position {
                    qty: r.i64()?,
                    cost: r.i128()?,
                    realized: Money(r.i64()?),
                    open_buy: r.i64()?,
                    open_sell: r.i64()?,
                });
            }
            risk.accounts.push(a);
        }
        risk.rebuild_index();
        if risk.index.len() != risk.accounts.len() {
            return Err(SnapshotError::Invalid("duplicate account"));
        }
        // Accounts configured since the snapshot was taken.
        for a in configured {
            if !risk.index.contains_key(&a.id) {
                risk.account_index(&a.id, a.equity);
            }
        }
        for _ in 0..r.count()? {
            let id = OrderId(r.u128()?);
            let account = r.account()?;
            let ai = *risk
                .index
                .get(&account)
                .ok_or(SnapshotError::Invalid("reservation account"))?;
            let o = OrderRisk {
                account: ai,
                symbol: r.symbol(n)?,
                side: r.side()?,
                price: r.opt_i64()?.map(Price),
                quantity: Qty(r.i64()?),
                leaves: Qty(r.i64()?),
                reserved: Money(r.i64()?),
            };
            if risk.orders.insert(id, o).is_some() {
                return Err(SnapshotError::Invalid("duplicate reservation"));
            }
        }

        for _ in 0..r.count()? {
            let o = r.order(n)?;
            let order_id = o.order_id;
            self.by_account
                .entry(o.account)
                .or_default()
                .insert((o.created_at, order_id));
            if self.orders.insert(order_id, o).is_some() {
                return Err(SnapshotError::Invalid("duplicate order"));
            }
        }

        for book in &mut self.books {
            for _ in 0..r.count()? {
                let o = RestingOrder {
                    order_id: OrderId(r.u128()?),
                    account: r.account()?,
                    side: r.side()?,
                    price: Price(r.i64()?),
                    leaves: Qty(r.i64()?),
                    post_only: r.bool()?,
                };
                let crosses = match o.side {
                    Side::Buy => book.best_ask().is_some_and(|a| a <= o.price),
                    Side::Sell => book.best_bid().is_some_and(|b| b >= o.price),
                };
                if o.leaves.0 <= 0 || crosses || book.get(o.order_id).is_some() {
                    return Err(SnapshotError::Invalid("resting order"));
                }
                book.restore_resting(o);
            }
        }
        for t in &mut self.trades {
            for _ in 0..r.count()? {
                t.push_back(r.trade(n)?);
            }
        }
        for _ in 0..r.count()? {
            let symbol = r.symbol(n)?;
            let interval = *CandleInterval::ALL
                .get(r.u8()? as usize)
                .ok_or(SnapshotError::Invalid("candle interval"))?;
            self.candles.restore(Candle {
                symbol,
                interval,
                open_time: r.u64()?,
                open: Price(r.i64()?),
                high: Price(r.i64()?),
                low: Price(r.i64()?),
                close: Price(r.i64()?),
                volume: Qty(r.i64()?),
                trades: r.u32()?,
            });
        }
        if version >= 2 {
            self.decode_eviction(&mut r, n)?;
        } else {
            self.rebuild_eviction_queue();
        }
        if r.pos != body.len() {
            return Err(SnapshotError::Invalid("trailing bytes"));
        }
        Ok(())
    }

    /// The eviction queue and the untaken evicted orders (layout 2).
    fn decode_eviction(&mut self, r: &mut R<'_>, n: usize) -> Result<(), SnapshotError> {
        for _ in 0..r.count()? {
            let id = OrderId(r.u128()?);
            if !self.orders.get(&id).is_some_and(|o| o.status.is_terminal()) {
                return Err(SnapshotError::Invalid("eviction queue entry"));
            }
            self.terminal.push_back(id);
        }
        // Every held terminal order queued exactly once.
        let mut queued: Vec<OrderId> = self.terminal.iter().copied().collect();
        queued.sort_unstable();
        queued.dedup();
        let held = self
            .orders
            .values()
            .filter(|o| o.status.is_terminal())
            .count();
        if queued.len() != self.terminal.len() || held != queued.len() {
            return Err(SnapshotError::Invalid("eviction queue"));
        }
        for _ in 0..r.count()? {
            let o = r.order(n)?;
            if o.status.is_open() || self.orders.contains_key(&o.order_id) {
                return Err(SnapshotError::Invalid("evicted order"));
            }
            self.evicted.push(o);
        }
        Ok(())
    }

    /// Layout 1 has no queue: the held terminal orders in the order they ended, as far as
    /// the orders tell (`updated_at` is when an order ended; ties broken by id).
    fn rebuild_eviction_queue(&mut self) {
        let mut ended: Vec<(u64, OrderId)> = self
            .orders
            .values()
            .filter(|o| o.status.is_terminal())
            .map(|o| (o.updated_at, o.order_id))
            .collect();
        ended.sort_unstable();
        self.terminal.extend(ended.into_iter().map(|(_, id)| id));
    }
}
