//! The park report: many factories' accounts read from a central InfluxDB (v1 `/query`, InfluxQL)
//! and compared against the plan's targets.
//!
//! Schema (measurement `energy_account`, one of the names reserved by `src/outputs/influxdb`):
//! each gateway writes, per period, one point per site and one per product (what
//! `energy-gateway report --format lp` prints; timestamp = the period's start):
//!
//! - tags: `site`, `park` (when `[site] park` is set), `period` (`2026-10`), `kind` (`month`,
//!   `quarter`, `year`) and, on product points only, `product`;
//! - site fields: [`SITE_FIELDS`] (numbers; absent when the report has no value);
//! - product fields: [`PRODUCT_FIELDS`] plus the strings `unit`, `grade`, `level`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::labels::{Lang, L};
use super::tables::{Cell, Col, Table};
use super::Report;

/// The series the gateways write their accounts to (`outputs::influxdb::streams`).
pub const MEASUREMENT: &str = "energy_account";

/// Numeric fields of a site point.
pub const SITE_FIELDS: &[&str] = &[
    "comprehensive_energy_tce",
    "comprehensive_energy_equal_value_tce",
    "assessment_energy_tce",
    "value_added_10k_cny",
    "intensity_tce_per_10k_cny",
    "intensity_yoy_change_pct",
    "baseline_intensity_tce_per_10k_cny",
    "change_vs_baseline_pct",
    "path_change_pct",
    "total_tco2",
    "completeness_pct",
];

/// Numeric fields of a product point.
pub const PRODUCT_FIELDS: &[&str] = &[
    "output",
    "energy_tce",
    "unit_energy",
    "grade1",
    "grade2",
    "grade3",
];

fn esc_tag(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '=') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn esc_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn line(tags: &[(&str, &str)], fields: &[(&str, FieldV)], ts_ns: i64) -> Option<String> {
    let fs: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| match v {
            FieldV::F(Some(x)) if x.is_finite() => Some(format!("{k}={x:?}")),
            FieldV::S(Some(s)) => Some(format!("{k}=\"{}\"", esc_str(s))),
            _ => None,
        })
        .collect();
    if fs.is_empty() {
        return None;
    }
    let ts: Vec<String> = tags
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", esc_tag(v)))
        .collect();
    Some(format!(
        "{MEASUREMENT},{} {} {ts_ns}\n",
        ts.join(","),
        fs.join(",")
    ))
}

enum FieldV {
    F(Option<f64>),
    S(Option<String>),
}

/// The period's accounts as line protocol (nanosecond timestamps).
pub fn account_lines(r: &Report, park: Option<&str>) -> String {
    let ts = chrono::DateTime::parse_from_rfc3339(&r.from)
        .map(|d| d.timestamp() * 1_000_000_000)
        .unwrap_or(0);
    let park = park.unwrap_or("");
    let base = [
        ("site", r.site.as_str()),
        ("park", park),
        ("period", r.period.as_str()),
        ("kind", r.period_kind),
    ];
    let intensity = if r.intensity_basis == "comparable" {
        r.intensity_comparable_tce_per_10k_cny
    } else {
        r.intensity_tce_per_10k_cny
    };
    let f = |v: f64| FieldV::F(Some(v));
    let mut out = String::new();
    out.extend(line(
        &base,
        &[
            ("comprehensive_energy_tce", f(r.comprehensive_energy_tce)),
            (
                "comprehensive_energy_equal_value_tce",
                f(r.comprehensive_energy_equal_value_tce),
            ),
            ("assessment_energy_tce", f(r.assessment_energy_tce)),
            ("value_added_10k_cny", FieldV::F(r.value_added_10k_cny)),
            ("intensity_tce_per_10k_cny", FieldV::F(intensity)),
            (
                "intensity_yoy_change_pct",
                FieldV::F(r.intensity_yoy_change_pct),
            ),
            (
                "baseline_intensity_tce_per_10k_cny",
                FieldV::F(r.baseline.intensity_tce_per_10k_cny),
            ),
            (
                "change_vs_baseline_pct",
                FieldV::F(r.change_vs_baseline_pct),
            ),
            ("path_change_pct", f(r.target.path_change_pct)),
            ("total_tco2", f(r.carbon.total_tco2)),
            ("completeness_pct", f(r.data_quality.completeness_pct)),
        ],
        ts,
    ));
    for p in &r.products {
        let mut tags = base.to_vec();
        tags.push(("product", p.id.as_str()));
        let lim = p.limit.as_ref();
        let g = |x: Option<f64>| FieldV::F(lim.and_then(|l| x.map(|v| v * l.correction)));
        out.extend(line(
            &tags,
            &[
                ("output", FieldV::F(p.output)),
                ("energy_tce", f(p.energy_tce)),
                ("unit_energy", FieldV::F(p.graded_value.or(p.unit_energy))),
                ("grade1", g(lim.and_then(|l| l.grade1))),
                ("grade2", g(lim.and_then(|l| l.grade2))),
                ("grade3", g(lim.and_then(|l| l.grade3))),
                ("unit", FieldV::S(Some(p.unit.clone()))),
                ("limit", FieldV::S(lim.map(|l| l.id.clone()))),
                ("grade", FieldV::S(p.grade.map(String::from))),
                (
                    "level",
                    FieldV::S(p.levels.as_ref().and_then(|l| l.level).map(String::from)),
                ),
            ],
            ts,
        ));
    }
    out
}

/// One factory of the park.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factory {
    pub site: String,
    pub park: Option<String>,
    pub comprehensive_energy_tce: f64,
    pub comprehensive_energy_equal_value_tce: f64,
    pub assessment_energy_tce: f64,
    pub value_added_10k_cny: Option<f64>,
    pub intensity_tce_per_10k_cny: Option<f64>,
    pub intensity_yoy_change_pct: Option<f64>,
    pub change_vs_baseline_pct: Option<f64>,
    pub path_change_pct: Option<f64>,
    /// change_vs_baseline ≤ path; absent without a baseline.
    pub on_track: Option<bool>,
    pub total_tco2: f64,
    pub completeness_pct: Option<f64>,
    /// 1 = lowest intensity; absent without intensity.
    pub rank: Option<usize>,
}

/// One product line of one factory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkProduct {
    pub site: String,
    pub product: String,
    pub limit: Option<String>,
    pub unit: Option<String>,
    pub output: Option<f64>,
    pub energy_tce: Option<f64>,
    pub unit_energy: Option<f64>,
    pub grade: Option<String>,
    /// At grade 1 (or the configured 标杆 level).
    pub at_benchmark: bool,
    /// Above grade 3 (over the limit) or below the configured 基准 level.
    pub below_baseline: bool,
}

/// Shares of one limit row (same product and unit) across the park.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityShare {
    pub limit: String,
    pub unit: Option<String>,
    pub output: f64,
    pub benchmark_share_pct: f64,
    pub below_baseline_share_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkReport {
    pub period: String,
    pub factories: Vec<Factory>,
    pub total_energy_tce: f64,
    pub total_energy_equal_value_tce: f64,
    pub total_assessment_energy_tce: f64,
    pub total_value_added_10k_cny: Option<f64>,
    pub intensity_tce_per_10k_cny: Option<f64>,
    pub total_tco2: f64,
    pub off_path: Vec<String>,
    pub products: Vec<ParkProduct>,
    pub capacity: Vec<CapacityShare>,
    /// Output-weighted within each limit row, then weighted by product energy across rows
    /// (rows have different units). The plan asks ≥ 30 %.
    pub benchmark_share_pct: Option<f64>,
    pub benchmark_target_met: Option<bool>,
    /// The plan asks none.
    pub below_baseline_share_pct: Option<f64>,
    pub below_baseline_sites: Vec<String>,
    pub notes: Vec<String>,
}

/// Rows of one InfluxQL answer: column name → JSON value, per row.
type Rows = Vec<BTreeMap<String, serde_json::Value>>;

fn parse_query(body: &str) -> Result<Rows> {
    let v: serde_json::Value = serde_json::from_str(body).context("InfluxDB answer is not JSON")?;
    let mut rows = Vec::new();
    for res in v["results"].as_array().into_iter().flatten() {
        if let Some(e) = res["error"].as_str() {
            bail!("InfluxDB query error: {e}");
        }
        for s in res["series"].as_array().into_iter().flatten() {
            let cols: Vec<String> = s["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(String::from))
                .collect();
            for vals in s["values"].as_array().into_iter().flatten() {
                let mut row = BTreeMap::new();
                for (c, x) in cols.iter().zip(vals.as_array().into_iter().flatten()) {
                    row.insert(c.clone(), x.clone());
                }
                rows.push(row);
            }
        }
    }
    if let Some(e) = v["error"].as_str() {
        bail!("InfluxDB error: {e}");
    }
    Ok(rows)
}

/// Runs one InfluxQL query through the v1 `/query` API.
pub async fn query(url: &str, db: &str, q: &str) -> Result<Rows> {
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let u = format!("{}/query", url.trim_end_matches('/'));
    let u = reqwest::Url::parse_with_params(&u, &[("db", db), ("q", q)])
        .with_context(|| format!("invalid InfluxDB URL {url}"))?;
    let resp = client
        .get(u)
        .send()
        .await
        .with_context(|| format!("cannot reach InfluxDB at {url}"))?;
    let status = resp.status();
    let body = resp.text().await.context("reading InfluxDB's answer")?;
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {}", body.trim());
    }
    parse_query(&body)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Reads every factory's accounts of `period` and builds the park report.
pub async fn fetch(url: &str, db: &str, period: &str, park: Option<&str>) -> Result<ParkReport> {
    let mut q = format!(
        "SELECT * FROM \"{MEASUREMENT}\" WHERE \"period\" = '{}'",
        quote(period)
    );
    if let Some(p) = park {
        q.push_str(&format!(" AND \"park\" = '{}'", quote(p)));
    }
    let rows = query(url, db, &q).await?;
    if rows.is_empty() {
        bail!(
            "no {MEASUREMENT} points for period {period} in database {db}{}: have the gateways sent their accounts (`report --format lp`)?",
            park.map(|p| format!(" (park {p})")).unwrap_or_default()
        );
    }
    build(period, &rows)
}

fn f(row: &BTreeMap<String, serde_json::Value>, k: &str) -> Option<f64> {
    row.get(k).and_then(|v| v.as_f64())
}
fn s(row: &BTreeMap<String, serde_json::Value>, k: &str) -> Option<String> {
    row.get(k)
        .and_then(|v| v.as_str())
        .filter(|x| !x.is_empty())
        .map(String::from)
}

/// The park report from query rows (latest point per site/product wins).
pub fn build(period: &str, rows: &Rows) -> Result<ParkReport> {
    let mut sites: BTreeMap<String, &BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    let mut prods: BTreeMap<(String, String), &BTreeMap<String, serde_json::Value>> =
        BTreeMap::new();
    for r in rows {
        let site = s(r, "site").ok_or_else(|| anyhow!("an {MEASUREMENT} point has no site tag"))?;
        match s(r, "product") {
            Some(p) => {
                prods.insert((site, p), r);
            }
            None => {
                sites.insert(site, r);
            }
        }
    }
    let mut factories: Vec<Factory> = sites
        .iter()
        .map(|(site, r)| {
            let change = f(r, "change_vs_baseline_pct");
            let path = f(r, "path_change_pct");
            Factory {
                site: site.clone(),
                park: s(r, "park"),
                comprehensive_energy_tce: f(r, "comprehensive_energy_tce").unwrap_or(0.0),
                comprehensive_energy_equal_value_tce: f(r, "comprehensive_energy_equal_value_tce")
                    .unwrap_or(0.0),
                assessment_energy_tce: f(r, "assessment_energy_tce").unwrap_or(0.0),
                value_added_10k_cny: f(r, "value_added_10k_cny"),
                intensity_tce_per_10k_cny: f(r, "intensity_tce_per_10k_cny"),
                intensity_yoy_change_pct: f(r, "intensity_yoy_change_pct"),
                change_vs_baseline_pct: change,
                path_change_pct: path,
                on_track: change.zip(path).map(|(c, p)| c <= p),
                total_tco2: f(r, "total_tco2").unwrap_or(0.0),
                completeness_pct: f(r, "completeness_pct"),
                rank: None,
            }
        })
        .collect();
    let mut order: Vec<(f64, usize)> = factories
        .iter()
        .enumerate()
        .filter_map(|(i, x)| x.intensity_tce_per_10k_cny.map(|v| (v, i)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (rank, (_, i)) in order.iter().enumerate() {
        factories[*i].rank = Some(rank + 1);
    }
    factories.sort_by(|a, b| {
        a.rank
            .unwrap_or(usize::MAX)
            .cmp(&b.rank.unwrap_or(usize::MAX))
            .then(a.site.cmp(&b.site))
    });
    let mut notes = Vec::new();
    let va_all = factories.iter().all(|x| x.value_added_10k_cny.is_some());
    let total_va = va_all.then(|| factories.iter().filter_map(|x| x.value_added_10k_cny).sum());
    if !va_all {
        notes.push(NOTE_NO_VALUE_ADDED.into());
    }
    let total_assess: f64 = factories.iter().map(|x| x.assessment_energy_tce).sum();
    let products: Vec<ParkProduct> = prods
        .iter()
        .map(|((site, product), r)| {
            let grade = s(r, "grade");
            let level = s(r, "level");
            ParkProduct {
                site: site.clone(),
                product: product.clone(),
                limit: s(r, "limit"),
                unit: s(r, "unit"),
                output: f(r, "output"),
                energy_tce: f(r, "energy_tce"),
                unit_energy: f(r, "unit_energy"),
                at_benchmark: grade.as_deref() == Some("grade_1")
                    || level.as_deref() == Some("benchmark"),
                below_baseline: grade.as_deref() == Some("over_limit")
                    || level.as_deref() == Some("below_baseline"),
                grade,
            }
        })
        .collect();
    let mut by_limit: BTreeMap<String, Vec<&ParkProduct>> = BTreeMap::new();
    for p in products.iter().filter(|p| p.output.is_some()) {
        let key = p
            .limit
            .clone()
            .unwrap_or_else(|| format!("product:{}", p.product));
        by_limit.entry(key).or_default().push(p);
    }
    let mut capacity = Vec::new();
    let (mut wsum, mut wb, mut wl) = (0.0, 0.0, 0.0);
    for (limit, ps) in &by_limit {
        let out: f64 = ps.iter().filter_map(|p| p.output).sum();
        if out <= 0.0 {
            continue;
        }
        let b: f64 = ps
            .iter()
            .filter(|p| p.at_benchmark)
            .filter_map(|p| p.output)
            .sum();
        let l: f64 = ps
            .iter()
            .filter(|p| p.below_baseline)
            .filter_map(|p| p.output)
            .sum();
        let energy: f64 = ps.iter().filter_map(|p| p.energy_tce).sum();
        wsum += energy;
        wb += energy * b / out;
        wl += energy * l / out;
        capacity.push(CapacityShare {
            limit: limit.clone(),
            unit: ps[0].unit.clone(),
            output: out,
            benchmark_share_pct: b / out * 100.0,
            below_baseline_share_pct: l / out * 100.0,
        });
    }
    let (bshare, lshare) = if wsum > 0.0 {
        (Some(wb / wsum * 100.0), Some(wl / wsum * 100.0))
    } else if capacity.len() == 1 {
        (
            Some(capacity[0].benchmark_share_pct),
            Some(capacity[0].below_baseline_share_pct),
        )
    } else {
        (None, None)
    };
    if capacity.len() > 1 {
        notes.push(NOTE_WEIGHTED.into());
    }
    notes.push(NOTE_GRADES.into());
    let mut below_sites: Vec<String> = products
        .iter()
        .filter(|p| p.below_baseline)
        .map(|p| p.site.clone())
        .collect();
    below_sites.dedup();
    Ok(ParkReport {
        period: period.to_string(),
        total_energy_tce: factories.iter().map(|x| x.comprehensive_energy_tce).sum(),
        total_energy_equal_value_tce: factories
            .iter()
            .map(|x| x.comprehensive_energy_equal_value_tce)
            .sum(),
        total_assessment_energy_tce: total_assess,
        total_value_added_10k_cny: total_va,
        intensity_tce_per_10k_cny: total_va.filter(|v| *v > 0.0).map(|v| total_assess / v),
        total_tco2: factories.iter().map(|x| x.total_tco2).sum(),
        off_path: factories
            .iter()
            .filter(|x| x.on_track == Some(false))
            .map(|x| x.site.clone())
            .collect(),
        factories,
        products,
        capacity,
        benchmark_share_pct: bshare,
        benchmark_target_met: bshare.map(|b| b >= 30.0),
        below_baseline_share_pct: lshare,
        below_baseline_sites: below_sites,
        notes,
    })
}

fn cols(c: &[(&'static str, L)]) -> Vec<Col> {
    c.iter()
        .map(|(key, label)| Col { key, label: *label })
        .collect()
}
fn on(v: Option<f64>, d: usize) -> Cell {
    v.map(|v| Cell::Num(v, d)).unwrap_or(Cell::Empty)
}
fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

/// The park report's sections.
pub fn sections(p: &ParkReport, lang: Lang) -> Vec<Table> {
    let kv =
        |item: &str, label: L, v: Cell, unit: &str| vec![t(item), t(lang.show(label)), v, t(unit)];
    let summary = vec![
        kv("period", L("报告期", "period"), t(&p.period), ""),
        kv(
            "factories",
            L("企业数", "factories"),
            Cell::Num(p.factories.len() as f64, 0),
            "",
        ),
        kv(
            "total_energy_tce",
            L(
                "综合能耗(当量值)",
                "comprehensive energy (calorific equivalent)",
            ),
            Cell::Num(p.total_energy_tce, 3),
            "tce",
        ),
        kv(
            "total_energy_equal_value_tce",
            L(
                "综合能耗(等价值)",
                "comprehensive energy (generation-input equivalent)",
            ),
            Cell::Num(p.total_energy_equal_value_tce, 3),
            "tce",
        ),
        kv(
            "total_assessment_energy_tce",
            L("考核能耗", "assessment energy"),
            Cell::Num(p.total_assessment_energy_tce, 3),
            "tce",
        ),
        kv(
            "total_value_added_10k_cny",
            L("工业增加值", "value added"),
            on(p.total_value_added_10k_cny, 2),
            "10k CNY",
        ),
        kv(
            "intensity_tce_per_10k_cny",
            L("园区能耗强度", "park intensity"),
            on(p.intensity_tce_per_10k_cny, 4),
            "tce/10k CNY",
        ),
        kv(
            "total_tco2",
            L("二氧化碳排放", "CO2 emissions"),
            Cell::Num(p.total_tco2, 3),
            "tCO2",
        ),
        kv(
            "off_path",
            L("未达目标路径", "off the target path"),
            t(p.off_path.join(" ")),
            "",
        ),
        kv(
            "benchmark_share_pct",
            L(
                "标杆水平产能占比(要求≥30%)",
                "capacity at benchmark (plan ≥ 30 %)",
            ),
            on(p.benchmark_share_pct, 2),
            "%",
        ),
        kv(
            "benchmark_target_met",
            L("达到30%", "30 % met"),
            p.benchmark_target_met
                .map(Cell::Flag)
                .unwrap_or(Cell::Empty),
            "",
        ),
        kv(
            "below_baseline_share_pct",
            L(
                "基准水平以下产能占比(要求为零)",
                "capacity below baseline (plan: none)",
            ),
            on(p.below_baseline_share_pct, 2),
            "%",
        ),
        kv(
            "below_baseline_sites",
            L("基准以下企业", "sites below baseline"),
            t(p.below_baseline_sites.join(" ")),
            "",
        ),
    ];
    let factories = p
        .factories
        .iter()
        .map(|x| {
            vec![
                on(x.rank.map(|r| r as f64), 0),
                t(&x.site),
                Cell::Num(x.comprehensive_energy_tce, 3),
                Cell::Num(x.comprehensive_energy_equal_value_tce, 3),
                on(x.value_added_10k_cny, 2),
                on(x.intensity_tce_per_10k_cny, 4),
                on(x.intensity_yoy_change_pct, 2),
                on(x.change_vs_baseline_pct, 2),
                on(x.path_change_pct, 2),
                x.on_track.map(Cell::Flag).unwrap_or(Cell::Empty),
                Cell::Num(x.total_tco2, 3),
                on(x.completeness_pct, 2),
            ]
        })
        .collect();
    let products = p
        .products
        .iter()
        .map(|x| {
            vec![
                t(&x.site),
                t(&x.product),
                t(x.limit.clone().unwrap_or_default()),
                on(x.output, 2),
                t(x.unit.clone().unwrap_or_default()),
                on(x.unit_energy, 4),
                t(x.grade.clone().unwrap_or_default()),
                Cell::Flag(x.at_benchmark),
                Cell::Warn(x.below_baseline),
            ]
        })
        .collect();
    let capacity = p
        .capacity
        .iter()
        .map(|c| {
            vec![
                t(&c.limit),
                t(c.unit.clone().unwrap_or_default()),
                Cell::Num(c.output, 2),
                Cell::Num(c.benchmark_share_pct, 2),
                Cell::Num(c.below_baseline_share_pct, 2),
            ]
        })
        .collect();
    vec![
        Table {
            id: "park_summary",
            title: L("园区汇总", "Park summary"),
            columns: cols(&[
                ("item", L("项目代码", "item")),
                ("label", L("项目", "label")),
                ("value", L("数值", "value")),
                ("unit", L("单位", "unit")),
            ]),
            rows: summary,
        },
        Table {
            id: "factories",
            title: L("企业排名(按能耗强度)", "Factories ranked by intensity"),
            columns: cols(&[
                ("rank", L("排名", "rank")),
                ("site", L("企业", "site")),
                (
                    "comprehensive_energy_tce",
                    L("综合能耗(当量值)", "energy tce"),
                ),
                (
                    "comprehensive_energy_equal_value_tce",
                    L("综合能耗(等价值)", "generation-input-equivalent tce"),
                ),
                ("value_added_10k_cny", L("增加值", "value added")),
                ("intensity_tce_per_10k_cny", L("强度", "intensity")),
                ("intensity_yoy_change_pct", L("同比 %", "YoY %")),
                ("change_vs_baseline_pct", L("较基期 %", "vs base %")),
                ("path_change_pct", L("路径 %", "path %")),
                ("on_track", L("达到路径", "on track")),
                ("total_tco2", L("排放 tCO2", "tCO2")),
                ("completeness_pct", L("完整率 %", "completeness %")),
            ]),
            rows: factories,
        },
        Table {
            id: "products",
            title: L("产品能效水平", "Product efficiency levels"),
            columns: cols(&[
                ("site", L("企业", "site")),
                ("product", L("产品", "product")),
                ("limit", L("限额", "limit")),
                ("output", L("产量", "output")),
                ("unit", L("单位", "unit")),
                ("unit_energy", L("单位产品能耗", "unit energy")),
                ("grade", L("等级", "grade")),
                ("at_benchmark", L("标杆", "benchmark")),
                ("below_baseline", L("基准以下", "below baseline")),
            ]),
            rows: products,
        },
        Table {
            id: "capacity",
            title: L("产能能效结构", "Capacity by efficiency level"),
            columns: cols(&[
                ("limit", L("限额", "limit")),
                ("unit", L("单位", "unit")),
                ("output", L("产量", "output")),
                ("benchmark_share_pct", L("标杆占比 %", "benchmark %")),
                (
                    "below_baseline_share_pct",
                    L("基准以下占比 %", "below baseline %"),
                ),
            ]),
            rows: capacity,
        },
        Table {
            id: "notes",
            title: L("说明", "Notes"),
            columns: cols(&[("note", L("说明", "note"))]),
            rows: p.notes.iter().map(|n| vec![t(note(n, lang))]).collect(),
        },
    ]
}

// The park report's fixed notes, as its JSON carries them.
const NOTE_NO_VALUE_ADDED: &str = "some factories have no value added: no park intensity";
const NOTE_WEIGHTED: &str = "benchmark and below-baseline shares: output-weighted per limit row, rows weighted by product energy";
const NOTE_GRADES: &str = "标杆 = limit grade 1 (or a configured 标杆 level), below the baseline = over limit grade 3 (or below a configured 基准 level); the 标杆 ≈ grade 1 mapping is inferred, not sourced";

/// The park report's fixed notes (English in its JSON) in the report's language.
fn note(n: &str, lang: Lang) -> String {
    const ZH: [(&str, &str); 3] = [
        (
            NOTE_NO_VALUE_ADDED,
            "部分企业缺少工业增加值：不计算园区能耗强度",
        ),
        (
            NOTE_WEIGHTED,
            "标杆与基准以下占比：每个限额行按产量加权，各行再按产品能耗加权",
        ),
        (
            NOTE_GRADES,
            "标杆 = 限额1级(或配置的标杆值)，基准以下 = 超过限额3级(或低于配置的基准值)；标杆≈1级的对应关系为推断，无出处",
        ),
    ];
    match ZH.iter().find(|(en, _)| *en == n) {
        Some((_, zh)) if lang == Lang::Zh => (*zh).to_string(),
        _ => n.to_string(),
    }
}

/// Renders the park report.
pub fn render(p: &ParkReport, format: super::Format, lang: Lang) -> Result<String> {
    let tables = sections(p, lang);
    Ok(match format {
        super::Format::Json => {
            let mut s = serde_json::to_string_pretty(p)?;
            s.push('\n');
            s
        }
        super::Format::Csv => super::csv::render_tables(&tables),
        super::Format::Md => {
            let mut s = format!(
                "# {} — {}\n\n",
                lang.show(L("园区能源报告", "Park energy report")),
                p.period
            );
            for tb in &tables {
                s.push_str(&super::markdown::table(tb, lang));
            }
            s
        }
        super::Format::Html => {
            let title = format!(
                "{} — {}",
                lang.show(L("园区能源报告", "Park energy report")),
                p.period
            );
            let mut s = format!(
                "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>\n<h1>{}</h1>\n",
                lang.code(),
                super::html::esc(&title),
                super::html::CSS,
                super::html::esc(&title)
            );
            let bars: Vec<(String, f64, String)> = p
                .factories
                .iter()
                .filter_map(|x| {
                    x.intensity_tce_per_10k_cny
                        .map(|i| (x.site.clone(), i, format!("{i:.4}")))
                })
                .collect();
            s.push_str(&format!(
                "<figure><figcaption>{}</figcaption>{}</figure>\n",
                super::html::esc(&lang.show(L("能耗强度 tce/万元", "Intensity tce/10k CNY"))),
                super::html::hbars(&bars, None)
            ));
            for tb in &tables {
                s.push_str(&super::html::table_html(tb, lang));
            }
            s.push_str("</body></html>\n");
            s
        }
        super::Format::Lp => {
            bail!("the park report has no line-protocol form; use json, csv, html or md")
        }
    })
}
