//! The one duration grammar of SQL functions (`date_calc`), rule options (`lateTolerance`) and
//! connector configs (the file source's `interval`): Go's `time.ParseDuration`, which is how
//! eKuiper reads durations.
//!
//! A duration is an optional sign and one or more `number unit` pairs (`"1h30m"`, `"1.5s"`,
//! `"-200ms"`), or `"0"`. A number may have a fraction; the units are `ns`, `us` (or `µs`,
//! `μs`), `ms`, `s`, `m` and `h`. Surrounding blanks, and blanks between a number and its unit
//! (`"10 s"`, which the file source has always taken), are allowed. Parsing is exact, in
//! integer nanoseconds: `"0.57s"` is 570 ms, not 569.999... as a float sum would give.
//!
//! Each caller picks its form: [`parse_nanos`] (signed, for SQL), [`parse_millis`]
//! (non-negative, rounded to the millisecond, for rule options) and [`parse_config_millis`]
//! (also a bare integer of milliseconds, as connector configs take it).

/// Nanoseconds per unit.
const UNITS: &[(&str, i128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Fraction digits beyond these are below a nanosecond for every unit, and are dropped.
const MAX_FRACTION_DIGITS: usize = 20;

/// Parses a duration into signed nanoseconds; `None` when the text is not a duration or its
/// size exceeds Go's limit (about 292 years).
pub fn parse_nanos(text: &str) -> Option<i128> {
    let s = text.trim();
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let (whole, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => split_digits(f),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = UNITS.iter().find(|(u, _)| *u == unit)?.1;
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(scale)?;
        if !fraction.is_empty() {
            let digits = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
            let numerator: i128 = digits.parse().ok()?;
            part += numerator * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(part)?;
        rest = next;
    }
    if total > i128::from(i64::MAX) {
        return None;
    }
    Some(if negative { -total } else { total })
}

/// Parses a non-negative duration into milliseconds, rounded to the nearest.
pub fn parse_millis(text: &str) -> Option<u64> {
    let nanos = parse_nanos(text)?;
    if nanos < 0 {
        return None;
    }
    u64::try_from((nanos + 500_000) / 1_000_000).ok()
}

/// Parses a duration of a connector config: a bare integer is milliseconds (`"250"`), anything
/// else a duration as [`parse_millis`] takes it.
pub fn parse_config_millis(text: &str) -> Option<u64> {
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    parse_millis(s)
}

/// The leading ASCII digits of `s`, and the rest.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    #[test]
    fn go_durations_in_nanoseconds() {
        assert_eq!(parse_nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_nanos("-1.5s"), Some(-1_500_000_000));
        assert_eq!(parse_nanos("+200ms"), Some(200 * MS));
        assert_eq!(parse_nanos("-1h30m10s500ms"), Some(-5_410_500 * MS));
        assert_eq!(parse_nanos("1us"), Some(1_000));
        assert_eq!(parse_nanos("1µs"), parse_nanos("1μs"));
        assert_eq!(parse_nanos("7ns"), Some(7));
        assert_eq!(parse_nanos(".5s"), Some(500 * MS));
        assert_eq!(parse_nanos("5.s"), Some(5_000 * MS));
        assert_eq!(parse_nanos("0"), Some(0));
        assert_eq!(parse_nanos("-0"), Some(0));
        assert_eq!(parse_nanos(" 2h "), Some(7_200_000 * MS));
    }

    #[test]
    fn fractions_are_exact() {
        // A float sum gives 569999999 ns here, a millisecond short once truncated.
        assert_eq!(parse_nanos("0.57s"), Some(570 * MS));
        assert_eq!(parse_nanos("1.1s"), Some(1_100 * MS));
        assert_eq!(parse_nanos("0.5m"), Some(30_000 * MS));
        assert_eq!(parse_nanos("1.000000000000000000000001s"), Some(1_000 * MS));
    }

    #[test]
    fn not_durations() {
        for text in [
            "", " ", "-", "+", ".", "10", "10x", "1 day", "s", "1.5.2s", "1m 30s", "--1s",
        ] {
            assert_eq!(parse_nanos(text), None, "{text:?}");
        }
        // Go's limit: the nanoseconds of an int64.
        assert_eq!(parse_nanos("2562047h"), Some(2_562_047 * 3_600_000 * MS));
        assert_eq!(parse_nanos("2562048h"), None);
        assert_eq!(
            parse_nanos("99999999999999999999999999999999999999999h"),
            None
        );
    }

    #[test]
    fn rule_option_milliseconds_round_and_refuse_negatives() {
        assert_eq!(parse_millis("1m30s"), Some(90_000));
        assert_eq!(parse_millis("500ms"), Some(500));
        assert_eq!(parse_millis("1500us"), Some(2));
        assert_eq!(parse_millis("1400us"), Some(1));
        assert_eq!(parse_millis("1ns"), Some(0));
        assert_eq!(parse_millis("-1s"), None);
        assert_eq!(parse_millis("1000"), None);
    }

    #[test]
    fn config_milliseconds_also_take_bare_integers() {
        assert_eq!(parse_config_millis("250"), Some(250));
        assert_eq!(parse_config_millis(" 250 "), Some(250));
        assert_eq!(parse_config_millis("250ms"), Some(250));
        assert_eq!(parse_config_millis("10s"), Some(10_000));
        assert_eq!(parse_config_millis("10 s"), Some(10_000));
        assert_eq!(parse_config_millis("5m"), Some(300_000));
        assert_eq!(parse_config_millis("1h"), Some(3_600_000));
        assert_eq!(parse_config_millis("1m30s"), Some(90_000));
        assert_eq!(parse_config_millis("-5"), None);
        assert_eq!(parse_config_millis("ten"), None);
    }
}
