//! Fixed-point parsing and formatting: exact both ways, for every instrument scale.

use oms_core::num::{MONEY_DECIMALS, format_scaled, parse_scaled};
use oms_core::{InstrumentTable, Money, Price, Qty};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// format → parse gives back the same integer, and parse → format gives canonical text.
    #[test]
    fn prop_price_parse_format_round_trip(units in 1i64..=1_000_000_000_000, sym in 0usize..3) {
        let t = InstrumentTable::demo();
        let ins = t.iter().nth(sym).unwrap();
        let p = Price(units);
        let text = ins.format_price(p);
        prop_assert_eq!(ins.parse_price(&text), Ok(p));
        let q = Qty(units);
        prop_assert_eq!(ins.parse_qty(&ins.format_qty(q)), Ok(q));
    }

    /// Any decimal with at most `d` fractional digits parses exactly; one more non-zero digit
    /// is refused, never rounded.
    #[test]
    fn prop_parse_is_exact_or_refuses(int in 0u64..10_000_000, frac in 0u64..100_000_000, d in 0u8..=8, extra in 1u8..=9) {
        let frac_digits = format!("{frac:08}");
        let kept = &frac_digits[..d as usize];
        let text = if d == 0 { int.to_string() } else { format!("{int}.{kept}") };
        let expect = (int as i64) * 10i64.pow(u32::from(d)) + kept.parse::<i64>().unwrap_or(0);
        prop_assert_eq!(parse_scaled(&text, d, false), Ok(expect));
        let longer = format!("{int}.{kept}{extra}");
        prop_assert!(parse_scaled(&longer, d, false).is_err());
        prop_assert_eq!(format_scaled(expect, d).parse::<String>().unwrap(), if d == 0 { int.to_string() } else { format!("{int}.{kept}") });
    }

    /// Money keeps its sign and every one of its eight decimals.
    #[test]
    fn prop_money_round_trip(v in -9_000_000_000_000_000i64..9_000_000_000_000_000) {
        prop_assert_eq!(parse_scaled(&format_scaled(v, MONEY_DECIMALS), MONEY_DECIMALS, true), Ok(v));
        prop_assert_eq!(Money::parse(&format_scaled(v, MONEY_DECIMALS)), Ok(Money(v)));
    }
}
