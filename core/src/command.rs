//! Commands: what the order log records.
//!
//! The log is the single source of truth, so a command carries every value that was decided
//! outside the deterministic processor: the order id, the timestamp, the idempotency key and
//! body fingerprint, and the pre-trade risk decision (R1 runs before the log). Replaying the
//! same commands therefore reproduces the same events without consulting a clock or the risk
//! stage again.

use crate::codes::RejectCode;
use crate::ids::{AccountId, IdempotencyKey, OrderId, ShortStr, SymbolId};
use crate::num::{Money, Price, Qty};
use crate::order::Side;
use crate::validate::ValidatedOrder;

/// A correlation id carried from the request into logs and event headers.
pub type CorrelationId = ShortStr<64>;

/// The pre-trade risk verdict recorded with a place or amend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskDecision {
    /// Not checked before the log: the processor's own risk engine decides (single-threaded
    /// topology and tests). The decision it takes is deterministic given the log.
    Unchecked,
    /// Accepted; `reserved` is the margin reserved for the order (for an amend: the new total).
    Accepted { reserved: Money },
    /// Rejected by R1; the order is recorded as REJECTED with this reason.
    Rejected(RejectCode),
}

/// Place a new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub order: ValidatedOrder,
    /// Acceptance time, nanoseconds since the epoch (from the injected clock).
    pub ts: u64,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Fingerprint of the request body, to tell a replay from a reused key after restart.
    pub fingerprint: u64,
    pub correlation_id: Option<CorrelationId>,
    pub risk: RiskDecision,
}

/// Cancel an open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    /// The order's symbol (partitioned logs key records by symbol).
    pub symbol: SymbolId,
    pub ts: u64,
    pub correlation_id: Option<CorrelationId>,
}

/// Amend an open order: quantity down keeps queue priority; a price change or quantity up
/// loses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmendOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    /// New total quantity (including what is already filled).
    pub quantity: Option<Qty>,
    pub price: Option<Price>,
    pub ts: u64,
    pub correlation_id: Option<CorrelationId>,
    pub risk: RiskDecision,
}

/// Why a cancel-all was logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelAllTrigger {
    /// `DELETE /api/orders?symbol=&side=`.
    Request,
    /// The account's dead-man's switch (`POST /api/orders/cancel-all-after`) expired. The
    /// timer runs at the edge; its expiry is this logged command, so replay needs no clock.
    DeadMansSwitch,
    /// A WebSocket session of the account that opted in to cancel-on-disconnect closed.
    Disconnect,
}

/// Cancel every open order of an account, optionally only one symbol and/or side. Applied
/// atomically at its position in the log: an order placed after it is not affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelAll {
    pub account: AccountId,
    pub symbol: Option<SymbolId>,
    pub side: Option<Side>,
    pub trigger: CancelAllTrigger,
    pub ts: u64,
    pub correlation_id: Option<CorrelationId>,
}

/// Who a halt applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltScope {
    Global,
    Account(AccountId),
}

/// Turn a kill switch on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetHalt {
    pub scope: HaltScope,
    pub halted: bool,
    pub ts: u64,
}

/// Voids a command whose append ended with an unknown outcome: the log may hold it although
/// the client was answered 503. Replay skips every command whose `(order_id, ts)` is voided,
/// so it never executes. `ts` is the voided command's timestamp (unique per node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoidOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub ts: u64,
}

impl VoidOrder {
    /// The void for a logged command (`None` for a halt, which is never voided).
    pub fn of(cmd: &Command) -> Option<VoidOrder> {
        Some(VoidOrder {
            order_id: cmd.order_id()?,
            account: *cmd.account()?,
            symbol: cmd.symbol()?,
            ts: cmd.ts(),
        })
    }

    /// Whether `cmd` is the command this void cancels.
    pub fn matches(&self, cmd: &Command) -> bool {
        !matches!(cmd, Command::Void(_))
            && cmd.order_id() == Some(self.order_id)
            && cmd.ts() == self.ts
    }
}

/// One record of the order log.
///
/// Deliberately unboxed: commands live in preallocated ring slots and are copied in place, so
/// boxing the large `Place` variant would cost an allocation per order on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Place(PlaceOrder),
    Cancel(CancelOrder),
    Amend(AmendOrder),
    Halt(SetHalt),
    Void(VoidOrder),
    CancelAll(CancelAll),
}

impl Command {
    pub fn ts(&self) -> u64 {
        match self {
            Command::Place(c) => c.ts,
            Command::Cancel(c) => c.ts,
            Command::Amend(c) => c.ts,
            Command::Halt(c) => c.ts,
            Command::Void(c) => c.ts,
            Command::CancelAll(c) => c.ts,
        }
    }

    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Command::Place(c) => Some(&c.account),
            Command::Cancel(c) => Some(&c.account),
            Command::Amend(c) => Some(&c.account),
            Command::Halt(c) => match &c.scope {
                HaltScope::Account(a) => Some(a),
                HaltScope::Global => None,
            },
            Command::Void(c) => Some(&c.account),
            Command::CancelAll(c) => Some(&c.account),
        }
    }

    /// The symbol whose book the command touches (`None` for a halt and for a cancel-all of
    /// every symbol: partitioned logs send those to every partition and replay them once).
    pub fn symbol(&self) -> Option<SymbolId> {
        match self {
            Command::Place(c) => Some(c.order.symbol),
            Command::Cancel(c) => Some(c.symbol),
            Command::Amend(c) => Some(c.symbol),
            Command::Void(c) => Some(c.symbol),
            Command::CancelAll(c) => c.symbol,
            Command::Halt(_) => None,
        }
    }

    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Command::Place(c) => Some(c.order_id),
            Command::Cancel(c) => Some(c.order_id),
            Command::Amend(c) => Some(c.order_id),
            Command::Void(c) => Some(c.order_id),
            Command::Halt(_) | Command::CancelAll(_) => None,
        }
    }
}
