//! Time-of-use calendar (分时电价): which band — 尖 sharp, 峰 peak, 平 flat, 谷 valley — each
//! 15-minute interval of the day belongs to, per season (a set of months).
//!
//! The calendar is configuration (`[accounting.tou]`): provincial grids publish their own periods
//! and change them; none is built in.

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::calendar::{local_time, SLOT_MS};
use crate::readings::TimestampMs;

const SLOTS_PER_DAY: usize = (24 * 3600 * 1000 / SLOT_MS) as usize;

/// A time-of-use band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    /// 尖峰
    Sharp,
    /// 峰
    Peak,
    /// 平
    Flat,
    /// 谷
    Valley,
}

impl Band {
    pub const ALL: [Band; 4] = [Band::Sharp, Band::Peak, Band::Flat, Band::Valley];

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Sharp => "sharp",
            Band::Peak => "peak",
            Band::Flat => "flat",
            Band::Valley => "valley",
        }
    }
}

/// `[accounting.tou]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouConfig {
    pub seasons: Vec<TouSeason>,
}

/// `[[accounting.tou.seasons]]`: the bands of every day of some months.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouSeason {
    pub name: String,
    pub months: Vec<u32>,
    #[serde(default)]
    pub sharp: Vec<String>,
    #[serde(default)]
    pub peak: Vec<String>,
    #[serde(default)]
    pub flat: Vec<String>,
    #[serde(default)]
    pub valley: Vec<String>,
}

impl TouSeason {
    fn ranges(&self) -> [(Band, &Vec<String>); 4] {
        [
            (Band::Sharp, &self.sharp),
            (Band::Peak, &self.peak),
            (Band::Flat, &self.flat),
            (Band::Valley, &self.valley),
        ]
    }
}

/// The calendar, one band per 15-minute interval of the day for each month.
#[derive(Debug, Clone)]
pub struct TouCalendar {
    by_month: Vec<[Band; SLOTS_PER_DAY]>,
}

/// Parses `"HH:MM-HH:MM"` (end `24:00` allowed) into 15-minute slot indexes `[start, end)`.
pub fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("\"{s}\" is not a time range; write it as \"08:00-11:30\"");
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(format!("\"{t}\" is not a time of day (00:00 to 24:00)"));
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (minute(a)?, minute(b)?);
    if start % 15 != 0 || end % 15 != 0 {
        return Err(format!(
            "\"{s}\": times must be on a quarter hour (:00, :15, :30, :45)"
        ));
    }
    if end <= start {
        return Err(format!(
            "\"{s}\": the end must be after the start (split a range across midnight in two)"
        ));
    }
    Ok(((start / 15) as usize, (end / 15) as usize))
}

fn hhmm(slot: usize) -> String {
    format!("{:02}:{:02}", slot / 4, slot % 4 * 15)
}

impl TouCalendar {
    /// Builds the calendar, or every problem with its path relative to `[accounting.tou]`.
    pub fn build(cfg: &TouConfig) -> Result<TouCalendar, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut by_month: Vec<Option<[Band; SLOTS_PER_DAY]>> = vec![None; 12];
        let mut month_owner: [Option<usize>; 12] = [None; 12];
        if cfg.seasons.is_empty() {
            problems.push((
                "seasons".to_string(),
                "at least one season is needed when [accounting.tou] is present".to_string(),
            ));
        }
        for (i, season) in cfg.seasons.iter().enumerate() {
            let at = format!("seasons[{i}]");
            let mut day: [Option<Band>; SLOTS_PER_DAY] = [None; SLOTS_PER_DAY];
            for (band, ranges) in season.ranges() {
                for (j, r) in ranges.iter().enumerate() {
                    let path = format!("{at}.{}[{j}]", band.as_str());
                    match parse_range(r) {
                        Err(e) => problems.push((path, e)),
                        Ok((a, b)) => {
                            if let Some(s) = (a..b).find(|s| day[*s].is_some()) {
                                let other = day[s].map(Band::as_str).unwrap_or("");
                                problems.push((
                                    path,
                                    format!("\"{r}\" overlaps the {other} band at {}", hhmm(s)),
                                ));
                            } else {
                                day[a..b].iter_mut().for_each(|d| *d = Some(band));
                            }
                        }
                    }
                }
            }
            let gaps: Vec<String> = (0..SLOTS_PER_DAY)
                .filter(|s| day[*s].is_none() && (*s == 0 || day[*s - 1].is_some()))
                .map(|s| {
                    let end = (s..SLOTS_PER_DAY)
                        .find(|e| day[*e].is_some())
                        .unwrap_or(SLOTS_PER_DAY);
                    format!("{}-{}", hhmm(s), hhmm(end))
                })
                .collect();
            if !gaps.is_empty() {
                problems.push((
                    at.clone(),
                    format!(
                        "season \"{}\" leaves {} in no band; the four bands must cover the whole day",
                        season.name,
                        gaps.join(", ")
                    ),
                ));
            }
            if season.months.is_empty() {
                problems.push((format!("{at}.months"), "lists no month".to_string()));
            }
            for (j, m) in season.months.iter().enumerate() {
                if !(1..=12).contains(m) {
                    problems.push((
                        format!("{at}.months[{j}]"),
                        format!("{m} is not a month 1-12"),
                    ));
                    continue;
                }
                let idx = (*m - 1) as usize;
                if let Some(prev) = month_owner[idx] {
                    problems.push((
                        format!("{at}.months[{j}]"),
                        format!("month {m} is already in seasons[{prev}]"),
                    ));
                    continue;
                }
                month_owner[idx] = Some(i);
                if gaps.is_empty() {
                    by_month[idx] = Some(day.map(|b| b.unwrap_or(Band::Flat)));
                }
            }
        }
        let missing: Vec<String> = (1..=12)
            .filter(|m| month_owner[*m as usize - 1].is_none())
            .map(|m: u32| m.to_string())
            .collect();
        if !missing.is_empty() && !cfg.seasons.is_empty() {
            problems.push((
                "seasons".to_string(),
                format!(
                    "month(s) {} are in no season; every month needs one",
                    missing.join(", ")
                ),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TouCalendar {
            by_month: by_month.into_iter().flatten().collect(),
        })
    }

    /// The band of the 15-minute interval starting at `slot_start_ms` (local time of day).
    pub fn band_at(&self, tz: Tz, slot_start_ms: TimestampMs) -> Band {
        let t = local_time(tz, slot_start_ms);
        let month = t.month0() as usize;
        let slot = (t.hour() * 4 + t.minute() / 15) as usize;
        self.by_month
            .get(month)
            .and_then(|d| d.get(slot))
            .copied()
            .unwrap_or(Band::Flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn season(
        months: Vec<u32>,
        sharp: &[&str],
        peak: &[&str],
        flat: &[&str],
        valley: &[&str],
    ) -> TouSeason {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        TouSeason {
            name: "s".into(),
            months,
            sharp: v(sharp),
            peak: v(peak),
            flat: v(flat),
            valley: v(valley),
        }
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn bands_by_season_and_time_of_day() {
        let cfg = TouConfig {
            seasons: vec![
                season(
                    vec![7, 8],
                    &["20:00-21:00"],
                    &["08:00-11:00", "18:00-20:00", "21:00-23:00"],
                    &["11:00-18:00"],
                    &["00:00-08:00", "23:00-24:00"],
                ),
                season(
                    vec![1, 2, 3, 4, 5, 6, 9, 10, 11, 12],
                    &[],
                    &["08:00-11:00", "18:00-23:00"],
                    &["11:00-18:00"],
                    &["00:00-08:00", "23:00-24:00"],
                ),
            ],
        };
        let c = TouCalendar::build(&cfg).unwrap();
        let sh = chrono_tz::Asia::Shanghai;
        assert_eq!(c.band_at(sh, ms("2026-07-01T20:15:00+08:00")), Band::Sharp);
        assert_eq!(c.band_at(sh, ms("2026-10-01T20:15:00+08:00")), Band::Peak);
        assert_eq!(c.band_at(sh, ms("2026-10-01T07:45:00+08:00")), Band::Valley);
        assert_eq!(c.band_at(sh, ms("2026-10-01T08:00:00+08:00")), Band::Peak);
        assert_eq!(c.band_at(sh, ms("2026-10-01T23:45:00+08:00")), Band::Valley);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let cfg = TouConfig {
            seasons: vec![season(
                vec![1, 1, 13],
                &["08:10-09:00"],
                &["08:00-12:00", "11:00-13:00"],
                &[],
                &["00:00-08:00", "25:00-26:00"],
            )],
        };
        let p = TouCalendar::build(&cfg).unwrap_err();
        let text: Vec<String> = p.iter().map(|(a, b)| format!("{a}: {b}")).collect();
        let has = |s: &str| text.iter().any(|t| t.starts_with(s));
        assert!(
            has("seasons[0].sharp[0]: \"08:10-09:00\": times must be on a quarter hour"),
            "{text:?}"
        );
        assert!(
            has("seasons[0].peak[1]: \"11:00-13:00\" overlaps the peak band at 11:00"),
            "{text:?}"
        );
        assert!(has("seasons[0].valley[1]"), "{text:?}");
        assert!(
            has("seasons[0]: season \"s\" leaves 12:00-24:00 in no band"),
            "{text:?}"
        );
        assert!(
            has("seasons[0].months[1]: month 1 is already in seasons[0]"),
            "{text:?}"
        );
        assert!(has("seasons[0].months[2]: 13 is not a month"), "{text:?}");
        assert!(
            has("seasons: month(s) 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 are in no season"),
            "{text:?}"
        );
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("00:00-24:00").unwrap(), (0, 96));
        assert_eq!(parse_range(" 08:15 - 09:30 ").unwrap(), (33, 38));
        assert!(parse_range("09:00-08:00").is_err());
        assert!(parse_range("nine-ten").is_err());
        assert!(parse_range("24:15-24:30").is_err());
    }
}
