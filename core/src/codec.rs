//! Binary encoding of [`Command`]s for the order log.
//!
//! Compact, little-endian, versioned by a leading byte, and allocation-free on decode. The
//! journal frames each encoding with a length and CRC; Kafka carries it as the message
//! value. Decoding checks every field (enum tags, string charsets) so a damaged record is an
//! error, never a wrong order.

use thiserror::Error;

use crate::codes::RejectCode;
use crate::command::{
    AmendOrder, CancelAll, CancelAllTrigger, CancelOrder, Command, HaltScope, PlaceOrder,
    RiskDecision, SetHalt, VoidOrder,
};
use crate::ids::{AccountId, OrderId, ShortStr, SymbolId};
use crate::num::{Money, Price, Qty};
use crate::order::{OrderType, Side, TimeInForce};
use crate::validate::ValidatedOrder;

/// Current encoding version (first byte of every record).
pub const CODEC_VERSION: u8 = 1;

/// A record that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("record truncated")]
    Truncated,
    #[error("unsupported record version {0}")]
    Version(u8),
    #[error("invalid value for {0}")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after record")]
    Trailing(usize),
}

const PLACE: u8 = 1;
const CANCEL: u8 = 2;
const AMEND: u8 = 3;
const HALT: u8 = 4;
const VOID: u8 = 5;
const CANCEL_ALL: u8 = 6;

/// Appends the encoding of `cmd` to `out`.
pub fn encode(cmd: &Command, out: &mut Vec<u8>) {
    out.push(CODEC_VERSION);
    match cmd {
        Command::Place(p) => {
            out.push(PLACE);
            put_u128(out, p.order_id.0);
            put_str(out, p.account.as_str());
            put_u64(out, p.ts);
            let o = &p.order;
            put_u16(out, o.symbol.0);
            out.push(side_tag(o.side));
            out.push(match o.order_type {
                OrderType::Market => 0,
                OrderType::Limit => 1,
            });
            out.push(match o.time_in_force {
                TimeInForce::Gtc => 0,
                TimeInForce::Ioc => 1,
                TimeInForce::Fok => 2,
            });
            out.push(u8::from(o.post_only));
            put_i64(out, o.quantity.0);
            put_opt_i64(out, o.price.map(|p| p.0));
            put_opt_str(out, o.client_order_id.as_ref().map(|c| c.as_str()));
            put_opt_str(out, p.idempotency_key.as_ref().map(|k| k.as_str()));
            put_u64(out, p.fingerprint);
            put_opt_str(out, p.correlation_id.as_ref().map(|c| c.as_str()));
            put_risk(out, p.risk);
        }
        Command::Cancel(c) => {
            out.push(CANCEL);
            put_u128(out, c.order_id.0);
            put_str(out, c.account.as_str());
            put_u16(out, c.symbol.0);
            put_u64(out, c.ts);
            put_opt_str(out, c.correlation_id.as_ref().map(|c| c.as_str()));
        }
        Command::Amend(a) => {
            out.push(AMEND);
            put_u128(out, a.order_id.0);
            put_str(out, a.account.as_str());
            put_u16(out, a.symbol.0);
            put_opt_i64(out, a.quantity.map(|q| q.0));
            put_opt_i64(out, a.price.map(|p| p.0));
            put_u64(out, a.ts);
            put_opt_str(out, a.correlation_id.as_ref().map(|c| c.as_str()));
            put_risk(out, a.risk);
        }
        Command::Halt(h) => {
            out.push(HALT);
            match &h.scope {
                HaltScope::Global => out.push(0),
                HaltScope::Account(a) => {
                    out.push(1);
                    put_str(out, a.as_str());
                }
            }
            out.push(u8::from(h.halted));
            put_u64(out, h.ts);
        }
        Command::Void(v) => {
            out.push(VOID);
            put_u128(out, v.order_id.0);
            put_str(out, v.account.as_str());
            put_u16(out, v.symbol.0);
            put_u64(out, v.ts);
        }
        Command::CancelAll(c) => {
            out.push(CANCEL_ALL);
            put_str(out, c.account.as_str());
            put_opt_i64(out, c.symbol.map(|s| i64::from(s.0)));
            out.push(c.side.map_or(2, side_tag));
            out.push(match c.trigger {
                CancelAllTrigger::Request => 0,
                CancelAllTrigger::DeadMansSwitch => 1,
                CancelAllTrigger::Disconnect => 2,
            });
            put_u64(out, c.ts);
            put_opt_str(out, c.correlation_id.as_ref().map(|c| c.as_str()));
        }
    }
}

/// Decodes exactly one command from `buf` (no trailing bytes allowed).
pub fn decode(buf: &[u8]) -> Result<Command, CodecError> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.u8()?;
    if v != CODEC_VERSION {
        return Err(CodecError::Version(v));
    }
    let cmd = match r.u8()? {
        PLACE => {
            let order_id = OrderId(r.u128()?);
            let account = r.account()?;
            let ts = r.u64()?;
            let symbol = SymbolId(r.u16()?);
            let side = side_from(r.u8()?)?;
            let order_type = match r.u8()? {
                0 => OrderType::Market,
                1 => OrderType::Limit,
                _ => return Err(CodecError::Invalid("order type")),
            };
            let time_in_force = match r.u8()? {
                0 => TimeInForce::Gtc,
                1 => TimeInForce::Ioc,
                2 => TimeInForce::Fok,
                _ => return Err(CodecError::Invalid("time in force")),
            };
            let post_only = r.bool()?;
            let quantity = Qty(r.i64()?);
            let price = r.opt_i64()?.map(Price);
            let client_order_id = r.opt_short()?;
            let idempotency_key = r.opt_short()?;
            let fingerprint = r.u64()?;
            let correlation_id = r.opt_short()?;
            let risk = r.risk()?;
            Command::Place(PlaceOrder {
                order_id,
                account,
                order: ValidatedOrder {
                    symbol,
                    side,
                    order_type,
                    time_in_force,
                    post_only,
                    quantity,
                    price,
                    client_order_id,
                },
                ts,
                idempotency_key,
                fingerprint,
                correlation_id,
                risk,
            })
        }
        CANCEL => Command::Cancel(CancelOrder {
            order_id: OrderId(r.u128()?),
            account: r.account()?,
            symbol: SymbolId(r.u16()?),
            ts: r.u64()?,
            correlation_id: r.opt_short()?,
        }),
        AMEND => Command::Amend(AmendOrder {
            order_id: OrderId(r.u128()?),
            account: r.account()?,
            symbol: SymbolId(r.u16()?),
            quantity: r.opt_i64()?.map(Qty),
            price: r.opt_i64()?.map(Price),
            ts: r.u64()?,
            correlation_id: r.opt_short()?,
            risk: r.risk()?,
        }),
        HALT => {
            let scope = match r.u8()? {
                0 => HaltScope::Global,
                1 => HaltScope::Account(r.account()?),
                _ => return Err(CodecError::Invalid("halt scope")),
            };
            Command::Halt(SetHalt {
                scope,
                halted: r.bool()?,
                ts: r.u64()?,
            })
        }
        VOID => Command::Void(VoidOrder {
            order_id: OrderId(r.u128()?),
            account: r.account()?,
            symbol: SymbolId(r.u16()?),
            ts: r.u64()?,
        }),
        CANCEL_ALL => Command::CancelAll(CancelAll {
            account: r.account()?,
            symbol: match r.opt_i64()? {
                None => None,
                Some(v) => Some(SymbolId(
                    u16::try_from(v).map_err(|_| CodecError::Invalid("symbol"))?,
                )),
            },
            side: match r.u8()? {
                2 => None,
                v => Some(side_from(v)?),
            },
            trigger: match r.u8()? {
                0 => CancelAllTrigger::Request,
                1 => CancelAllTrigger::DeadMansSwitch,
                2 => CancelAllTrigger::Disconnect,
                _ => return Err(CodecError::Invalid("cancel-all trigger")),
            },
            ts: r.u64()?,
            correlation_id: r.opt_short()?,
        }),
        _ => return Err(CodecError::Invalid("record kind")),
    };
    if r.pos != buf.len() {
        return Err(CodecError::Trailing(buf.len() - r.pos));
    }
    Ok(cmd)
}

fn side_tag(s: Side) -> u8 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn side_from(v: u8) -> Result<Side, CodecError> {
    match v {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(CodecError::Invalid("side")),
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u16(out, s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}
fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_i64(out, v);
        }
        None => out.push(0),
    }
}
fn put_risk(out: &mut Vec<u8>, r: RiskDecision) {
    match r {
        RiskDecision::Unchecked => out.push(0),
        RiskDecision::Accepted { reserved } => {
            out.push(1);
            put_i64(out, reserved.0);
        }
        RiskDecision::Rejected(code) => {
            out.push(2);
            out.push(code as u8);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid("flag")),
        }
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn u128(&mut self) -> Result<u128, CodecError> {
        Ok(u128::from_le_bytes(self.arr()?))
    }
    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| CodecError::Invalid("string"))
    }
    fn account(&mut self) -> Result<AccountId, CodecError> {
        AccountId::new(self.str()?).map_err(|_| CodecError::Invalid("account"))
    }
    fn opt_short<const N: usize>(&mut self) -> Result<Option<ShortStr<N>>, CodecError> {
        if !self.bool()? {
            return Ok(None);
        }
        ShortStr::new(self.str()?)
            .map(Some)
            .map_err(|_| CodecError::Invalid("string"))
    }
    fn opt_i64(&mut self) -> Result<Option<i64>, CodecError> {
        if self.bool()? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }
    fn risk(&mut self) -> Result<RiskDecision, CodecError> {
        match self.u8()? {
            0 => Ok(RiskDecision::Unchecked),
            1 => Ok(RiskDecision::Accepted {
                reserved: Money(self.i64()?),
            }),
            2 => RejectCode::from_u8(self.u8()?)
                .map(RiskDecision::Rejected)
                .ok_or(CodecError::Invalid("reject code")),
            _ => Err(CodecError::Invalid("risk decision")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientOrderId, IdempotencyKey};

    fn place() -> Command {
        Command::Place(PlaceOrder {
            order_id: OrderId(0x0190_0000_0000_7000_8000_0000_0000_0001),
            account: AccountId::new("acct-1").unwrap(),
            order: ValidatedOrder {
                symbol: SymbolId(2),
                side: Side::Sell,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Fok,
                post_only: false,
                quantity: Qty(1000),
                price: Some(Price(4_500_000)),
                client_order_id: Some(ClientOrderId::new("c-1").unwrap()),
            },
            ts: 1_700_000_000_123_456_789,
            idempotency_key: Some(IdempotencyKey::new("key-1").unwrap()),
            fingerprint: 0xdead_beef,
            correlation_id: None,
            risk: RiskDecision::Accepted {
                reserved: Money(45_000_000_000),
            },
        })
    }

    #[test]
    fn every_kind_round_trips() {
        let acct = AccountId::new("a").unwrap();
        let cmds = [
            place(),
            Command::Cancel(CancelOrder {
                order_id: OrderId(7),
                account: acct,
                symbol: SymbolId(1),
                ts: 9,
                correlation_id: Some(ShortStr::new("corr").unwrap()),
            }),
            Command::Amend(AmendOrder {
                order_id: OrderId(8),
                account: acct,
                symbol: SymbolId(0),
                quantity: Some(Qty(5)),
                price: None,
                ts: 10,
                correlation_id: None,
                risk: RiskDecision::Rejected(RejectCode::InsufficientMargin),
            }),
            Command::Halt(SetHalt {
                scope: HaltScope::Account(acct),
                halted: true,
                ts: 11,
            }),
            Command::Halt(SetHalt {
                scope: HaltScope::Global,
                halted: false,
                ts: 12,
            }),
            Command::CancelAll(CancelAll {
                account: acct,
                symbol: Some(SymbolId(1)),
                side: Some(Side::Sell),
                trigger: CancelAllTrigger::Request,
                ts: 13,
                correlation_id: Some(ShortStr::new("c").unwrap()),
            }),
            Command::CancelAll(CancelAll {
                account: acct,
                symbol: None,
                side: None,
                trigger: CancelAllTrigger::DeadMansSwitch,
                ts: 14,
                correlation_id: None,
            }),
            Command::CancelAll(CancelAll {
                account: acct,
                symbol: None,
                side: None,
                trigger: CancelAllTrigger::Disconnect,
                ts: 15,
                correlation_id: None,
            }),
        ];
        for c in cmds {
            let mut buf = Vec::new();
            encode(&c, &mut buf);
            assert_eq!(decode(&buf), Ok(c));
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "prefix {cut} decoded");
            }
        }
    }

    #[test]
    fn damage_is_an_error_not_a_wrong_order() {
        let mut buf = Vec::new();
        encode(&place(), &mut buf);
        let mut v = buf.clone();
        v[0] = 9;
        assert_eq!(decode(&v), Err(CodecError::Version(9)));
        let mut t = buf.clone();
        t.push(0);
        assert_eq!(decode(&t), Err(CodecError::Trailing(1)));
    }
}
