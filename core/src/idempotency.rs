//! The idempotency index: which `(account, key)` was answered, and where that answer is.
//!
//! Every order answered with a key must be answerable again, byte for byte, for 24 h
//! ([`IDEMPOTENCY_TTL`]). At 8 k orders/s that is millions of live answers, so the index
//! keeps none of the answer in memory: each done key costs **16 bytes** (a 64-bit keyed hash
//! of `(account, key)` and the answer's location in an [`AnswerSource`], an append-only
//! store of the exact bytes sent). Everything else (the key itself, the body fingerprint, the
//! status and body, when it was written) lives in the stored record, which is read only when
//! a request hits a known hash — a retry, a reused key, or a hash collision — so every
//! verdict is decided on the full key, never on the hash alone:
//!
//! * same key, same fingerprint, not expired → [`Claim::Replay`] with the stored bytes;
//! * same key, another fingerprint → [`Claim::Mismatch`];
//! * another key with the same hash (a collision) → the request is new; when it completes
//!   its answer goes to a small side map keyed by the full key.
//!
//! Keys still in flight (claimed, not yet durable; or answered, and the answer not yet
//! stored) are few and sit in a map keyed by the full key, with the answer while it is not
//! stored ([`AnswerIndex::answered`]). The done entries are split into [`SHARDS`] hash maps by hash bits, so a growth
//! rehashes 1/256 of the index (a few hundred microseconds at 5 M entries) instead of
//! stalling the ring for the whole table. Expired answers leave when their store segment is
//! deleted; [`AnswerIndex::purge_step`] drops the stale entries one shard at a time.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use ahash::RandomState;

use crate::ids::{AccountId, IdempotencyKey};
use crate::ports::{Claim, Completion, IDEMPOTENCY_TTL, IdemKey, StoredResponse};

/// Number of independent hash maps the done entries are split into.
pub const SHARDS: usize = 256;

/// Where an answer is stored: opaque to the index (the store packs segment and offset).
pub type AnswerLoc = u64;

/// One stored answer, as read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub key: IdemKey,
    pub fingerprint: u64,
    /// When the answer was written (ms since the epoch); it expires [`IDEMPOTENCY_TTL`] later.
    pub written_ms: u64,
    pub response: StoredResponse,
}

/// Reads answers back by location (the on-disk answer store, or a test double).
pub trait AnswerSource {
    /// The answer at `loc`; `None` if its segment is gone (only expired answers are deleted)
    /// or the record cannot be read.
    fn answer(&self, loc: AnswerLoc) -> Option<StoredAnswer>;
    /// Whether the segment holding `loc` still exists.
    fn is_live(&self, loc: AnswerLoc) -> bool;
}

/// The keyed hash is already uniform: the shard maps use it as is.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, AnswerLoc, BuildHasherDefault<PassThrough>>;

fn idem_key(account: &[u8], key: &[u8]) -> Option<IdemKey> {
    Some(IdemKey {
        account: AccountId::new(std::str::from_utf8(account).ok()?).ok()?,
        key: IdempotencyKey::new(std::str::from_utf8(key).ok()?).ok()?,
    })
}

/// Shard of a hash: bits 32..40, so neither the bucket bits (low) nor hashbrown's tag bits
/// (top 7) are constant within a shard.
fn shard_of(h: u64) -> usize {
    ((h >> 32) as usize) & (SHARDS - 1)
}

/// A key claimed and not yet in the store.
enum Pending {
    /// Its request is on its way to the log.
    Claimed,
    /// Answered; the answer is on its way to the store.
    Answered {
        fingerprint: u64,
        response: StoredResponse,
    },
}

/// The compact idempotency index. See the module docs.
pub struct AnswerIndex {
    hasher: RandomState,
    shards: Box<[Shard]>,
    /// Done answers whose hash slot is taken by another key.
    collisions: HashMap<IdemKey, AnswerLoc, RandomState>,
    /// Claimed keys not yet stored.
    pending: HashMap<IdemKey, Pending, RandomState>,
    len: usize,
    ttl_ms: u64,
    next_purge: usize,
}

impl Default for AnswerIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AnswerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerIndex")
            .field("len", &self.len)
            .field("pending", &self.pending.len())
            .field("collisions", &self.collisions.len())
            .finish()
    }
}

impl AnswerIndex {
    /// An empty index with the standard 24 h TTL and a per-process random hash key (the hash
    /// is never stored, so clients cannot aim keys at one bucket).
    pub fn new() -> Self {
        Self::with_ttl_ms(IDEMPOTENCY_TTL.as_millis() as u64)
    }

    pub fn with_ttl_ms(ttl_ms: u64) -> Self {
        AnswerIndex {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            collisions: HashMap::with_hasher(RandomState::new()),
            pending: HashMap::with_hasher(RandomState::new()),
            len: 0,
            ttl_ms,
            next_purge: 0,
        }
    }

    /// Makes room for `n` done answers in total (no growth at all while it fills to that).
    pub fn reserve(&mut self, n: usize) {
        let per = n.div_ceil(SHARDS);
        for s in self.shards.iter_mut() {
            s.reserve(per.saturating_sub(s.len()));
        }
    }

    /// Done answers indexed (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys claimed and not yet completed or released.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes the index's tables hold (capacity, not length): what `oms_idempotency_index_bytes`
    /// reports.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: one bucket of (key, value) plus one control byte per slot.
        let slot = std::mem::size_of::<(u64, AnswerLoc)>() + 1;
        let pending = std::mem::size_of::<(IdemKey, Pending)>() + 1;
        let side = std::mem::size_of::<(IdemKey, AnswerLoc)>() + 1;
        self.shards
            .iter()
            .map(|s| s.capacity() * slot)
            .sum::<usize>()
            + self.pending.capacity() * pending
            + self.collisions.capacity() * side
    }

    fn hash(&self, key: &IdemKey) -> u64 {
        self.hash_parts(key.account.as_str().as_bytes(), key.key.as_bytes())
    }

    fn hash_parts(&self, account: &[u8], key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(account);
        h.write_u8(0xff);
        h.write(key);
        h.finish()
    }

    /// The live answer stored for `key`, if any (read from `src`).
    pub fn find(&self, key: &IdemKey, now_ms: u64, src: &dyn AnswerSource) -> Option<StoredAnswer> {
        let live = |a: StoredAnswer| {
            (a.key == *key && a.written_ms.saturating_add(self.ttl_ms) > now_ms).then_some(a)
        };
        if let Some(loc) = self.collisions.get(key)
            && let Some(a) = src.answer(*loc).and_then(live)
        {
            return Some(a);
        }
        let h = self.hash(key);
        let loc = self.shards[shard_of(h)].get(&h)?;
        src.answer(*loc).and_then(live)
    }

    /// Claims `key` for a request whose body hashes to `fingerprint`.
    pub fn claim(
        &mut self,
        key: &IdemKey,
        fingerprint: u64,
        now_ms: u64,
        src: &dyn AnswerSource,
    ) -> Claim {
        match self.pending.get(key) {
            Some(Pending::Claimed) => return Claim::InFlight,
            Some(Pending::Answered {
                fingerprint: fp,
                response,
            }) => {
                return if *fp == fingerprint {
                    Claim::Replay(response.clone())
                } else {
                    Claim::Mismatch
                };
            }
            None => {}
        }
        if let Some(a) = self.find(key, now_ms, src) {
            return if a.fingerprint == fingerprint {
                Claim::Replay(a.response)
            } else {
                Claim::Mismatch
            };
        }
        self.pending.insert(*key, Pending::Claimed);
        Claim::New
    }

    /// The answer to a claimed key, before it is stored: replays use it until
    /// [`AnswerIndex::complete`] (which may also come first: then this is ignored).
    pub fn answered(&mut self, done: Completion) {
        if let Some(p) = self.pending.get_mut(&done.key)
            && matches!(p, Pending::Claimed)
        {
            *p = Pending::Answered {
                fingerprint: done.fingerprint,
                response: done.response,
            };
        }
    }

    /// Records that the answer to `key` is stored at `loc` (the claim, if any, ends).
    pub fn complete(&mut self, key: &IdemKey, loc: AnswerLoc, src: &dyn AnswerSource) {
        self.pending.remove(key);
        self.insert(key, loc, src);
    }

    /// Forgets a claim whose request was not made durable (a retry may use the key again).
    pub fn release(&mut self, key: &IdemKey) {
        self.pending.remove(key);
    }

    /// Indexes a stored answer (completion, or rebuilding from the store at start). A later
    /// answer for the same key replaces the earlier one.
    pub fn insert(&mut self, key: &IdemKey, loc: AnswerLoc, src: &dyn AnswerSource) {
        self.insert_parts(
            key.account.as_str().as_bytes(),
            key.key.as_bytes(),
            loc,
            src,
        );
    }

    /// [`AnswerIndex::insert`] from the key's bytes (rebuilding from the store at start: no
    /// `IdemKey` is built unless two keys share a hash).
    pub fn insert_parts(
        &mut self,
        account: &[u8],
        key: &[u8],
        loc: AnswerLoc,
        src: &dyn AnswerSource,
    ) {
        let h = self.hash_parts(account, key);
        let shard = &mut self.shards[shard_of(h)];
        let Some(old) = shard.get_mut(&h) else {
            shard.insert(h, loc);
            self.len += 1;
            return;
        };
        // The slot is another key's only if that answer is still readable and names a
        // different key (an expired or deleted one can be overwritten).
        let other = src.answer(*old).is_some_and(|a| {
            a.key.account.as_str().as_bytes() != account || a.key.key.as_bytes() != key
        });
        if !other {
            *old = loc;
        }
        if other || !self.collisions.is_empty() {
            let Some(full) = idem_key(account, key) else {
                return;
            };
            if other {
                self.collisions.insert(full, loc);
            } else {
                self.collisions.remove(&full);
            }
        }
    }

    /// Drops the entries of one shard (round robin) whose answers were deleted from the
    /// store; returns how many. Call it now and then: a full cycle takes [`SHARDS`] calls.
    pub fn purge_step(&mut self, src: &dyn AnswerSource) -> usize {
        let i = self.next_purge;
        self.next_purge = (i + 1) % SHARDS;
        let shard = &mut self.shards[i];
        let before = shard.len();
        shard.retain(|_, loc| src.is_live(*loc));
        let gone = before - shard.len();
        self.len -= gone;
        if i == 0 {
            self.collisions.retain(|_, loc| src.is_live(*loc));
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use super::*;

    const DAY_MS: u64 = 86_400_000;

    /// Answers in a vector; `loc` is the index, segment = loc / 100.
    #[derive(Default)]
    struct VecSource {
        answers: RefCell<Vec<StoredAnswer>>,
        deleted_segments: RefCell<HashSet<u64>>,
    }

    impl VecSource {
        fn put(&self, key: IdemKey, fp: u64, body: &str, written_ms: u64) -> AnswerLoc {
            let mut a = self.answers.borrow_mut();
            a.push(StoredAnswer {
                key,
                fingerprint: fp,
                written_ms,
                response: resp(body),
            });
            a.len() as u64 - 1
        }
    }

    impl AnswerSource for VecSource {
        fn answer(&self, loc: AnswerLoc) -> Option<StoredAnswer> {
            if !self.is_live(loc) {
                return None;
            }
            self.answers.borrow().get(loc as usize).cloned()
        }
        fn is_live(&self, loc: AnswerLoc) -> bool {
            !self.deleted_segments.borrow().contains(&(loc / 100))
        }
    }

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

    fn done(s: &mut AnswerIndex, src: &VecSource, k: IdemKey, fp: u64, body: &str, now: u64) {
        let loc = src.put(k, fp, body, now);
        s.complete(&k, loc, src);
    }

    #[test]
    fn new_then_in_flight_then_replay() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        let k = key("a", "k1");
        assert_eq!(s.claim(&k, 7, 0, &src), Claim::New);
        assert_eq!(s.claim(&k, 7, 1, &src), Claim::InFlight);
        assert_eq!(s.claim(&k, 8, 1, &src), Claim::InFlight);
        // Answered, not yet stored: replays from memory.
        s.answered(Completion {
            key: k,
            fingerprint: 7,
            response: resp("{\"orderId\":1}"),
        });
        assert_eq!(
            s.claim(&k, 7, 1, &src),
            Claim::Replay(resp("{\"orderId\":1}"))
        );
        assert_eq!(s.claim(&k, 8, 1, &src), Claim::Mismatch);
        done(&mut s, &src, k, 7, "{\"orderId\":1}", 2);
        assert_eq!(s.pending(), 0);
        assert_eq!(
            s.claim(&k, 7, 3, &src),
            Claim::Replay(resp("{\"orderId\":1}"))
        );
    }

    #[test]
    fn mismatch_and_accounts_are_separate() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        let k = key("a", "k1");
        assert_eq!(s.claim(&k, 7, 0, &src), Claim::New);
        done(&mut s, &src, k, 7, "x", 0);
        assert_eq!(s.claim(&k, 9, 1, &src), Claim::Mismatch);
        assert_eq!(s.claim(&key("b", "k1"), 9, 1, &src), Claim::New);
        assert_eq!(s.claim(&key("a", "k1x"), 9, 1, &src), Claim::New);
    }

    #[test]
    fn release_frees_only_pending_keys() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        let (k1, k2) = (key("a", "k1"), key("a", "k2"));
        s.claim(&k1, 1, 0, &src);
        s.claim(&k2, 2, 0, &src);
        done(&mut s, &src, k2, 2, "done", 0);
        s.release(&k1);
        s.release(&k2);
        assert_eq!(s.claim(&k1, 5, 1, &src), Claim::New);
        assert_eq!(s.claim(&k2, 2, 1, &src), Claim::Replay(resp("done")));
    }

    #[test]
    fn expiry_is_checked_on_the_stored_time_and_purged_by_segment() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        let k = key("a", "k1");
        s.claim(&k, 1, 0, &src);
        done(&mut s, &src, k, 1, "done", 10);
        assert_eq!(s.claim(&k, 2, 10 + DAY_MS - 1, &src), Claim::Mismatch);
        assert_eq!(s.claim(&k, 2, 10 + DAY_MS, &src), Claim::New);
        done(&mut s, &src, k, 2, "again", 10 + DAY_MS);
        assert_eq!(s.len(), 1, "the reused key replaced its expired entry");
        assert_eq!(
            s.claim(&k, 2, 20 + DAY_MS, &src),
            Claim::Replay(resp("again"))
        );
        // Segment 0 deleted: its entries leave after one purge cycle.
        src.deleted_segments.borrow_mut().insert(0);
        let gone: usize = (0..SHARDS).map(|_| s.purge_step(&src)).sum();
        assert_eq!((gone, s.len()), (1, 0));
    }

    #[test]
    fn colliding_keys_keep_their_own_answers() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        let (k1, k2) = (key("a", "one"), key("b", "two"));
        let loc1 = src.put(k1, 1, "first", 0);
        s.insert(&k1, loc1, &src);
        // Make k2 collide with k1: its hash slot points at k1's record, as if both keys
        // hashed alike.
        let h2 = s.hash(&k2);
        s.shards[shard_of(h2)].insert(h2, loc1);
        assert_eq!(
            s.claim(&k2, 2, 1, &src),
            Claim::New,
            "decided on the full key"
        );
        done(&mut s, &src, k2, 2, "second", 1);
        assert_eq!(s.collisions.len(), 1);
        assert_eq!(s.claim(&k2, 2, 2, &src), Claim::Replay(resp("second")));
        assert_eq!(s.claim(&k2, 3, 2, &src), Claim::Mismatch);
        assert_eq!(s.claim(&k1, 1, 2, &src), Claim::Replay(resp("first")));
    }

    #[test]
    fn a_growth_touches_one_shard_only() {
        let (mut s, src) = (AnswerIndex::new(), VecSource::default());
        s.reserve(SHARDS * 8);
        let caps: Vec<usize> = s.shards.iter().map(|m| m.capacity()).collect();
        assert!(caps.iter().all(|c| *c >= 8));
        for i in 0..2000 {
            let k = key("a", &format!("k{i}"));
            let loc = src.put(k, i, "x", 0);
            s.insert(&k, loc, &src);
        }
        assert_eq!(s.len(), 2000);
        let biggest = s.shards.iter().map(|m| m.len()).max().unwrap();
        assert!(
            biggest < 40,
            "keys spread over the shards ({biggest} in one)"
        );
        assert!(s.heap_bytes() < 2000 * 64, "{} bytes", s.heap_bytes());
    }
}
