//! The wall clock, behind the core's [`Clock`] port: the one place in the binary that reads
//! `SystemTime`. Everything else that needs the time of day (token expiry, idempotency
//! timestamps, book snapshots) is handed a clock, so tests can pin it.

use std::time::{SystemTime, UNIX_EPOCH};

use oms_core::ids::Clock;

/// Nanoseconds since the Unix epoch from the operating system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// A clock many tasks can read at once: any copyable core [`Clock`].
pub trait SharedClock: Send + Sync {
    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> u64;
}

impl<C: Clock + Clone + Send + Sync> SharedClock for C {
    fn now(&self) -> u64 {
        self.clone().now_nanos()
    }
}
