//! Throughput of pipelined claims and completions against the real Redis. Ignored by default
//! (a measurement, not a check):
//! `cargo test -p oms-redis --test perf -- --ignored --nocapture`

use crate::common;

use std::time::Instant;

use oms_core::ports::{Completion, IdempotencyStore, StoredResponse};

use common::*;

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn pipelined_claims_and_completions_per_second() {
    let Some(url) = redis_url() else { return };
    let mut s = connect(config(&url, "perf"));
    let total = 200_000usize;
    let body = br#"{"orderId":"0190f5b2-8c3e-7abc-9def-0123456789ab","status":"ACCEPTED","symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000"}"#.to_vec();
    for batch in [64usize, 256, 1024] {
        let reqs: Vec<_> = (0..total)
            .map(|i| claim("acct-perf", &format!("b{batch}-k{i}"), i as u64))
            .collect();
        let mut out = Vec::with_capacity(batch);
        let t = Instant::now();
        for chunk in reqs.chunks(batch) {
            out.clear();
            s.claim_batch(chunk, 0, &mut out).unwrap();
        }
        let claim_secs = t.elapsed().as_secs_f64();
        let done: Vec<_> = reqs
            .iter()
            .map(|r| Completion {
                key: r.key,
                fingerprint: r.fingerprint,
                response: StoredResponse {
                    status: 201,
                    body: body.clone(),
                },
            })
            .collect();
        let t = Instant::now();
        for chunk in done.chunks(batch) {
            s.complete_batch(chunk, 0).unwrap();
        }
        let done_secs = t.elapsed().as_secs_f64();
        println!(
            "batch {batch:>5}: claims {:>9.0}/s ({:.3} ms/batch), completions {:>9.0}/s",
            total as f64 / claim_secs,
            claim_secs * 1e3 / (total / batch) as f64,
            total as f64 / done_secs
        );
    }
}
