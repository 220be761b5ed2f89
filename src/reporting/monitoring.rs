//! Online-monitoring export (重点用能单位能耗在线监测): 15-minute, daily and monthly energy items
//! per carrier, as JSON or CSV files a site's uploader can send. The platform's item codes come
//! from a mapping file (`config/monitoring/codes.toml`, placeholders: the national coding rules
//! were not available). Format: `docs/report-formats.md`.
//!
//! Items per carrier: `purchased` (purchase meters' import counters), `generated` (generation
//! meters), `exported` (purchase meters' export counters and export meters), `consumed` =
//! purchased + generated − exported, the consumption the accounts use. Every row carries the
//! share of its 15-minute intervals that were measured (`completeness_pct`; the platform asks
//! ≥ 90 %, S70) and a quality: `measured`, `estimated` (every interval covered, some from a
//! bridged gap) or `incomplete`. A bucket without any data is left out (never a 0), a month in
//! progress is exported up to its last closed interval (`in_progress`, `data_to`), and a
//! period that has not started is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::accounting::calendar::{bucket_start, rfc3339, Period, Resolution};
use crate::accounting::config::MeterRole;
use crate::accounting::ledger::{load_range, Plan};
use crate::accounting::store::AccountingStore;
use crate::config::Config;

pub const DEFAULT_CODES: &str = include_str!("../../config/monitoring/codes.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Codes {
    #[serde(default)]
    pub unit_id: String,
    #[serde(default)]
    pub items: Vec<CodeItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeItem {
    pub carrier: String,
    pub item: String,
    pub code: String,
    #[serde(default)]
    pub name: String,
}

pub const ITEMS: &[&str] = &["purchased", "generated", "exported", "consumed"];

impl Codes {
    pub fn parse(text: &str, origin: &str) -> Result<Codes> {
        let c: Codes =
            toml::from_str(text).with_context(|| format!("invalid code file {origin}"))?;
        for (i, it) in c.items.iter().enumerate() {
            if !ITEMS.contains(&it.item.as_str()) {
                bail!(
                    "invalid code file {origin}: items[{i}].item \"{}\" is not one of {}",
                    it.item,
                    ITEMS.join(", ")
                );
            }
        }
        Ok(c)
    }
    fn find(&self, carrier: &str, item: &str) -> Option<&CodeItem> {
        self.items
            .iter()
            .find(|c| c.carrier == carrier && c.item == item)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub time: String,
    pub code: String,
    pub carrier: String,
    pub item: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub quality: &'static str,
    pub completeness_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Export {
    pub unit_id: String,
    pub site: String,
    pub period: String,
    /// "15m", "1d" or "1mo".
    pub resolution: &'static str,
    pub timezone: String,
    /// The period has not ended: only its closed intervals, up to `data_to`, are exported.
    pub in_progress: bool,
    pub data_to: Option<String>,
    pub codes_note: &'static str,
    /// carrier/item pairs exported without a code.
    pub unmapped: Vec<String>,
    pub rows: Vec<Row>,
}

/// One 15-min interval of an item: (start, amount, measured, covered).
type Interval = (i64, f64, bool, bool);
/// Per carrier and item: (unit, intervals).
type Slots = BTreeMap<(String, &'static str), (String, Vec<Interval>)>;

fn slots(plan: &Plan, data: &crate::accounting::ledger::RangeData) -> Slots {
    let mut parts: BTreeMap<(String, &'static str), (String, Vec<usize>)> = BTreeMap::new();
    for m in &plan.meters {
        let unit = |q| {
            plan.series_index(&m.device, q)
                .map(|i| plan.series[i].unit.clone())
                .unwrap_or_default()
        };
        let mut add = |item: &'static str, q| {
            if let Some(i) = plan.series_index(&m.device, q) {
                let e = parts
                    .entry((m.carrier.to_string(), item))
                    .or_insert_with(|| (unit(q), Vec::new()));
                e.1.push(i);
            }
        };
        match m.role {
            MeterRole::Purchase => {
                add("purchased", m.counter);
                if let Some(x) = m.export_counter {
                    add("exported", x);
                }
            }
            MeterRole::Generation => add("generated", m.counter),
            MeterRole::Export => add("exported", m.counter),
            _ => {}
        }
    }
    let (from, to) = (data.from_ms, data.to_ms);
    let mut out: Slots = BTreeMap::new();
    for ((carrier, item), (unit, idx)) in parts {
        let first = &data.slots[idx[0]];
        let rows = first
            .index_range(from, to)
            .map(|i| {
                let amount = idx
                    .iter()
                    .fold(0.0, |a, j| a + data.slots[*j].get(i).amount);
                let measured = idx.iter().all(|j| data.slots[*j].get(i).is_measured());
                let covered = idx.iter().all(|j| data.slots[*j].get(i).is_covered());
                (first.slot_start(i), amount, measured, covered)
            })
            .collect();
        out.insert((carrier, item), (unit, rows));
    }
    // consumed = purchased + generated − exported, per carrier with a purchase or generation.
    let carriers: Vec<String> = out
        .keys()
        .filter(|(_, i)| *i != "exported")
        .map(|(c, _)| c.clone())
        .collect();
    for c in carriers {
        if out.contains_key(&(c.clone(), "consumed")) {
            continue;
        }
        let mut acc: Option<(String, Vec<Interval>)> = None;
        for (item, sign) in [("purchased", 1.0), ("generated", 1.0), ("exported", -1.0)] {
            let Some((unit, rows)) = out.get(&(c.clone(), item)) else {
                continue;
            };
            match &mut acc {
                None => {
                    acc = Some((
                        unit.clone(),
                        rows.iter().map(|r| (r.0, sign * r.1, r.2, r.3)).collect(),
                    ))
                }
                Some((_, a)) => {
                    for (x, r) in a.iter_mut().zip(rows) {
                        x.1 += sign * r.1;
                        x.2 &= r.2;
                        x.3 &= r.3;
                    }
                }
            }
        }
        if let Some(a) = acc {
            out.insert((c, "consumed"), a);
        }
    }
    out
}

fn quality(measured: usize, covered: usize, n: usize) -> &'static str {
    if measured == n {
        "measured"
    } else if covered == n {
        "estimated"
    } else {
        "incomplete"
    }
}

/// The three exports (15 min, day, month) of a period.
pub fn build(cfg: &Config, period: Period, codes: &Codes) -> Result<Vec<Export>> {
    let plan = Plan::build(&cfg.accounting_context())?;
    let store = AccountingStore::open(&cfg.store_path())?;
    let (from, _) = period.bounds(plan.tz);
    // A month in progress: its closed intervals only; a future one is refused.
    let (to, in_progress) = super::period_extent(plan.tz, period, crate::readings::now_ms())?;
    let data = load_range(&plan, &store, from, to)?;
    let s = slots(&plan, &data);
    let mut unmapped = Vec::new();
    for (c, i) in s.keys() {
        if codes.find(c, i).is_none() {
            unmapped.push(format!("{c}/{i}"));
        }
    }
    let mut out = Vec::new();
    for (res, name) in [
        (Resolution::Minutes15, "15m"),
        (Resolution::Day, "1d"),
        (Resolution::Month, "1mo"),
    ] {
        let mut rows = Vec::new();
        for ((carrier, item), (unit, slots)) in &s {
            let code = codes.find(carrier, item);
            let mut i = 0;
            while i < slots.len() {
                let start = bucket_start(plan.tz, res, slots[i].0);
                let mut j = i;
                let (mut v, mut m, mut c) = (0.0, 0, 0);
                while j < slots.len() && bucket_start(plan.tz, res, slots[j].0) == start {
                    v += slots[j].1;
                    m += slots[j].2 as usize;
                    c += slots[j].3 as usize;
                    j += 1;
                }
                let n = j - i;
                if c == 0 {
                    // No data in the bucket: absent, never a 0 a platform would take as
                    // consumption.
                    i = j;
                    continue;
                }
                rows.push(Row {
                    time: rfc3339(plan.tz, start),
                    code: code.map(|c| c.code.clone()).unwrap_or_default(),
                    carrier: carrier.clone(),
                    item,
                    name: code.map(|c| c.name.clone()).unwrap_or_default(),
                    value: v,
                    unit: unit.clone(),
                    quality: quality(m, c, n),
                    completeness_pct: m as f64 / n as f64 * 100.0,
                });
                i = j;
            }
        }
        rows.sort_by(|a, b| {
            (a.time.as_str(), a.carrier.as_str(), a.item).cmp(&(
                b.time.as_str(),
                b.carrier.as_str(),
                b.item,
            ))
        });
        out.push(Export {
            unit_id: codes.unit_id.clone(),
            site: plan.site.clone(),
            period: period.to_string(),
            resolution: name,
            timezone: plan.tz.name().to_string(),
            in_progress,
            data_to: in_progress.then(|| rfc3339(plan.tz, to)),
            codes_note: "item codes from the mapping file; the national coding rules (GB/T 37947.3/.4) were not available, the shipped codes are placeholders",
            unmapped: unmapped.clone(),
            rows,
        });
    }
    Ok(out)
}

pub fn csv(e: &Export) -> String {
    let mut s = String::from(
        "unit_id,site,resolution,time,code,carrier,item,name,value,unit,quality,completeness_pct\n",
    );
    for r in &e.rows {
        let f = super::csv::field;
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            f(&e.unit_id),
            f(&e.site),
            e.resolution,
            r.time,
            f(&r.code),
            f(&r.carrier),
            r.item,
            f(&r.name),
            r.value,
            f(&r.unit),
            r.quality,
            r.completeness_pct
        ));
    }
    s
}

/// `energy-gateway export monitoring`: writes three files into `out_dir`; returns their paths.
pub fn export(
    cfg: &Config,
    period: Period,
    codes: Option<&Path>,
    out_dir: &Path,
    format: &str,
) -> Result<Vec<PathBuf>> {
    if !matches!(format, "json" | "csv") {
        bail!("unknown format \"{format}\"; available: json, csv");
    }
    let codes = match codes {
        None => Codes::parse(DEFAULT_CODES, "config/monitoring/codes.toml")?,
        Some(p) => Codes::parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            &p.display().to_string(),
        )?,
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut paths = Vec::new();
    for e in build(cfg, period, &codes)? {
        let p = out_dir.join(format!(
            "monitoring-{}-{}-{}.{format}",
            e.site, e.period, e.resolution
        ));
        let text = if format == "json" {
            let mut s = serde_json::to_string_pretty(&e)?;
            s.push('\n');
            s
        } else {
            csv(&e)
        };
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        paths.push(p);
    }
    Ok(paths)
}
