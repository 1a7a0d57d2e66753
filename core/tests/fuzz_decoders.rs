//! Fuzz targets (proptest) for the decoders that read untrusted bytes: the order-log record
//! decoder and the decimal parser. Each input must be refused or decoded — never a panic —
//! and whatever is decoded must be canonical (re-encodes to the same bytes / same value).
//!
//! CI runs the default case count (256 per property, a few seconds). Longer:
//! `PROPTEST_CASES=200000 cargo test -p oms-core --release --test core_tests fuzz_decoders`.

use oms_core::codec::{decode, encode};
use oms_core::command::{
    AmendOrder, CancelAll, CancelAllTrigger, CancelOrder, Command, HaltScope, PlaceOrder,
    RiskDecision, SetHalt, VoidOrder,
};
use oms_core::ids::{AccountId, ClientOrderId, IdempotencyKey, OrderId, ShortStr, SymbolId};
use oms_core::num::{MAX_DECIMAL_LEN, Money, Price, Qty, parse_scaled};
use oms_core::order::{OrderType, Side, TimeInForce};
use oms_core::validate::ValidatedOrder;
use oms_core::{InstrumentTable, OrderRequest, validate};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        // PROPTEST_CASES overrides the default of 256.
        ..ProptestConfig::default()
    }
}

fn account() -> impl Strategy<Value = AccountId> {
    "[A-Za-z0-9._:@-]{1,64}".prop_map(|s| AccountId::new(&s).unwrap())
}

fn short<const N: usize>() -> impl Strategy<Value = Option<ShortStr<N>>> {
    proptest::option::of("[!-~]{1,40}".prop_map(|s| ShortStr::new(&s).unwrap()))
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn risk() -> impl Strategy<Value = RiskDecision> {
    prop_oneof![
        Just(RiskDecision::Unchecked),
        any::<i64>().prop_map(|r| RiskDecision::Accepted { reserved: Money(r) }),
        (0usize..oms_core::RejectCode::ALL.len())
            .prop_map(|i| RiskDecision::Rejected(oms_core::RejectCode::ALL[i])),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let place = (
        any::<u128>(),
        account(),
        any::<u64>(),
        (any::<u16>(), side(), any::<bool>(), 0u8..3, any::<bool>()),
        (any::<i64>(), proptest::option::of(any::<i64>())),
        (
            short::<64>(),
            short::<255>(),
            any::<u64>(),
            short::<64>(),
            risk(),
        ),
    )
        .prop_map(
            |(id, account, ts, (sym, side, limit, tif, post), (q, p), (c, k, f, corr, risk))| {
                Command::Place(PlaceOrder {
                    order_id: OrderId(id),
                    account,
                    order: ValidatedOrder {
                        symbol: SymbolId(sym),
                        side,
                        order_type: if limit {
                            OrderType::Limit
                        } else {
                            OrderType::Market
                        },
                        time_in_force: [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok]
                            [tif as usize],
                        post_only: post,
                        quantity: Qty(q),
                        price: p.map(Price),
                        client_order_id: c.map(|c: ClientOrderId| c),
                    },
                    ts,
                    idempotency_key: k.map(|k: IdempotencyKey| k),
                    fingerprint: f,
                    correlation_id: corr,
                    risk,
                })
            },
        );
    let cancel = (
        any::<u128>(),
        account(),
        any::<u16>(),
        any::<u64>(),
        short::<64>(),
    )
        .prop_map(|(id, account, sym, ts, corr)| {
            Command::Cancel(CancelOrder {
                order_id: OrderId(id),
                account,
                symbol: SymbolId(sym),
                ts,
                correlation_id: corr,
            })
        });
    let amend = (
        any::<u128>(),
        account(),
        any::<u16>(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
        any::<u64>(),
        risk(),
    )
        .prop_map(|(id, account, sym, q, p, ts, risk)| {
            Command::Amend(AmendOrder {
                order_id: OrderId(id),
                account,
                symbol: SymbolId(sym),
                quantity: q.map(Qty),
                price: p.map(Price),
                ts,
                correlation_id: None,
                risk,
            })
        });
    let halt = (proptest::option::of(account()), any::<bool>(), any::<u64>()).prop_map(
        |(a, halted, ts)| {
            Command::Halt(SetHalt {
                scope: a.map_or(HaltScope::Global, HaltScope::Account),
                halted,
                ts,
            })
        },
    );
    let void = (any::<u128>(), account(), any::<u16>(), any::<u64>()).prop_map(
        |(id, account, sym, ts)| {
            Command::Void(VoidOrder {
                order_id: OrderId(id),
                account,
                symbol: SymbolId(sym),
                ts,
            })
        },
    );
    let cancel_all = (
        account(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(side()),
        any::<bool>(),
        any::<u64>(),
        short::<64>(),
    )
        .prop_map(|(account, sym, side, dead, ts, corr)| {
            Command::CancelAll(CancelAll {
                account,
                symbol: sym.map(SymbolId),
                side,
                trigger: if dead {
                    CancelAllTrigger::DeadMansSwitch
                } else {
                    CancelAllTrigger::Request
                },
                ts,
                correlation_id: corr,
            })
        });
    prop_oneof![place, cancel, amend, halt, void, cancel_all]
}

/// The decimal grammar, written independently of the parser.
fn grammatical(s: &str, allow_negative: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_DECIMAL_LEN {
        return false;
    }
    let mut i = 0;
    if b[0] == b'-' {
        if !allow_negative {
            return false;
        }
        i = 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if digits(&mut i) == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let n = digits(&mut i);
        if n == 0 || n > 3 {
            return false;
        }
    }
    i == b.len()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: refused or decoded, never a panic; a decoded record is canonical.
    #[test]
    fn fuzz_record_decoder_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(cmd) = decode(&bytes) {
            let mut again = Vec::new();
            encode(&cmd, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    /// Valid records with one byte changed, cut or extended: never a panic, and anything that
    /// still decodes re-encodes to exactly the damaged bytes (no silent reinterpretation).
    #[test]
    fn fuzz_record_decoder_damaged_records(
        cmd in command(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        encode(&cmd, &mut buf);
        prop_assert_eq!(decode(&buf), Ok(cmd));
        let mut flipped = buf.clone();
        let i = pos.index(flipped.len());
        flipped[i] = byte;
        if let Ok(c) = decode(&flipped) {
            let mut again = Vec::new();
            encode(&c, &mut again);
            prop_assert_eq!(&again, &flipped);
        }
        let n = cut.index(buf.len());
        prop_assert!(decode(&buf[..n]).is_err());
        let mut longer = buf.clone();
        longer.push(byte);
        prop_assert!(decode(&longer).is_err());
    }

    /// Decimal text: accepted exactly when it matches the documented grammar (and fits).
    #[test]
    fn fuzz_decimal_grammar(s in "[-+ .eE0-9x]{0,12}|[0-9]{1,45}", neg in any::<bool>()) {
        let r = parse_scaled(&s, 4, neg);
        if !grammatical(&s, neg) {
            prop_assert!(r.is_err(), "{s:?} accepted as {r:?}");
        }
    }

    /// The order validator on arbitrary text fields: an answer, never a panic; an accepted
    /// order has a positive quantity (and price for LIMIT).
    #[test]
    fn fuzz_order_validator(
        symbol in "[A-Z/-]{0,9}",
        side in "BUY|SELL|[a-z]{0,4}",
        qty in "[-+ .e0-9]{0,12}",
        price in proptest::option::of("[-+ .e0-9]{0,12}"),
        order_type in proptest::option::of("LIMIT|MARKET|[A-Z]{0,3}"),
        tif in proptest::option::of("GTC|IOC|FOK|[A-Z]{0,3}"),
        post_only in any::<bool>(),
        cid in proptest::option::of("[ -~]{0,70}"),
    ) {
        let t = InstrumentTable::demo();
        let req = OrderRequest {
            symbol: &symbol,
            side: &side,
            order_type: order_type.as_deref(),
            time_in_force: tif.as_deref(),
            post_only,
            quantity: &qty,
            price: price.as_deref(),
            client_order_id: cid.as_deref(),
        };
        if let Ok(o) = validate(&t, &req) {
            prop_assert!(o.quantity.0 > 0);
            prop_assert!(o.price.is_none_or(|p| p.0 > 0));
        }
    }
}
