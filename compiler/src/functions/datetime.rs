//! Date and time functions: now, cur_date, cur_time, format_time, the field extractors, last_day,
//! from_days, from_unix_time, date_calc and date_diff.
//!
//! A time argument may be a DATETIME value, a number of epoch milliseconds or an RFC 3339
//! string. Extraction and formatting use UTC (eKuiper uses its configured time zone; Quiver
//! has no time-zone setting yet), so results are deterministic, except for a DATETIME that
//! carries a time zone (the result of `convert_tz`): it is read on that zone's wall clock.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use chrono_tz::{OffsetName, Tz};

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
    numeric_args, shape,
};
use crate::duration::parse_nanos;
use crate::eval::{Columnar, EvalContext, Literal, describe_value, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Now));
    r.alias("current_timestamp", "now");
    r.alias("local_time", "now");
    r.alias("local_timestamp", "now");
    r.register(Arc::new(CurDate));
    r.alias("current_date", "cur_date");
    r.register(Arc::new(CurTime));
    r.alias("current_time", "cur_time");
    r.register(Arc::new(FormatTime));
    for part in PARTS {
        r.register(Arc::new(Extract(*part)));
    }
    r.alias("day", "day_of_month");
    r.register(Arc::new(FromDays));
    r.register(Arc::new(FromUnixTime));
    r.register(Arc::new(DateCalc));
    r.register(Arc::new(DateDiff));
    r.register(Arc::new(ConvertTz));
}

fn datetime_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// Reads row `row` of `arr` as epoch milliseconds: `Ok(None)` for null, `Err(())` when the
/// value is not a time (a DATETIME, a number of epoch milliseconds or an RFC 3339 string).
/// The one reader of time values for every function that takes one (and of event times).
#[allow(clippy::result_unit_err)] // the caller only needs "not a time"
pub fn millis_at(arr: &ArrayRef, row: usize) -> Result<Option<i64>, ()> {
    if !present(arr.as_ref(), row) {
        return Ok(None);
    }
    match arr.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(Some(
            arr.as_primitive::<TimestampMillisecondType>().value(row),
        )),
        DataType::Timestamp(..) => arrow::compute::cast(&arr.slice(row, 1), &datetime_type())
            .ok()
            .map(|a| Some(a.as_primitive::<TimestampMillisecondType>().value(0)))
            .ok_or(()),
        t if t.is_integer() || t.is_floating() => super::float_at(arr, row)
            .filter(|f| f.is_finite())
            .map(|f| Some(f as i64))
            .ok_or(()),
        DataType::Utf8 => DateTime::parse_from_rfc3339(arr.as_string::<i32>().value(row).trim())
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|_| ()),
        _ => Err(()),
    }
}

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The time zone a DATETIME column carries (set by `convert_tz`); `None` for UTC.
fn zone_of(t: &DataType) -> Option<Tz> {
    match t {
        DataType::Timestamp(_, Some(name)) => name.parse::<Tz>().ok(),
        _ => None,
    }
}

/// `ms` on the wall clock of `zone` (UTC when `None`), with the zone's abbreviation.
fn zoned(ms: i64, zone: Option<Tz>) -> Option<(DateTime<FixedOffset>, String)> {
    let t = utc(ms)?;
    Some(match zone {
        None => (t.fixed_offset(), "UTC".to_string()),
        Some(z) => {
            let local = t.with_timezone(&z);
            let name = local
                .offset()
                .abbreviation()
                .map_or_else(|| local.format("%:z").to_string(), str::to_string);
            (local.fixed_offset(), name)
        }
    })
}

/// Applies `f` to every time in `arr`, failing rows that are not times.
fn map_times<T>(
    name: &str,
    arr: &ArrayRef,
    ctx: &mut EvalContext,
    mut f: impl FnMut(DateTime<FixedOffset>) -> Option<T>,
) -> Vec<Option<T>> {
    let zone = zone_of(arr.data_type());
    (0..arr.len())
        .map(|row| match millis_at(arr, row) {
            Ok(None) => None,
            Ok(Some(ms)) => match zoned(ms, zone).and_then(|(t, _)| f(t)) {
                Some(v) => Some(v),
                None => {
                    fail(name, "a datetime", arr, row, ctx);
                    None
                }
            },
            Err(()) => {
                fail(name, "a datetime", arr, row, ctx);
                None
            }
        })
        .collect()
}

fn fail(name: &str, want: &str, arr: &ArrayRef, row: usize, ctx: &mut EvalContext) {
    if row < ctx.rows {
        ctx.errors.flag(row, || {
            format!(
                "{name} expects {want} but got {}",
                describe_value(arr.as_ref(), row)
            )
        });
    }
}

fn fsp_check(args: &[ArgInfo]) -> Result<(), String> {
    if !args.is_empty() {
        check_kind(args, 0, Kind::Number)?;
        match args[0].literal {
            Some(Literal::Int(n)) if (0..=6).contains(&n) => {}
            Some(_) => return Err("expects an integer from 0 to 6 for parameter 1".into()),
            None => return Err("expects an integer literal for parameter 1".into()),
        }
    }
    Ok(())
}

/// The batch's local clock formatted with `pattern`, plus the `fsp` (0-6) fractional digits
/// a literal first argument asks for: `now` and `cur_time`.
fn clock(args: &[Columnar], ctx: &EvalContext, pattern: &str) -> Columnar {
    let fsp = args
        .first()
        .and_then(|a| super::int_at(a.array(), 0))
        .unwrap_or(0)
        .clamp(0, 6) as usize;
    let now = local_now(ctx);
    let mut text = now.format(pattern).to_string();
    if fsp > 0 {
        let frac = format!("{:06}", now.timestamp_subsec_micros());
        text.push('.');
        text.push_str(&frac[..fsp]);
    }
    Columnar::Scalar(Arc::new(StringArray::from(vec![text])))
}

#[derive(Debug)]
struct Now;
impl ScalarFunction for Now {
    fn name(&self) -> &'static str {
        "now"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "now([fsp])",
            description: "the current local time as \"YYYY-MM-DD HH:mm:ss\" with fsp (0-6) fractional digits",
            example: "now(3) = \"2024-06-20 12:09:44.898\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 1)?;
        fsp_check(args)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        Ok(clock(args, ctx, "%Y-%m-%d %H:%M:%S"))
    }
}

fn local_now(ctx: &EvalContext) -> DateTime<chrono::Local> {
    DateTime::from_timestamp_millis(ctx.now_ms)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
}

#[derive(Debug)]
struct CurDate;
impl ScalarFunction for CurDate {
    fn name(&self) -> &'static str {
        "cur_date"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "cur_date()",
            description: "today's date in local time as \"YYYY-MM-DD\"",
            example: "cur_date() = \"2024-06-20\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 0)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, _args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let text = local_now(ctx).format("%Y-%m-%d").to_string();
        Ok(Columnar::Scalar(Arc::new(StringArray::from(vec![text]))))
    }
}

#[derive(Debug)]
struct CurTime;
impl ScalarFunction for CurTime {
    fn name(&self) -> &'static str {
        "cur_time"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "cur_time([fsp])",
            description: "the current local time of day as \"HH:mm:ss\" with fsp (0-6) fractional digits",
            example: "cur_time() = \"12:09:44\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 1)?;
        fsp_check(args)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        Ok(clock(args, ctx, "%H:%M:%S"))
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` in UTC with a Java-style pattern (text in single quotes is literal, `''` is a
/// quote).
#[cfg(test)]
fn format_pattern(t: DateTime<Utc>, pattern: &str) -> String {
    format_zoned(t.fixed_offset(), "UTC", pattern)
}

/// Formats `t` on its own wall clock with a Java-style pattern; `zone` is the name `z` prints.
pub fn format_zoned(t: DateTime<FixedOffset>, zone: &str, pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let num = |v: i64, width: usize| format!("{v:0width$}");
        let month = t.month0() as usize;
        let weekday = t.weekday().num_days_from_sunday() as usize;
        match c {
            'G' => out.push_str(if t.year() > 0 { "AD" } else { "BC" }),
            'Y' | 'y' => {
                if n == 2 {
                    out.push_str(&num(i64::from(t.year().rem_euclid(100)), 2));
                } else {
                    out.push_str(&num(i64::from(t.year()), n));
                }
            }
            'M' => match n {
                1 | 2 => out.push_str(&num(i64::from(t.month()), n)),
                3 => out.push_str(&MONTHS[month][..3]),
                _ => out.push_str(MONTHS[month]),
            },
            'd' => out.push_str(&num(i64::from(t.day()), n)),
            'E' => {
                if n >= 4 {
                    out.push_str(DAYS[weekday]);
                } else {
                    out.push_str(&DAYS[weekday][..3]);
                }
            }
            'H' => out.push_str(&num(i64::from(t.hour()), n)),
            'h' => {
                let h = t.hour() % 12;
                out.push_str(&num(i64::from(if h == 0 { 12 } else { h }), n));
            }
            'a' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            'm' => out.push_str(&num(i64::from(t.minute()), n)),
            's' => out.push_str(&num(i64::from(t.second()), n)),
            'S' => {
                let frac = format!("{:09}", t.timestamp_subsec_nanos());
                out.push_str(&frac[..n.min(9)]);
            }
            'z' => out.push_str(zone),
            'Z' => out.push_str(&t.format("%z").to_string()),
            'X' => {
                let secs = t.offset().local_minus_utc();
                if secs == 0 {
                    out.push('Z');
                } else {
                    let text = match n {
                        1 => t.format("%z").to_string()[..3].to_string(),
                        2 => t.format("%z").to_string(),
                        _ => t.format("%:z").to_string(),
                    };
                    out.push_str(&text);
                }
            }
            other => {
                for _ in 0..n {
                    out.push(other);
                }
            }
        }
    }
    out
}

/// Parses `text` as a time in a Java-style pattern (eKuiper's `TIMESTAMP_FORMAT`, the letters
/// of `format_time`), UTC unless the pattern has a zone; epoch milliseconds.
pub fn parse_with_pattern(text: &str, pattern: &str) -> Option<i64> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut fmt = String::new();
    let mut has_zone = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '%' {
                    fmt.push_str("%%");
                } else {
                    fmt.push(chars[i]);
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                fmt.push_str("%%");
            } else {
                fmt.push(c);
            }
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        fmt.push_str(match (c, n) {
            ('Y' | 'y', 2) => "%y",
            ('Y' | 'y', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('a', _) => "%p",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('Z', _) => {
                has_zone = true;
                "%z"
            }
            ('X', _) => {
                has_zone = true;
                "%:z"
            }
            _ => return None,
        });
    }
    let text = text.trim();
    if has_zone {
        return DateTime::parse_from_str(text, &fmt)
            .ok()
            .map(|d| d.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, &fmt)
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, &fmt)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|d| d.and_utc().timestamp_millis())
}

/// Reads an event time: epoch milliseconds, a DATETIME, or a string in `pattern` (when
/// given), RFC 3339, or `yyyy-MM-dd HH:mm:ss[.SSS]` (UTC).
pub fn event_millis(arr: &ArrayRef, row: usize, pattern: Option<&str>) -> Option<i64> {
    if arr.data_type() == &DataType::Utf8 && present(arr.as_ref(), row) {
        let text = arr.as_string::<i32>().value(row);
        if let Some(p) = pattern {
            return parse_with_pattern(text, p);
        }
        return DateTime::parse_from_rfc3339(text.trim())
            .map(|d| d.timestamp_millis())
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|d| d.and_utc().timestamp_millis())
            });
    }
    millis_at(arr, row).ok().flatten()
}

#[derive(Debug)]
struct FormatTime;
impl ScalarFunction for FormatTime {
    fn name(&self) -> &'static str {
        "format_time"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "format_time(t, format)",
            description: "t (datetime, epoch milliseconds or RFC 3339 string) formatted in UTC (a `convert_tz` result in its zone) with a Java-style pattern (G, YYYY, YY, M..MMMM, d, dd, E, EEEE, H, HH, h, hh, a, m, mm, s, ss, S..SSS, z, Z, X)",
            example: "format_time(0, \"yyyy-MM-dd HH:mm:ss\") = \"1970-01-01 00:00:00\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 1, Kind::String)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let (t, f) = (&cols[0], &cols[1]);
        let zone = zone_of(t.data_type());
        let out: StringArray = (0..t.len())
            .map(|row| {
                if !present(f.as_ref(), row) {
                    return None;
                }
                let Some(pattern) = f.as_string_opt::<i32>().map(|s| s.value(row).to_string())
                else {
                    fail("format_time", "a string format", f, row, ctx);
                    return None;
                };
                match millis_at(t, row) {
                    Ok(None) => None,
                    Ok(Some(ms)) => match zoned(ms, zone) {
                        Some((d, name)) => Some(format_zoned(d, &name, &pattern)),
                        None => {
                            fail("format_time", "a datetime", t, row, ctx);
                            None
                        }
                    },
                    Err(()) => {
                        fail("format_time", "a datetime", t, row, ctx);
                        None
                    }
                }
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Part {
    DayName,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Microsecond,
    Month,
    MonthName,
    LastDay,
}

const PARTS: &[Part] = &[
    Part::DayName,
    Part::DayOfMonth,
    Part::DayOfWeek,
    Part::DayOfYear,
    Part::Hour,
    Part::Minute,
    Part::Second,
    Part::Microsecond,
    Part::Month,
    Part::MonthName,
    Part::LastDay,
];

impl Part {
    fn info(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Part::DayName => (
                "day_name",
                "the English weekday name of t in UTC",
                "day_name(\"2024-01-02T03:04:05Z\") = \"Tuesday\"",
            ),
            Part::DayOfMonth => (
                "day_of_month",
                "the day of the month (1-31) of t in UTC",
                "day_of_month(\"2024-01-02T03:04:05Z\") = 2",
            ),
            Part::DayOfWeek => (
                "day_of_week",
                "the weekday of t in UTC, 1 for Sunday to 7 for Saturday",
                "day_of_week(\"2024-01-02T03:04:05Z\") = 3",
            ),
            Part::DayOfYear => (
                "day_of_year",
                "the day of the year (1-366) of t in UTC",
                "day_of_year(\"2024-02-01T00:00:00Z\") = 32",
            ),
            Part::Hour => (
                "hour",
                "the hour (0-23) of t in UTC",
                "hour(\"2024-01-02T03:04:05Z\") = 3",
            ),
            Part::Minute => (
                "minute",
                "the minute (0-59) of t in UTC",
                "minute(\"2024-01-02T03:04:05Z\") = 4",
            ),
            Part::Second => (
                "second",
                "the second (0-59) of t in UTC",
                "second(\"2024-01-02T03:04:05Z\") = 5",
            ),
            Part::Microsecond => (
                "microsecond",
                "the microseconds within the second of t (millisecond precision) in UTC",
                "microsecond(\"2024-01-02T03:04:05.123Z\") = 123000",
            ),
            Part::Month => (
                "month",
                "the month number (1-12) of t in UTC",
                "month(\"2024-01-02T03:04:05Z\") = 1",
            ),
            Part::MonthName => (
                "month_name",
                "the English month name of t in UTC",
                "month_name(\"2024-01-02T03:04:05Z\") = \"January\"",
            ),
            Part::LastDay => (
                "last_day",
                "the last day of t's month (in UTC) as \"YYYY-MM-DD\"",
                "last_day(\"2024-02-10T00:00:00Z\") = \"2024-02-29\"",
            ),
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Part::DayName | Part::MonthName | Part::LastDay)
    }
}

fn last_day(t: DateTime<FixedOffset>) -> Option<String> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let d = NaiveDate::from_ymd_opt(y, m, 1)?.pred_opt()?;
    Some(d.format("%Y-%m-%d").to_string())
}

#[derive(Debug)]
struct Extract(Part);
impl ScalarFunction for Extract {
    fn name(&self) -> &'static str {
        self.0.info().0
    }
    fn doc(&self) -> FunctionDoc {
        let (name, description, example) = self.0.info();
        FunctionDoc {
            category: "datetime",
            syntax: match name {
                "day_name" => "day_name(t)",
                "day_of_month" => "day_of_month(t)",
                "day_of_week" => "day_of_week(t)",
                "day_of_year" => "day_of_year(t)",
                "hour" => "hour(t)",
                "minute" => "minute(t)",
                "second" => "second(t)",
                "microsecond" => "microsecond(t)",
                "month" => "month(t)",
                "month_name" => "month_name(t)",
                _ => "last_day(t)",
            },
            description,
            example,
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(if self.0.is_text() {
            DataType::Utf8
        } else {
            DataType::Int64
        }))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let name = self.name();
        let part = self.0;
        let out: ArrayRef = if part.is_text() {
            let v = map_times(name, &arr, ctx, |t| match part {
                Part::DayName => {
                    Some(DAYS[t.weekday().num_days_from_sunday() as usize].to_string())
                }
                Part::MonthName => Some(MONTHS[t.month0() as usize].to_string()),
                _ => last_day(t),
            });
            Arc::new(StringArray::from(v))
        } else {
            let v = map_times(name, &arr, ctx, |t| {
                Some(i64::from(match part {
                    Part::DayOfMonth => t.day(),
                    Part::DayOfWeek => t.weekday().num_days_from_sunday() + 1,
                    Part::DayOfYear => t.ordinal(),
                    Part::Hour => t.hour(),
                    Part::Minute => t.minute(),
                    Part::Second => t.second(),
                    Part::Microsecond => t.timestamp_subsec_micros(),
                    _ => t.month(),
                }))
            });
            Arc::new(Int64Array::from(v))
        };
        Ok(shape(args, out))
    }
}

/// Reads row `row` of `arr` as a number: `Ok(None)` for null, `Err(())` otherwise.
fn number_at(arr: &ArrayRef, row: usize) -> Result<Option<f64>, ()> {
    if !present(arr.as_ref(), row) {
        return Ok(None);
    }
    let v = match arr.data_type() {
        DataType::Utf8 => arr.as_string::<i32>().value(row).trim().parse::<f64>().ok(),
        _ => super::float_at(arr, row),
    };
    v.filter(|f| f.is_finite()).map(Some).ok_or(())
}

/// Days from year 0 to 1970-01-01, as MySQL's TO_DAYS counts them.
const UNIX_EPOCH_DAYS: i64 = 719_528;

#[derive(Debug)]
struct FromDays;
impl ScalarFunction for FromDays {
    fn name(&self) -> &'static str {
        "from_days"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "from_days(n)",
            description: "the date n days after year 0 (MySQL day numbering) as \"YYYY-MM-DD\"; counts below 366 give \"0000-00-00\"",
            example: "from_days(730669) = \"2000-07-03\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: StringArray = (0..arr.len())
            .map(|row| match number_at(&arr, row) {
                Ok(None) => None,
                Ok(Some(n)) => {
                    let n = n.trunc() as i64;
                    if n < 366 {
                        return Some("0000-00-00".to_string());
                    }
                    let d = NaiveDate::from_ymd_opt(1970, 1, 1).and_then(|e| {
                        e.checked_add_signed(chrono::Duration::days(n - UNIX_EPOCH_DAYS))
                    });
                    match d {
                        Some(d) => Some(d.format("%Y-%m-%d").to_string()),
                        None => {
                            fail("from_days", "a day number", &arr, row, ctx);
                            None
                        }
                    }
                }
                Err(()) => {
                    fail("from_days", "a number", &arr, row, ctx);
                    None
                }
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct FromUnixTime;
impl ScalarFunction for FromUnixTime {
    fn name(&self) -> &'static str {
        "from_unix_time"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "from_unix_time(seconds)",
            description: "the datetime (UTC) that is the given number of seconds after the Unix epoch",
            example: "from_unix_time(1) = 1970-01-01T00:00:01.000Z",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(datetime_type()))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: TimestampMillisecondArray = (0..arr.len())
            .map(|row| match number_at(&arr, row) {
                Ok(None) => None,
                Ok(Some(s)) => {
                    let ms = (s * 1000.0).round();
                    if ms.abs() < 8.0e15 {
                        Some(ms as i64)
                    } else {
                        fail("from_unix_time", "a number of seconds", &arr, row, ctx);
                        None
                    }
                }
                Err(()) => {
                    fail("from_unix_time", "a number", &arr, row, ctx);
                    None
                }
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct DateCalc;
impl ScalarFunction for DateCalc {
    fn name(&self) -> &'static str {
        "date_calc"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "date_calc(t, duration)",
            description: "the datetime t shifted by a Go-style duration such as \"1h30m\" (a leading - subtracts); units ns, us, ms, s, m, h; sub-millisecond parts are truncated",
            example: "date_calc(\"2024-01-02T03:04:05Z\", \"-1h30m\") = 2024-01-02T01:34:05.000Z",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 1, Kind::String)?;
        if let Some(Literal::String(s)) = &args[1].literal
            && parse_nanos(s).is_none()
        {
            return Err(format!(
                "expects a duration such as \"1h30m\" for argument 2 but got \"{s}\""
            ));
        }
        Ok(SqlType::Known(datetime_type()))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let (t, d) = (&cols[0], &cols[1]);
        let out: TimestampMillisecondArray = (0..t.len())
            .map(|row| {
                if !present(d.as_ref(), row) {
                    return None;
                }
                let Some(ns) = d
                    .as_string_opt::<i32>()
                    .and_then(|s| parse_nanos(s.value(row)))
                else {
                    fail("date_calc", "a duration", d, row, ctx);
                    return None;
                };
                match millis_at(t, row) {
                    Ok(None) => None,
                    Ok(Some(ms)) => {
                        let r = i128::from(ms) + ns / 1_000_000;
                        match i64::try_from(r).ok().filter(|v| utc(*v).is_some()) {
                            Some(v) => Some(v),
                            None => {
                                fail("date_calc", "a datetime in range", t, row, ctx);
                                None
                            }
                        }
                    }
                    Err(()) => {
                        fail("date_calc", "a datetime", t, row, ctx);
                        None
                    }
                }
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

/// Plan-time check that argument `i` can be a time (a DATETIME, a number or a string).
fn time_arg(args: &[ArgInfo], i: usize) -> Result<(), String> {
    match &args[i].ty {
        SqlType::Known(t)
            if !(t.is_integer()
                || t.is_floating()
                || matches!(t, DataType::Utf8 | DataType::Null | DataType::Timestamp(..))) =>
        {
            Err(format!(
                "expects a datetime for argument {} but got {}",
                i + 1,
                crate::types::type_name(t)
            ))
        }
        _ => Ok(()),
    }
}

#[derive(Debug)]
struct DateDiff;
impl ScalarFunction for DateDiff {
    fn name(&self) -> &'static str {
        "date_diff"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "datetime",
            syntax: "date_diff(t1, t2)",
            description: "t2 minus t1 in nanoseconds as a BIGINT (eKuiper's duration value), for datetimes, epoch milliseconds or RFC 3339 strings",
            example: "date_diff(\"2019-01-01T00:00:00Z\", \"2019-01-02T00:00:00Z\") = 86400000000000",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        time_arg(args, 0)?;
        time_arg(args, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let (a, b) = (&cols[0], &cols[1]);
        let out: Int64Array = (0..a.len())
            .map(|row| {
                let (x, y) = match (millis_at(a, row), millis_at(b, row)) {
                    (Ok(Some(x)), Ok(Some(y))) => (x, y),
                    (Err(()), _) => {
                        fail("date_diff", "a datetime", a, row, ctx);
                        return None;
                    }
                    (_, Err(())) => {
                        fail("date_diff", "a datetime", b, row, ctx);
                        return None;
                    }
                    _ => return None,
                };
                let ns = (i128::from(y) - i128::from(x)) * 1_000_000;
                match i64::try_from(ns) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        ctx.errors.flag(row, || {
                            "date_diff: the difference overflows a duration (about 292 years)"
                                .to_string()
                        });
                        None
                    }
                }
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

/// Parses a time zone name the way Go's `time.LoadLocation` does: an IANA name, with "" and
/// "UTC" for UTC ("Local" is UTC too, Quiver's only local zone).
fn parse_zone(name: &str) -> Option<Tz> {
    match name {
        "" | "Local" => Some(Tz::UTC),
        _ => name.parse::<Tz>().ok(),
    }
}

#[derive(Debug)]
struct ConvertTz;
impl ScalarFunction for ConvertTz {
    fn name(&self) -> &'static str {
        "convert_tz"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "convert_tz(t, zone)",
            description: "the datetime t in the IANA time zone named by the string literal zone: the same instant, which format_time and the date/time parts then read on that zone's wall clock",
            example: "format_time(convert_tz(0, \"Asia/Shanghai\"), \"HH:mm XXX\") = \"08:00 +08:00\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        time_arg(args, 0)?;
        check_kind(args, 1, Kind::String)?;
        match &args[1].literal {
            Some(Literal::String(z)) => match parse_zone(z) {
                Some(tz) => Ok(SqlType::Known(DataType::Timestamp(
                    TimeUnit::Millisecond,
                    Some(tz.name().into()),
                ))),
                None => Err(format!(
                    "expects a time zone such as \"Asia/Shanghai\" for argument 2 but got \"{z}\""
                )),
            },
            _ => Err("expects a time zone name string literal for argument 2".to_string()),
        }
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let (t, z) = (&cols[0], &cols[1]);
        let name = z
            .as_string_opt::<i32>()
            .filter(|s| s.is_valid(0))
            .map(|s| s.value(0).to_string())
            .unwrap_or_default();
        let Some(tz) = parse_zone(&name) else {
            return Err(format!("convert_tz: unknown time zone \"{name}\""));
        };
        let values: Vec<Option<i64>> = (0..t.len())
            .map(|row| match millis_at(t, row) {
                Ok(ms) => ms,
                Err(()) => {
                    fail("convert_tz", "a datetime", t, row, ctx);
                    None
                }
            })
            .collect();
        let out = TimestampMillisecondArray::from(values).with_timezone(tz.name());
        Ok(shape(args, Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let t = utc(1_704_164_645_123).unwrap(); // 2024-01-02T03:04:05.123Z
        assert_eq!(
            format_pattern(t, "G YYYY-MM-dd HH:mm:ss.SSS"),
            "AD 2024-01-02 03:04:05.123"
        );
        assert_eq!(format_pattern(t, "YY M d h a"), "24 1 2 3 AM");
        assert_eq!(
            format_pattern(t, "EEE EEEE MMM MMMM"),
            "Tue Tuesday Jan January"
        );
        assert_eq!(format_pattern(t, "z Z X 'at' ''"), "UTC +0000 Z at '");
        assert_eq!(last_day(t.fixed_offset()).as_deref(), Some("2024-01-31"));
    }

    #[test]
    fn zoned_patterns() {
        let ms = 1_704_164_645_123; // 2024-01-02T03:04:05.123Z
        let (t, name) = zoned(ms, parse_zone("Asia/Kolkata")).unwrap();
        assert_eq!(
            format_zoned(t, &name, "HH:mm z Z X XX XXX"),
            "08:34 IST +0530 +05 +0530 +05:30"
        );
        let (t, name) = zoned(ms, parse_zone("America/New_York")).unwrap();
        assert_eq!(
            format_zoned(t, &name, "yyyy-MM-dd HH z"),
            "2024-01-01 22 EST"
        );
        assert!(parse_zone("Nowhere/Else").is_none());
        assert_eq!(parse_zone(""), Some(Tz::UTC));
    }
}
