//! Timestamps as text: RFC 3339 UTC with microseconds (`2026-11-24T01:02:03.456789Z`).
//!
//! A pure function of the nanoseconds a command recorded (the core never reads a clock), shared
//! by the REST responses and the Kafka events so both show the same instant the same way.

use std::fmt;

/// Writes `nanos` (since the Unix epoch) as RFC 3339 UTC with microseconds, unquoted.
pub fn write_rfc3339(out: &mut impl fmt::Write, nanos: u64) -> fmt::Result {
    let secs = nanos / 1_000_000_000;
    let micros = (nanos % 1_000_000_000) / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// [`write_rfc3339`] into a new `String`.
pub fn rfc3339(nanos: u64) -> String {
    let mut s = String::with_capacity(27);
    let _ = write_rfc3339(&mut s, nanos);
    s
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(1_772_368_496_789_000_000),
            "2026-03-01T12:34:56.789000Z"
        );
        assert_eq!(
            rfc3339(1_709_251_199_999_999_999),
            "2024-02-29T23:59:59.999999Z"
        );
    }
}
