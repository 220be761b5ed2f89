//! Calendars in the site's time zone: report periods (month, quarter, year), the 15-minute
//! interval grid, and local buckets (hour, day, month, quarter, year).
//!
//! Every bucket is half-open, `[start, end)`, in UTC milliseconds. A reading at 23:59:59 local
//! time belongs to the day that is ending; one at 00:00:00 to the day that begins. The 15-minute
//! grid is aligned on the Unix epoch, which coincides with local quarter hours in every time zone
//! whose offset is a whole number of quarter hours (all zones in use today).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::readings::TimestampMs;

/// Length of one accounting interval (the regulators' real-time cadence), in milliseconds.
pub const SLOT_MS: i64 = 15 * 60 * 1000;

/// Start of the 15-minute interval containing `ts_ms`.
pub fn slot_start(ts_ms: TimestampMs) -> TimestampMs {
    ts_ms.div_euclid(SLOT_MS) * SLOT_MS
}

/// One calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1..=12
    pub month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=12).contains(&month) && (1900..=2200).contains(&year))
            .then_some(Month { year, month })
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// First day of the month.
    pub fn first_day(self) -> NaiveDate {
        // Month::new guarantees a valid year and month.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// `[start, end)` of the month in the site's time zone.
    pub fn bounds(self, tz: Tz) -> (TimestampMs, TimestampMs) {
        (
            local_midnight_ms(tz, self.first_day()),
            local_midnight_ms(tz, self.next().first_day()),
        )
    }

    /// Quarter number 1..=4.
    pub fn quarter(self) -> u32 {
        (self.month - 1) / 3 + 1
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Month, String> {
        match s.trim().parse::<Period>()? {
            Period::Month(m) => Ok(m),
            _ => Err(format!(
                "\"{s}\" is not a month; write it as YYYY-MM, e.g. 2026-10"
            )),
        }
    }
}

/// A report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Month(Month),
    Quarter { year: i32, quarter: u32 },
    Year(i32),
}

impl Period {
    /// "month", "quarter" or "year".
    pub fn kind(self) -> &'static str {
        match self {
            Period::Month(_) => "month",
            Period::Quarter { .. } => "quarter",
            Period::Year(_) => "year",
        }
    }

    pub fn year(self) -> i32 {
        match self {
            Period::Month(m) => m.year,
            Period::Quarter { year, .. } | Period::Year(year) => year,
        }
    }

    /// The months of the period, in order.
    pub fn months(self) -> Vec<Month> {
        let (first, n) = match self {
            Period::Month(m) => (m, 1),
            Period::Quarter { year, quarter } => (
                Month {
                    year,
                    month: (quarter - 1) * 3 + 1,
                },
                3,
            ),
            Period::Year(year) => (Month { year, month: 1 }, 12),
        };
        std::iter::successors(Some(first), |m| Some(m.next()))
            .take(n)
            .collect()
    }

    /// `[start, end)` in the site's time zone.
    pub fn bounds(self, tz: Tz) -> (TimestampMs, TimestampMs) {
        let months = self.months();
        let first = months.first().copied().unwrap_or(Month {
            year: self.year(),
            month: 1,
        });
        let last = months.last().copied().unwrap_or(first);
        (first.bounds(tz).0, last.bounds(tz).1)
    }

    /// The same period one year earlier (for year-on-year comparisons).
    pub fn previous_year(self) -> Period {
        match self {
            Period::Month(m) => Period::Month(Month {
                year: m.year - 1,
                month: m.month,
            }),
            Period::Quarter { year, quarter } => Period::Quarter {
                year: year - 1,
                quarter,
            },
            Period::Year(y) => Period::Year(y - 1),
        }
    }

    /// The months from January of the period's year to the period's last month.
    pub fn year_to_date(self) -> Vec<Month> {
        let last = self.months().last().copied().unwrap_or(Month {
            year: self.year(),
            month: 12,
        });
        (1..=last.month)
            .map(|month| Month {
                year: last.year,
                month,
            })
            .collect()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Month(m) => m.fmt(f),
            Period::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            Period::Year(y) => write!(f, "{y:04}"),
        }
    }
}

impl FromStr for Period {
    type Err = String;
    /// `2026-10` (month), `2026-Q3` (quarter), `2026` (year).
    fn from_str(s: &str) -> Result<Period, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "\"{s}\" is not a period; write a month as 2026-10, a quarter as 2026-Q3 or a year as 2026"
            )
        };
        let year = |y: &str| -> Result<i32, String> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let v: i32 = y.parse().map_err(|_| bad())?;
            if (1900..=2200).contains(&v) {
                Ok(v)
            } else {
                Err(format!("year {v} in \"{s}\" is out of range 1900..=2200"))
            }
        };
        match t.split_once('-') {
            None => Ok(Period::Year(year(t)?)),
            Some((y, rest)) => {
                let y = year(y)?;
                if let Some(q) = rest.strip_prefix(['Q', 'q']) {
                    match q {
                        "1" | "2" | "3" | "4" => Ok(Period::Quarter {
                            year: y,
                            quarter: q.parse().map_err(|_| bad())?,
                        }),
                        _ => Err(format!("quarter in \"{s}\" must be Q1 to Q4")),
                    }
                } else {
                    if rest.len() != 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    let m: u32 = rest.parse().map_err(|_| bad())?;
                    Month::new(y, m)
                        .map(Period::Month)
                        .ok_or_else(|| format!("month in \"{s}\" must be 01 to 12"))
                }
            }
        }
    }
}

/// UTC milliseconds of the first instant of `date` in `tz`. When local midnight does not exist
/// (a daylight-saving jump at midnight), the first existing instant after it.
pub fn local_midnight_ms(tz: Tz, date: NaiveDate) -> TimestampMs {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    local_to_utc_ms(tz, midnight)
}

/// Maps a local wall-clock time to UTC; ambiguous times take the earlier instant, skipped times
/// the first instant after the jump.
pub fn local_to_utc_ms(tz: Tz, local: NaiveDateTime) -> TimestampMs {
    let mut t = local;
    for _ in 0..=(4 * 60) {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) => return d.timestamp_millis(),
            LocalResult::Ambiguous(a, _) => return a.timestamp_millis(),
            LocalResult::None => t += chrono::Duration::minutes(1),
        }
    }
    // No zone skips more than a few hours; treat the wall clock as UTC as a last resort.
    local.and_utc().timestamp_millis()
}

/// Local wall-clock time of an instant.
pub fn local_time(tz: Tz, ts_ms: TimestampMs) -> NaiveDateTime {
    tz.timestamp_millis_opt(ts_ms)
        .single()
        .map(|d| d.naive_local())
        .unwrap_or_default()
}

/// RFC 3339 rendering of an instant in the site's time zone (`2026-10-01T00:00:00+08:00`).
pub fn rfc3339(tz: Tz, ts_ms: TimestampMs) -> String {
    tz.timestamp_millis_opt(ts_ms)
        .single()
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ts_ms.to_string())
}

/// The calendar buckets accounts are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Minutes15,
    Hour,
    Day,
    Month,
    Quarter,
    Year,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minutes15 => "15m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
            Resolution::Month => "month",
            Resolution::Quarter => "quarter",
            Resolution::Year => "year",
        }
    }
}

/// Start of the local bucket of resolution `res` that contains `ts_ms`.
pub fn bucket_start(tz: Tz, res: Resolution, ts_ms: TimestampMs) -> TimestampMs {
    if res == Resolution::Minutes15 {
        return slot_start(ts_ms);
    }
    let local = local_time(tz, ts_ms);
    let date = local.date();
    match res {
        Resolution::Minutes15 => slot_start(ts_ms),
        Resolution::Hour => {
            let h = date
                .and_hms_opt(local.hour(), 0, 0)
                .unwrap_or_else(|| date.and_hms_opt(0, 0, 0).unwrap_or_default());
            local_to_utc_ms(tz, h)
        }
        Resolution::Day => local_midnight_ms(tz, date),
        Resolution::Month => {
            Month {
                year: date.year(),
                month: date.month(),
            }
            .bounds(tz)
            .0
        }
        Resolution::Quarter => {
            Month {
                year: date.year(),
                month: (date.month() - 1) / 3 * 3 + 1,
            }
            .bounds(tz)
            .0
        }
        Resolution::Year => {
            Month {
                year: date.year(),
                month: 1,
            }
            .bounds(tz)
            .0
        }
    }
}

/// The month (local calendar) an instant falls in.
pub fn month_of(tz: Tz, ts_ms: TimestampMs) -> Month {
    let d = local_time(tz, ts_ms).date();
    Month {
        year: d.year(),
        month: d.month(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn periods_parse_and_print() {
        for s in ["2026-10", "2026-Q3", "2026"] {
            assert_eq!(s.parse::<Period>().unwrap().to_string(), s);
        }
        assert_eq!(
            "2026-q1".parse::<Period>().unwrap(),
            Period::Quarter {
                year: 2026,
                quarter: 1
            }
        );
        for bad in [
            "2026-13", "2026-Q5", "26-10", "2026-1", "", "2026/10", "abcd",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }

    #[test]
    fn month_bounds_are_local_midnights() {
        let (s, e) = Month::new(2026, 10).unwrap().bounds(SH);
        assert_eq!(s, ms("2026-09-30T16:00:00Z"));
        assert_eq!(e, ms("2026-10-31T16:00:00Z"));
        let (s, e) = "2026-Q4".parse::<Period>().unwrap().bounds(SH);
        assert_eq!(
            (s, e),
            (
                ms("2026-10-01T00:00:00+08:00"),
                ms("2027-01-01T00:00:00+08:00")
            )
        );
        let (s, e) = "2026".parse::<Period>().unwrap().bounds(SH);
        assert_eq!(
            (s, e),
            (
                ms("2026-01-01T00:00:00+08:00"),
                ms("2027-01-01T00:00:00+08:00")
            )
        );
    }

    #[test]
    fn a_second_before_midnight_and_midnight_fall_in_different_buckets() {
        // 2026-09-30 23:59:59 local is the last second of September, of Q3 and (for 12-31) of a year.
        for (before, after, res) in [
            (
                "2026-09-30T23:59:59+08:00",
                "2026-10-01T00:00:00+08:00",
                Resolution::Month,
            ),
            (
                "2026-09-30T23:59:59+08:00",
                "2026-10-01T00:00:00+08:00",
                Resolution::Quarter,
            ),
            (
                "2026-12-31T23:59:59+08:00",
                "2027-01-01T00:00:00+08:00",
                Resolution::Year,
            ),
            (
                "2026-10-05T23:59:59+08:00",
                "2026-10-06T00:00:00+08:00",
                Resolution::Day,
            ),
        ] {
            let b = bucket_start(SH, res, ms(before));
            let a = bucket_start(SH, res, ms(after));
            assert_eq!(a, ms(after), "{res:?}");
            assert!(b < a, "{res:?}");
        }
        assert_eq!(
            month_of(SH, ms("2026-09-30T23:59:59+08:00")),
            Month::new(2026, 9).unwrap()
        );
        assert_eq!(
            month_of(SH, ms("2026-10-01T00:00:00+08:00")),
            Month::new(2026, 10).unwrap()
        );
        // In UTC both instants are still 30 September.
        assert_eq!(ms("2026-10-01T00:00:00+08:00"), ms("2026-09-30T16:00:00Z"));
    }

    #[test]
    fn year_to_date_and_previous_year() {
        let p: Period = "2026-Q3".parse().unwrap();
        assert_eq!(p.year_to_date().len(), 9);
        assert_eq!(p.previous_year().to_string(), "2025-Q3");
        assert_eq!(p.months().len(), 3);
        assert_eq!(p.months()[0].to_string(), "2026-07");
    }

    #[test]
    fn dst_zone_midnight_is_found() {
        // America/Sao_Paulo skipped midnight on 2018-11-04 (clocks went 00:00 -> 01:00).
        let tz: Tz = "America/Sao_Paulo".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2018, 11, 4).unwrap();
        assert_eq!(local_midnight_ms(tz, d), ms("2018-11-04T01:00:00-02:00"));
        assert_eq!(
            bucket_start(tz, Resolution::Hour, ms("2018-11-04T01:30:00-02:00")),
            ms("2018-11-04T01:00:00-02:00")
        );
    }

    #[test]
    fn rfc3339_in_site_zone() {
        assert_eq!(
            rfc3339(SH, ms("2026-09-30T16:00:00Z")),
            "2026-10-01T00:00:00+08:00"
        );
        assert_eq!(
            slot_start(ms("2026-10-01T00:14:59+08:00")),
            ms("2026-10-01T00:00:00+08:00")
        );
    }
}
