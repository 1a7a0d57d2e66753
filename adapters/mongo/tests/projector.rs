//! The projector loop against a real MongoDB-wire server, including an outage: the server is
//! stopped mid-stream and restarted, and the projector catches up with nothing missing.

use crate::common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use oms_core::ports::{OrderQuery, OrderStore};
use oms_core::{Event, Order};
use oms_mongo::{MongoConfig, Projector, ProjectorConfig, ProjectorExit};

use common::*;

/// Events for orders `range`: versions 1..=3 of each (as OrderUpdate) and one execution each.
fn events_for(account: &str, range: std::ops::Range<u64>) -> Vec<Event> {
    let mut ev = Vec::new();
    for n in range {
        for v in 1..=3 {
            let o = order(account, n, 1_000 + n, v);
            if v == 2 {
                ev.push(Event::Execution(execution(n + 1, &o)));
            }
            ev.push(Event::OrderUpdate {
                order: Box::new(o),
                correlation_id: None,
            });
        }
    }
    ev
}

fn all_orders(s: &mut impl OrderStore, account: &str) -> Vec<Order> {
    s.list_orders(&OrderQuery {
        account: acct(account),
        symbol: None,
        status: None,
        limit: 100_000,
        cursor: None,
    })
    .unwrap()
}

#[test]
fn projector_writes_everything_and_reports_batches_in_order() {
    let Some(url) = mongo_url() else { return };
    let store = connect(&url, "projector");
    let guard = DropDb(store.clone());
    let mut p = Projector::new(store, ProjectorConfig::default());
    let stats = p.stats();
    let (tx, rx) = mpsc::channel::<(u64, Vec<Event>)>();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let exit = p.run(&rx, |(seq, _)| acked.push(seq));
        (exit, acked, p)
    });
    for b in 0..20u64 {
        tx.send((b, events_for("acct-p", b * 5..b * 5 + 5)))
            .unwrap();
    }
    drop(tx);
    let (exit, acked, mut p) = writer.join().unwrap();
    assert_eq!(exit, ProjectorExit::Drained);
    assert_eq!(
        acked,
        (0..20).collect::<Vec<_>>(),
        "on_written in order, each once"
    );
    assert_eq!(stats.lag(), 0);
    assert_eq!(
        stats.received.load(std::sync::atomic::Ordering::Relaxed),
        20 * 5 * 4
    );
    let got = all_orders(p.store_mut(), "acct-p");
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|o| o.version == 3));
    drop(guard);
}

#[test]
fn projector_catches_up_after_mongo_restarts() {
    if !services_enabled() {
        return;
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("oms-mongo-outage-{}-{port}", std::process::id()));
    let mut server = OwnMongo::start(port, dir.clone());
    let mut cfg = MongoConfig::new(server.url());
    cfg.db = unique_db("outage");
    cfg.server_selection_timeout = Duration::from_millis(500);
    cfg.write_timeout = Duration::from_secs(2);
    let store = connect_cfg(cfg);
    let mut p = Projector::new(
        store,
        ProjectorConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            max_events_per_write: 2_000,
        },
    );
    let stats = p.stats();
    let (tx, rx) = p.channel::<Vec<Event>>();
    let writer = std::thread::spawn(move || {
        let exit = p.run(&rx, |_| {});
        (exit, p)
    });

    // Phase 1: Mongo up.
    for b in 0..10u64 {
        tx.send(events_for("acct-o", b * 4..b * 4 + 4)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.lag() > 0 {
        assert!(Instant::now() < deadline, "phase 1 never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Phase 2: Mongo down; events keep coming and pile up.
    server.stop();
    for b in 10..30u64 {
        tx.send(events_for("acct-o", b * 4..b * 4 + 4)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let lag_down = stats.lag();
    assert!(
        lag_down >= 20 * 16,
        "lag counts events still in the channel: {lag_down}"
    );
    let retries = stats.retries.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lag_down > 0, "nothing pending while Mongo was down?");
    assert!(retries > 0, "no retries while Mongo was down");

    // Phase 3: Mongo back on the same port and data directory.
    let restarted = Instant::now();
    let _server = OwnMongo::start(port, dir.clone());
    for b in 30..35u64 {
        tx.send(events_for("acct-o", b * 4..b * 4 + 4)).unwrap();
    }
    drop(tx);
    let (exit, mut p) = writer.join().unwrap();
    assert_eq!(exit, ProjectorExit::Drained);
    assert_eq!(stats.lag(), 0);
    eprintln!(
        "outage: lag {lag_down} events while down, {retries}+ retries; caught up {:?} after restart",
        restarted.elapsed()
    );

    let got = all_orders(p.store_mut(), "acct-o");
    assert_eq!(got.len(), 140, "every order projected");
    assert!(
        got.iter().all(|o| o.version == 3),
        "every order at its last version"
    );
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("log"));
}
