//! The order object (docs/api.md "The order object"), the order page of `GET /api/orders`,
//! and the acknowledgement of a place command.
//!
//! Field order and number formatting are fixed, so the same order renders to the same bytes:
//! an idempotent replay rebuilt from the log after a restart is byte-identical to the
//! original answer.

use oms_core::command::PlaceOrder;
use oms_core::{Event, InstrumentTable, Order, OrderKey, OrderStatus, Qty, RiskDecision};
use serde::Serialize;

use crate::error::{ApiError, ErrorBody};
use crate::text::{Decimal, Id, Timestamp};

/// The order as REST, the `order-updates` topic and the `orders` WebSocket channel show it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson<'a> {
    pub order_id: Id,
    pub client_order_id: Option<&'a str>,
    pub account: &'a str,
    pub symbol: &'a str,
    pub side: &'static str,
    pub order_type: &'static str,
    pub time_in_force: &'static str,
    pub post_only: bool,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub status: &'static str,
    pub filled_quantity: Decimal,
    pub avg_fill_price: Option<Decimal>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u32,
    pub idempotency_key: Option<&'a str>,
    pub reject_reason: Option<&'static str>,
    /// REST only: the time the response describes (= `updatedAt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

impl<'a> OrderJson<'a> {
    /// The order without the REST-only `timestamp` (the event shape).
    pub fn new(t: &'a InstrumentTable, o: &'a Order) -> Self {
        let ins = t.get(o.symbol);
        OrderJson {
            order_id: Id(o.order_id),
            client_order_id: o.client_order_id.as_ref().map(|c| c.as_str()),
            account: o.account.as_str(),
            symbol: &ins.symbol,
            side: o.side.as_str(),
            order_type: o.order_type.as_str(),
            time_in_force: o.time_in_force.as_str(),
            post_only: o.post_only,
            quantity: Decimal::qty(ins, o.quantity),
            price: o.price.map(|p| Decimal::price(ins, p)),
            status: o.status.as_str(),
            filled_quantity: Decimal::qty(ins, o.filled_quantity),
            avg_fill_price: (o.filled_quantity > Qty::ZERO)
                .then(|| Decimal::price(ins, ins.avg_price(o.filled_notional, o.filled_quantity))),
            created_at: Timestamp(o.created_at),
            updated_at: Timestamp(o.updated_at),
            version: o.version,
            idempotency_key: o.idempotency_key.as_ref().map(|k| k.as_str()),
            reject_reason: o.reject_reason.map(|r| r.as_str()),
            timestamp: None,
        }
    }

    /// The REST shape: with `timestamp` = `updatedAt`.
    pub fn with_timestamp(mut self) -> Self {
        self.timestamp = Some(self.updated_at);
        self
    }

    /// REST bytes of one order.
    pub fn rest(t: &InstrumentTable, o: &Order) -> Vec<u8> {
        crate::to_vec(&OrderJson::new(t, o).with_timestamp(), 640)
    }
}

/// `GET /api/orders`: a page, newest first.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPageJson<'a> {
    pub orders: Vec<OrderJson<'a>>,
    pub next_cursor: Option<String>,
}

impl<'a> OrderPageJson<'a> {
    /// The page; `nextCursor` is set when the page is full.
    pub fn new(t: &'a InstrumentTable, page: &[&'a Order], limit: usize) -> Self {
        let next_cursor = match page.last() {
            Some(o) if page.len() == limit => Some(format!("{}_{}", o.created_at, o.order_id)),
            _ => None,
        };
        OrderPageJson {
            orders: page
                .iter()
                .map(|o| OrderJson::new(t, o).with_timestamp())
                .collect(),
            next_cursor,
        }
    }
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
        idempotency_key: cmd.idempotency_key.as_ref().map(OrderKey::from),
        reject_reason,
    }
}

/// The HTTP status and body acknowledging a logged place command: 201 with the order, or
/// 422 with the error and the REJECTED order. These bytes are what idempotency stores.
pub fn place_ack(t: &InstrumentTable, cmd: &PlaceOrder, correlation_id: &str) -> (u16, Vec<u8>) {
    let o = acked_order(cmd);
    match cmd.risk {
        RiskDecision::Rejected(code) => {
            let e = ApiError::reject(code);
            (
                e.status,
                crate::to_vec(&ErrorBody::new(&e, correlation_id, Some((t, &o))), 896),
            )
        }
        _ => (201, OrderJson::rest(t, &o)),
    }
}

/// `DELETE /api/orders` (cancel-all)'s answer: the ids of the orders it canceled.
#[derive(Serialize)]
pub struct CancelAllJson {
    pub canceled: Vec<Id>,
    pub count: usize,
}

impl CancelAllJson {
    /// From the events of an applied cancel-all: every order update to `CANCELED`.
    pub fn from_events(events: &[Event]) -> Self {
        let canceled: Vec<Id> = events
            .iter()
            .filter_map(|e| match e {
                Event::OrderUpdate { order, .. } if order.status == OrderStatus::Canceled => {
                    Some(Id(order.order_id))
                }
                _ => None,
            })
            .collect();
        CancelAllJson {
            count: canceled.len(),
            canceled,
        }
    }
}

/// `POST /api/admin/halt`'s answer.
#[derive(Serialize)]
pub struct HaltJson<'a> {
    pub scope: &'static str,
    pub account: Option<&'a str>,
    pub halted: bool,
}

#[cfg(test)]
mod tests {
    use oms_core::{
        AccountId, IdempotencyKey, OrderId, OrderRequest, RejectCode, command::CorrelationId,
        validate,
    };

    use super::*;

    fn place(risk: RiskDecision) -> (InstrumentTable, PlaceOrder) {
        let t = InstrumentTable::demo();
        let order = validate(
            &t,
            &OrderRequest {
                symbol: "BTC/USD",
                side: "BUY",
                quantity: "0.1",
                price: Some("45000"),
                ..Default::default()
            },
        )
        .unwrap();
        let cmd = PlaceOrder {
            order_id: OrderId(1),
            account: AccountId::new("acct-1").unwrap(),
            order,
            ts: 1_700_000_000_123_456_789,
            idempotency_key: Some(IdempotencyKey::new("k\"1").unwrap()),
            fingerprint: 7,
            correlation_id: CorrelationId::new("c-1").ok(),
            risk,
        };
        (t, cmd)
    }

    /// The exact bytes the hand-written renderer produced before this crate existed: stored
    /// idempotent answers and clients comparing bodies depend on them.
    #[test]
    fn acknowledgements_keep_their_documented_bytes() {
        let (t, cmd) = place(RiskDecision::Unchecked);
        let id = OrderId(1).to_string();
        let ts = "2023-11-14T22:13:20.123456Z";
        let order = format!(
            r#"{{"orderId":"{id}","clientOrderId":null,"account":"acct-1","symbol":"BTC/USD","side":"BUY","orderType":"LIMIT","timeInForce":"GTC","postOnly":false,"quantity":"0.1000","price":"45000.00","status":"ACCEPTED","filledQuantity":"0.0000","avgFillPrice":null,"createdAt":"{ts}","updatedAt":"{ts}","version":1,"idempotencyKey":"k\"1","rejectReason":null,"timestamp":"{ts}"}}"#
        );
        let (status, body) = place_ack(&t, &cmd, "c-1");
        assert_eq!(status, 201);
        assert_eq!(String::from_utf8(body).unwrap(), order);

        let (t, cmd) = place(RiskDecision::Rejected(RejectCode::InsufficientMargin));
        let (status, body) = place_ack(&t, &cmd, "c-1");
        assert_eq!(status, 422);
        let rejected = order.replace("\"ACCEPTED\"", "\"REJECTED\"").replace(
            "\"rejectReason\":null",
            "\"rejectReason\":\"INSUFFICIENT_MARGIN\"",
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!(
                r#"{{"error":{{"code":"INSUFFICIENT_MARGIN","message":"not enough available margin for this order","field":null}},"correlationId":"c-1","order":{rejected}}}"#
            )
        );
    }

    #[test]
    fn events_omit_the_rest_timestamp_and_pages_carry_a_cursor() {
        let (t, cmd) = place(RiskDecision::Unchecked);
        let o = acked_order(&cmd);
        let event = String::from_utf8(crate::to_vec(&OrderJson::new(&t, &o), 0)).unwrap();
        assert!(event.ends_with(r#""rejectReason":null}"#), "{event}");
        let page = crate::to_vec(&OrderPageJson::new(&t, &[&o], 1), 0);
        let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
        assert_eq!(v["nextCursor"], format!("{}_{}", o.created_at, o.order_id));
        let page = crate::to_vec(&OrderPageJson::new(&t, &[&o], 2), 0);
        let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
        assert!(v["nextCursor"].is_null());
    }
}
