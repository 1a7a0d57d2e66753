//! Event envelopes: `{"eventType":"…", …fields of the object…}` as the Kafka event topics carry
//! them (docs/kafka.md "Event JSON"). The objects inside are the same types REST shows.

use oms_core::event::RiskEvent;
use oms_core::{AccountId, Instrument, OrderId, RejectCode};
use serde::Serialize;

use crate::order::OrderJson;
use crate::text::{Id, Timestamp};

/// An object with its `eventType` tag first.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tagged<T> {
    pub event_type: &'static str,
    #[serde(flatten)]
    pub data: T,
}

impl<T: Serialize> Tagged<T> {
    pub fn new(event_type: &'static str, data: T) -> Self {
        Tagged { event_type, data }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        crate::to_vec(self, 512)
    }
}

/// `ORDER_UPDATE`: the order after a change.
#[derive(Serialize)]
pub struct OrderUpdateJson<'a> {
    pub order: OrderJson<'a>,
}

/// `RISK_REJECTED`: pre-trade risk refused an order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskRejectedJson<'a> {
    pub account: &'a str,
    pub order_id: Id,
    pub symbol: &'a str,
    pub reason: &'static str,
    pub timestamp: Timestamp,
}

impl<'a> RiskRejectedJson<'a> {
    pub fn new(r: &'a RiskEvent, ins: &'a Instrument) -> Self {
        RiskRejectedJson {
            account: r.account.as_str(),
            order_id: Id(r.order_id),
            symbol: &ins.symbol,
            reason: r.code.as_str(),
            timestamp: Timestamp(r.ts),
        }
    }
}

/// `COMMAND_REJECTED`: a cancel or amend the processor could not apply.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRejectedJson<'a> {
    pub order_id: Id,
    pub account: &'a str,
    pub reason: &'static str,
    pub timestamp: Timestamp,
}

impl<'a> CommandRejectedJson<'a> {
    pub fn new(order_id: OrderId, account: &'a AccountId, code: RejectCode, ts: u64) -> Self {
        CommandRejectedJson {
            order_id: Id(order_id),
            account: account.as_str(),
            reason: code.as_str(),
            timestamp: Timestamp(ts),
        }
    }
}
