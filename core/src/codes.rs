//! Stable machine codes for rejections.
//!
//! Clients branch on these strings, so they never change once published; docs/errors.md lists
//! them. [`ValidationCode`]s are refused at the edge and nothing is recorded; [`RejectCode`]s
//! are decisions about an accepted request (risk, matching) that are recorded on the order
//! and published.

/// Why a request failed validation (HTTP 400, nothing recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValidationCode {
    UnknownSymbol,
    InvalidSide,
    InvalidOrderType,
    InvalidTimeInForce,
    InvalidQuantity,
    InvalidPrice,
    PriceNotOnTick,
    QuantityNotOnLot,
    QuantityBelowMin,
    QuantityAboveMax,
    BelowMinNotional,
    PriceRequired,
    PriceNotAllowed,
    PostOnlyNotAllowed,
    InvalidClientOrderId,
    InvalidAccount,
}

impl ValidationCode {
    pub const ALL: [ValidationCode; 16] = [
        ValidationCode::UnknownSymbol,
        ValidationCode::InvalidSide,
        ValidationCode::InvalidOrderType,
        ValidationCode::InvalidTimeInForce,
        ValidationCode::InvalidQuantity,
        ValidationCode::InvalidPrice,
        ValidationCode::PriceNotOnTick,
        ValidationCode::QuantityNotOnLot,
        ValidationCode::QuantityBelowMin,
        ValidationCode::QuantityAboveMax,
        ValidationCode::BelowMinNotional,
        ValidationCode::PriceRequired,
        ValidationCode::PriceNotAllowed,
        ValidationCode::PostOnlyNotAllowed,
        ValidationCode::InvalidClientOrderId,
        ValidationCode::InvalidAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValidationCode::UnknownSymbol => "UNKNOWN_SYMBOL",
            ValidationCode::InvalidSide => "INVALID_SIDE",
            ValidationCode::InvalidOrderType => "INVALID_ORDER_TYPE",
            ValidationCode::InvalidTimeInForce => "INVALID_TIME_IN_FORCE",
            ValidationCode::InvalidQuantity => "INVALID_QUANTITY",
            ValidationCode::InvalidPrice => "INVALID_PRICE",
            ValidationCode::PriceNotOnTick => "PRICE_NOT_ON_TICK",
            ValidationCode::QuantityNotOnLot => "QUANTITY_NOT_ON_LOT",
            ValidationCode::QuantityBelowMin => "QUANTITY_BELOW_MIN",
            ValidationCode::QuantityAboveMax => "QUANTITY_ABOVE_MAX",
            ValidationCode::BelowMinNotional => "BELOW_MIN_NOTIONAL",
            ValidationCode::PriceRequired => "PRICE_REQUIRED",
            ValidationCode::PriceNotAllowed => "PRICE_NOT_ALLOWED",
            ValidationCode::PostOnlyNotAllowed => "POST_ONLY_NOT_ALLOWED",
            ValidationCode::InvalidClientOrderId => "INVALID_CLIENT_ORDER_ID",
            ValidationCode::InvalidAccount => "INVALID_ACCOUNT",
        }
    }
}

/// Why an order that passed validation was rejected, canceled or expired by the system.
/// Recorded on the order (`rejectReason`) and published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectCode {
    // risk (R1)
    InsufficientMargin = 1,
    PositionLimitExceeded = 2,
    MaxNotionalExceeded = 3,
    PriceOutOfBand = 4,
    TooManyOpenOrders = 5,
    TradingHalted = 6,
    MaxQuantityExceeded = 7,
    /// Another open order of the account already has this `clientOrderId`.
    DuplicateClientOrderId = 8,
    // matching
    PostOnlyWouldTake = 20,
    SelfTradePrevented = 21,
    FokNotFillable = 22,
    NoLiquidity = 23,
    // amend / cancel
    OrderNotOpen = 30,
    InvalidAmend = 31,
}

impl RejectCode {
    pub const ALL: [RejectCode; 14] = [
        RejectCode::InsufficientMargin,
        RejectCode::PositionLimitExceeded,
        RejectCode::MaxNotionalExceeded,
        RejectCode::PriceOutOfBand,
        RejectCode::TooManyOpenOrders,
        RejectCode::TradingHalted,
        RejectCode::MaxQuantityExceeded,
        RejectCode::DuplicateClientOrderId,
        RejectCode::PostOnlyWouldTake,
        RejectCode::SelfTradePrevented,
        RejectCode::FokNotFillable,
        RejectCode::NoLiquidity,
        RejectCode::OrderNotOpen,
        RejectCode::InvalidAmend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InsufficientMargin => "INSUFFICIENT_MARGIN",
            RejectCode::PositionLimitExceeded => "POSITION_LIMIT_EXCEEDED",
            RejectCode::MaxNotionalExceeded => "MAX_NOTIONAL_EXCEEDED",
            RejectCode::PriceOutOfBand => "PRICE_OUT_OF_BAND",
            RejectCode::TooManyOpenOrders => "TOO_MANY_OPEN_ORDERS",
            RejectCode::TradingHalted => "TRADING_HALTED",
            RejectCode::MaxQuantityExceeded => "MAX_QUANTITY_EXCEEDED",
            RejectCode::DuplicateClientOrderId => "DUPLICATE_CLIENT_ORDER_ID",
            RejectCode::PostOnlyWouldTake => "POST_ONLY_WOULD_TAKE",
            RejectCode::SelfTradePrevented => "SELF_TRADE_PREVENTED",
            RejectCode::FokNotFillable => "FOK_NOT_FILLABLE",
            RejectCode::NoLiquidity => "NO_LIQUIDITY",
            RejectCode::OrderNotOpen => "ORDER_NOT_OPEN",
            RejectCode::InvalidAmend => "INVALID_AMEND",
        }
    }

    pub fn from_u8(v: u8) -> Option<RejectCode> {
        RejectCode::ALL.into_iter().find(|c| *c as u8 == v)
    }

    pub fn parse(s: &str) -> Option<RejectCode> {
        RejectCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether this is a pre-trade risk decision (published on `risk-events`).
    pub fn is_risk(self) -> bool {
        (self as u8) < 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in RejectCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert_eq!(RejectCode::from_u8(c as u8), Some(c));
            assert_eq!(RejectCode::parse(c.as_str()), Some(c));
        }
        for c in ValidationCode::ALL {
            assert!(seen.insert(c.as_str()));
        }
    }
}
