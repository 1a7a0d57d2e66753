//! The order mix sent by the generator.
//!
//! Numbers from a benchmark are only worth something if the traffic resembles production: many
//! accounts, unique idempotency keys, prices on the tick grid and inside the band, quantities on
//! the lot grid and above the minimum notional, buys and sells around the same reference so the
//! book actually crosses and fills, plus some cancels of live orders and some deliberate
//! retries that must be answered from the idempotency store. Each connection owns one
//! `Traffic`, so there is no shared state on the hot path.

use std::collections::VecDeque;

use crate::rng::SplitMix64;

/// One tradable instrument as the generator sees it (integers: ticks and lots).
#[derive(Debug, Clone, Copy)]
pub struct Instrument {
    /// Symbol as sent in the body.
    pub symbol: &'static str,
    /// Reference price in ticks.
    pub ref_ticks: i64,
    /// Decimals of one tick (0.01 → 2).
    pub price_decimals: u32,
    /// Decimals of one lot (0.0001 → 4).
    pub lot_decimals: u32,
    /// Smallest and largest quantity sent, in lots.
    pub lots: (i64, i64),
}

/// The demo instruments: BTC/USD 45000.00 (tick 0.01, lot 0.0001), ETH/USD 2500.00 (tick 0.01,
/// lot 0.001), SOL/USD 100.000 (tick 0.001, lot 0.01). The quantity ranges keep every order
/// above 10 USD notional even at the bottom of the price spread.
pub const INSTRUMENTS: [Instrument; 3] = [
    Instrument {
        symbol: "BTC/USD",
        ref_ticks: 4_500_000,
        price_decimals: 2,
        lot_decimals: 4,
        lots: (10, 100),
    },
    Instrument {
        symbol: "ETH/USD",
        ref_ticks: 250_000,
        price_decimals: 2,
        lot_decimals: 3,
        lots: (10, 100),
    },
    Instrument {
        symbol: "SOL/USD",
        ref_ticks: 100_000,
        price_decimals: 3,
        lot_decimals: 2,
        lots: (20, 200),
    },
];

/// How the requests are mixed.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Fraction of new orders that are MARKET (IOC); the rest are LIMIT GTC.
    pub market_frac: f64,
    /// Fraction of requests that cancel an order created earlier on the same connection.
    pub cancel_frac: f64,
    /// Fraction of requests that resend an earlier (key, body) and expect a replay.
    pub retry_frac: f64,
    /// Accounts `acct-0 .. acct-{accounts-1}`.
    pub accounts: u32,
    /// Only these account numbers (of `0..accounts`), when set: a client that sends each
    /// account to the cluster node leading it (see `oms-perf run --led-partitions`).
    pub only_accounts: Option<std::sync::Arc<Vec<u32>>>,
    /// Limit prices are drawn uniformly within ± this many basis points of the reference
    /// (must stay well inside the ±5% band).
    pub spread_bp: i64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            market_frac: 0.1,
            cancel_frac: 0.05,
            retry_frac: 0.02,
            accounts: 1000,
            only_accounts: None,
            spread_bp: 50,
        }
    }
}

/// Which kind of request an [`Op`] is (for per-kind statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A new order (`POST /api/orders`, fresh key).
    Place,
    /// `DELETE /api/orders/{id}`.
    Cancel,
    /// `POST /api/orders` with a key and body already sent.
    Retry,
}

impl OpKind {
    /// Stable lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Place => "place",
            OpKind::Cancel => "cancel",
            OpKind::Retry => "retry",
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Op {
    /// What it is.
    pub kind: OpKind,
    /// `X-Account-Id`.
    pub account: String,
    /// `X-Idempotency-Key` (POST only).
    pub key: Option<String>,
    /// Path and query.
    pub path: String,
    /// JSON body (POST only).
    pub body: Option<String>,
}

/// Formats an integer count of 10^-decimals units as a fixed-point decimal string.
pub fn fixed(v: i64, decimals: u32) -> String {
    if decimals == 0 {
        return v.to_string();
    }
    let scale = 10i64.pow(decimals);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let s = scale as u64;
    format!(
        "{sign}{}.{:0width$}",
        a / s,
        a % s,
        width = decimals as usize
    )
}

/// Per-connection request source.
#[derive(Debug)]
pub struct Traffic {
    mix: Mix,
    rng: SplitMix64,
    key_prefix: String,
    seq: u64,
    /// Recently sent new orders (account, key, body) for retries.
    sent: VecDeque<(String, String, String)>,
    /// Order ids from 201 responses (account, orderId) for cancels.
    live: VecDeque<(String, String)>,
}

const SENT_KEEP: usize = 64;
const LIVE_KEEP: usize = 256;

impl Traffic {
    /// A source for connection `conn` of run `run_id`; keys are `{run_id}-{conn}-{n}`, unique
    /// across connections and runs.
    pub fn new(mix: Mix, seed: u64, run_id: &str, conn: usize) -> Self {
        let rng = SplitMix64::new(seed ^ (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self {
            mix,
            rng,
            key_prefix: format!("{run_id}-{conn}-"),
            seq: 0,
            sent: VecDeque::with_capacity(SENT_KEEP),
            live: VecDeque::with_capacity(LIVE_KEEP),
        }
    }

    /// The next request.
    pub fn next_op(&mut self) -> Op {
        let r = self.rng.unit();
        if r < self.mix.cancel_frac
            && let Some((account, id)) = self.take_live()
        {
            return Op {
                kind: OpKind::Cancel,
                account,
                key: None,
                path: format!("/api/orders/{id}"),
                body: None,
            };
        }
        if r < self.mix.cancel_frac + self.mix.retry_frac && !self.sent.is_empty() {
            let i = self.rng.below(self.sent.len() as u64) as usize;
            let (account, key, body) = self.sent[i].clone();
            return Op {
                kind: OpKind::Retry,
                account,
                key: Some(key),
                path: "/api/orders".into(),
                body: Some(body),
            };
        }
        self.new_order()
    }

    fn take_live(&mut self) -> Option<(String, String)> {
        if self.live.is_empty() {
            return None;
        }
        let i = self.rng.below(self.live.len() as u64) as usize;
        self.live.swap_remove_back(i)
    }

    fn new_order(&mut self) -> Op {
        let inst = INSTRUMENTS[self.rng.below(INSTRUMENTS.len() as u64) as usize];
        let n = match &self.mix.only_accounts {
            Some(ids) if !ids.is_empty() => ids[self.rng.below(ids.len() as u64) as usize],
            _ => self.rng.below(u64::from(self.mix.accounts.max(1))) as u32,
        };
        let account = format!("acct-{n}");
        let side = if self.rng.below(2) == 0 {
            "BUY"
        } else {
            "SELL"
        };
        let qty = fixed(
            self.rng.range_i64(inst.lots.0, inst.lots.1),
            inst.lot_decimals,
        );
        let body = if self.rng.unit() < self.mix.market_frac {
            format!(
                r#"{{"symbol":"{}","side":"{side}","quantity":"{qty}","orderType":"MARKET","timeInForce":"IOC"}}"#,
                inst.symbol
            )
        } else {
            let bp = self.rng.range_i64(-self.mix.spread_bp, self.mix.spread_bp);
            let price = fixed(inst.ref_ticks * (10_000 + bp) / 10_000, inst.price_decimals);
            format!(
                r#"{{"symbol":"{}","side":"{side}","quantity":"{qty}","price":"{price}","orderType":"LIMIT","timeInForce":"GTC"}}"#,
                inst.symbol
            )
        };
        self.seq += 1;
        let key = format!("{}{}", self.key_prefix, self.seq);
        if self.sent.len() == SENT_KEEP {
            self.sent.pop_front();
        }
        self.sent
            .push_back((account.clone(), key.clone(), body.clone()));
        Op {
            kind: OpKind::Place,
            account,
            key: Some(key),
            path: "/api/orders".into(),
            body: Some(body),
        }
    }

    /// Remembers an order id from a 201 so a later request may cancel it.
    pub fn created(&mut self, account: String, order_id: String) {
        if self.live.len() == LIVE_KEEP {
            self.live.pop_front();
        }
        self.live.push_back((account, order_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_formats() {
        assert_eq!(fixed(4_500_050, 2), "45000.50");
        assert_eq!(fixed(100, 4), "0.0100");
        assert_eq!(fixed(100_000, 3), "100.000");
        assert_eq!(fixed(-5, 2), "-0.05");
    }

    #[test]
    fn orders_are_on_grid_in_band_and_above_min_notional() {
        let mut t = Traffic::new(
            Mix {
                market_frac: 0.0,
                ..Mix::default()
            },
            1,
            "r",
            0,
        );
        for _ in 0..2000 {
            let op = t.next_op();
            let v: serde_json::Value = serde_json::from_str(op.body.as_deref().unwrap()).unwrap();
            let sym = v["symbol"].as_str().unwrap();
            let inst = INSTRUMENTS.iter().find(|i| i.symbol == sym).unwrap();
            let price: f64 = v["price"].as_str().unwrap().parse().unwrap();
            let qty: f64 = v["quantity"].as_str().unwrap().parse().unwrap();
            let reference = inst.ref_ticks as f64 / 10f64.powi(inst.price_decimals as i32);
            assert!((price / reference - 1.0).abs() <= 0.05);
            assert!(price * qty >= 10.0, "{price} x {qty}");
            let p_dec = v["price"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap()
                .len() as u32;
            let q_dec = v["quantity"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap()
                .len() as u32;
            assert_eq!((p_dec, q_dec), (inst.price_decimals, inst.lot_decimals));
        }
    }

    #[test]
    fn keys_unique_and_cancels_and_retries_happen() {
        let mix = Mix {
            cancel_frac: 0.2,
            retry_frac: 0.2,
            ..Mix::default()
        };
        let mut t = Traffic::new(mix, 9, "run", 3);
        let mut keys = std::collections::HashSet::new();
        let (mut cancels, mut retries) = (0, 0);
        for i in 0..1000 {
            let op = t.next_op();
            match op.kind {
                OpKind::Place => {
                    assert!(keys.insert(op.key.clone().unwrap()));
                    t.created(op.account, format!("id-{i}"));
                }
                OpKind::Cancel => cancels += 1,
                OpKind::Retry => {
                    assert!(keys.contains(op.key.as_ref().unwrap()));
                    retries += 1;
                }
            }
        }
        assert!(cancels > 100 && retries > 100, "{cancels} {retries}");
    }
}
