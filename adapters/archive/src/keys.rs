//! Byte layouts of the two index tables' keys.
//!
//! redb compares `&[u8]` keys lexicographically, so every key is built so that byte order is
//! the order the queries need: a length-prefixed account (so "ab" and "abc" never share a
//! prefix, and one account's keys are one contiguous range), then big-endian numbers (so byte
//! order is numeric order).
//!
//! ```text
//! by_account    key:   A:u8 | account[A] | created_at:u64 BE | order_id:u128 BE
//!               value: symbol:u16 BE | status code:u8            ([u8; 3])
//! by_client_id  key:   A:u8 | account[A] | C:u8 | client_order_id[C]
//!                      | created_at:u64 BE | order_id:u128 BE
//!               value: ()
//! ```
//!
//! Both keys end in the same 24-byte `(created_at, order_id)` suffix: the list is a reverse
//! scan of one account's range, and the newest order with a client id is the last key of its
//! prefix. The client-id index keeps every order (not only the newest), so replacing or
//! re-archiving an order removes exactly its own entry and never loses an older one.

use oms_core::{AccountId, ClientOrderId, OrderId, OrderStatus, SymbolId};

use crate::record::{status_code, status_from_code};

/// Length of the `(created_at, order_id)` suffix of every index key.
pub const SUFFIX_LEN: usize = 8 + 16;

/// `A | account`: the range of one account in `by_account`.
pub fn account_prefix(account: &AccountId) -> Vec<u8> {
    let a = account.0.as_bytes();
    let mut k = Vec::with_capacity(1 + a.len() + SUFFIX_LEN);
    k.push(a.len() as u8); // at most 64
    k.extend_from_slice(a);
    k
}

/// `A | account | C | cid`: the range of one client order id in `by_client_id`.
pub fn client_id_prefix(account: &AccountId, cid: &ClientOrderId) -> Vec<u8> {
    let mut k = account_prefix(account);
    let c = cid.as_bytes();
    k.reserve(1 + c.len() + SUFFIX_LEN);
    k.push(c.len() as u8); // at most 64
    k.extend_from_slice(c);
    k
}

/// Appends the `(created_at, order_id)` suffix to a prefix.
pub fn with_suffix(mut prefix: Vec<u8>, created_at: u64, id: OrderId) -> Vec<u8> {
    prefix.extend_from_slice(&created_at.to_be_bytes());
    prefix.extend_from_slice(&id.0.to_be_bytes());
    prefix
}

/// The `(created_at, order_id)` at the end of an index key; `None` if the key is too short.
pub fn parse_suffix(key: &[u8]) -> Option<(u64, OrderId)> {
    let s = key.len().checked_sub(SUFFIX_LEN).map(|at| &key[at..])?;
    let mut created = [0u8; 8];
    created.copy_from_slice(&s[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&s[8..]);
    Some((
        u64::from_be_bytes(created),
        OrderId(u128::from_be_bytes(id)),
    ))
}

/// The `by_account` value: what the list filters on without reading the order row.
pub fn list_value(symbol: SymbolId, status: OrderStatus) -> [u8; 3] {
    let s = symbol.0.to_be_bytes();
    [s[0], s[1], status_code(status)]
}

/// The inverse of [`list_value`]; `None` for an unknown status code.
pub fn parse_list_value(v: [u8; 3]) -> Option<(SymbolId, OrderStatus)> {
    Some((
        SymbolId(u16::from_be_bytes([v[0], v[1]])),
        status_from_code(v[2])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_key_order_and_accounts_do_not_overlap() {
        let ab = AccountId::new("ab").unwrap();
        let abc = AccountId::new("abc").unwrap();
        let k = |a: &AccountId, t: u64, id: u128| with_suffix(account_prefix(a), t, OrderId(id));
        // Later created_at sorts after, whatever the id; same created_at sorts by id.
        assert!(k(&ab, 1, u128::MAX) < k(&ab, 2, 0));
        assert!(k(&ab, 256, 0) > k(&ab, 255, u128::MAX));
        assert!(k(&ab, 7, 1) < k(&ab, 7, 1 << 64));
        // Every key of "ab" is outside the range of "abc" and the other way round.
        let abc_lo = with_suffix(account_prefix(&abc), 0, OrderId(0));
        let abc_hi = with_suffix(account_prefix(&abc), u64::MAX, OrderId(u128::MAX));
        for key in [k(&ab, 0, 0), k(&ab, u64::MAX, u128::MAX)] {
            assert!(key < abc_lo || key > abc_hi);
        }
        assert_eq!(
            parse_suffix(&k(&abc, 99, 12345)),
            Some((99, OrderId(12345)))
        );
        assert_eq!(parse_suffix(&[1, 2, 3]), None);
    }

    #[test]
    fn client_id_prefixes_do_not_overlap() {
        let a = AccountId::new("a").unwrap();
        let x = client_id_prefix(&a, &ClientOrderId::new("x").unwrap());
        let xy = client_id_prefix(&a, &ClientOrderId::new("xy").unwrap());
        assert!(!xy.starts_with(&x));
        assert!(!x.starts_with(&xy));
    }

    #[test]
    fn list_values_round_trip() {
        for st in OrderStatus::ALL {
            let v = list_value(SymbolId(0xbeef), st);
            assert_eq!(parse_list_value(v), Some((SymbolId(0xbeef), st)));
        }
        assert_eq!(parse_list_value([0, 0, 99]), None);
    }
}
