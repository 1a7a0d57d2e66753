//! A snapshot in two steps: capture on the processor thread, encode anywhere.
//!
//! Encoding every held order (sorting them by id, writing ~200 bytes each) took 100–200 ms
//! at 300–600 k held orders, and while it ran on the processor nothing matched: the longest
//! wait any request saw was the snapshot. [`Engine::capture`] keeps only what must happen
//! between two commands: it shares the order chunks copy-on-write (O(chunks)), and copies the
//! small or compact parts (accounts, reservations, the books' resting nodes, trades, candles,
//! the eviction queue). [`Capture::encode`] then writes exactly the bytes
//! [`Engine::snapshot`] would have, on whatever thread calls it (the binary chooses:
//! `--snapshot-encode`; on 2 shared cores the snapshot thread's encode competes with the
//! processor for the same CPUs, so there the processor encodes right after capturing).

use crate::book::RestingImage;
use crate::event::{Candle, Trade};
use crate::ids::OrderId;
use crate::num::Price;
use crate::order::Order;
use crate::risk::{AccountState, OrderRisk};

use super::Engine;
use super::snapshot;
use super::store::SharedOrders;

/// The engine's state at one moment, owned and `Send`; see the module docs.
#[derive(Clone, Debug)]
pub struct Capture {
    pub(super) symbols: Vec<String>,
    pub(super) next_exec_id: Vec<u64>,
    pub(super) next_trade_id: Vec<u64>,
    pub(super) global_halt: bool,
    pub(super) last_price: Vec<Price>,
    pub(super) accounts: Vec<AccountState>,
    pub(super) reservations: Vec<(OrderId, OrderRisk)>,
    pub(super) orders: SharedOrders,
    pub(super) books: Vec<RestingImage>,
    pub(super) trades: Vec<Vec<Trade>>,
    pub(super) candles: Vec<Candle>,
    pub(super) terminal: Vec<OrderId>,
    pub(super) evicted: Vec<Order>,
}

impl Engine {
    /// The state as it is now, for [`Capture::encode`] on another thread. Costs a pass over
    /// the reservations and the resting orders, not an encode of every order.
    pub fn capture(&self) -> Capture {
        let r = &self.risk;
        Capture {
            symbols: self.instruments.iter().map(|i| i.symbol.clone()).collect(),
            next_exec_id: self.next_exec_id.clone(),
            next_trade_id: self.next_trade_id.clone(),
            global_halt: r.global_halt,
            last_price: r.last_price.clone(),
            accounts: r.accounts.clone(),
            reservations: r.orders.iter().map(|(id, o)| (*id, *o)).collect(),
            orders: self.orders.share(),
            books: self.books.iter().map(|b| b.resting_image()).collect(),
            trades: self
                .trades
                .iter()
                .map(|t| t.iter().copied().collect())
                .collect(),
            candles: self.candles.all().copied().collect(),
            terminal: self.terminal.iter().copied().collect(),
            evicted: self.evicted.clone(),
        }
    }
}

impl Capture {
    /// The snapshot image: the same bytes [`Engine::snapshot`] gives for the captured state.
    pub fn encode(self) -> Vec<u8> {
        // Sized once for the whole image (a held order encodes to ~220 bytes with its book
        // entry and reservation; 384 leaves room), so encoding never copies a growing buffer.
        // The part of the estimate left unwritten is never touched, so it costs no memory.
        let mut out = Vec::with_capacity((1 << 16) + self.orders.len() * 384);
        snapshot::write_header(&mut out);
        self.encode_state(&mut out);
        snapshot::seal(&mut out);
        out
    }

    /// [`Engine::state_hash`] of the captured state.
    pub fn state_hash(self) -> u64 {
        let mut body = Vec::with_capacity(1 << 16);
        self.encode_state(&mut body);
        snapshot::fnv1a64(&body)
    }

    /// Orders held (open and terminal) when the state was captured.
    pub fn orders(&self) -> usize {
        self.orders.len()
    }
}
