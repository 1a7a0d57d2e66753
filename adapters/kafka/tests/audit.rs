//! The `{prefix}audit` topic against the test broker: records keyed by account, JSON as
//! handed over, one account's records in order, and `create_topics` makes the topic.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use oms_kafka::AuditProducer;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

#[test]
fn audit_records_land_on_the_audit_topic_keyed_by_account_in_order() {
    let Some(b) = broker_or_skip() else { return };
    let cfg = setup(&b, "audit", 2);
    let audit = AuditProducer::new(&cfg).unwrap();
    assert_eq!(audit.topic(), cfg.topics().audit);
    for seq in 1..=6u64 {
        let account = if seq % 2 == 0 { "t-even" } else { "t-odd" };
        let json = serde_json::json!({
            "seq": seq, "node": "n1", "ts": 1_796_000_000_000_000_000u64 + seq,
            "account": account, "action": "POST /api/admin/halt", "status": 403,
            "code": "FORBIDDEN"
        });
        audit.send(account, json.to_string().as_bytes());
    }
    audit.flush(Duration::from_secs(15)).expect("flush");
    let counters = audit.counters();
    assert_eq!(
        counters
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    assert_eq!(
        counters.failed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}audit-check", cfg.prefix))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = cfg.topics().audit;
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut got: Vec<(String, Value)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while got.len() < 6 {
        assert!(Instant::now() < end, "got {} of 6 audit records", got.len());
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        got.push((
            String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
            serde_json::from_slice(m.payload().unwrap()).unwrap(),
        ));
    }
    for (key, json) in &got {
        assert_eq!(json["account"], key.as_str(), "keyed by account");
        assert_eq!(json["code"], "FORBIDDEN");
    }
    for account in ["t-even", "t-odd"] {
        let seqs: Vec<u64> = got
            .iter()
            .filter(|(k, _)| k == account)
            .map(|(_, j)| j["seq"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (1..=6)
            .filter(|s| (s % 2 == 0) == (account == "t-even"))
            .collect();
        assert_eq!(seqs, want, "{account}: its records in order");
    }
}
