//! What the archive stores per order, and the compact fixed layout of its `orders` row.
//!
//! The REST JSON of a finished order is stored verbatim so a read serves exactly the bytes the
//! engine would have served, with no re-serialisation that could drift from the live path.
//! The few fields the archive must understand itself (account for the ownership check, client
//! order id for its index, symbol/status/created_at for the list) sit in a small header in
//! front of the JSON, in this crate's own layout rather than a general-purpose format: it is
//! a handful of bytes, needs no schema evolution machinery beyond a version byte, and decodes
//! without allocating for the JSON when only the header is wanted.
//!
//! Value of the `orders` table (the key is the order id, `u128`):
//!
//! ```text
//! offset   size  field
//! 0        1     layout version, currently 1
//! 1        1     status code (see `status_code`)
//! 2        2     symbol id, u16 big-endian
//! 4        8     created_at, ns since the Unix epoch, u64 big-endian
//! 12       1     account length A (1..=64)
//! 13       A     account bytes (ASCII)
//! 13+A     1     client order id length C (0 = none, 1..=64)
//! 14+A     C     client order id bytes (ASCII)
//! 14+A+C   ...   the order's REST JSON, verbatim, to the end of the value
//! ```

use oms_core::{AccountId, ClientOrderId, OrderId, OrderStatus, SymbolId};

use crate::error::ArchiveError;

/// One finished order as the archive stores and returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub client_order_id: Option<ClientOrderId>,
    pub symbol: SymbolId,
    pub status: OrderStatus,
    /// Nanoseconds since the Unix epoch; with `order_id` it is the list's sort key, the same
    /// `(created_at, order_id)` key as the engine's per-account index.
    pub created_at: u64,
    /// The exact REST JSON of the order, stored and returned byte for byte.
    pub json: Vec<u8>,
}

/// Current layout version of an `orders` row.
pub const LAYOUT_VERSION: u8 = 1;

/// The stable one-byte code of a status in stored rows and index values. Written out rather
/// than taken from the enum's discriminant, so reordering the enum cannot change the file.
pub fn status_code(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::New => 0,
        OrderStatus::Accepted => 1,
        OrderStatus::PartiallyFilled => 2,
        OrderStatus::Filled => 3,
        OrderStatus::Canceled => 4,
        OrderStatus::Rejected => 5,
        OrderStatus::Expired => 6,
    }
}

/// The inverse of [`status_code`]; `None` for a code no version of this crate writes.
pub fn status_from_code(c: u8) -> Option<OrderStatus> {
    Some(match c {
        0 => OrderStatus::New,
        1 => OrderStatus::Accepted,
        2 => OrderStatus::PartiallyFilled,
        3 => OrderStatus::Filled,
        4 => OrderStatus::Canceled,
        5 => OrderStatus::Rejected,
        6 => OrderStatus::Expired,
        _ => return None,
    })
}

/// The header of a row: everything but the JSON, plus where the JSON starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub account: AccountId,
    pub client_order_id: Option<ClientOrderId>,
    pub symbol: SymbolId,
    pub status: OrderStatus,
    pub created_at: u64,
    /// Offset of the JSON in the row.
    pub json_at: usize,
}

/// Encodes `o` as an `orders` row.
pub fn encode(o: &ArchivedOrder) -> Vec<u8> {
    let account = o.account.0.as_bytes();
    let cid = o.client_order_id.as_ref().map_or(&[][..], |c| c.as_bytes());
    let mut out = Vec::with_capacity(14 + account.len() + cid.len() + o.json.len());
    out.push(LAYOUT_VERSION);
    out.push(status_code(o.status));
    out.extend_from_slice(&o.symbol.0.to_be_bytes());
    out.extend_from_slice(&o.created_at.to_be_bytes());
    // Both lengths fit a byte: the types cap them at 64.
    out.push(account.len() as u8);
    out.extend_from_slice(account);
    out.push(cid.len() as u8);
    out.extend_from_slice(cid);
    out.extend_from_slice(&o.json);
    out
}

/// Decodes the header of the row stored under `id`.
pub fn decode_meta(id: OrderId, row: &[u8]) -> Result<Meta, ArchiveError> {
    let corrupt = |reason| ArchiveError::Corrupt {
        key: id.to_string(),
        reason,
    };
    if row.len() < 13 {
        return Err(corrupt("row shorter than its fixed header"));
    }
    if row[0] != LAYOUT_VERSION {
        return Err(corrupt("unknown layout version"));
    }
    let status = status_from_code(row[1]).ok_or_else(|| corrupt("unknown status code"))?;
    let symbol = SymbolId(u16::from_be_bytes([row[2], row[3]]));
    let mut created = [0u8; 8];
    created.copy_from_slice(&row[4..12]);
    let created_at = u64::from_be_bytes(created);
    let a = usize::from(row[12]);
    let account_bytes = row
        .get(13..13 + a)
        .ok_or_else(|| corrupt("account runs past the row"))?;
    let account = std::str::from_utf8(account_bytes)
        .ok()
        .and_then(|s| AccountId::new(s).ok())
        .ok_or_else(|| corrupt("account is not a valid account id"))?;
    let c = usize::from(
        *row.get(13 + a)
            .ok_or_else(|| corrupt("client order id length missing"))?,
    );
    let client_order_id = if c == 0 {
        None
    } else {
        let bytes = row
            .get(14 + a..14 + a + c)
            .ok_or_else(|| corrupt("client order id runs past the row"))?;
        Some(
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| ClientOrderId::new(s).ok())
                .ok_or_else(|| corrupt("client order id is not valid"))?,
        )
    };
    Ok(Meta {
        account,
        client_order_id,
        symbol,
        status,
        created_at,
        json_at: 14 + a + c,
    })
}

/// Decodes a whole row stored under `id`.
pub fn decode(id: OrderId, row: &[u8]) -> Result<ArchivedOrder, ArchiveError> {
    let m = decode_meta(id, row)?;
    Ok(ArchivedOrder {
        order_id: id,
        account: m.account,
        client_order_id: m.client_order_id,
        symbol: m.symbol,
        status: m.status,
        created_at: m.created_at,
        json: row[m.json_at..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cid: Option<&str>) -> ArchivedOrder {
        ArchivedOrder {
            order_id: OrderId(0x0190_0000_0000_7000_8000_0000_0000_0001),
            account: AccountId::new("acct-1").unwrap(),
            client_order_id: cid.map(|c| ClientOrderId::new(c).unwrap()),
            symbol: SymbolId(513),
            status: OrderStatus::PartiallyFilled,
            created_at: 1_700_000_000_123_456_789,
            json: br#"{"orderId":"x","status":"FILLED"}"#.to_vec(),
        }
    }

    #[test]
    fn rows_round_trip_with_and_without_client_id() {
        for o in [sample(None), sample(Some("c-42"))] {
            let row = encode(&o);
            assert_eq!(decode(o.order_id, &row).unwrap(), o);
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        let row = encode(&sample(Some("ab")));
        assert_eq!(row[0], 1);
        assert_eq!(row[1], 2);
        assert_eq!(&row[2..4], &[2, 1]);
        assert_eq!(&row[4..12], &1_700_000_000_123_456_789u64.to_be_bytes());
        assert_eq!(row[12], 6);
        assert_eq!(&row[13..19], b"acct-1");
        assert_eq!(row[19], 2);
        assert_eq!(&row[20..22], b"ab");
        assert_eq!(&row[22..], br#"{"orderId":"x","status":"FILLED"}"#);
    }

    #[test]
    fn status_codes_round_trip_and_are_distinct() {
        for s in OrderStatus::ALL {
            assert_eq!(status_from_code(status_code(s)), Some(s));
        }
        assert_eq!(status_from_code(7), None);
    }

    #[test]
    fn truncated_or_unknown_rows_are_corrupt_not_panics() {
        let o = sample(Some("client"));
        let row = encode(&o);
        let header_len = row.len() - o.json.len();
        for n in 0..header_len {
            assert!(
                matches!(
                    decode(o.order_id, &row[..n]),
                    Err(ArchiveError::Corrupt { .. })
                ),
                "prefix of {n} bytes decoded"
            );
        }
        let mut bad = row.clone();
        bad[0] = 9;
        assert!(decode(o.order_id, &bad).is_err());
        let mut bad = row;
        bad[1] = 200;
        assert!(decode(o.order_id, &bad).is_err());
    }
}
