//! The limit order book of one symbol and its matching rules.
//!
//! Price-time priority, partial fills, MARKET sweeps bounded by the price band, IOC, FOK (all
//! or nothing, decided before anything changes), post-only, self-trade prevention, cancel and
//! amend. The book only matches: validation, risk and the order state machine are the engine's;
//! the book tells it what happened as a list of [`MatchEvent`]s in causal order.
//!
//! Layout (one concept per file): [`slab`] holds every resting order in preallocated slots,
//! [`level`] threads a FIFO through those slots per price, [`ladder`] keeps each side's levels
//! sorted with the best price last, and [`matching`] implements the commands. An `OrderId →
//! slot` map gives O(1) cancel/amend lookup. In steady state nothing allocates per order: slots
//! and levels are reused and the caller passes the event buffer in.

mod accounts;
mod image;
mod ladder;
mod level;
mod matching;
mod slab;

use std::collections::HashMap;

use thiserror::Error;

use crate::codes::RejectCode;
use crate::ids::{AccountId, OrderId, SymbolId};
use crate::num::{Price, Qty};
use crate::order::{OrderStatus, OrderType, Side, TimeInForce};

use accounts::Accounts;
pub use image::RestingImage;
use ladder::Ladder;
use slab::Slab;

/// What to do when an incoming order would trade with a resting order of the same account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StpMode {
    /// Cancel the incoming order's remainder (fills before it stay).
    #[default]
    CancelNewest,
    /// Cancel the resting order and keep matching.
    CancelOldest,
    /// Cancel both (the resting order's event first).
    CancelBoth,
    /// Let them trade.
    Off,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookConfig {
    pub stp: StpMode,
}

/// An order to match, as the engine hands it to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub order_id: OrderId,
    pub account: AccountId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    /// Quantity to work (leaves).
    pub quantity: Qty,
    /// `None` for MARKET.
    pub price: Option<Price>,
}

/// What the book did, in causal order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchEvent {
    /// A trade: the incoming order (taker) against a resting one (maker), at the maker's price.
    /// A maker whose `maker_leaves` is zero has left the book (no further event).
    Fill {
        maker_order_id: OrderId,
        maker_account: AccountId,
        taker_order_id: OrderId,
        taker_account: AccountId,
        price: Price,
        qty: Qty,
        /// Leaves after this fill.
        maker_leaves: Qty,
        /// Leaves after this fill.
        taker_leaves: Qty,
    },
    /// The incoming order's remainder now rests at `price` with `leaves`.
    Rested {
        order_id: OrderId,
        price: Price,
        leaves: Qty,
    },
    /// An order left the book or ended without (further) fills. `status` is Canceled or
    /// Expired; `reason` is `None` for a user cancel or an IOC/MARKET remainder after fills.
    Ended {
        order_id: OrderId,
        account: AccountId,
        leaves: Qty,
        status: OrderStatus,
        reason: Option<RejectCode>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum BookError {
    #[error("no such resting order")]
    UnknownOrder,
    #[error("invalid amend: new quantity must be positive")]
    InvalidAmend,
}

/// A resting order as the book holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub side: Side,
    pub price: Price,
    pub leaves: Qty,
    pub post_only: bool,
}

/// One aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelView {
    pub price: Price,
    pub qty: Qty,
    pub orders: u32,
}

/// The book of one symbol. Single writer; deterministic (no clock, no randomness: the id map
/// uses fixed hash seeds and is never iterated).
#[derive(Debug)]
pub struct OrderBook {
    symbol: SymbolId,
    config: BookConfig,
    bids: Ladder,
    asks: Ladder,
    slab: Slab,
    index: HashMap<OrderId, u32, ahash::RandomState>,
    accounts: Accounts,
}

/// Default number of order slots when the caller gives none.
const DEFAULT_ORDERS: usize = 1024;

impl OrderBook {
    pub fn new(symbol: SymbolId, config: BookConfig) -> Self {
        Self::with_capacity(symbol, config, DEFAULT_ORDERS)
    }

    /// A book with room for `orders` resting orders before anything reallocates.
    pub fn with_capacity(symbol: SymbolId, config: BookConfig, orders: usize) -> Self {
        let levels = orders.clamp(16, 4096);
        OrderBook {
            symbol,
            config,
            bids: Ladder::new(Side::Buy, levels),
            asks: Ladder::new(Side::Sell, levels),
            slab: Slab::with_capacity(orders),
            accounts: Accounts::default(),
            index: HashMap::with_capacity_and_hasher(
                orders,
                ahash::RandomState::with_seeds(
                    0x243f_6a88_85a3_08d3,
                    0x1319_8a2e_0370_7344,
                    0xa409_3822_299f_31d0,
                    0x082e_fa98_ec4e_6c89,
                ),
            ),
        }
    }

    pub fn symbol(&self) -> SymbolId {
        self.symbol
    }

    pub fn config(&self) -> BookConfig {
        self.config
    }

    pub fn get(&self, id: OrderId) -> Option<RestingOrder> {
        self.index
            .get(&id)
            .map(|&idx| resting(self.slab.get(idx), &self.accounts))
    }

    pub fn best_bid(&self) -> Option<Price> {
        self.bids.best().map(|l| l.price)
    }

    pub fn best_ask(&self) -> Option<Price> {
        self.asks.best().map(|l| l.price)
    }

    /// Replaces `out` with up to `levels` levels of `side`, best first.
    pub fn depth(&self, side: Side, levels: usize, out: &mut Vec<LevelView>) {
        out.clear();
        out.extend(
            self.ladder(side)
                .iter_best_first()
                .take(levels)
                .map(|l| LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.orders,
                }),
        );
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.len() == 0
    }

    /// Number of price levels on `side`.
    pub fn level_count(&self, side: Side) -> usize {
        self.ladder(side).len()
    }

    /// Every resting order, bids best→worst then asks best→worst, each level in time
    /// priority. Feeding them to [`OrderBook::restore_resting`] in this order into an empty
    /// book rebuilds an identical book.
    pub fn resting_orders(&self) -> impl Iterator<Item = RestingOrder> + '_ {
        let (slab, accounts) = (&self.slab, &self.accounts);
        self.bids
            .iter_best_first()
            .chain(self.asks.iter_best_first())
            .flat_map(move |lvl| lvl.iter(slab).map(|n| resting(n, accounts)))
    }

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }
}

fn resting(n: &slab::Node, accounts: &Accounts) -> RestingOrder {
    RestingOrder {
        order_id: n.order_id,
        account: accounts.get(n.acct),
        side: n.side,
        price: n.price,
        leaves: n.leaves,
        post_only: n.post_only,
    }
}
