//! [`SettledPrefix`]: how many of a stream's records have settled, counted as a prefix.
//!
//! librdkafka reports deliveries per partition in order, but across partitions (and topics)
//! in any order, so "N delivery reports arrived" does not mean "the first N records
//! arrived". Cluster mode hands a partition's events over to the next leader from a committed
//! offset and must commit only offsets whose events are all on the broker (docs/scale-out.md,
//! "Events across a leader change"); this tracker gives exactly that: the length of the
//! longest prefix of records (numbered in the order they were handed over) that are all
//! delivered or given up on.
//!
//! The window holds one flag per record between the prefix and the newest settled record,
//! so its size is bounded by what librdkafka holds in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// See the module docs. Marked from librdkafka's delivery thread and the formatting thread;
/// read from anywhere without a lock.
#[derive(Debug, Default)]
pub struct SettledPrefix {
    window: Mutex<Window>,
    prefix: AtomicU64,
}

#[derive(Debug, Default)]
struct Window {
    /// The first record not yet settled.
    next: u64,
    /// `settled[i]`: record `next + i` has settled.
    settled: VecDeque<bool>,
}

impl SettledPrefix {
    /// Record `seq` (0-based, in hand-over order) has settled. Marking twice is harmless.
    pub fn mark(&self, seq: u64) {
        let mut w = self.window.lock();
        let Some(i) = seq.checked_sub(w.next) else {
            return;
        };
        let i = usize::try_from(i).unwrap_or(usize::MAX);
        if i >= w.settled.len() {
            w.settled.resize(i + 1, false);
        }
        w.settled[i] = true;
        while w.settled.front() == Some(&true) {
            w.settled.pop_front();
            w.next += 1;
        }
        self.prefix.store(w.next, Ordering::Release);
    }

    /// Records `0..prefix()` have all settled.
    pub fn prefix(&self) -> u64 {
        self.prefix.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::SettledPrefix;

    #[test]
    fn the_prefix_waits_for_the_oldest_record() {
        let s = SettledPrefix::default();
        s.mark(1);
        s.mark(2);
        assert_eq!(s.prefix(), 0, "record 0 is still in flight");
        s.mark(0);
        assert_eq!(s.prefix(), 3);
        s.mark(4);
        assert_eq!(s.prefix(), 3);
        s.mark(3);
        s.mark(3);
        assert_eq!(s.prefix(), 5);
        s.mark(1);
        assert_eq!(s.prefix(), 5, "an old record marked again changes nothing");
    }

    #[test]
    fn any_order_of_marks_ends_at_the_full_count() {
        // A fixed permutation of 0..64 (multiplication by an odd number mod 64).
        let s = SettledPrefix::default();
        for i in 0..64u64 {
            s.mark((i * 37) % 64);
        }
        assert_eq!(s.prefix(), 64);
    }
}
