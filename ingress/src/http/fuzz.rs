//! Fuzz target (proptest) for the JSON order decoder: the body of `POST /api/orders` through
//! `orders::parse_place` and then core's `validate`, as the HTTP layer and the validate stage
//! run them. Any bytes must be answered — a 400 with a stable code, or a validated order —
//! never a panic; and a body built from a valid order decodes to exactly that order, whether
//! its numbers come as JSON numbers or decimal strings and whatever the key order.
//!
//! CI runs the default case count (256 per property, about a second). Longer:
//! `PROPTEST_CASES=200000 cargo test -p oms-ingress --release --lib http::fuzz`.
//! (The order-log record decoder, the decimal parser and the journal reader have their own
//! targets: `core/tests/fuzz_decoders.rs`, `adapters/journal/tests/fuzz_reader.rs`.)

use oms_core::{InstrumentTable, OrderRequest, ValidationCode, validate};
use proptest::prelude::*;

use super::orders::parse_place;

/// The codes `parse_place` answers with (docs/errors.md); `validate`'s are
/// [`ValidationCode::ALL`]. A new code must be added here and documented.
const PARSE_CODES: &[&str] = &[
    "INVALID_JSON",
    "UNKNOWN_FIELD",
    "UNKNOWN_SYMBOL",
    "INVALID_SIDE",
    "INVALID_QUANTITY",
    "INVALID_PRICE",
    "INVALID_ORDER_TYPE",
    "INVALID_TIME_IN_FORCE",
    "INVALID_CLIENT_ORDER_ID",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        // PROPTEST_CASES overrides the default of 256.
        ..ProptestConfig::default()
    }
}

/// The body through both steps; `Err` is the answer's code.
fn decode(table: &InstrumentTable, body: &[u8]) -> Result<oms_core::ValidatedOrder, String> {
    let raw = parse_place(body).map_err(|e| {
        assert_eq!(e.status, 400, "{e:?}");
        e.code.to_owned()
    })?;
    validate(table, &raw.request()).map_err(|e| {
        let e = oms_wire::ApiError::from(e);
        assert_eq!(e.status, 400, "{e:?}");
        e.code.to_owned()
    })
}

fn known(code: &str) -> bool {
    PARSE_CODES.contains(&code) || ValidationCode::ALL.iter().any(|c| c.as_str() == code)
}

/// A JSON value of any shape, biased towards what an order body holds.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[-+ .0-9eE]{0,24}".prop_map(|s| s.clone()),
        "[-+ .0-9eE]{0,24}".prop_map(|s| format!("\"{s}\"")),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop_oneof![
            Just("BTC/USD"),
            Just("ETH-USD"),
            Just("BUY"),
            Just("sell"),
            Just("LIMIT"),
            Just("MARKET"),
            Just("GTC"),
            Just("IOC"),
            Just("FOK"),
        ]
        .prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,8}", inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

const FIELDS: &[&str] = &[
    "symbol",
    "side",
    "quantity",
    "price",
    "orderType",
    "timeInForce",
    "postOnly",
    "clientOrderId",
];

/// An object with the order's own field names (some repeated or unknown) and any values.
fn order_like_body() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            prop_oneof![
                8 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
                1 => "[a-zA-Z]{1,12}",
            ],
            json_value(),
        ),
        0..10,
    )
    .prop_map(|fields| {
        let fields: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
            .collect();
        format!("{{{}}}", fields.join(","))
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: refused with a documented code or decoded, never a panic.
    #[test]
    fn any_bytes_are_answered(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let table = InstrumentTable::demo();
        if let Err(code) = decode(&table, &body) {
            prop_assert!(known(&code), "undocumented code {code}");
        }
    }

    /// Objects shaped like orders, with any values: the same.
    #[test]
    fn order_like_objects_are_answered(body in order_like_body()) {
        let table = InstrumentTable::demo();
        if let Err(code) = decode(&table, body.as_bytes()) {
            prop_assert!(known(&code), "undocumented code {code} for {body}");
        }
    }

    /// A valid limit order decodes to the order it describes, whether its numbers are JSON
    /// numbers or decimal strings and in whatever field order.
    #[test]
    fn a_valid_order_decodes_to_itself(
        buy in any::<bool>(),
        ticks in 43_000u32..47_000,
        lots in 10u32..5_000,
        strings in any::<bool>(),
        tif in proptest::sample::select(&["GTC", "IOC", "FOK"][..]),
        reversed in any::<bool>(),
    ) {
        let table = InstrumentTable::demo();
        let price = format!("{ticks}.00");
        let qty = format!("0.{lots:04}");
        let num = |s: &str| if strings { format!("\"{s}\"") } else { s.to_owned() };
        let mut fields = [
            "\"symbol\":\"BTC/USD\"".to_owned(),
            format!("\"side\":\"{}\"", if buy { "BUY" } else { "SELL" }),
            "\"orderType\":\"LIMIT\"".to_owned(),
            format!("\"timeInForce\":\"{tif}\""),
            format!("\"quantity\":{}", num(&qty)),
            format!("\"price\":{}", num(&price)),
        ];
        if reversed {
            fields.reverse();
        }
        let body = format!("{{{}}}", fields.join(","));
        let got = decode(&table, body.as_bytes()).map_err(|c| TestCaseError::fail(format!("{c} for {body}")))?;
        let want = validate(&table, &OrderRequest {
            symbol: "BTC/USD",
            side: if buy { "BUY" } else { "SELL" },
            order_type: Some("LIMIT"),
            time_in_force: Some(tif),
            post_only: false,
            quantity: &qty,
            price: Some(&price),
            client_order_id: None,
        }).expect("the reference order is valid");
        prop_assert_eq!(got, want);
    }
}
