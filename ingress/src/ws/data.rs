//! The `data` of `/ws` messages and their envelope.
//!
//! `data` is the `oms-wire` JSON the rest of oms already publishes, so a client parses one
//! schema: orders are the REST order object (`GET /api/orders/{id}`), executions, trades and
//! candles the Kafka event objects (docs/kafka.md), book levels the REST book's level objects
//! and positions the REST position objects.

use std::fmt::Write as _;

use oms_core::{Event, InstrumentTable, Order, PositionView};
use oms_wire::{PositionJson, push_json_str as json_str, push_timestamp as timestamp};

/// Appends the REST order object.
pub fn order(s: &mut String, table: &InstrumentTable, o: &Order) {
    s.push_str(std::str::from_utf8(&oms_wire::OrderJson::rest(table, o)).unwrap_or("null"));
}

/// Appends the Kafka event object of an execution, trade or candle (nothing for others).
pub fn event(s: &mut String, table: &InstrumentTable, e: &Event) {
    if let Some(m) = oms_kafka::event_json(e, table) {
        s.push_str(std::str::from_utf8(&m.json).unwrap_or("null"));
    }
}

/// Appends `[{symbol, quantity, avgEntryPrice, realizedPnl, unrealizedPnl}, …]`, the
/// elements of `GET /api/positions`.
pub fn positions(s: &mut String, table: &InstrumentTable, ps: &[PositionView]) {
    let items: Vec<PositionJson<'_>> = ps
        .iter()
        .filter_map(|p| table.try_get(p.symbol).map(|ins| PositionJson::new(p, ins)))
        .collect();
    s.push_str(&serde_json::to_string(&items).expect("wire types always serialize"));
}

/// Message type of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Update,
    Heartbeat,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Update => "update",
            Kind::Heartbeat => "heartbeat",
        }
    }
}

/// What names a stream in its envelope: channel, symbol, and `depth` or `interval`.
pub struct Head<'a> {
    pub channel: &'static str,
    pub symbol: Option<&'a str>,
    pub depth: Option<u32>,
    pub interval: Option<&'static str>,
}

/// `{"channel":…,"symbol":…[,"depth"|"interval"],"type":…,"seq":…,"ts":…,"data":…}`.
pub fn envelope(head: &Head<'_>, kind: Kind, seq: u64, ts_nanos: u64, data: &str) -> String {
    let mut s = String::with_capacity(128 + data.len());
    s.push_str("{\"channel\":\"");
    s.push_str(head.channel);
    s.push_str("\",\"symbol\":");
    match head.symbol {
        Some(sym) => json_str(&mut s, sym),
        None => s.push_str("null"),
    }
    if let Some(d) = head.depth {
        let _ = write!(s, ",\"depth\":{d}");
    }
    if let Some(i) = head.interval {
        let _ = write!(s, ",\"interval\":\"{i}\"");
    }
    let _ = write!(s, ",\"type\":\"{}\",\"seq\":{seq},\"ts\":", kind.as_str());
    timestamp(&mut s, ts_nanos);
    s.push_str(",\"data\":");
    s.push_str(data);
    s.push('}');
    s
}

/// Wall-clock nanoseconds since the epoch (envelope `ts`), from the binary's one wall clock.
pub fn now_nanos() -> u64 {
    use oms_core::ids::Clock as _;
    crate::clock::SystemClock.now_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_json_with_every_field() {
        let head = Head {
            channel: "book",
            symbol: Some("BTC/USD"),
            depth: Some(10),
            interval: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&envelope(&head, Kind::Update, 7, 0, "{\"bids\":[]}")).unwrap();
        assert_eq!(v["channel"], "book");
        assert_eq!(v["symbol"], "BTC/USD");
        assert_eq!(v["depth"], 10);
        assert_eq!(v["type"], "update");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["data"]["bids"], serde_json::json!([]));
    }
}
