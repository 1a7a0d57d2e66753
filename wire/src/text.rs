//! Scalar encodings shared by every wire type: exact decimals as strings, RFC 3339
//! timestamps and order ids.
//!
//! Each one serializes through a small stack buffer, so rendering an order allocates nothing
//! but the output buffer (the publish stage renders one acknowledgement per order).

use std::fmt::{self, Write as _};

use oms_core::num::{MONEY_DECIMALS, write_scaled};
use oms_core::{Instrument, Money, OrderId, Price, Qty};
use serde::{Serialize, Serializer};

/// A fixed-capacity text buffer on the stack.
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Buf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole `&str`s, so it is valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn as_str<S: Serializer>(s: S, f: impl FnOnce(&mut Buf) -> fmt::Result) -> Result<S::Ok, S::Error> {
    let mut b = Buf::new();
    f(&mut b).map_err(|_| serde::ser::Error::custom("value too long for its text form"))?;
    s.serialize_str(b.as_str())
}

/// An exact decimal: an integer count of `10^-decimals`, shown with exactly `decimals`
/// digits after the point, as a JSON string (`"45000.00"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub units: i64,
    pub decimals: u8,
}

impl Decimal {
    /// A price in its instrument's decimals.
    pub fn price(ins: &Instrument, p: Price) -> Self {
        Decimal {
            units: p.0,
            decimals: ins.price_decimals,
        }
    }

    /// A quantity in its instrument's decimals.
    pub fn qty(ins: &Instrument, q: Qty) -> Self {
        Decimal {
            units: q.0,
            decimals: ins.qty_decimals,
        }
    }

    /// An amount of the account currency (8 decimals).
    pub fn money(m: Money) -> Self {
        Decimal {
            units: m.0,
            decimals: MONEY_DECIMALS,
        }
    }

    /// Basis points shown as a percentage with 2 decimals (`250` → `"2.50"`).
    pub fn pct_of_bps(bps: u32) -> Self {
        Decimal {
            units: i64::from(bps),
            decimals: 2,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.units, self.decimals)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        as_str(s, |b| write_scaled(b, self.units, self.decimals))
    }
}

/// Nanoseconds since the Unix epoch, shown as RFC 3339 UTC with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub u64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        as_str(s, |b| oms_core::time::write_rfc3339(b, self.0))
    }
}

/// An order id in its UUID text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(pub OrderId);

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        as_str(s, |b| write!(b, "{}", self.0))
    }
}

/// Appends `v` as a JSON string literal (quotes and escapes), for the few envelopes that are
/// assembled around already-serialized wire objects (WebSocket messages, batch results).
pub fn push_json_str(out: &mut String, v: &str) {
    out.push_str(&serde_json::to_string(v).expect("a str always serializes"));
}

/// Appends `nanos` as a quoted RFC 3339 timestamp (the [`Timestamp`] form).
pub fn push_timestamp(out: &mut String, nanos: u64) {
    out.push('"');
    let _ = oms_core::time::write_rfc3339(out, nanos);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn scalars_render_exactly() {
        assert_eq!(
            json(&Timestamp(1_700_000_000_123_456_789)),
            "\"2023-11-14T22:13:20.123456Z\""
        );
        assert_eq!(json(&Timestamp(0)), "\"1970-01-01T00:00:00.000000Z\"");
        assert_eq!(
            json(&Decimal {
                units: -4_500_050,
                decimals: 2
            }),
            "\"-45000.50\""
        );
        assert_eq!(json(&Decimal::pct_of_bps(250)), "\"2.50\"");
        assert_eq!(
            json(&Decimal::money(Money(i64::MIN))),
            "\"-92233720368.54775808\""
        );
        let id = Id(OrderId(0x0190_0000_0000_7000_8000_0000_0000_0001));
        assert_eq!(json(&id), format!("\"{}\"", id.0));
    }
}
