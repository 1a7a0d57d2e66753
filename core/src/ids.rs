//! Identifiers and the injected sources of time and ids.
//!
//! Everything that differs between two runs (wall clock, randomness) enters the core through
//! [`Clock`] and [`IdGen`], and is then written into the order log, so a replay sees exactly
//! the values the live run saw. Short strings (accounts, client order ids, idempotency keys)
//! are stored inline ([`ShortStr`]) so commands are plain `Copy`-free values with no heap
//! allocation per order.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Dense index of an instrument in the [`crate::InstrumentTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SymbolId(pub u16);

/// An order id: a UUIDv7 (time-ordered) held as a 128-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OrderId(pub u128);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// An order id string that is not a UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("not a valid order id (expected a UUID)")]
pub struct OrderIdParseError;

impl FromStr for OrderId {
    type Err = OrderIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return Err(OrderIdParseError);
        }
        for (i, b) in s.bytes().enumerate() {
            let dash = matches!(i, 8 | 13 | 18 | 23);
            if dash != (b == b'-') {
                return Err(OrderIdParseError);
            }
        }
        let text = std::str::from_utf8(&hex).map_err(|_| OrderIdParseError)?;
        u128::from_str_radix(text, 16)
            .map(OrderId)
            .map_err(|_| OrderIdParseError)
    }
}

/// A string of at most `N` bytes stored inline (no heap), printable ASCII only.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

/// Why a string cannot be a [`ShortStr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ShortStrError {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {0} characters")]
    TooLong(usize),
    #[error("only printable ASCII is allowed")]
    NotPrintable,
}

impl<const N: usize> ShortStr<N> {
    /// Accepts 1..=N printable ASCII characters (0x21..=0x7e; no spaces).
    pub fn new(s: &str) -> Result<Self, ShortStrError> {
        Self::with_charset(s, |b| (0x21..=0x7e).contains(&b))
    }

    /// Like [`ShortStr::new`] with a caller-chosen byte predicate.
    pub fn with_charset(s: &str, ok: impl Fn(u8) -> bool) -> Result<Self, ShortStrError> {
        if s.is_empty() {
            return Err(ShortStrError::Empty);
        }
        if s.len() > N {
            return Err(ShortStrError::TooLong(N));
        }
        if !s.bytes().all(ok) {
            return Err(ShortStrError::NotPrintable);
        }
        let mut bytes = [0u8; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(ShortStr {
            len: s.len() as u16,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `with_charset`), so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl<const N: usize> fmt::Debug for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
impl<const N: usize> fmt::Display for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maximum length of an account id.
pub const ACCOUNT_MAX: usize = 64;
/// Maximum length of a client order id.
pub const CLIENT_ORDER_ID_MAX: usize = 64;
/// Maximum length of an idempotency key (ARCHITECTURE.md §4: 1–255 printable ASCII).
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// An account id: 1–64 of `[A-Za-z0-9._:@-]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AccountId(pub ShortStr<ACCOUNT_MAX>);

impl AccountId {
    pub fn new(s: &str) -> Result<Self, ShortStrError> {
        ShortStr::with_charset(s, |b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
            .map(AccountId)
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}
impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client order id (1–64 printable ASCII).
pub type ClientOrderId = ShortStr<CLIENT_ORDER_ID_MAX>;
/// An idempotency key (1–255 printable ASCII).
pub type IdempotencyKey = ShortStr<IDEMPOTENCY_KEY_MAX>;

/// Bytes of an idempotency key an [`OrderKey`] holds inline: UUIDs (36), ULIDs (26) and
/// most client-made keys fit; longer keys (up to [`IDEMPOTENCY_KEY_MAX`]) go to the heap.
pub const ORDER_KEY_INLINE: usize = 44;

/// An idempotency key as an order record keeps it: 48 bytes instead of the 257 of an inline
/// [`IdempotencyKey`], because every held order carries one (issue 11: bounded memory). The
/// representation depends only on the length, so equal keys are equal values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderKey(KeyRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyRepr {
    Inline(ShortStr<ORDER_KEY_INLINE>),
    Heap(Box<str>),
}

impl OrderKey {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyRepr::Inline(s) => s.as_str(),
            KeyRepr::Heap(s) => s,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl From<&IdempotencyKey> for OrderKey {
    fn from(k: &IdempotencyKey) -> Self {
        let b = k.as_bytes();
        if b.len() <= ORDER_KEY_INLINE {
            // Already checked when `k` was made: copied, not validated again.
            let mut bytes = [0u8; ORDER_KEY_INLINE];
            bytes[..b.len()].copy_from_slice(b);
            OrderKey(KeyRepr::Inline(ShortStr { len: k.len, bytes }))
        } else {
            OrderKey(KeyRepr::Heap(k.as_str().into()))
        }
    }
}

impl From<IdempotencyKey> for OrderKey {
    fn from(k: IdempotencyKey) -> Self {
        OrderKey::from(&k)
    }
}

impl fmt::Debug for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Source of time, injected. Nanoseconds since the Unix epoch.
pub trait Clock {
    fn now_nanos(&mut self) -> u64;
}

/// A clock that returns what it is told (tests, replays).
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    pub nanos: u64,
}
impl Clock for ManualClock {
    fn now_nanos(&mut self) -> u64 {
        self.nanos
    }
}

/// Source of order ids, injected.
pub trait IdGen {
    fn next_order_id(&mut self, now_nanos: u64) -> OrderId;
}

/// Deterministic UUIDv7 generator: 48-bit millisecond timestamp, version 7, a 12-bit
/// sequence within the millisecond, RFC variant, and 62 bits derived from a seed and a
/// counter (splitmix64). Two generators with different seeds (different nodes) do not collide;
/// the same seed and times give the same ids, which the determinism tests rely on.
#[derive(Clone, Debug)]
pub struct Uuid7Gen {
    seed: u64,
    counter: u64,
    last_ms: u64,
    seq: u16,
}

impl Uuid7Gen {
    pub fn new(seed: u64) -> Self {
        Uuid7Gen {
            seed,
            counter: 0,
            last_ms: 0,
            seq: 0,
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdGen for Uuid7Gen {
    fn next_order_id(&mut self, now_nanos: u64) -> OrderId {
        let mut ms = now_nanos / 1_000_000;
        if ms <= self.last_ms {
            ms = self.last_ms;
            self.seq = self.seq.wrapping_add(1) & 0x0fff;
            if self.seq == 0 {
                ms += 1; // sequence exhausted: borrow the next millisecond, stay monotonic
            }
        } else {
            self.seq = 0;
        }
        self.last_ms = ms;
        self.counter = self.counter.wrapping_add(1);
        let rand = splitmix64(self.seed ^ splitmix64(self.counter));
        let hi: u64 = ((ms & 0xffff_ffff_ffff) << 16) | (0x7 << 12) | u64::from(self.seq);
        let lo: u64 = (0b10 << 62) | (rand & 0x3fff_ffff_ffff_ffff);
        OrderId((u128::from(hi) << 64) | u128::from(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_hold_the_key_exactly_inline_or_on_the_heap() {
        for len in [
            1,
            ORDER_KEY_INLINE,
            ORDER_KEY_INLINE + 1,
            IDEMPOTENCY_KEY_MAX,
        ] {
            let text = "k".repeat(len);
            let key = IdempotencyKey::new(&text).unwrap();
            let held = OrderKey::from(&key);
            assert_eq!(held.as_str(), text);
            assert_eq!(held.as_bytes(), key.as_bytes());
            assert_eq!(held, OrderKey::from(key));
            assert_eq!(
                matches!(held.0, KeyRepr::Inline(_)),
                len <= ORDER_KEY_INLINE
            );
        }
        assert_eq!(std::mem::size_of::<Option<OrderKey>>(), 48);
    }

    #[test]
    fn uuid7_round_trips_and_is_monotonic() {
        let mut g = Uuid7Gen::new(42);
        let a = g.next_order_id(1_700_000_000_000_000_000);
        let b = g.next_order_id(1_700_000_000_000_000_000);
        assert!(b > a);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "7");
        assert_eq!(s.parse::<OrderId>(), Ok(a));
        assert!("not-a-uuid".parse::<OrderId>().is_err());
        assert_eq!(
            Uuid7Gen::new(42).next_order_id(1_700_000_000_000_000_000),
            a
        );
    }

    #[test]
    fn short_strings_are_checked() {
        assert!(AccountId::new("acct-1").is_ok());
        assert_eq!(AccountId::new(""), Err(ShortStrError::Empty));
        assert_eq!(AccountId::new("a b"), Err(ShortStrError::NotPrintable));
        assert_eq!(
            IdempotencyKey::new(&"k".repeat(256)),
            Err(ShortStrError::TooLong(255))
        );
        assert_eq!(
            IdempotencyKey::new(&"k".repeat(255)).map(|k| k.as_str().len()),
            Ok(255)
        );
    }
}
