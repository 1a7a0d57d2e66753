//! Per-account rate limits: one token bucket (GCRA, `governor`) per account for order writes
//! and one for queries, each configured as `N/PERIOD` (`30/s`, `600/1m`, `off`).
//!
//! Every limited answer carries `X-RateLimit-Limit` (the bucket size), `X-RateLimit-Remaining`
//! (requests left right now) and `X-RateLimit-Reset` (seconds until the bucket is full again);
//! a refused request is 429 `RATE_LIMITED` with `Retry-After` (seconds until one more request
//! is allowed). The state is a concurrent map keyed by account, pruned of idle accounts in
//! the background, so memory follows the number of active accounts.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use oms_core::AccountId;
use oms_wire::ApiError;

pub use crate::config::RateSpec;

/// Which bucket a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Place, cancel, amend, halt.
    Orders,
    /// Every other `/api/` read.
    Queries,
}

/// What the `X-RateLimit-*` headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

type Keyed = RateLimiter<
    AccountId,
    governor::state::keyed::DefaultKeyedStateStore<AccountId>,
    DefaultClock,
    StateInformationMiddleware,
>;

struct Limiter {
    keyed: Keyed,
    limit: u32,
    per_cell: Duration,
    clock: DefaultClock,
}

impl Limiter {
    fn new(spec: RateSpec) -> Limiter {
        let burst = NonZeroU32::new(spec.count).unwrap_or(NonZeroU32::MIN);
        let per_cell = (spec.period / spec.count).max(Duration::from_nanos(1));
        let quota = Quota::with_period(per_cell)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Limiter {
            keyed: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            limit: spec.count,
            per_cell,
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, account: &AccountId) -> Result<RateInfo, (ApiError, RateInfo)> {
        let full_in = |remaining: u32| {
            let missing = self.limit.saturating_sub(remaining);
            ceil_secs(self.per_cell * missing)
        };
        match self.keyed.check_key(account) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Ok(RateInfo {
                    limit: self.limit,
                    remaining,
                    reset_secs: full_in(remaining),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry = ceil_secs(wait).max(1);
                let info = RateInfo {
                    limit: self.limit,
                    remaining: 0,
                    reset_secs: full_in(0),
                };
                let e = ApiError::new(
                    429,
                    "RATE_LIMITED",
                    format!(
                        "more than {} requests in {:?} for this account",
                        self.limit,
                        self.per_cell * self.limit
                    ),
                )
                .retry_after(u32::try_from(retry).unwrap_or(u32::MAX));
                Err((e, info))
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The two per-account buckets (either may be off).
pub struct RateLimits {
    orders: Option<Limiter>,
    queries: Option<Limiter>,
}

impl RateLimits {
    pub fn new(orders: Option<RateSpec>, queries: Option<RateSpec>) -> RateLimits {
        RateLimits {
            orders: orders.map(Limiter::new),
            queries: queries.map(Limiter::new),
        }
    }

    /// `Ok(None)` when the bucket is off; `Err` is the 429 with its headers' values.
    pub fn check(
        &self,
        bucket: Bucket,
        account: &AccountId,
    ) -> Result<Option<RateInfo>, (ApiError, RateInfo)> {
        let l = match bucket {
            Bucket::Orders => &self.orders,
            Bucket::Queries => &self.queries,
        };
        match l {
            Some(l) => l.check(account).map(Some),
            None => Ok(None),
        }
    }

    /// Forgets accounts whose buckets are full again (call periodically).
    pub fn prune(&self) {
        for l in [&self.orders, &self.queries].into_iter().flatten() {
            l.keyed.retain_recent();
            l.keyed.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_retry_after() {
        let l = RateLimits::new(
            Some(RateSpec {
                count: 3,
                period: Duration::from_secs(60),
            }),
            None,
        );
        let a = AccountId::new("a").unwrap();
        let b = AccountId::new("b").unwrap();
        let remaining: Vec<u32> = (0..3)
            .map(|_| l.check(Bucket::Orders, &a).unwrap().unwrap().remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let (e, info) = l.check(Bucket::Orders, &a).unwrap_err();
        assert_eq!((e.status, e.code, info.remaining), (429, "RATE_LIMITED", 0));
        assert!((1..=20).contains(&e.retry_after.unwrap()), "{e:?}");
        assert_eq!(info.reset_secs, 60);
        assert!(
            l.check(Bucket::Orders, &b).is_ok(),
            "buckets are per account"
        );
        assert_eq!(l.check(Bucket::Queries, &a).unwrap(), None, "queries off");
    }
}
