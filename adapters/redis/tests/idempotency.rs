//! Integration tests of the Redis idempotency store against a real Redis
//! (`scripts/services up`; `OMS_REDIS_URL`, default redis://127.0.0.1:6390/).

use crate::common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oms_core::ports::{Claim, Completion, IdempotencyStore, StoredResponse};

use common::*;

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

#[test]
fn claim_replay_in_flight_and_mismatch() {
    let Some(url) = redis_url() else { return };
    let mut s = connect(config(&url, "verdicts"));
    let mut out = Vec::new();

    s.claim_batch(
        &[claim("acct-1", "k1", 11), claim("acct-2", "k1", 22)],
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![Claim::New, Claim::New],
        "keys are scoped per account"
    );

    out.clear();
    s.claim_batch(
        &[claim("acct-1", "k1", 11), claim("acct-1", "k1", 99)],
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![Claim::InFlight, Claim::InFlight],
        "repeat within a batch is InFlight"
    );

    out.clear();
    s.claim_batch(&[claim("acct-1", "k1", 99)], 0, &mut out)
        .unwrap();
    assert_eq!(out, vec![Claim::Mismatch], "pending, different body");

    let resp = StoredResponse {
        status: 201,
        body: br#"{"orderId":"x","status":"ACCEPTED"}"#.to_vec(),
    };
    s.complete_batch(
        &[Completion {
            key: key("acct-1", "k1"),
            fingerprint: 11,
            response: resp.clone(),
        }],
        0,
    )
    .unwrap();

    out.clear();
    s.claim_batch(
        &[claim("acct-1", "k1", 11), claim("acct-1", "k2", 11)],
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![Claim::Replay(resp), Claim::New]);

    out.clear();
    s.claim_batch(&[claim("acct-1", "k1", 12)], 0, &mut out)
        .unwrap();
    assert_eq!(out, vec![Claim::Mismatch], "done, different body");
    assert_eq!(s.stats().errors.load(Ordering::Relaxed), 0);
}

#[test]
fn release_forgets_pending_claims_only() {
    let Some(url) = redis_url() else { return };
    let mut s = connect(config(&url, "release"));
    let mut out = Vec::new();
    s.claim_batch(&[claim("a", "p", 1), claim("a", "d", 2)], 0, &mut out)
        .unwrap();
    s.complete_batch(
        &[Completion {
            key: key("a", "d"),
            fingerprint: 2,
            response: StoredResponse {
                status: 201,
                body: b"{}".to_vec(),
            },
        }],
        0,
    )
    .unwrap();
    s.release_batch(&[key("a", "p"), key("a", "d"), key("a", "never")])
        .unwrap();
    out.clear();
    s.claim_batch(&[claim("a", "p", 1), claim("a", "d", 2)], 0, &mut out)
        .unwrap();
    assert_eq!(out[0], Claim::New, "released claim can be retried");
    assert!(matches!(out[1], Claim::Replay(_)), "completed record kept");
}

#[test]
fn ttls_are_set() {
    let Some(url) = redis_url() else { return };
    let mut s = connect(config(&url, "ttl"));
    let mut out = Vec::new();
    s.claim_batch(
        &[claim("a", "pending", 1), claim("a", "done", 2)],
        0,
        &mut out,
    )
    .unwrap();
    s.complete_batch(
        &[Completion {
            key: key("a", "done"),
            fingerprint: 2,
            response: StoredResponse {
                status: 201,
                body: b"{}".to_vec(),
            },
        }],
        0,
    )
    .unwrap();
    let mut c = raw(&url);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(s.redis_key(&key("a", "pending")))
        .query(&mut c)
        .unwrap();
    assert!(
        (25_000..=30_000).contains(&pttl),
        "claim TTL ~30 s, got {pttl} ms"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(s.redis_key(&key("a", "done")))
        .query(&mut c)
        .unwrap();
    assert!(
        (86_390..=86_400).contains(&ttl),
        "done TTL ~86400 s, got {ttl}"
    );
    let v: Vec<u8> = redis::cmd("GET")
        .arg(s.redis_key(&key("a", "done")))
        .query(&mut c)
        .unwrap();
    assert_eq!(v, b"done 0000000000000002 201\n{}");
}

#[test]
fn claim_ttl_expires_a_crashed_claim() {
    let Some(url) = redis_url() else { return };
    let mut cfg = config(&url, "expiry");
    cfg.claim_ttl = Duration::from_millis(200);
    let mut s = connect(cfg);
    let mut out = Vec::new();
    s.claim_batch(&[claim("a", "k", 1)], 0, &mut out).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    out.clear();
    s.claim_batch(&[claim("a", "k", 1)], 0, &mut out).unwrap();
    assert_eq!(out, vec![Claim::New]);
}

#[test]
fn two_nodes_claiming_the_same_keys_get_exactly_one_new_each() {
    let Some(url) = redis_url() else { return };
    let cfg = config(&url, "two-nodes");
    const KEYS: usize = 2_000;
    const BATCH: usize = 100;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let run = |cfg: oms_redis::RedisConfig, fp: u64| {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let mut s = connect(cfg);
            barrier.wait();
            let mut verdicts = Vec::with_capacity(KEYS);
            let reqs: Vec<_> = (0..KEYS)
                .map(|i| claim("acct", &format!("key-{i}"), fp))
                .collect();
            for chunk in reqs.chunks(BATCH) {
                s.claim_batch(chunk, 0, &mut verdicts).unwrap();
            }
            verdicts
        })
    };
    // Same fingerprint on both nodes: the loser must see InFlight, never New.
    let a = run(cfg.clone(), 7);
    let b = run(cfg, 7);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let mut wins = [0usize; 2];
    for i in 0..KEYS {
        let na = a[i] == Claim::New;
        let nb = b[i] == Claim::New;
        assert!(
            na ^ nb,
            "key {i}: exactly one New, got {:?} / {:?}",
            a[i],
            b[i]
        );
        let other = if na { &b[i] } else { &a[i] };
        assert_eq!(*other, Claim::InFlight, "key {i}");
        wins[usize::from(nb)] += 1;
    }
    eprintln!("two nodes: node A won {}, node B won {}", wins[0], wins[1]);
}

#[test]
fn redis_down_fails_fast_and_recovers_after_restart() {
    if !services_enabled() {
        return;
    }
    let port = free_port();
    let mut server = OwnRedis::start(port);
    let mut cfg = config(&server.url(), "outage");
    cfg.cooldown = Duration::from_millis(100);
    let mut s = connect(cfg);
    let mut out = Vec::new();
    s.claim_batch(&[claim("a", "before", 1)], 0, &mut out)
        .unwrap();
    assert_eq!(out, vec![Claim::New]);

    server.stop();
    let mut failures = 0;
    for i in 0..20 {
        out.clear();
        let t = Instant::now();
        let r = s.claim_batch(&[claim("a", &format!("during-{i}"), 1)], 0, &mut out);
        let took = t.elapsed();
        assert!(r.is_err(), "call {i} succeeded with Redis down: {out:?}");
        assert!(
            took < Duration::from_millis(200),
            "call {i} took {took:?} with Redis down"
        );
        failures += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    let stats = s.stats();
    assert!(stats.errors.load(Ordering::Relaxed) >= 1);
    eprintln!(
        "down: {failures} calls failed fast; errors={} timeouts={} short_circuited={}",
        stats.errors.load(Ordering::Relaxed),
        stats.timeouts.load(Ordering::Relaxed),
        stats.short_circuited.load(Ordering::Relaxed)
    );

    let restarted = Instant::now();
    let _server = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        out.clear();
        match s.claim_batch(&[claim("a", "after", 1)], 0, &mut out) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no recovery 10 s after restart: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(out, vec![Claim::New]);
    eprintln!("recovered {:?} after restart", restarted.elapsed());
}

#[test]
fn slow_redis_times_out_within_the_batch_bound() {
    if !services_enabled() {
        return;
    }
    let server = OwnRedis::start(free_port());
    let mut s = connect(config(&server.url(), "slow"));
    let mut out = Vec::new();
    s.claim_batch(&[claim("a", "k0", 1)], 0, &mut out).unwrap();
    let mut admin = raw(&server.url());
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1000)
        .arg("ALL")
        .query(&mut admin)
        .unwrap();
    let t = Instant::now();
    let r = s.claim_batch(&[claim("a", "k1", 1)], 0, &mut out);
    let took = t.elapsed();
    assert!(r.is_err(), "call succeeded while Redis was paused");
    assert!(took < Duration::from_millis(200), "took {took:?}");
    assert_eq!(s.stats().timeouts.load(Ordering::Relaxed), 1);
    eprintln!("paused Redis: failed in {took:?} with {:?}", r.unwrap_err());
}
