//! EventPublisher against the real broker: topics, keys, JSON and headers.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use oms_core::codes::RejectCode;
use oms_core::event::{
    Candle, CandleInterval, Event, ExecutionReport, Liquidity, RiskEvent, Trade,
};
use oms_core::ids::{OrderId, SymbolId};
use oms_core::instrument::InstrumentTable;
use oms_core::num::{Price, Qty};
use oms_core::order::{Order, OrderStatus, OrderType, Side, TimeInForce};
use oms_kafka::{EventPublisher, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TS: u64 = 1_772_368_496_789_000_000; // 2026-03-01T12:34:56.789Z

fn order() -> Order {
    Order {
        order_id: OrderId(0x0190_0000_0000_7000_8000_0000_0000_0001),
        client_order_id: Some(oms_core::ClientOrderId::new("c-1").unwrap()),
        account: acct(7),
        symbol: SymbolId(0),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        quantity: Qty(5000),
        price: Some(Price(4_500_000)),
        status: OrderStatus::PartiallyFilled,
        filled_quantity: Qty(1000),
        filled_notional: 4_500_000 * 1000,
        created_at: TS,
        updated_at: TS + 1_000_000,
        version: 3,
        idempotency_key: Some(oms_core::IdempotencyKey::new("k-1").unwrap().into()),
        reject_reason: None,
    }
}

fn events() -> Vec<Event> {
    let o = order();
    vec![
        Event::Execution(ExecutionReport {
            exec_id: 11,
            trade_id: 5,
            order_id: o.order_id,
            account: o.account,
            symbol: SymbolId(0),
            side: Side::Buy,
            last_qty: Qty(1000),
            last_px: Price(4_500_000),
            cum_qty: Qty(1000),
            leaves_qty: Qty(4000),
            avg_px: Price(4_500_000),
            liquidity: Liquidity::Maker,
            ts: TS,
        }),
        Event::OrderUpdate {
            order: Box::new(o.clone()),
            correlation_id: Some(oms_core::ShortStr::new("corr-42").unwrap()),
        },
        Event::Trade(Trade {
            trade_id: 5,
            symbol: SymbolId(1),
            price: Price(250_000),
            qty: Qty(1500),
            aggressor: Side::Sell,
            maker_order_id: o.order_id,
            taker_order_id: OrderId(9),
            ts: TS,
        }),
        Event::Candle(Candle {
            symbol: SymbolId(2),
            interval: CandleInterval::M1,
            open_time: TS - 56_789_000_000,
            open: Price(100_000),
            high: Price(100_500),
            low: Price(99_000),
            close: Price(100_100),
            volume: Qty(12_345),
            trades: 4,
        }),
        Event::Risk(RiskEvent {
            account: acct(8),
            order_id: OrderId(10),
            symbol: SymbolId(0),
            code: RejectCode::InsufficientMargin,
            ts: TS,
            correlation_id: Some(oms_core::ShortStr::new("corr-risk").unwrap()),
        }),
        Event::CommandRejected {
            order_id: OrderId(12),
            account: acct(9),
            code: RejectCode::InsufficientMargin,
            ts: TS,
            correlation_id: Some(oms_core::ShortStr::new("corr-cancel").unwrap()),
        },
    ]
}

struct Got {
    key: String,
    json: Value,
    headers: HashMap<String, String>,
}

fn consume_all(cfg: &KafkaConfig, topic: &str, n: usize) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{topic}-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while out.len() < n {
        assert!(Instant::now() < end, "{topic}: got {} of {n}", out.len());
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Got {
            key: String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
            json: serde_json::from_slice(m.payload().unwrap()).unwrap(),
            headers,
        });
    }
    out
}

#[test]
fn a_traced_orders_events_carry_its_traceparent() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "events-traced", 2);
    let publisher = EventPublisher::new(&cfg, Arc::new(InstrumentTable::demo())).unwrap();
    let tp = *b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let evs = events();
    publisher.publish_traced(&evs, Some(tp));
    assert!(
        publisher.wait_idle(Duration::from_secs(15)),
        "events not acknowledged"
    );
    let t = cfg.topics();
    let ex = consume_all(&cfg, &t.executions, 1);
    assert_eq!(
        ex[0].headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    let ou = consume_all(&cfg, &t.order_updates, 2);
    assert!(
        ou.iter()
            .all(|g| g.headers.get("traceparent").map(String::as_str)
                == Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    );
}

#[test]
fn events_land_on_their_topics_with_keys_json_and_headers() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "events", 2);
    let table = Arc::new(InstrumentTable::demo());
    let publisher = EventPublisher::new(&cfg, table).unwrap();
    publisher.publish(&events());
    assert!(
        publisher.wait_idle(Duration::from_secs(15)),
        "events not acknowledged"
    );
    let counters = publisher.counters();
    assert_eq!(
        counters.produced.load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    assert_eq!(
        counters
            .delivery_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let t = cfg.topics();

    let ex = consume_all(&cfg, &t.executions, 1);
    assert_eq!(ex[0].key, "acct-7");
    let j = &ex[0].json;
    assert_eq!(j["eventType"], "EXECUTION");
    assert_eq!(j["orderId"], "01900000-0000-7000-8000-000000000001");
    assert_eq!(j["execId"], 11);
    assert_eq!(j["tradeId"], 5);
    assert_eq!(j["symbol"], "BTC/USD");
    assert_eq!(j["side"], "BUY");
    assert_eq!(j["lastQty"], "0.1000");
    assert_eq!(j["lastPx"], "45000.00");
    assert_eq!(j["cumQty"], "0.1000");
    assert_eq!(j["leavesQty"], "0.4000");
    assert_eq!(j["avgPx"], "45000.00");
    assert_eq!(j["liquidity"], "MAKER");
    assert_eq!(j["timestamp"], "2026-03-01T12:34:56.789000Z");
    assert_eq!(ex[0].headers["schema-version"], "1");
    assert_eq!(ex[0].headers["content-type"], "application/json");
    assert!(
        !ex[0].headers.contains_key("traceparent"),
        "untraced: no header"
    );

    let mut ou = consume_all(&cfg, &t.order_updates, 2);
    ou.sort_by_key(|g| g.key.clone());
    assert_eq!(ou[0].key, "acct-7");
    assert_eq!(ou[0].headers["correlation-id"], "corr-42");
    let o = &ou[0].json;
    assert_eq!(o["eventType"], "ORDER_UPDATE");
    let o = &o["order"];
    assert_eq!(o["orderId"], "01900000-0000-7000-8000-000000000001");
    assert_eq!(o["clientOrderId"], "c-1");
    assert_eq!(o["account"], "acct-7");
    assert_eq!(o["orderType"], "LIMIT");
    assert_eq!(o["timeInForce"], "GTC");
    assert_eq!(o["postOnly"], false);
    assert_eq!(o["quantity"], "0.5000");
    assert_eq!(o["price"], "45000.00");
    assert_eq!(o["status"], "PARTIALLY_FILLED");
    assert_eq!(o["filledQuantity"], "0.1000");
    assert_eq!(o["avgFillPrice"], "45000.00");
    assert_eq!(o["createdAt"], "2026-03-01T12:34:56.789000Z");
    assert_eq!(o["updatedAt"], "2026-03-01T12:34:56.790000Z");
    assert_eq!(o["version"], 3);
    assert_eq!(o["idempotencyKey"], "k-1");
    assert_eq!(o["rejectReason"], Value::Null);
    assert_eq!(ou[1].key, "acct-9");
    assert_eq!(ou[1].json["eventType"], "COMMAND_REJECTED");
    assert_eq!(ou[1].json["reason"], "INSUFFICIENT_MARGIN");
    assert_eq!(ou[1].headers["correlation-id"], "corr-cancel");

    let mut pr = consume_all(&cfg, &t.prices, 2);
    pr.sort_by_key(|g| g.key.clone());
    assert_eq!(pr[0].key, "ETH/USD");
    assert_eq!(pr[0].json["eventType"], "TRADE");
    assert_eq!(pr[0].json["price"], "2500.00");
    assert_eq!(pr[0].json["quantity"], "1.500");
    assert_eq!(pr[0].json["aggressorSide"], "SELL");
    assert_eq!(pr[1].key, "SOL/USD");
    assert_eq!(pr[1].json["eventType"], "CANDLE");
    assert_eq!(pr[1].json["interval"], "1m");
    assert_eq!(pr[1].json["openTime"], "2026-03-01T12:34:00.000000Z");
    assert_eq!(pr[1].json["close"], "100.100");
    assert_eq!(pr[1].json["volume"], "123.45");
    assert_eq!(pr[1].json["trades"], 4);

    let rk = consume_all(&cfg, &t.risk_events, 1);
    assert_eq!(rk[0].key, "acct-8");
    assert_eq!(rk[0].json["eventType"], "RISK_REJECTED");
    assert_eq!(rk[0].json["reason"], "INSUFFICIENT_MARGIN");
    assert_eq!(rk[0].headers["correlation-id"], "corr-risk");
    assert_eq!(rk[0].json["symbol"], "BTC/USD");
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    // No broker needed: nothing is acknowledged, the queue of 4 fills, publish never blocks.
    let mut cfg = KafkaConfig::new("127.0.0.1:1", prefix("full"));
    cfg.event_queue_capacity = 4;
    let publisher = EventPublisher::new(&cfg, Arc::new(InstrumentTable::demo())).unwrap();
    let evs = events();
    let start = Instant::now();
    for _ in 0..100 {
        publisher.publish(&evs);
    }
    assert!(start.elapsed() < Duration::from_secs(1), "publish blocked");
    let c = publisher.counters();
    let r = std::sync::atomic::Ordering::Relaxed;
    assert!(c.queue_full.load(r) > 0);
    assert_eq!(c.enqueued.load(r) + c.queue_full.load(r), 600);
}
