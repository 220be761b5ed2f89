//! Green-factory indicators (GB/T 36132-2025, first-level group 能源低碳化) and the 亩均
//! indicators that need energy, computed from a [`Report`](super::report::Report).
//!
//! Scoring (GB/T 36132-2025 as described by the project's standards reference §5, S55, S56):
//! an actual value worse than the 基准值 scores 0, at or better than the 引领值 scores 1 (full
//! marks), linear in between. For the unit-product energy of a product with a mandatory limit
//! standard, 引领值 = its grade 1 and 基准值 = its grade 2 (S40). Every other 基准值/引领值 is not
//! in the reference: they are site configuration (`[accounting.indicators]`) and the report says
//! where they came from. The "weight" is S40's 加权参数 (8 for each of the three indicators),
//! which the reference marks as not confirmed to be the score weight.
//!
//! 亩均 (S59): 单位能耗增加值 = 工业增加值 ÷ 综合能耗(等价值); 亩均增加值 = 工业增加值 ÷ 用地面积.
//! Energy per 亩 (等价值 ÷ 用地面积) has no sourced formula beyond that division, and the report
//! says so.

use serde::{Deserialize, Serialize};

use crate::accounting::calendar::Month;
use crate::accounting::notes::Note;

/// `[accounting.indicators]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorsConfig {
    /// Land area of the site in 亩 (mu), for the 亩均 indicators.
    #[serde(default)]
    pub land_area_mu: Option<f64>,
    /// 工业总产值 (gross output value, 10⁴ CNY) per month, for 单位产值 indicators. Not value
    /// added: the two must not be mixed (standards reference §2.1, S27).
    #[serde(default)]
    pub output_value: Vec<OutputValue>,
    /// 基准值/引领值 of 单位产值综合能耗 (kgce/10⁴ CNY), used when no product has a limit
    /// standard. Not in the reference: site configuration.
    #[serde(default)]
    pub unit_output_energy: Option<LevelPair>,
    /// 基准值/引领值 of 单位产值碳排放量 (kgCO₂/10⁴ CNY). Not in the reference.
    #[serde(default)]
    pub carbon_per_output: Option<LevelPair>,
    /// 基准值/引领值 of 可再生能源利用率 (%) per band of annual energy use. The bands are in the
    /// reference (S40); their values are not.
    #[serde(default)]
    pub renewable_share: Vec<RenewableBand>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputValue {
    /// YYYY-MM
    pub period: String,
    pub output_value_10k_cny: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelPair {
    /// 基准值
    pub baseline: f64,
    /// 引领值
    pub leading: f64,
    /// Where the values come from (sector rules, the evaluating authority's notice).
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewableBand {
    /// "10000+", "5000-10000", "3000-5000" or "0-3000" (tce per year).
    pub band: String,
    pub baseline_pct: f64,
    pub leading_pct: f64,
    pub source: String,
}

/// The bands of annual energy use (tce) of 可再生能源利用率 (S40).
pub const BANDS: &[(&str, f64, f64)] = &[
    ("10000+", 10000.0, f64::INFINITY),
    ("5000-10000", 5000.0, 10000.0),
    ("3000-5000", 3000.0, 5000.0),
    ("0-3000", 0.0, 3000.0),
];

/// Band of an annual energy use in tce.
pub fn band_of(annual_tce: f64) -> &'static str {
    BANDS
        .iter()
        .find(|(_, lo, hi)| annual_tce >= *lo && annual_tce < *hi)
        .map(|b| b.0)
        .unwrap_or("0-3000")
}

/// Checks `[accounting.indicators]`.
pub fn validate(c: &IndicatorsConfig, push: &mut dyn FnMut(String, String)) {
    let at = "accounting.indicators";
    if let Some(a) = c.land_area_mu {
        if !(a.is_finite() && a > 0.0) {
            push(
                format!("{at}.land_area_mu"),
                "must be a positive number (亩)".into(),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, o) in c.output_value.iter().enumerate() {
        match o.period.parse::<Month>() {
            Err(e) => push(format!("{at}.output_value[{i}].period"), e),
            Ok(m) => {
                if !seen.insert(m) {
                    push(
                        format!("{at}.output_value[{i}].period"),
                        format!("{m} is given twice"),
                    );
                }
            }
        }
        if !(o.output_value_10k_cny.is_finite() && o.output_value_10k_cny > 0.0) {
            push(
                format!("{at}.output_value[{i}].output_value_10k_cny"),
                "must be a positive number".into(),
            );
        }
    }
    for (key, l) in [
        ("unit_output_energy", &c.unit_output_energy),
        ("carbon_per_output", &c.carbon_per_output),
    ] {
        if let Some(l) = l {
            check_pair(
                &format!("{at}.{key}"),
                l.baseline,
                l.leading,
                false,
                &l.source,
                push,
            );
        }
    }
    let mut bands = std::collections::HashSet::new();
    for (i, b) in c.renewable_share.iter().enumerate() {
        let p = format!("{at}.renewable_share[{i}]");
        if !BANDS.iter().any(|x| x.0 == b.band) {
            push(
                format!("{p}.band"),
                format!(
                    "unknown band \"{}\"; expected one of: {}",
                    b.band,
                    BANDS.iter().map(|x| x.0).collect::<Vec<_>>().join(", ")
                ),
            );
        } else if !bands.insert(b.band.clone()) {
            push(format!("{p}.band"), format!("{} is given twice", b.band));
        }
        for (k, v) in [
            ("baseline_pct", b.baseline_pct),
            ("leading_pct", b.leading_pct),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                push(format!("{p}.{k}"), "must be a percentage 0-100".into());
            }
        }
        check_pair(&p, b.baseline_pct, b.leading_pct, true, &b.source, push);
    }
}

fn check_pair(
    at: &str,
    baseline: f64,
    leading: f64,
    higher_is_better: bool,
    source: &str,
    push: &mut dyn FnMut(String, String),
) {
    if !(baseline.is_finite() && leading.is_finite()) {
        push(at.into(), "baseline and leading must be numbers".into());
        return;
    }
    let ordered = if higher_is_better {
        leading > baseline
    } else {
        leading < baseline
    };
    if !ordered {
        push(
            at.into(),
            format!(
                "the leading value (引领值) must be {} than the baseline (基准值)",
                if higher_is_better { "higher" } else { "lower" }
            ),
        );
    }
    if source.trim().is_empty() {
        push(
            format!("{at}.source"),
            "say where the values come from".into(),
        );
    }
}

/// Linear score 0..1 between the 基准值 (0) and the 引领值 (1).
pub fn score(value: f64, baseline: f64, leading: f64) -> f64 {
    if baseline == leading {
        // `check` refuses equal levels; a degenerate pair scores like a threshold.
        return if value == leading { 1.0 } else { 0.0 };
    }
    ((value - baseline) / (leading - baseline)).clamp(0.0, 1.0)
}

/// One green-factory indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GreenIndicator {
    pub id: String,
    pub name: String,
    /// "lower_is_better" (逆向) or "higher_is_better" (正向).
    pub direction: &'static str,
    pub value: Option<f64>,
    pub unit: String,
    pub baseline: Option<f64>,
    pub leading: Option<f64>,
    pub levels_source: Option<String>,
    /// 0 (at or worse than 基准值) … 1 (at or better than 引领值); absent without value or levels.
    pub score: Option<f64>,
    /// S40's 加权参数 (not confirmed as the score weight).
    pub weight: f64,
    pub points: Option<f64>,
    /// Band of annual energy use (renewable share only).
    pub band: Option<String>,
}

/// One 亩均 indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MuIndicator {
    pub id: &'static str,
    pub name: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub formula: &'static str,
    pub source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicators {
    /// Gross output value (工业总产值) of the period, 10⁴ CNY (absent unless every month is
    /// configured).
    pub output_value_10k_cny: Option<f64>,
    pub land_area_mu: Option<f64>,
    pub green_factory: Vec<GreenIndicator>,
    pub mu: Vec<MuIndicator>,
    pub notes: Vec<Note>,
}

fn green(
    id: String,
    name: String,
    higher: bool,
    value: Option<f64>,
    unit: &str,
    levels: Option<(f64, f64, String)>,
    band: Option<String>,
) -> GreenIndicator {
    let score = match (value, &levels) {
        (Some(v), Some((b, l, _))) => Some(score(v, *b, *l)),
        _ => None,
    };
    GreenIndicator {
        id,
        name,
        direction: if higher {
            "higher_is_better"
        } else {
            "lower_is_better"
        },
        value,
        unit: unit.into(),
        baseline: levels.as_ref().map(|l| l.0),
        leading: levels.as_ref().map(|l| l.1),
        levels_source: levels.map(|l| l.2),
        score,
        weight: 8.0,
        points: score.map(|s| s * 8.0),
        band,
    }
}

/// Computes the indicators of a report.
pub fn compute(c: &IndicatorsConfig, r: &super::report::Report, months: &[Month]) -> Indicators {
    let mut notes = Vec::new();
    let ov_missing: Vec<String> = months
        .iter()
        .filter(|m| {
            !c.output_value
                .iter()
                .any(|o| o.period.parse::<Month>().ok() == Some(**m))
        })
        .map(|m| m.to_string())
        .collect();
    let output_value = if ov_missing.is_empty() {
        Some(
            c.output_value
                .iter()
                .filter(|o| {
                    o.period
                        .parse::<Month>()
                        .map(|m| months.contains(&m))
                        .unwrap_or(false)
                })
                .map(|o| o.output_value_10k_cny)
                .sum::<f64>(),
        )
    } else {
        None
    };
    let per_ov = |x: f64| output_value.filter(|v| *v > 0.0).map(|v| x / v);
    let mut g = Vec::new();

    // 单位产品综合能耗 per product with a limit standard, else 单位产值综合能耗.
    let limited: Vec<_> = r.products.iter().filter(|p| p.limit.is_some()).collect();
    for p in &limited {
        let Some(lim) = p.limit.as_ref() else {
            continue;
        };
        let levels = match (lim.grade1, lim.grade2) {
            (Some(g1), Some(g2)) => Some((
                g2 * lim.correction,
                g1 * lim.correction,
                format!(
                    "{} grade 2 (基准值) and grade 1 (引领值); S40",
                    lim.standard
                ),
            )),
            _ => None,
        };
        g.push(green(
            format!("unit_product_energy.{}", p.id),
            format!(
                "单位产品综合能耗 ({})",
                p.name.clone().unwrap_or(p.id.clone())
            ),
            false,
            p.graded_value,
            &lim.unit,
            levels,
            None,
        ));
    }
    // GB/T 36132: 单位产品综合能耗 is one indicator; with several products each one's share of its
    // weight is its share of the products' energy (tce), so together they count once.
    let total_tce: f64 = limited.iter().map(|p| p.energy_tce).sum();
    if limited.len() > 1 && total_tce > 0.0 {
        for (ind, p) in g.iter_mut().zip(&limited) {
            ind.weight *= p.energy_tce / total_tce;
            ind.points = ind.score.map(|s| s * ind.weight);
        }
        notes.push(Note::ProductsWeighted {
            products: limited.len(),
        });
    }
    if limited.is_empty() {
        if output_value.is_none() {
            notes.push(Note::OutputValueNeeded {
                indicator: "单位产值综合能耗",
                months: ov_missing.clone(),
            });
        }
        g.push(green(
            "unit_output_energy".into(),
            "单位产值综合能耗".into(),
            false,
            per_ov(r.comprehensive_energy_tce * 1000.0),
            "kgce/10k CNY",
            c.unit_output_energy
                .as_ref()
                .map(|l| (l.baseline, l.leading, l.source.clone())),
            None,
        ));
        if c.unit_output_energy.is_none() {
            notes.push(Note::NotScored {
                indicator: "单位产值综合能耗",
            });
        }
    }
    // 单位产值碳排放量
    if output_value.is_none() && !limited.is_empty() {
        notes.push(Note::OutputValueNeeded {
            indicator: "单位产值碳排放量",
            months: ov_missing.clone(),
        });
    }
    g.push(green(
        "carbon_per_output".into(),
        "单位产值碳排放量".into(),
        false,
        per_ov(r.carbon.total_tco2 * 1000.0),
        "kgCO2/10k CNY",
        c.carbon_per_output
            .as_ref()
            .map(|l| (l.baseline, l.leading, l.source.clone())),
        None,
    ));
    if c.carbon_per_output.is_none() {
        notes.push(Note::NotScored {
            indicator: "单位产值碳排放量",
        });
    }
    // 可再生能源利用率: non-fossil (当量值) ÷ comprehensive energy (当量值).
    let share = (r.comprehensive_energy_tce > 0.0)
        .then(|| r.non_fossil_tce / r.comprehensive_energy_tce * 100.0);
    let annual = r.comprehensive_energy_tce * 12.0 / months.len().max(1) as f64;
    let band = band_of(annual);
    if months.len() != 12 {
        notes.push(Note::RenewableBandScaled {
            annual_tce: annual,
            band,
        });
    }
    notes.push(Note::RenewableShareBasis);
    let rb = c.renewable_share.iter().find(|b| b.band == band);
    if rb.is_none() {
        notes.push(Note::RenewableBandNotScored { band });
    }
    g.push(green(
        "renewable_share".into(),
        "可再生能源利用率".into(),
        true,
        share,
        "%",
        rb.map(|b| (b.baseline_pct, b.leading_pct, b.source.clone())),
        Some(band.into()),
    ));

    // 亩均
    let land = c.land_area_mu;
    let ev = r.comprehensive_energy_equal_value_tce;
    let va = r.value_added_10k_cny;
    let mu = vec![
        MuIndicator {
            id: "value_added_per_energy",
            name: "单位能耗增加值",
            value: va.filter(|_| ev > 0.0).map(|v| v / ev),
            unit: "10k CNY/tce",
            formula: "工业增加值 ÷ 综合能耗(等价值)",
            source: "S59",
        },
        MuIndicator {
            id: "value_added_per_mu",
            name: "亩均增加值",
            value: va.zip(land).map(|(v, l)| v / l),
            unit: "10k CNY/mu",
            formula: "工业增加值 ÷ 用地面积",
            source: "S59",
        },
        MuIndicator {
            id: "energy_per_mu",
            name: "亩均能耗",
            value: land.map(|l| ev / l),
            unit: "tce/mu",
            formula: "综合能耗(等价值) ÷ 用地面积",
            source: "unsourced: no published formula found; the per-亩 division of S59 applied to 综合能耗(等价值)",
        },
    ];
    if land.is_none() {
        notes.push(Note::MuNeedsLand);
    }
    if months.len() != 12 {
        notes.push(Note::MuPeriod);
    }
    Indicators {
        output_value_10k_cny: output_value,
        land_area_mu: land,
        green_factory: g,
        mu,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_score_between_baseline_and_leading() {
        // lower is better: baseline 5.5, leading 4.5
        assert_eq!(score(6.0, 5.5, 4.5), 0.0);
        assert_eq!(score(4.0, 5.5, 4.5), 1.0);
        assert!((score(5.0, 5.5, 4.5) - 0.5).abs() < 1e-12);
        // higher is better: baseline 10 %, leading 30 %
        assert!((score(15.0, 10.0, 30.0) - 0.25).abs() < 1e-12);
        assert_eq!(score(40.0, 10.0, 30.0), 1.0);
        assert_eq!(score(5.0, 10.0, 30.0), 0.0);
    }

    #[test]
    fn bands() {
        assert_eq!(band_of(12000.0), "10000+");
        assert_eq!(band_of(10000.0), "10000+");
        assert_eq!(band_of(7000.0), "5000-10000");
        assert_eq!(band_of(3000.0), "3000-5000");
        assert_eq!(band_of(10.0), "0-3000");
    }
}
