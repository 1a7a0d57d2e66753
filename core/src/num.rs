//! Fixed-point numbers: prices, quantities and money as integers.
//!
//! Money is never a float. A [`Price`] counts units of `10^-price_decimals` of the quote
//! currency, a [`Qty`] counts units of `10^-qty_decimals` of the base asset; the instrument
//! says how many decimals and which multiples (tick, lot) are legal. [`Money`] is always in
//! units of `10^-MONEY_DECIMALS` of the account currency so that sums across instruments are
//! exact. Text from the edge (`"0.1"`, `45000`, `"45000.50"`) is parsed exactly: a digit the
//! scale cannot hold is an error, never a rounding.

use std::fmt;

use thiserror::Error;

/// Decimals of [`Money`]: 1 unit = 10^-8 of the account currency.
pub const MONEY_DECIMALS: u8 = 8;

/// A price in instrument price units (10^-price_decimals of the quote currency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub i64);

/// A quantity in instrument quantity units (10^-qty_decimals of the base asset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Qty(pub i64);

/// An amount of the account currency in units of 10^-[`MONEY_DECIMALS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Qty {
    pub const ZERO: Qty = Qty(0);
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn min(self, other: Qty) -> Qty {
        if self.0 <= other.0 { self } else { other }
    }
}

impl Money {
    pub const ZERO: Money = Money(0);
    pub fn checked_add(self, o: Money) -> Option<Money> {
        self.0.checked_add(o.0).map(Money)
    }
    pub fn checked_sub(self, o: Money) -> Option<Money> {
        self.0.checked_sub(o.0).map(Money)
    }
    /// Formats with [`MONEY_DECIMALS`] decimals, trailing zeros trimmed to at least 2.
    pub fn to_decimal_string(self) -> String {
        let full = format_scaled(self.0, MONEY_DECIMALS);
        trim_zeros(full, 2)
    }
    /// Parses an exact decimal amount of the account currency.
    pub fn parse(text: &str) -> Result<Money, NumError> {
        parse_scaled(text, MONEY_DECIMALS, true).map(Money)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}
impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, o: Money) -> Money {
        Money(self.0 - o.0)
    }
}
impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        self.0 += o.0;
    }
}
impl std::ops::SubAssign for Money {
    fn sub_assign(&mut self, o: Money) {
        self.0 -= o.0;
    }
}
impl std::ops::Add for Qty {
    type Output = Qty;
    fn add(self, o: Qty) -> Qty {
        Qty(self.0 + o.0)
    }
}
impl std::ops::Sub for Qty {
    type Output = Qty;
    fn sub(self, o: Qty) -> Qty {
        Qty(self.0 - o.0)
    }
}
impl std::ops::AddAssign for Qty {
    fn add_assign(&mut self, o: Qty) {
        self.0 += o.0;
    }
}
impl std::ops::SubAssign for Qty {
    fn sub_assign(&mut self, o: Qty) {
        self.0 -= o.0;
    }
}

/// Why a decimal text could not become a fixed-point number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum NumError {
    #[error("empty number")]
    Empty,
    #[error("not a decimal number")]
    Invalid,
    #[error("more decimals than allowed ({0})")]
    TooManyDecimals(u8),
    #[error("must not be negative")]
    Negative,
    #[error("number too large")]
    Overflow,
}

/// Most characters a decimal text may have (digits, point, sign, exponent together).
pub const MAX_DECIMAL_LEN: usize = 40;

/// Parses decimal text into an integer count of `10^-decimals` units, exactly.
///
/// The grammar is strict (JSON's number grammar, also inside strings):
/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?`, at most [`MAX_DECIMAL_LEN`] characters. No
/// surrounding spaces, no `+` sign, no bare `.5` or `5.`; a `-` only when `allow_negative`
/// (otherwise [`NumError::Negative`], even for `-0`). Trailing zeros past the scale are fine
/// (`"0.10000"` at 4 decimals); any other digit past it is [`NumError::TooManyDecimals`].
pub fn parse_scaled(text: &str, decimals: u8, allow_negative: bool) -> Result<i64, NumError> {
    let s = text;
    if s.is_empty() {
        return Err(NumError::Empty);
    }
    if s.len() > MAX_DECIMAL_LEN {
        return Err(NumError::Invalid);
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if neg && !allow_negative {
        return Err(NumError::Negative);
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e = &body[i + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(NumError::Invalid);
            }
            let e: i32 = e.parse().map_err(|_| NumError::Invalid)?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() || (mantissa.contains('.') && frac_part.is_empty()) {
        return Err(NumError::Invalid);
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(NumError::Invalid);
    }
    if exp.abs() > 64 {
        return Err(NumError::Overflow);
    }
    // value = digits(int_part ++ frac_part) * 10^(exp - len(frac_part)); we want
    // value * 10^decimals as an integer.
    let shift: i32 = exp - frac_part.len() as i32 + decimals as i32;
    let mut acc: i128 = 0;
    let digits = int_part.bytes().chain(frac_part.bytes());
    let total_digits = int_part.len() + frac_part.len();
    // Digits that fall below the scale (when shift < 0) must all be zero.
    let keep = if shift >= 0 {
        total_digits
    } else {
        total_digits.saturating_sub((-shift) as usize)
    };
    for (i, b) in digits.enumerate() {
        let d = (b - b'0') as i128;
        if i < keep {
            acc = acc
                .checked_mul(10)
                .and_then(|a| a.checked_add(d))
                .ok_or(NumError::Overflow)?;
            if acc > i64::MAX as i128 {
                return Err(NumError::Overflow);
            }
        } else if d != 0 {
            return Err(NumError::TooManyDecimals(decimals));
        }
    }
    if shift > 0 {
        for _ in 0..shift {
            acc = acc.checked_mul(10).ok_or(NumError::Overflow)?;
            if acc > i64::MAX as i128 {
                return Err(NumError::Overflow);
            }
        }
    }
    if neg && acc != 0 {
        if !allow_negative {
            return Err(NumError::Negative);
        }
        acc = -acc;
    }
    i64::try_from(acc).map_err(|_| NumError::Overflow)
}

/// Formats an integer count of `10^-decimals` units as exact decimal text with exactly
/// `decimals` digits after the point (none when `decimals` is 0).
pub fn format_scaled(value: i64, decimals: u8) -> String {
    let mut out = String::with_capacity(24);
    write_scaled(&mut out, value, decimals).expect("writing to a String cannot fail");
    out
}

/// [`format_scaled`] into any writer, without allocating.
pub fn write_scaled(w: &mut impl fmt::Write, value: i64, decimals: u8) -> fmt::Result {
    let neg = value < 0;
    let abs = value.unsigned_abs();
    if decimals == 0 {
        if neg {
            w.write_char('-')?;
        }
        return write!(w, "{abs}");
    }
    let pow = 10u64.pow(decimals as u32);
    let int = abs / pow;
    let frac = abs % pow;
    if neg {
        w.write_char('-')?;
    }
    write!(w, "{int}.{frac:0width$}", width = decimals as usize)
}

fn trim_zeros(mut s: String, min_decimals: usize) -> String {
    if let Some(dot) = s.find('.') {
        while s.len() > dot + 1 + min_decimals && s.ends_with('0') {
            s.pop();
        }
    }
    s
}

/// `10^n` as i128; `n` is small (decimals of an instrument).
pub(crate) const fn pow10(n: u8) -> i128 {
    let mut r: i128 = 1;
    let mut i = 0;
    while i < n {
        r *= 10;
        i += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings_and_json_number_text_exactly() {
        assert_eq!(parse_scaled("0.1", 4, false), Ok(1000));
        assert_eq!(parse_scaled("45000", 2, false), Ok(4_500_000));
        assert_eq!(parse_scaled("45000.50", 2, false), Ok(4_500_050));
        assert_eq!(parse_scaled("45000.5", 2, false), Ok(4_500_050));
        assert_eq!(parse_scaled("0.5", 2, false), Ok(50));
        assert_eq!(parse_scaled("1e-4", 4, false), Ok(1));
        assert_eq!(parse_scaled("4.5E4", 2, false), Ok(4_500_000));
        assert_eq!(parse_scaled("0.10000", 4, false), Ok(1000));
        assert_eq!(parse_scaled("-0.5", 2, true), Ok(-50));
    }

    #[test]
    fn the_grammar_is_strict() {
        for bad in [
            "+45000", " 45000", "45000 ", "\t1", ".5", "5.", "1e", "1e+", "1e1000", "0x10",
            "1_000", "1,5", "--1", "1e-", "Infinity", "NaN",
        ] {
            assert!(
                parse_scaled(bad, 2, true).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(parse_scaled("-0", 2, false), Err(NumError::Negative));
        assert_eq!(parse_scaled("-1", 2, false), Err(NumError::Negative));
        let long = "1".repeat(MAX_DECIMAL_LEN + 1);
        assert_eq!(parse_scaled(&long, 0, false), Err(NumError::Invalid));
        assert_eq!(parse_scaled("1E+2", 0, false), Ok(100));
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        assert_eq!(
            parse_scaled("0.00001", 4, false),
            Err(NumError::TooManyDecimals(4))
        );
        assert_eq!(
            parse_scaled("45000.501", 2, false),
            Err(NumError::TooManyDecimals(2))
        );
        assert_eq!(parse_scaled("-1", 2, false), Err(NumError::Negative));
        assert_eq!(parse_scaled("", 2, false), Err(NumError::Empty));
        assert_eq!(parse_scaled("1.2.3", 2, false), Err(NumError::Invalid));
        assert_eq!(parse_scaled("abc", 2, false), Err(NumError::Invalid));
        assert_eq!(parse_scaled(".", 2, false), Err(NumError::Invalid));
        assert_eq!(parse_scaled("1e", 2, false), Err(NumError::Invalid));
        assert_eq!(
            parse_scaled("99999999999999999999", 2, false),
            Err(NumError::Overflow)
        );
        assert_eq!(parse_scaled("1e30", 2, false), Err(NumError::Overflow));
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_scaled(4_500_050, 2), "45000.50");
        assert_eq!(format_scaled(1000, 4), "0.1000");
        assert_eq!(format_scaled(-5, 3), "-0.005");
        assert_eq!(format_scaled(7, 0), "7");
        assert_eq!(Money(123_450_000_000).to_decimal_string(), "1234.50");
        assert_eq!(Money::parse("-12.5"), Ok(Money(-1_250_000_000)));
    }
}
