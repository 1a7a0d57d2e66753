//! Stage 1: validation of an order request against the instrument table.
//!
//! A pure function of (table, request): no state, no time, so it can run on any thread and
//! its verdict is the same on replay. Everything it refuses is refused before anything is
//! recorded (HTTP 400 with the code and the offending field).

use std::fmt;

use crate::codes::ValidationCode;
use crate::ids::ClientOrderId;
use crate::ids::SymbolId;
use crate::instrument::{Instrument, InstrumentTable};
use crate::num::{NumError, Price, Qty};
use crate::order::{OrderType, Side, TimeInForce};

/// An order request as decoded at the edge; numbers are still their decimal text
/// (a JSON number's literal text or a JSON string).
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderRequest<'a> {
    pub symbol: &'a str,
    pub side: &'a str,
    /// Defaults to LIMIT when a price is given, MARKET otherwise.
    pub order_type: Option<&'a str>,
    /// Defaults to GTC for LIMIT and IOC for MARKET.
    pub time_in_force: Option<&'a str>,
    pub post_only: bool,
    pub quantity: &'a str,
    pub price: Option<&'a str>,
    pub client_order_id: Option<&'a str>,
}

/// A request that passed every stage-1 check, in fixed point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatedOrder {
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub quantity: Qty,
    /// Present for LIMIT, absent for MARKET.
    pub price: Option<Price>,
    pub client_order_id: Option<ClientOrderId>,
}

/// A refused request: stable code, offending JSON field, human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub code: ValidationCode,
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.code.as_str(),
            self.message,
            self.field
        )
    }
}

impl std::error::Error for ValidationError {}

fn fail(code: ValidationCode, field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        code,
        field,
        message: message.into(),
    }
}

/// Validates a request. See [`ValidationCode`] for every refusal.
pub fn validate(
    table: &InstrumentTable,
    req: &OrderRequest<'_>,
) -> Result<ValidatedOrder, ValidationError> {
    let ins = table.lookup(req.symbol).ok_or_else(|| {
        fail(
            ValidationCode::UnknownSymbol,
            "symbol",
            format!("unknown symbol '{}'", req.symbol),
        )
    })?;
    let side = Side::parse(req.side).ok_or_else(|| {
        fail(
            ValidationCode::InvalidSide,
            "side",
            "side must be BUY or SELL",
        )
    })?;
    let order_type = match req.order_type {
        Some(t) => OrderType::parse(t).ok_or_else(|| {
            fail(
                ValidationCode::InvalidOrderType,
                "orderType",
                "orderType must be MARKET or LIMIT",
            )
        })?,
        None if req.price.is_some() => OrderType::Limit,
        None => OrderType::Market,
    };
    let tif = match req.time_in_force {
        Some(t) => TimeInForce::parse(t).ok_or_else(|| {
            fail(
                ValidationCode::InvalidTimeInForce,
                "timeInForce",
                "timeInForce must be GTC, IOC or FOK",
            )
        })?,
        None if order_type == OrderType::Market => TimeInForce::Ioc,
        None => TimeInForce::Gtc,
    };
    if order_type == OrderType::Market && tif == TimeInForce::Gtc {
        return Err(fail(
            ValidationCode::InvalidTimeInForce,
            "timeInForce",
            "a MARKET order cannot rest: use IOC or FOK",
        ));
    }
    if req.post_only && (order_type == OrderType::Market || tif != TimeInForce::Gtc) {
        return Err(fail(
            ValidationCode::PostOnlyNotAllowed,
            "postOnly",
            "postOnly needs a LIMIT GTC order",
        ));
    }
    let quantity = parse_qty(ins, req.quantity)?;
    let price = match (order_type, req.price) {
        (OrderType::Limit, Some(text)) => Some(parse_price(ins, text)?),
        (OrderType::Limit, None) => {
            return Err(fail(
                ValidationCode::PriceRequired,
                "price",
                "a LIMIT order needs a price",
            ));
        }
        (OrderType::Market, Some(_)) => {
            return Err(fail(
                ValidationCode::PriceNotAllowed,
                "price",
                "a MARKET order takes no price",
            ));
        }
        (OrderType::Market, None) => None,
    };
    let notional_price = price.unwrap_or(ins.reference_price);
    if ins.notional(notional_price, quantity) < ins.min_notional {
        return Err(fail(
            ValidationCode::BelowMinNotional,
            "quantity",
            format!(
                "notional below the minimum of {} {}",
                ins.min_notional.to_decimal_string(),
                ins.quote
            ),
        ));
    }
    let client_order_id = match req.client_order_id {
        Some(c) => Some(ClientOrderId::new(c).map_err(|e| {
            fail(
                ValidationCode::InvalidClientOrderId,
                "clientOrderId",
                format!("clientOrderId {e}"),
            )
        })?),
        None => None,
    };
    Ok(ValidatedOrder {
        symbol: ins.id,
        side,
        order_type,
        time_in_force: tif,
        post_only: req.post_only,
        quantity,
        price,
        client_order_id,
    })
}

/// Parses and checks a quantity for `ins` (also used by amend).
pub fn parse_qty(ins: &Instrument, text: &str) -> Result<Qty, ValidationError> {
    let q = ins.parse_qty(text).map_err(|e| {
        num_error(
            e,
            "quantity",
            ValidationCode::InvalidQuantity,
            ValidationCode::QuantityNotOnLot,
            ins.qty_decimals,
        )
    })?;
    if q.0 <= 0 {
        return Err(fail(
            ValidationCode::InvalidQuantity,
            "quantity",
            "quantity must be positive",
        ));
    }
    if q.0 % ins.lot != 0 {
        return Err(fail(
            ValidationCode::QuantityNotOnLot,
            "quantity",
            format!(
                "quantity must be a multiple of the lot size {}",
                ins.format_qty(Qty(ins.lot))
            ),
        ));
    }
    if q < ins.min_qty {
        return Err(fail(
            ValidationCode::QuantityBelowMin,
            "quantity",
            format!(
                "quantity below the minimum of {}",
                ins.format_qty(ins.min_qty)
            ),
        ));
    }
    if q > ins.max_qty {
        return Err(fail(
            ValidationCode::QuantityAboveMax,
            "quantity",
            format!(
                "quantity above the maximum of {}",
                ins.format_qty(ins.max_qty)
            ),
        ));
    }
    Ok(q)
}

/// Parses and checks a limit price for `ins` (also used by amend).
pub fn parse_price(ins: &Instrument, text: &str) -> Result<Price, ValidationError> {
    let p = ins.parse_price(text).map_err(|e| {
        num_error(
            e,
            "price",
            ValidationCode::InvalidPrice,
            ValidationCode::PriceNotOnTick,
            ins.price_decimals,
        )
    })?;
    if p.0 <= 0 {
        return Err(fail(
            ValidationCode::InvalidPrice,
            "price",
            "price must be positive",
        ));
    }
    if p.0 % ins.tick != 0 {
        return Err(fail(
            ValidationCode::PriceNotOnTick,
            "price",
            format!(
                "price must be a multiple of the tick size {}",
                ins.format_price(Price(ins.tick))
            ),
        ));
    }
    Ok(p)
}

fn num_error(
    e: NumError,
    field: &'static str,
    invalid: ValidationCode,
    precision: ValidationCode,
    decimals: u8,
) -> ValidationError {
    match e {
        NumError::TooManyDecimals(_) => fail(
            precision,
            field,
            format!("{field} has more than {decimals} decimals"),
        ),
        NumError::Negative => fail(invalid, field, format!("{field} must be positive")),
        NumError::Overflow => fail(invalid, field, format!("{field} is too large")),
        NumError::Empty | NumError::Invalid => {
            fail(invalid, field, format!("{field} is not a decimal number"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(qty: &'a str, price: Option<&'a str>) -> OrderRequest<'a> {
        OrderRequest {
            symbol: "BTC/USD",
            side: "BUY",
            order_type: None,
            quantity: qty,
            price,
            ..Default::default()
        }
    }

    fn code(r: Result<ValidatedOrder, ValidationError>) -> (&'static str, &'static str) {
        let e = r.expect_err("should be refused");
        (e.code.as_str(), e.field)
    }

    #[test]
    fn accepts_the_seed_order() {
        let t = InstrumentTable::demo();
        let mut r = req("0.1", Some("45000"));
        r.order_type = Some("LIMIT");
        let v = validate(&t, &r).unwrap();
        assert_eq!(
            (v.quantity, v.price, v.time_in_force),
            (Qty(1000), Some(Price(4_500_000)), TimeInForce::Gtc)
        );
        let m = validate(&t, &req("0.1", None)).unwrap();
        assert_eq!(
            (m.order_type, m.time_in_force),
            (OrderType::Market, TimeInForce::Ioc)
        );
    }

    #[test]
    fn every_code_with_its_field() {
        let t = InstrumentTable::demo();
        let v = |r: OrderRequest<'_>| code(validate(&t, &r));
        assert_eq!(
            v(OrderRequest {
                symbol: "DOGE/USD",
                ..req("1", Some("1"))
            }),
            ("UNKNOWN_SYMBOL", "symbol")
        );
        assert_eq!(
            v(OrderRequest {
                side: "HOLD",
                ..req("1", Some("1"))
            }),
            ("INVALID_SIDE", "side")
        );
        assert_eq!(
            v(OrderRequest {
                order_type: Some("STOP"),
                ..req("1", Some("1"))
            }),
            ("INVALID_ORDER_TYPE", "orderType")
        );
        assert_eq!(
            v(OrderRequest {
                time_in_force: Some("DAY"),
                ..req("1", Some("45000"))
            }),
            ("INVALID_TIME_IN_FORCE", "timeInForce")
        );
        assert_eq!(
            v(OrderRequest {
                time_in_force: Some("GTC"),
                ..req("1", None)
            }),
            ("INVALID_TIME_IN_FORCE", "timeInForce")
        );
        assert_eq!(v(req("0", Some("45000"))), ("INVALID_QUANTITY", "quantity"));
        assert_eq!(
            v(req("-1", Some("45000"))),
            ("INVALID_QUANTITY", "quantity")
        );
        assert_eq!(v(req("x", Some("45000"))), ("INVALID_QUANTITY", "quantity"));
        assert_eq!(
            v(req("0.00001", Some("45000"))),
            ("QUANTITY_NOT_ON_LOT", "quantity")
        );
        assert_eq!(
            v(req("101", Some("45000"))),
            ("QUANTITY_ABOVE_MAX", "quantity")
        );
        assert_eq!(v(req("0.1", Some("0"))), ("INVALID_PRICE", "price"));
        assert_eq!(
            v(req("0.1", Some("45000.001"))),
            ("PRICE_NOT_ON_TICK", "price")
        );
        assert_eq!(
            v(req("0.0001", Some("45000"))),
            ("BELOW_MIN_NOTIONAL", "quantity")
        );
        assert_eq!(
            v(OrderRequest {
                order_type: Some("LIMIT"),
                ..req("0.1", None)
            }),
            ("PRICE_REQUIRED", "price")
        );
        assert_eq!(
            v(OrderRequest {
                order_type: Some("MARKET"),
                ..req("0.1", Some("1"))
            }),
            ("PRICE_NOT_ALLOWED", "price")
        );
        assert_eq!(
            v(OrderRequest {
                post_only: true,
                ..req("0.1", None)
            }),
            ("POST_ONLY_NOT_ALLOWED", "postOnly")
        );
        assert_eq!(
            v(OrderRequest {
                client_order_id: Some(""),
                ..req("0.1", Some("45000"))
            }),
            ("INVALID_CLIENT_ORDER_ID", "clientOrderId")
        );
        let sol = OrderRequest {
            symbol: "SOL/USD",
            ..req("0.001", Some("100"))
        };
        assert_eq!(v(sol), ("QUANTITY_NOT_ON_LOT", "quantity"));
        let tiny = OrderRequest {
            symbol: "ETH-USD",
            ..req("0.001", Some("2500"))
        };
        assert_eq!(v(tiny), ("BELOW_MIN_NOTIONAL", "quantity"));
    }
}
