//! The document shapes of `orders` and `executions`, and their exact round trip.
//!
//! Integers (price and quantity units, nanosecond timestamps, versions) are stored as Int64 so
//! a GET served from MongoDB returns exactly the order the processor holds; the `display`
//! sub-document carries the same numbers as decimal strings for people and tools that read
//! the collection directly. Field names are camelCase like the REST and Kafka contracts.

use mongodb::bson::{Bson, Document, doc};
use oms_core::ports::IdemKey;
use oms_core::{
    AccountId, ExecutionReport, IdempotencyKey, InstrumentTable, Order, OrderId, OrderKey,
    OrderStatus, OrderType, Price, Qty, RejectCode, ShortStr, Side, SymbolId, TimeInForce,
};

use crate::Error;

/// The name stored in `symbol` (the instrument's `BASE/QUOTE`, or `#<id>` if unknown).
pub fn symbol_name(table: &InstrumentTable, id: SymbolId) -> String {
    table
        .try_get(id)
        .map_or_else(|| format!("#{}", id.0), |i| i.symbol.clone())
}

fn i64_of(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The `orders` document of `o` (its `_id` is the order id string).
pub fn order_doc(o: &Order, table: &InstrumentTable) -> Document {
    let id = o.order_id.to_string();
    let mut d = doc! {
        "_id": &id,
        "orderId": &id,
        "account": o.account.as_str(),
        "symbol": symbol_name(table, o.symbol),
        "symbolId": i32::from(o.symbol.0),
        "side": o.side.as_str(),
        "orderType": o.order_type.as_str(),
        "timeInForce": o.time_in_force.as_str(),
        "postOnly": o.post_only,
        "quantity": o.quantity.0,
        "status": o.status.as_str(),
        "filledQuantity": o.filled_quantity.0,
        "filledNotional": o.filled_notional.to_string(),
        "createdAt": i64_of(o.created_at),
        "updatedAt": i64_of(o.updated_at),
        "version": i64::from(o.version),
    };
    if let Some(p) = o.price {
        d.insert("price", p.0);
    }
    if let Some(c) = &o.client_order_id {
        d.insert("clientOrderId", c.as_str());
    }
    // Absent (not null) without a key: the (account, idempotencyKey) index is partial on
    // `$exists`, so orders without a key never collide.
    if let Some(k) = &o.idempotency_key {
        d.insert("idempotencyKey", k.as_str());
    }
    if let Some(r) = o.reject_reason {
        d.insert("rejectReason", r.as_str());
    }
    if let Some(ins) = table.try_get(o.symbol) {
        let mut disp = doc! {
            "quantity": ins.format_qty(o.quantity),
            "filledQuantity": ins.format_qty(o.filled_quantity),
        };
        if let Some(p) = o.price {
            disp.insert("price", ins.format_price(p));
        }
        if !o.filled_quantity.is_zero() {
            let avg = ins.avg_price(o.filled_notional, o.filled_quantity);
            disp.insert("avgFillPrice", ins.format_price(avg));
        }
        d.insert("display", disp);
    }
    d
}

fn bad(field: &str, d: &Document) -> Error {
    Error::Decode(format!(
        "order {:?}: field {field} missing or invalid",
        d.get("_id")
    ))
}

fn get_str<'a>(d: &'a Document, f: &str) -> Result<&'a str, Error> {
    d.get_str(f).map_err(|_| bad(f, d))
}

fn get_int(d: &Document, f: &str) -> Result<i64, Error> {
    match d.get(f) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        _ => Err(bad(f, d)),
    }
}

fn opt_str<'a>(d: &'a Document, f: &str) -> Option<&'a str> {
    d.get_str(f).ok()
}

/// Rebuilds the [`Order`] stored in `d`.
pub fn order_from_doc(d: &Document) -> Result<Order, Error> {
    let order_id: OrderId = get_str(d, "_id")?.parse().map_err(|_| bad("_id", d))?;
    let symbol = u16::try_from(get_int(d, "symbolId")?).map_err(|_| bad("symbolId", d))?;
    Ok(Order {
        order_id,
        client_order_id: match opt_str(d, "clientOrderId") {
            Some(s) => Some(ShortStr::new(s).map_err(|_| bad("clientOrderId", d))?),
            None => None,
        },
        account: AccountId::new(get_str(d, "account")?).map_err(|_| bad("account", d))?,
        symbol: SymbolId(symbol),
        side: Side::parse(get_str(d, "side")?).ok_or_else(|| bad("side", d))?,
        order_type: OrderType::parse(get_str(d, "orderType")?)
            .ok_or_else(|| bad("orderType", d))?,
        time_in_force: TimeInForce::parse(get_str(d, "timeInForce")?)
            .ok_or_else(|| bad("timeInForce", d))?,
        post_only: d.get_bool("postOnly").map_err(|_| bad("postOnly", d))?,
        quantity: Qty(get_int(d, "quantity")?),
        price: match d.get("price") {
            None | Some(Bson::Null) => None,
            Some(_) => Some(Price(get_int(d, "price")?)),
        },
        status: OrderStatus::parse(get_str(d, "status")?).ok_or_else(|| bad("status", d))?,
        filled_quantity: Qty(get_int(d, "filledQuantity")?),
        filled_notional: get_str(d, "filledNotional")?
            .parse()
            .map_err(|_| bad("filledNotional", d))?,
        created_at: u64::try_from(get_int(d, "createdAt")?).map_err(|_| bad("createdAt", d))?,
        updated_at: u64::try_from(get_int(d, "updatedAt")?).map_err(|_| bad("updatedAt", d))?,
        version: u32::try_from(get_int(d, "version")?).map_err(|_| bad("version", d))?,
        idempotency_key: match opt_str(d, "idempotencyKey") {
            Some(s) => Some(OrderKey::from(
                IdempotencyKey::new(s).map_err(|_| bad("idempotencyKey", d))?,
            )),
            None => None,
        },
        reject_reason: match opt_str(d, "rejectReason") {
            Some(s) => Some(RejectCode::parse(s).ok_or_else(|| bad("rejectReason", d))?),
            None => None,
        },
    })
}

/// The filter that finds the order placed with `key`.
pub fn idempotency_filter(key: &IdemKey) -> Document {
    doc! { "account": key.account.as_str(), "idempotencyKey": key.key.as_str() }
}

/// The `executions` document of `e` (its `_id` is the exec id).
pub fn execution_doc(e: &ExecutionReport, table: &InstrumentTable) -> Document {
    let mut d = doc! {
        "_id": i64_of(e.exec_id),
        "execId": i64_of(e.exec_id),
        "tradeId": i64_of(e.trade_id),
        "orderId": e.order_id.to_string(),
        "account": e.account.as_str(),
        "symbol": symbol_name(table, e.symbol),
        "symbolId": i32::from(e.symbol.0),
        "side": e.side.as_str(),
        "lastQty": e.last_qty.0,
        "lastPx": e.last_px.0,
        "cumQty": e.cum_qty.0,
        "leavesQty": e.leaves_qty.0,
        "avgPx": e.avg_px.0,
        "liquidity": e.liquidity.as_str(),
        "ts": i64_of(e.ts),
    };
    if let Some(ins) = table.try_get(e.symbol) {
        d.insert(
            "display",
            doc! {
                "lastQty": ins.format_qty(e.last_qty),
                "lastPx": ins.format_price(e.last_px),
                "cumQty": ins.format_qty(e.cum_qty),
                "leavesQty": ins.format_qty(e.leaves_qty),
                "avgPx": ins.format_price(e.avg_px),
            },
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Order {
        Order {
            order_id: "0190f5b2-8c3e-7abc-9def-0123456789ab".parse().unwrap(),
            client_order_id: Some(ShortStr::new("my-1").unwrap()),
            account: AccountId::new("acct-1").unwrap(),
            symbol: SymbolId(0),
            side: Side::Sell,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Ioc,
            post_only: true,
            quantity: Qty(1_000),
            price: Some(Price(4_500_000)),
            status: OrderStatus::PartiallyFilled,
            filled_quantity: Qty(400),
            filled_notional: 400 * 4_500_000,
            created_at: 1_700_000_000_000_000_001,
            updated_at: 1_700_000_000_000_000_002,
            version: 4,
            idempotency_key: Some(IdempotencyKey::new("k-1").unwrap().into()),
            reject_reason: Some(RejectCode::SelfTradePrevented),
        }
    }

    #[test]
    fn order_documents_round_trip_exactly() {
        let t = InstrumentTable::demo();
        let full = sample();
        let d = order_doc(&full, &t);
        assert_eq!(
            d.get_str("_id").unwrap(),
            "0190f5b2-8c3e-7abc-9def-0123456789ab"
        );
        assert_eq!(d.get_str("symbol").unwrap(), t.get(SymbolId(0)).symbol);
        assert!(d.get_document("display").is_ok());
        assert_eq!(order_from_doc(&d).unwrap(), full);

        let bare = Order {
            client_order_id: None,
            order_type: OrderType::Market,
            price: None,
            idempotency_key: None,
            reject_reason: None,
            symbol: SymbolId(999),
            ..sample()
        };
        let d = order_doc(&bare, &t);
        assert!(!d.contains_key("idempotencyKey") && !d.contains_key("price"));
        assert_eq!(d.get_str("symbol").unwrap(), "#999");
        assert_eq!(order_from_doc(&d).unwrap(), bare);
    }

    #[test]
    fn undecodable_documents_are_errors() {
        let mut d = order_doc(&sample(), &InstrumentTable::demo());
        d.insert("status", "SOMETHING");
        assert!(order_from_doc(&d).is_err());
        d.remove("status");
        assert!(order_from_doc(&d).is_err());
    }
}
