//! JSON rendering of responses, written by hand into a reused `String`.
//!
//! Field order and number formatting are fixed, so the same order renders to the same
//! bytes: an idempotent replay rebuilt from the log after a restart is byte-identical to the
//! original answer.

use std::fmt::Write as _;

use oms_core::command::PlaceOrder;
use oms_core::{InstrumentTable, Order, OrderStatus, Qty, RiskDecision};

use super::error::ApiError;

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC with microseconds, quoted, from nanoseconds since the epoch.
pub fn timestamp(out: &mut String, nanos: u64) {
    out.push('"');
    let _ = oms_core::time::write_rfc3339(out, nanos);
    out.push('"');
}

/// The order as a JSON object (docs/api.md "The order object").
pub fn order(out: &mut String, t: &InstrumentTable, o: &Order) {
    let ins = t.get(o.symbol);
    out.push_str("{\"orderId\":\"");
    let _ = write!(out, "{}", o.order_id);
    out.push_str("\",\"clientOrderId\":");
    match &o.client_order_id {
        Some(c) => json_str(out, c.as_str()),
        None => out.push_str("null"),
    }
    out.push_str(",\"account\":");
    json_str(out, o.account.as_str());
    out.push_str(",\"symbol\":");
    json_str(out, &ins.symbol);
    let _ = write!(
        out,
        ",\"side\":\"{}\",\"orderType\":\"{}\",\"timeInForce\":\"{}\",\"postOnly\":{},\"quantity\":\"",
        o.side.as_str(),
        o.order_type.as_str(),
        o.time_in_force.as_str(),
        o.post_only
    );
    out.push_str(&ins.format_qty(o.quantity));
    out.push_str("\",\"price\":");
    match o.price {
        Some(p) => {
            out.push('"');
            out.push_str(&ins.format_price(p));
            out.push('"');
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"status\":\"{}\",\"filledQuantity\":\"",
        o.status.as_str()
    );
    out.push_str(&ins.format_qty(o.filled_quantity));
    out.push_str("\",\"avgFillPrice\":");
    if o.filled_quantity > Qty::ZERO {
        out.push('"');
        out.push_str(&ins.format_price(ins.avg_price(o.filled_notional, o.filled_quantity)));
        out.push('"');
    } else {
        out.push_str("null");
    }
    out.push_str(",\"createdAt\":");
    timestamp(out, o.created_at);
    out.push_str(",\"updatedAt\":");
    timestamp(out, o.updated_at);
    let _ = write!(out, ",\"version\":{},\"idempotencyKey\":", o.version);
    match &o.idempotency_key {
        Some(k) => json_str(out, k.as_str()),
        None => out.push_str("null"),
    }
    out.push_str(",\"rejectReason\":");
    match o.reject_reason {
        Some(r) => {
            out.push('"');
            out.push_str(r.as_str());
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"timestamp\":");
    timestamp(out, o.updated_at);
    out.push('}');
}

/// The order as acknowledged by the publish stage: ACCEPTED (or REJECTED by risk), nothing
/// filled yet, version 1. A pure function of the logged command.
pub fn acked_order(cmd: &PlaceOrder) -> Order {
    let (status, reject_reason) = match cmd.risk {
        RiskDecision::Rejected(code) => (OrderStatus::Rejected, Some(code)),
        _ => (OrderStatus::Accepted, None),
    };
    Order {
        order_id: cmd.order_id,
        client_order_id: cmd.order.client_order_id,
        account: cmd.account,
        symbol: cmd.order.symbol,
        side: cmd.order.side,
        order_type: cmd.order.order_type,
        time_in_force: cmd.order.time_in_force,
        post_only: cmd.order.post_only,
        quantity: cmd.order.quantity,
        price: cmd.order.price,
        status,
        filled_quantity: Qty::ZERO,
        filled_notional: 0,
        created_at: cmd.ts,
        updated_at: cmd.ts,
        version: 1,
        idempotency_key: cmd.idempotency_key,
        reject_reason,
    }
}

/// The HTTP status and body acknowledging a logged place command.
pub fn place_ack(t: &InstrumentTable, cmd: &PlaceOrder, correlation_id: &str) -> (u16, Vec<u8>) {
    let o = acked_order(cmd);
    let mut s = String::with_capacity(640);
    match cmd.risk {
        RiskDecision::Rejected(code) => {
            let e = ApiError::reject(code);
            error_body(&mut s, &e, correlation_id, Some((t, &o)));
            (e.status, s.into_bytes())
        }
        _ => {
            order(&mut s, t, &o);
            (201, s.into_bytes())
        }
    }
}

/// `{"error":{…},"correlationId":…[,"order":{…}]}`.
pub fn error_body(
    out: &mut String,
    e: &ApiError,
    correlation_id: &str,
    order_of: Option<(&InstrumentTable, &Order)>,
) {
    out.push_str("{\"error\":{\"code\":\"");
    out.push_str(e.code);
    out.push_str("\",\"message\":");
    json_str(out, &e.message);
    out.push_str(",\"field\":");
    match e.field.as_deref() {
        Some(f) => json_str(out, f),
        None => out.push_str("null"),
    }
    out.push_str("},\"correlationId\":");
    json_str(out, correlation_id);
    if let Some((t, o)) = order_of {
        out.push_str(",\"order\":");
        order(out, t, o);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_micros() {
        let mut s = String::new();
        timestamp(&mut s, 1_700_000_000_123_456_789);
        assert_eq!(s, "\"2023-11-14T22:13:20.123456Z\"");
        s.clear();
        timestamp(&mut s, 0);
        assert_eq!(s, "\"1970-01-01T00:00:00.000000Z\"");
        s.clear();
        timestamp(&mut s, 951_782_400_000_000_000); // 2000-02-29
        assert_eq!(s, "\"2000-02-29T00:00:00.000000Z\"");
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c");
        assert_eq!(s, r#""a\"b\\c""#);
    }
}
