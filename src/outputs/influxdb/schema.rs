//! The InfluxDB schema written by the gateway, and each destination's mapping of it.
//!
//! Readings: measurement `reading` (configurable per destination), tags [`READING_TAGS`], fields
//! [`READING_FIELDS`], timestamp = acquisition time. The measurements in
//! [`RESERVED_MEASUREMENTS`] are the other series every destination gets (interval energy,
//! energy accounts, alerts; see [`super::streams`]), so a destination may not use them for
//! readings.
//!
//! A destination may add static tags (`tags`), write standard tags under another name
//! (`rename_tags`) and leave standard tags out (`drop_tags`); `device` and `quantity` cannot be
//! dropped because they tell series apart (without them points would overwrite each other).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::config::InfluxConfig;
use super::line_protocol::{self, EncodeError};

/// Tags of a reading point, in the order they are documented.
pub const READING_TAGS: &[&str] = &[
    "site", "park", "device", "quantity", "unit", "carrier", "line", "model",
];

/// Fields of a reading point.
pub const READING_FIELDS: &[&str] = &["value", "quality", "reason"];

/// Tags that identify a series and so cannot be dropped.
pub const IDENTITY_TAGS: &[&str] = &["device", "quantity"];

/// Measurements reserved for the gateway's other series (written by other components).
pub const RESERVED_MEASUREMENTS: &[&str] = &["energy_interval", "energy_account", "alert"];

fn valid_tag_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("a tag name must be 1-64 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "tag name \"{s}\" may only use A-Z, a-z, 0-9, '_', '-' and '.'"
        ));
    }
    if s.starts_with('_') {
        return Err(format!(
            "tag name \"{s}\" starts with '_', which InfluxDB reserves"
        ));
    }
    if s == "time" {
        return Err("\"time\" cannot be a tag name in InfluxDB".into());
    }
    Ok(())
}

fn valid_tag_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty (InfluxDB drops empty tags)".into());
    }
    if s.len() > 256 {
        return Err("must be at most 256 characters".into());
    }
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err("must not contain control characters or backslashes".into());
    }
    Ok(())
}

/// Checks the schema-related keys of one destination; returns (key below the output, message).
pub fn check_output(o: &InfluxConfig) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let m = &o.measurement;
    if RESERVED_MEASUREMENTS.contains(&m.as_str()) {
        p.push((
            "measurement".into(),
            format!(
                "\"{m}\" is reserved for other gateway series ({}); choose another name",
                RESERVED_MEASUREMENTS.join(", ")
            ),
        ));
    } else if m.starts_with('#') {
        p.push((
            "measurement".into(),
            "must not start with '#' (a comment in line protocol)".into(),
        ));
    } else if m.chars().any(|c| c.is_control() || c == '\\') {
        p.push((
            "measurement".into(),
            "must not contain control characters or backslashes".into(),
        ));
    }
    let mut dropped = HashSet::new();
    for (i, t) in o.drop_tags.iter().enumerate() {
        if !READING_TAGS.contains(&t.as_str()) {
            p.push((
                format!("drop_tags[{i}]"),
                format!(
                    "unknown tag \"{t}\"; standard tags are {}",
                    READING_TAGS.join(", ")
                ),
            ));
        } else if IDENTITY_TAGS.contains(&t.as_str()) {
            p.push((
                format!("drop_tags[{i}]"),
                format!("\"{t}\" cannot be dropped: it tells series apart, without it points would overwrite each other"),
            ));
        }
        dropped.insert(t.as_str());
    }
    // Final tag names and where each comes from, to find collisions.
    let mut names: HashMap<String, String> = HashMap::new();
    for t in READING_TAGS {
        if !dropped.contains(t) && !o.rename_tags.contains_key(*t) {
            names.insert(t.to_string(), format!("standard tag \"{t}\""));
        }
    }
    for (from, to) in &o.rename_tags {
        let at = format!("rename_tags.{from}");
        if !READING_TAGS.contains(&from.as_str()) {
            p.push((
                at,
                format!(
                    "unknown tag \"{from}\"; standard tags are {}",
                    READING_TAGS.join(", ")
                ),
            ));
            continue;
        }
        if dropped.contains(from.as_str()) {
            p.push((at, format!("\"{from}\" is also in drop_tags")));
            continue;
        }
        if let Err(e) = valid_tag_name(to) {
            p.push((at, e));
            continue;
        }
        if let Some(prev) = names.insert(to.clone(), format!("renamed tag \"{from}\"")) {
            p.push((at, format!("\"{to}\" is already the name of the {prev}")));
        }
    }
    for (k, v) in &o.tags {
        let at = format!("tags.{k}");
        if let Err(e) = valid_tag_name(k) {
            p.push((at, e));
            continue;
        }
        if let Err(e) = valid_tag_value(v) {
            p.push((at, e));
            continue;
        }
        if let Some(prev) = names.insert(k.clone(), "static tag".into()) {
            p.push((
                at,
                format!("\"{k}\" is already the name of the {prev}; drop or rename that one first"),
            ));
        }
    }
    if o.backoff_initial.is_zero() {
        p.push(("backoff_initial".into(), "must be greater than 0".into()));
    }
    if o.backoff_max < o.backoff_initial {
        p.push((
            "backoff_max".into(),
            "must be at least backoff_initial".into(),
        ));
    }
    if o.setup_retry_interval.is_zero() {
        p.push((
            "setup_retry_interval".into(),
            "must be greater than 0".into(),
        ));
    }
    if o.batch_size > 1_000_000 {
        p.push((
            "batch_size".into(),
            "must be at most 1000000 (InfluxDB recommends 5000-10000 points per request)".into(),
        ));
    }
    p
}

/// One destination's mapping from the standard reading tags to what it writes.
#[derive(Debug, Clone, Default)]
pub struct TagMapping {
    measurement: String,
    renames: HashMap<String, String>,
    dropped: HashSet<String>,
    static_tags: BTreeMap<String, String>,
}

impl TagMapping {
    pub fn new(o: &InfluxConfig) -> Self {
        TagMapping {
            measurement: o.measurement.clone(),
            renames: o
                .rename_tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dropped: o.drop_tags.iter().cloned().collect(),
            static_tags: o.tags.clone(),
        }
    }

    /// The series key (`measurement,tag=value,…`) of a point with these standard tags.
    pub fn series_key(&self, standard: &[(&str, &str)]) -> Result<String, EncodeError> {
        let mut tags: Vec<(&str, &str)> =
            Vec::with_capacity(standard.len() + self.static_tags.len());
        for (k, v) in standard {
            if self.dropped.contains(*k) {
                continue;
            }
            let name = self.renames.get(*k).map(String::as_str).unwrap_or(k);
            tags.push((name, v));
        }
        for (k, v) in &self.static_tags {
            tags.push((k, v));
        }
        line_protocol::series_key(&self.measurement, &tags)
    }

    /// The series key of a point of one of the gateway's other measurements: the standard tags
    /// are renamed or dropped as for readings, the destination's static tags are added, and the
    /// measurement's own tags (`own`: e.g. `rule`, `resolution`) are written as they are. A
    /// static tag whose name is already taken is left out (an own tag wins).
    pub fn series_key_in(
        &self,
        measurement: &str,
        standard: &[(&str, &str)],
        own: &[(&str, &str)],
    ) -> Result<String, EncodeError> {
        let mut tags: Vec<(&str, &str)> =
            Vec::with_capacity(standard.len() + own.len() + self.static_tags.len());
        for (k, v) in own {
            tags.push((k, v));
        }
        for (k, v) in standard {
            if self.dropped.contains(*k) {
                continue;
            }
            let name = self.renames.get(*k).map(String::as_str).unwrap_or(k);
            if !tags.iter().any(|(t, _)| *t == name) {
                tags.push((name, v));
            }
        }
        for (k, v) in &self.static_tags {
            if !tags.iter().any(|(t, _)| t == k) {
                tags.push((k, v));
            }
        }
        line_protocol::series_key(measurement, &tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(extra: &str) -> InfluxConfig {
        let toml = format!(
            "[site]\nid = \"s\"\n[outputs.influxdb.o]\nurl = \"http://127.0.0.1:1\"\ndatabase = \"d\"\n{extra}"
        );
        match crate::config::load_str(&toml) {
            Ok(c) => c.outputs.influxdb["o"].clone(),
            Err(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn mapping_renames_drops_and_adds() {
        let o = output(
            "measurement = \"energy_reading\"\ntags = { region = \"west\" }\nrename_tags = { device = \"meter\" }\ndrop_tags = [\"model\"]\n",
        );
        let m = TagMapping::new(&o);
        let key = m
            .series_key(&[
                ("site", "s1"),
                ("device", "d1"),
                ("quantity", "frequency"),
                ("model", "x"),
            ])
            .unwrap();
        assert_eq!(
            key,
            "energy_reading,meter=d1,quantity=frequency,region=west,site=s1"
        );
    }

    #[test]
    fn collisions_and_unknown_tags_are_reported_with_their_key() {
        let problems = |extra: &str| -> Vec<String> {
            let toml = format!(
                "[site]\nid = \"s\"\n[outputs.influxdb.o]\nurl = \"http://127.0.0.1:1\"\ndatabase = \"d\"\n{extra}"
            );
            crate::config::load_str(&toml)
                .err()
                .unwrap_or_default()
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        let p = problems("tags = { site = \"x\" }\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.tags.site: \"site\" is already")),
            "{p:?}"
        );
        let p = problems("drop_tags = [\"modle\", \"device\"]\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.drop_tags[0]: unknown tag \"modle\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m
                    .starts_with("outputs.influxdb.o.drop_tags[1]: \"device\" cannot be dropped")),
            "{p:?}"
        );
        let p = problems("rename_tags = { line = \"site\" }\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.rename_tags.line: \"site\" is already")),
            "{p:?}"
        );
        let p = problems("measurement = \"alert\"\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.measurement: \"alert\" is reserved")),
            "{p:?}"
        );
        let p = problems("tags = { _x = \"1\", ok = \"a\\\\b\" }\n");
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.tags._x:")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("outputs.influxdb.o.tags.ok: must not contain")),
            "{p:?}"
        );
        // Renaming a tag frees its name for a static tag.
        assert_eq!(
            problems("rename_tags = { site = \"factory\" }\ntags = { site = \"x\" }\n"),
            Vec::<String>::new()
        );
    }
}
