//! The instrument table: what can be traded and in which increments.
//!
//! Every number an order carries is interpreted through its instrument: decimals, tick and lot
//! multiples, size limits, the price band and the margin rate. The table is loaded once (TOML
//! or the built-in demo of BTC/USD, ETH/USD, SOL/USD) and never changes while running, so
//! every stage can read it without coordination.

use std::collections::HashMap;

use serde::Deserialize;
use thiserror::Error;

use crate::ids::SymbolId;
use crate::num::{MONEY_DECIMALS, Money, NumError, Price, Qty, parse_scaled, pow10, write_scaled};

/// One tradable instrument. Prices and quantities are in its own fixed-point units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    pub id: SymbolId,
    /// Canonical name, `BASE/QUOTE` (paths use `BASE-QUOTE`).
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub price_decimals: u8,
    pub qty_decimals: u8,
    /// Legal price multiple, in price units.
    pub tick: i64,
    /// Legal quantity multiple, in quantity units.
    pub lot: i64,
    pub min_qty: Qty,
    pub max_qty: Qty,
    pub min_notional: Money,
    /// Maximum notional of one order.
    pub max_notional: Money,
    /// Allowed distance from the reference price, in basis points (500 = 5 %).
    pub price_band_bps: u32,
    /// Initial margin rate in basis points (1000 = 10 %).
    pub initial_margin_bps: u32,
    /// Largest absolute position an account may hold.
    pub max_position: Qty,
    pub reference_price: Price,
}

impl Instrument {
    /// Parses a price exactly; it must be positive and on the tick.
    pub fn parse_price(&self, text: &str) -> Result<Price, NumError> {
        parse_scaled(text, self.price_decimals, false).map(Price)
    }

    /// Parses a quantity exactly.
    pub fn parse_qty(&self, text: &str) -> Result<Qty, NumError> {
        parse_scaled(text, self.qty_decimals, false).map(Qty)
    }

    pub fn format_price(&self, p: Price) -> String {
        let mut s = String::with_capacity(16);
        let _ = write_scaled(&mut s, p.0, self.price_decimals);
        s
    }

    pub fn format_qty(&self, q: Qty) -> String {
        let mut s = String::with_capacity(16);
        let _ = write_scaled(&mut s, q.0, self.qty_decimals);
        s
    }

    /// Price × quantity in [`Money`] units, exact (the table guarantees the scales fit).
    pub fn notional(&self, p: Price, q: Qty) -> Money {
        Money(self.notional_wide(p, q) as i64)
    }

    /// Price × quantity in [`Money`] units as i128 (no overflow for any i64 inputs that
    /// a validated order can carry).
    pub fn notional_wide(&self, p: Price, q: Qty) -> i128 {
        let scale = MONEY_DECIMALS - self.price_decimals - self.qty_decimals;
        i128::from(p.0) * i128::from(q.0) * pow10(scale)
    }

    /// Initial margin for a notional: notional × IM rate, rounded up to a money unit.
    pub fn margin_for(&self, notional: Money) -> Money {
        let n = i128::from(notional.0) * i128::from(self.initial_margin_bps);
        Money(((n + 9_999) / 10_000) as i64)
    }

    /// The inclusive price range allowed around `reference`, snapped inward to the tick.
    pub fn band(&self, reference: Price) -> (Price, Price) {
        let delta = i128::from(reference.0) * i128::from(self.price_band_bps) / 10_000;
        let lo = (i128::from(reference.0) - delta).max(self.tick as i128);
        let hi = i128::from(reference.0) + delta;
        let t = self.tick as i128;
        let lo = (lo + t - 1) / t * t;
        let hi = hi / t * t;
        (Price(lo as i64), Price(hi.min(i64::MAX as i128) as i64))
    }

    /// Converts a price-units × quantity-units product into average price units (floor).
    pub fn avg_price(&self, notional_pq: i128, qty: Qty) -> Price {
        if qty.0 == 0 {
            Price(0)
        } else {
            Price((notional_pq / i128::from(qty.0)) as i64)
        }
    }

    /// The symbol as it appears in URL paths: `BTC-USD`.
    pub fn path_symbol(&self) -> String {
        self.symbol.replace('/', "-")
    }
}

/// The instrument table could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InstrumentError {
    #[error("instrument file is not valid TOML: {0}")]
    Toml(String),
    #[error("instrument {symbol}: {field}: {reason}")]
    Field {
        symbol: String,
        field: &'static str,
        reason: String,
    },
    #[error("duplicate instrument {0}")]
    Duplicate(String),
    #[error("no instruments defined")]
    Empty,
    #[error("instrument {0}: quote currency differs from the account currency {1}")]
    Currency(String, String),
}

/// All instruments, indexed by [`SymbolId`] and by name (`BTC/USD` or `BTC-USD`).
#[derive(Clone, Debug)]
pub struct InstrumentTable {
    by_id: Vec<Instrument>,
    by_name: HashMap<String, SymbolId>,
    /// The currency accounts hold (all quotes must equal it).
    pub account_currency: String,
}

/// The TOML shape of one instrument: decimal strings, parsed exactly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct InstrumentSpec {
    symbol: String,
    tick_size: String,
    lot_size: String,
    min_qty: String,
    max_qty: String,
    min_notional: String,
    max_notional: String,
    price_band_pct: String,
    initial_margin_pct: String,
    max_position: String,
    reference_price: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    #[serde(default = "default_currency")]
    account_currency: String,
    instrument: Vec<InstrumentSpec>,
}

fn default_currency() -> String {
    "USD".to_owned()
}

/// The built-in demo table as TOML (also the documented example of the file format).
pub const DEFAULT_INSTRUMENTS_TOML: &str = r#"account_currency = "USD"

[[instrument]]
symbol = "BTC/USD"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
max_qty = "100"
min_notional = "10"
max_notional = "5000000"
price_band_pct = "5"
initial_margin_pct = "10"
max_position = "50"
reference_price = "45000.00"

[[instrument]]
symbol = "ETH/USD"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "1000"
min_notional = "10"
max_notional = "5000000"
price_band_pct = "5"
initial_margin_pct = "10"
max_position = "500"
reference_price = "2500.00"

[[instrument]]
symbol = "SOL/USD"
tick_size = "0.001"
lot_size = "0.01"
min_qty = "0.01"
max_qty = "10000"
min_notional = "10"
max_notional = "5000000"
price_band_pct = "5"
initial_margin_pct = "10"
max_position = "50000"
reference_price = "100.000"
"#;

fn decimals_of(text: &str) -> u8 {
    match text.trim().find('.') {
        Some(i) => text.trim()[i + 1..].len() as u8,
        None => 0,
    }
}

impl InstrumentTable {
    /// The demo table: BTC/USD, ETH/USD, SOL/USD.
    pub fn demo() -> Self {
        Self::from_toml(DEFAULT_INSTRUMENTS_TOML).expect("the built-in table is valid")
    }

    /// Loads a table from TOML (see [`DEFAULT_INSTRUMENTS_TOML`] for the format).
    pub fn from_toml(text: &str) -> Result<Self, InstrumentError> {
        let spec: TableSpec =
            toml::from_str(text).map_err(|e| InstrumentError::Toml(e.to_string()))?;
        if spec.instrument.is_empty() {
            return Err(InstrumentError::Empty);
        }
        let mut list = Vec::with_capacity(spec.instrument.len());
        for (i, s) in spec.instrument.iter().enumerate() {
            list.push(build(SymbolId(i as u16), s)?);
        }
        Self::new(list, spec.account_currency)
    }

    /// Builds a table from instruments; ids are reassigned densely in order.
    pub fn new(
        mut list: Vec<Instrument>,
        account_currency: String,
    ) -> Result<Self, InstrumentError> {
        if list.is_empty() {
            return Err(InstrumentError::Empty);
        }
        let mut by_name = HashMap::new();
        for (i, ins) in list.iter_mut().enumerate() {
            ins.id = SymbolId(i as u16);
            if ins.quote != account_currency {
                return Err(InstrumentError::Currency(
                    ins.symbol.clone(),
                    account_currency,
                ));
            }
            if by_name.insert(ins.symbol.clone(), ins.id).is_some() {
                return Err(InstrumentError::Duplicate(ins.symbol.clone()));
            }
            by_name.insert(ins.path_symbol(), ins.id);
        }
        Ok(InstrumentTable {
            by_id: list,
            by_name,
            account_currency,
        })
    }

    /// Finds an instrument by `BTC/USD` or `BTC-USD`.
    pub fn lookup(&self, name: &str) -> Option<&Instrument> {
        self.by_name.get(name).map(|id| &self.by_id[id.0 as usize])
    }

    pub fn get(&self, id: SymbolId) -> &Instrument {
        &self.by_id[id.0 as usize]
    }

    pub fn try_get(&self, id: SymbolId) -> Option<&Instrument> {
        self.by_id.get(id.0 as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.by_id.iter()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn build(id: SymbolId, s: &InstrumentSpec) -> Result<Instrument, InstrumentError> {
    let err = |field: &'static str, reason: String| InstrumentError::Field {
        symbol: s.symbol.clone(),
        field,
        reason,
    };
    let (base, quote) = s
        .symbol
        .split_once('/')
        .ok_or_else(|| err("symbol", "expected BASE/QUOTE".into()))?;
    let pd = decimals_of(&s.tick_size);
    let qd = decimals_of(&s.lot_size);
    if pd + qd > MONEY_DECIMALS {
        return Err(err(
            "tick_size",
            format!("tick and lot decimals exceed {MONEY_DECIMALS}"),
        ));
    }
    let num = |field: &'static str, text: &str, d: u8| {
        parse_scaled(text, d, false).map_err(|e| err(field, e.to_string()))
    };
    let tick = num("tick_size", &s.tick_size, pd)?;
    let lot = num("lot_size", &s.lot_size, qd)?;
    if tick <= 0 || lot <= 0 {
        return Err(err("tick_size", "tick and lot must be positive".into()));
    }
    let pct_bps = |field: &'static str, text: &str| num(field, text, 2).map(|v| v as u32);
    let ins = Instrument {
        id,
        symbol: s.symbol.clone(),
        base: base.to_owned(),
        quote: quote.to_owned(),
        price_decimals: pd,
        qty_decimals: qd,
        tick,
        lot,
        min_qty: Qty(num("min_qty", &s.min_qty, qd)?),
        max_qty: Qty(num("max_qty", &s.max_qty, qd)?),
        min_notional: Money(num("min_notional", &s.min_notional, MONEY_DECIMALS)?),
        max_notional: Money(num("max_notional", &s.max_notional, MONEY_DECIMALS)?),
        price_band_bps: pct_bps("price_band_pct", &s.price_band_pct)?,
        initial_margin_bps: pct_bps("initial_margin_pct", &s.initial_margin_pct)?,
        max_position: Qty(num("max_position", &s.max_position, qd)?),
        reference_price: Price(num("reference_price", &s.reference_price, pd)?),
    };
    if ins.reference_price.0 % tick != 0 || ins.reference_price.0 <= 0 {
        return Err(err(
            "reference_price",
            "must be a positive multiple of the tick".into(),
        ));
    }
    if ins.min_qty.0 <= 0 || ins.min_qty.0 % lot != 0 || ins.max_qty.0 < ins.min_qty.0 {
        return Err(err(
            "min_qty",
            "must be a positive lot multiple not above max_qty".into(),
        ));
    }
    Ok(ins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_table_has_three_symbols_with_exact_scales() {
        let t = InstrumentTable::demo();
        assert_eq!(t.len(), 3);
        let btc = t.lookup("BTC-USD").expect("path form");
        assert_eq!(btc.symbol, "BTC/USD");
        assert_eq!(
            (btc.price_decimals, btc.qty_decimals, btc.tick, btc.lot),
            (2, 4, 1, 1)
        );
        let p = btc.parse_price("45000").unwrap();
        let q = btc.parse_qty("0.1").unwrap();
        assert_eq!(btc.notional(p, q), Money::parse("4500").unwrap());
        assert_eq!(
            btc.margin_for(btc.notional(p, q)),
            Money::parse("450").unwrap()
        );
        assert_eq!(btc.band(p), (Price(4_275_000), Price(4_725_000)));
        assert_eq!(btc.format_price(p), "45000.00");
        assert_eq!(btc.format_qty(q), "0.1000");
        let sol = t.lookup("SOL/USD").unwrap();
        assert_eq!((sol.price_decimals, sol.qty_decimals), (3, 2));
    }

    #[test]
    fn bad_tables_are_refused_with_the_field() {
        let bad = DEFAULT_INSTRUMENTS_TOML.replace(
            "reference_price = \"45000.00\"",
            "reference_price = \"45000.001\"",
        );
        assert!(matches!(
            InstrumentTable::from_toml(&bad),
            Err(InstrumentError::Field {
                field: "reference_price",
                ..
            })
        ));
        assert!(matches!(
            InstrumentTable::from_toml("x = 1"),
            Err(InstrumentError::Toml(_))
        ));
        let dup = format!(
            "{DEFAULT_INSTRUMENTS_TOML}\n[[instrument]]\nsymbol = \"BTC/USD\"\ntick_size = \"0.01\"\nlot_size = \"0.0001\"\nmin_qty = \"0.0001\"\nmax_qty = \"1\"\nmin_notional = \"1\"\nmax_notional = \"10\"\nprice_band_pct = \"5\"\ninitial_margin_pct = \"10\"\nmax_position = \"1\"\nreference_price = \"1.00\"\n"
        );
        assert_eq!(
            InstrumentTable::from_toml(&dup).err(),
            Some(InstrumentError::Duplicate("BTC/USD".into()))
        );
    }
}
