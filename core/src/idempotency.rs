//! The in-memory idempotency index (embedded mode, and the fallback behind Redis).
//!
//! A key is claimed (`Pending`) when its request enters the ring and completed (`Done`, with
//! the exact response) once the order is durable. Records expire 24 h after they were
//! written; expiry is checked lazily on every claim, and [`MemoryIdempotency::purge_expired`]
//! reclaims memory in bulk. On restart the index is rebuilt from the journal with
//! [`MemoryIdempotency::record_done`].

use std::collections::HashMap;

use crate::ports::{
    Claim, ClaimRequest, Completion, IDEMPOTENCY_TTL, IdemKey, IdempotencyStore, StoreError,
    StoredResponse,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Pending {
        fingerprint: u64,
    },
    Done {
        fingerprint: u64,
        response: StoredResponse,
    },
}

#[derive(Clone, Debug)]
struct Record {
    state: State,
    expires_ms: u64,
}

/// `IdempotencyStore` over a `HashMap`. See the module docs.
#[derive(Clone, Debug)]
pub struct MemoryIdempotency {
    map: HashMap<IdemKey, Record>,
    ttl_ms: u64,
}

impl Default for MemoryIdempotency {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryIdempotency {
    /// An empty index with the standard 24 h TTL.
    pub fn new() -> Self {
        Self::with_ttl_ms(IDEMPOTENCY_TTL.as_millis() as u64)
    }

    /// An empty index with room for `n` records (no rehash while it fills at start).
    pub fn with_capacity(n: usize) -> Self {
        let mut s = Self::new();
        s.map.reserve(n);
        s
    }

    /// Makes room for `n` records in total (no rehash while it grows to that size).
    pub fn reserve(&mut self, n: usize) {
        let more = n.saturating_sub(self.map.len());
        self.map.reserve(more);
    }

    pub fn with_ttl_ms(ttl_ms: u64) -> Self {
        MemoryIdempotency {
            map: HashMap::new(),
            ttl_ms,
        }
    }

    /// Records a completed request (rebuilding from the journal after a restart).
    pub fn record_done(
        &mut self,
        key: IdemKey,
        fingerprint: u64,
        response: StoredResponse,
        now_ms: u64,
    ) {
        self.map.insert(
            key,
            Record {
                state: State::Done {
                    fingerprint,
                    response,
                },
                expires_ms: now_ms.saturating_add(self.ttl_ms),
            },
        );
    }

    /// Drops every record expired at `now_ms`; returns how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, r| r.expires_ms > now_ms);
        before - self.map.len()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn claim_one(&mut self, c: &ClaimRequest, now_ms: u64) -> Claim {
        if let Some(r) = self.map.get(&c.key)
            && r.expires_ms > now_ms
        {
            return match &r.state {
                State::Pending { .. } => Claim::InFlight,
                State::Done {
                    fingerprint,
                    response,
                } if *fingerprint == c.fingerprint => Claim::Replay(response.clone()),
                State::Done { .. } => Claim::Mismatch,
            };
        }
        self.map.insert(
            c.key,
            Record {
                state: State::Pending {
                    fingerprint: c.fingerprint,
                },
                expires_ms: now_ms.saturating_add(self.ttl_ms),
            },
        );
        Claim::New
    }
}

impl IdempotencyStore for MemoryIdempotency {
    fn claim_batch(
        &mut self,
        claims: &[ClaimRequest],
        now_ms: u64,
        out: &mut Vec<Claim>,
    ) -> Result<(), StoreError> {
        out.reserve(claims.len());
        for c in claims {
            // A key repeated within the batch finds the first occurrence's Pending record.
            out.push(self.claim_one(c, now_ms));
        }
        Ok(())
    }

    fn complete_batch(&mut self, done: &[Completion], now_ms: u64) -> Result<(), StoreError> {
        for d in done {
            self.record_done(d.key, d.fingerprint, d.response.clone(), now_ms);
        }
        Ok(())
    }

    fn release_batch(&mut self, keys: &[IdemKey]) -> Result<(), StoreError> {
        for k in keys {
            if matches!(
                self.map.get(k).map(|r| &r.state),
                Some(State::Pending { .. })
            ) {
                self.map.remove(k);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, IdempotencyKey};

    const DAY_MS: u64 = 86_400_000;

    fn key(a: &str, k: &str) -> IdemKey {
        IdemKey {
            account: AccountId::new(a).unwrap(),
            key: IdempotencyKey::new(k).unwrap(),
        }
    }

    fn resp(body: &str) -> StoredResponse {
        StoredResponse {
            status: 201,
            body: body.as_bytes().to_vec(),
        }
    }

    fn claim(s: &mut MemoryIdempotency, k: IdemKey, fp: u64, now: u64) -> Claim {
        let mut out = Vec::new();
        s.claim_batch(
            &[ClaimRequest {
                key: k,
                fingerprint: fp,
            }],
            now,
            &mut out,
        )
        .unwrap();
        out.pop().unwrap()
    }

    fn complete(s: &mut MemoryIdempotency, k: IdemKey, fp: u64, body: &str, now: u64) {
        s.complete_batch(
            &[Completion {
                key: k,
                fingerprint: fp,
                response: resp(body),
            }],
            now,
        )
        .unwrap();
    }

    #[test]
    fn new_then_in_flight_then_replay() {
        let mut s = MemoryIdempotency::new();
        let k = key("a", "k1");
        assert_eq!(claim(&mut s, k, 7, 0), Claim::New);
        assert_eq!(claim(&mut s, k, 7, 1), Claim::InFlight);
        assert_eq!(claim(&mut s, k, 8, 1), Claim::InFlight);
        complete(&mut s, k, 7, "{\"orderId\":1}", 2);
        assert_eq!(
            claim(&mut s, k, 7, 3),
            Claim::Replay(resp("{\"orderId\":1}"))
        );
    }

    #[test]
    fn mismatch_and_accounts_are_separate() {
        let mut s = MemoryIdempotency::new();
        let k = key("a", "k1");
        assert_eq!(claim(&mut s, k, 7, 0), Claim::New);
        complete(&mut s, k, 7, "x", 0);
        assert_eq!(claim(&mut s, k, 9, 1), Claim::Mismatch);
        assert_eq!(claim(&mut s, key("b", "k1"), 9, 1), Claim::New);
    }

    #[test]
    fn release_frees_only_pending_keys() {
        let mut s = MemoryIdempotency::new();
        let (k1, k2) = (key("a", "k1"), key("a", "k2"));
        claim(&mut s, k1, 1, 0);
        claim(&mut s, k2, 2, 0);
        complete(&mut s, k2, 2, "done", 0);
        s.release_batch(&[k1, k2]).unwrap();
        assert_eq!(claim(&mut s, k1, 5, 1), Claim::New);
        assert_eq!(claim(&mut s, k2, 2, 1), Claim::Replay(resp("done")));
    }

    #[test]
    fn expiry_is_lazy_and_purgeable() {
        let mut s = MemoryIdempotency::new();
        let k = key("a", "k1");
        claim(&mut s, k, 1, 0);
        complete(&mut s, k, 1, "done", 10);
        assert_eq!(claim(&mut s, k, 2, 10 + DAY_MS - 1), Claim::Mismatch);
        assert_eq!(claim(&mut s, k, 2, 10 + DAY_MS), Claim::New);
        let mut p = MemoryIdempotency::new();
        p.record_done(key("a", "old"), 1, resp("x"), 0);
        p.record_done(key("a", "young"), 1, resp("y"), DAY_MS);
        assert_eq!(p.purge_expired(DAY_MS + 1), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(
            claim(&mut p, key("a", "young"), 1, DAY_MS + 2),
            Claim::Replay(resp("y"))
        );
    }

    #[test]
    fn duplicate_within_a_batch_is_in_flight() {
        let mut s = MemoryIdempotency::new();
        let k = key("a", "dup");
        let mut out = Vec::new();
        let c = ClaimRequest {
            key: k,
            fingerprint: 3,
        };
        s.claim_batch(
            &[
                c,
                c,
                ClaimRequest {
                    fingerprint: 4,
                    ..c
                },
            ],
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Claim::New, Claim::InFlight, Claim::InFlight]);
    }

    #[test]
    fn rebuilt_from_the_journal() {
        let mut s = MemoryIdempotency::new();
        let k = key("a", "k1");
        s.record_done(k, 11, resp("again"), 100);
        assert_eq!(claim(&mut s, k, 11, 200), Claim::Replay(resp("again")));
        assert_eq!(claim(&mut s, k, 12, 200), Claim::Mismatch);
    }
}
