//! The order model and its status machine.
//!
//! Status changes go through [`OrderStatus::transition`] and nowhere else, so an illegal move
//! (a FILLED order canceled, a CANCELED order filled) is refused in one place and the table is
//! tested exhaustively.

use thiserror::Error;

use crate::codes::RejectCode;
use crate::ids::{AccountId, ClientOrderId, OrderId, OrderKey, SymbolId};
use crate::num::{Price, Qty};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    /// +1 for a buy, -1 for a sell (position sign).
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "BUY" | "buy" | "Buy" => Some(Side::Buy),
            "SELL" | "sell" | "Sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderType {
    Market,
    Limit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "MARKET",
            OrderType::Limit => "LIMIT",
        }
    }
    pub fn parse(s: &str) -> Option<OrderType> {
        match s {
            "MARKET" | "market" => Some(OrderType::Market),
            "LIMIT" | "limit" => Some(OrderType::Limit),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till canceled: the remainder rests on the book.
    Gtc,
    /// Immediate or cancel: fill what is possible now, expire the rest.
    Ioc,
    /// Fill or kill: fill everything now or nothing at all.
    Fok,
}

impl TimeInForce {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "GTC",
            TimeInForce::Ioc => "IOC",
            TimeInForce::Fok => "FOK",
        }
    }
    pub fn parse(s: &str) -> Option<TimeInForce> {
        match s {
            "GTC" | "gtc" => Some(TimeInForce::Gtc),
            "IOC" | "ioc" => Some(TimeInForce::Ioc),
            "FOK" | "fok" => Some(TimeInForce::Fok),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    New,
    Accepted,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Expired,
}

/// A status change the table does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("illegal order status transition {from:?} -> {to:?}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::New,
        OrderStatus::Accepted,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "NEW",
            OrderStatus::Accepted => "ACCEPTED",
            OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
            OrderStatus::Filled => "FILLED",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the order can still trade or be canceled.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderStatus::New | OrderStatus::Accepted | OrderStatus::PartiallyFilled
        )
    }

    pub fn is_terminal(self) -> bool {
        !self.is_open()
    }

    /// The transition table (ARCHITECTURE.md §3). A partial fill may repeat.
    pub fn can_transition(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (New, Accepted)
                | (New, Rejected)
                | (Accepted, PartiallyFilled)
                | (Accepted, Filled)
                | (Accepted, Canceled)
                | (Accepted, Expired)
                | (PartiallyFilled, PartiallyFilled)
                | (PartiallyFilled, Filled)
                | (PartiallyFilled, Canceled)
                | (PartiallyFilled, Expired)
        )
    }

    /// Returns the new status or the refused transition.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, TransitionError> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

/// The full state of one order as the processor keeps and serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub order_id: OrderId,
    pub client_order_id: Option<ClientOrderId>,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    /// Current total quantity (reduced by an amend).
    pub quantity: Qty,
    pub price: Option<Price>,
    pub status: OrderStatus,
    pub filled_quantity: Qty,
    /// Σ price units × quantity units of all fills (for the average fill price).
    pub filled_notional: i128,
    pub created_at: u64,
    pub updated_at: u64,
    /// Increases by one on every change; projections upsert only newer versions.
    pub version: u32,
    pub idempotency_key: Option<OrderKey>,
    pub reject_reason: Option<RejectCode>,
}

impl Order {
    pub fn leaves_quantity(&self) -> Qty {
        if self.status.is_open() {
            self.quantity - self.filled_quantity
        } else {
            Qty::ZERO
        }
    }

    /// Moves to `to`, bumping version and timestamp; refuses illegal transitions.
    pub fn set_status(&mut self, to: OrderStatus, now: u64) -> Result<(), TransitionError> {
        self.status = self.status.transition(to)?;
        self.updated_at = now;
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        use OrderStatus::*;
        let allowed = [
            (New, Accepted),
            (New, Rejected),
            (Accepted, PartiallyFilled),
            (Accepted, Filled),
            (Accepted, Canceled),
            (Accepted, Expired),
            (PartiallyFilled, PartiallyFilled),
            (PartiallyFilled, Filled),
            (PartiallyFilled, Canceled),
            (PartiallyFilled, Expired),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let ok = allowed.contains(&(from, to));
                assert_eq!(from.can_transition(to), ok, "{from:?} -> {to:?}");
                assert_eq!(from.transition(to).is_ok(), ok);
                if from.is_terminal() {
                    assert!(
                        from.transition(to).is_err(),
                        "terminal {from:?} moved to {to:?}"
                    );
                }
            }
            assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
        }
    }
}
