//! Unit-product energy (单位产品综合能耗) and its grade against the limit standards.
//!
//! A product's energy is the energy of its own meters plus its `common_share` of the common
//! energy (the site's comprehensive energy not measured by any product's meters). Its output is
//! the imported production of a month where there is one, otherwise its production counter.
//! Unit energy = product energy (kgce) ÷ output, classified against the shipped limit row:
//! at or below grade 1 → `grade_1`, … at or below grade 3 → `grade_3`, above → `over_limit`.

use crate::carrier::Carrier;
use serde::Serialize;

use super::calendar::Month;
use super::carbon::Carbon;
use super::config::MeterRole;
use super::factors::{Indicator, LimitRow};
use super::ledger::{months_bounds, Inputs, Ledger, Plan, SeriesData};
use crate::readings::Quantity;

/// The grade of a value against a limit row (grade values × `correction`).
pub fn grade(value: f64, row: &LimitRow, correction: f64) -> &'static str {
    for (g, name) in [
        (row.grade1, "grade_1"),
        (row.grade2, "grade_2"),
        (row.grade3, "grade_3"),
    ] {
        if let Some(g) = g {
            if value <= g * correction {
                return name;
            }
        }
    }
    "over_limit"
}

/// 标杆/基准 level of a value.
pub fn benchmark_level(value: f64, benchmark: f64, baseline: f64) -> &'static str {
    if value <= benchmark {
        "benchmark"
    } else if value <= baseline {
        "baseline"
    } else {
        "below_baseline"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitUsed {
    pub id: String,
    pub standard: String,
    pub product: String,
    pub indicator: Indicator,
    pub unit: String,
    pub grade1: Option<f64>,
    pub grade2: Option<f64>,
    pub grade3: Option<f64>,
    pub correction: f64,
    /// The product's share behind an additive correction (already in grade1..3).
    pub share_pct: Option<f64>,
    pub sources: Vec<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Levels {
    pub benchmark: f64,
    pub baseline: f64,
    pub source: String,
    pub level: Option<&'static str>,
}

/// One product of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductLine {
    pub id: String,
    pub name: Option<String>,
    pub output: Option<f64>,
    pub unit: String,
    /// "imported", "counter", "imported+counter", or "missing".
    pub output_origin: &'static str,
    /// Months with neither imported production nor a counter.
    pub output_missing_months: Vec<String>,
    pub energy_tce: f64,
    pub direct_energy_tce: f64,
    pub common_energy_tce: f64,
    pub electricity_kwh: f64,
    /// kgce per unit of output.
    pub unit_energy: Option<f64>,
    pub unit_energy_unit: String,
    /// kWh per unit of output.
    pub unit_electricity: Option<f64>,
    pub unit_electricity_unit: String,
    pub limit: Option<LimitUsed>,
    /// The value graded (unit_energy or unit_electricity, per the limit's indicator).
    pub graded_value: Option<f64>,
    pub grade: Option<&'static str>,
    pub levels: Option<Levels>,
    pub co2_t: f64,
    pub co2_kg_per_unit: Option<f64>,
}

/// The products of a ledger.
pub fn products(
    plan: &Plan,
    data: &impl SeriesData,
    inputs: &Inputs,
    ledger: &Ledger,
    carbon: &Carbon,
    months: &[Month],
) -> Vec<ProductLine> {
    let totals = &ledger.series_totals;
    // Energy (tce) and electricity (kWh) of each meter.
    let meter_energy = |device: &str| -> (f64, f64) {
        let Some(m) = plan.meters.iter().find(|m| {
            m.device == device && !matches!(m.role, MeterRole::Export | MeterRole::Ignore)
        }) else {
            return (0.0, 0.0);
        };
        let Some(i) = plan.series_index(&m.device, m.counter) else {
            return (0.0, 0.0);
        };
        let mut q = totals[i];
        if let Some(x) = m
            .export_counter
            .and_then(|x| plan.series_index(&m.device, x))
        {
            q -= totals[x];
        }
        let f = plan
            .factors
            .get(m.carrier.as_str())
            .map(|f| f.kgce_per_unit)
            .unwrap_or(0.0);
        let kwh = if m.carrier == Carrier::Electricity {
            q
        } else {
            0.0
        };
        (q * f / 1000.0, kwh)
    };
    let all_direct = plan.cfg.products.iter().flat_map(|p| p.meters.iter());
    let (mut direct_tce, mut direct_kwh, mut direct_co2) = (0.0, 0.0, 0.0);
    for d in all_direct {
        let (t, k) = meter_energy(d);
        direct_tce += t;
        direct_kwh += k;
        direct_co2 += carbon.per_device_tco2.get(d).copied().unwrap_or(0.0);
    }
    let common_tce = (ledger.gross_tce - direct_tce).max(0.0);
    let common_kwh = (ledger.electricity.consumed_kwh - direct_kwh).max(0.0);
    let common_co2 = (carbon.total_tco2 - direct_co2).max(0.0);

    plan.cfg
        .products
        .iter()
        .map(|p| {
            let (mut d_tce, mut d_kwh, mut d_co2) = (0.0, 0.0, 0.0);
            for d in &p.meters {
                let (t, k) = meter_energy(d);
                d_tce += t;
                d_kwh += k;
                d_co2 += carbon.per_device_tco2.get(d).copied().unwrap_or(0.0);
            }
            let energy = d_tce + p.common_share * common_tce;
            let kwh = d_kwh + p.common_share * common_kwh;
            let co2 = d_co2 + p.common_share * common_co2;

            let counter = p
                .production_device
                .as_deref()
                .and_then(|d| plan.series_index(d, Quantity::ProductionCount));
            let (mut output, mut imported, mut counted) = (0.0, 0, 0);
            let mut missing = Vec::new();
            for m in months {
                if let Some(q) = inputs.production.get(&(*m, p.id.clone())) {
                    output += q;
                    imported += 1;
                } else if let Some(i) = counter {
                    let (a, b) = months_bounds(plan.tz, &[*m]);
                    output += data.total(i, a, b);
                    counted += 1;
                } else {
                    missing.push(m.to_string());
                }
            }
            let origin = match (imported, counted, missing.is_empty()) {
                (_, _, false) => "missing",
                (0, _, true) => "counter",
                (_, 0, true) => "imported",
                _ => "imported+counter",
            };
            let output = missing.is_empty().then_some(output);
            let per = |x: f64| output.filter(|o| *o > 0.0).map(|o| x / o);
            let unit_energy = per(energy * 1000.0);
            let unit_electricity = per(kwh);
            let row = p
                .limit
                .as_deref()
                .and_then(|l| plan.tables.limit(l))
                .map(|r| r.with_share(p.share_pct));
            let row = row.as_ref();
            let graded = row.and_then(|r| match r.indicator {
                Indicator::Comprehensive => unit_energy,
                Indicator::Electricity => unit_electricity,
            });
            let levels = match (p.benchmark, p.baseline) {
                (Some(b), Some(l)) => Some(Levels {
                    benchmark: b,
                    baseline: l,
                    source: p.levels_source.clone().unwrap_or_default(),
                    level: graded.map(|v| benchmark_level(v, b, l)),
                }),
                _ => None,
            };
            ProductLine {
                id: p.id.clone(),
                name: p.name.clone(),
                output,
                unit: p.unit.clone(),
                output_origin: origin,
                output_missing_months: missing,
                energy_tce: energy,
                direct_energy_tce: d_tce,
                common_energy_tce: p.common_share * common_tce,
                electricity_kwh: kwh,
                unit_energy,
                unit_energy_unit: format!("kgce/{}", p.unit),
                unit_electricity,
                unit_electricity_unit: format!("kWh/{}", p.unit),
                limit: row.map(|r| LimitUsed {
                    id: r.id.clone(),
                    standard: r.standard.clone(),
                    product: r.product.clone(),
                    indicator: r.indicator,
                    unit: r.unit.clone(),
                    grade1: r.grade1,
                    grade2: r.grade2,
                    grade3: r.grade3,
                    correction: p.limit_correction,
                    share_pct: p.share_pct.filter(|_| r.share_reference_pct.is_some()),
                    sources: r.sources.clone(),
                    note: r.note.clone(),
                }),
                graded_value: graded,
                grade: row
                    .zip(graded)
                    .map(|(r, v)| grade(v, r, p.limit_correction)),
                levels,
                co2_t: co2,
                co2_kg_per_unit: per(co2 * 1000.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::factors::Tables;

    #[test]
    fn grades_of_ceramic_tile() {
        let t = Tables::load("gbt2589-2020", None).unwrap();
        let row = t.limit("gb21252-2023.tile_dry_pressed_e_le_0_2").unwrap();
        // GB 21252-2023, E ≤ 0.2 %: grade 1 4.5, grade 2 5.5, grade 3 7.0 kgce/m2 (S38).
        assert_eq!(grade(4.5, row, 1.0), "grade_1");
        assert_eq!(grade(4.51, row, 1.0), "grade_2");
        assert_eq!(grade(5.5, row, 1.0), "grade_2");
        assert_eq!(grade(7.0, row, 1.0), "grade_3");
        assert_eq!(grade(7.01, row, 1.0), "over_limit");
        // A thickness factor of 1.1 scales every grade: 4.9 ≤ 4.5 × 1.1 = 4.95.
        assert_eq!(grade(4.9, row, 1.1), "grade_1");
    }

    #[test]
    fn missing_grades_are_skipped() {
        let t = Tables::load("gbt2589-2020", None).unwrap();
        let glass = t.limit("gb21340-2019.flat_glass_le_500td").unwrap();
        assert_eq!(grade(13.0, glass, 1.0), "grade_3");
        assert_eq!(grade(14.5, glass, 1.0), "over_limit");
        let converter = t.limit("gb21256-2025.converter").unwrap();
        assert_eq!(grade(-31.0, converter, 1.0), "grade_1");
        assert_eq!(grade(-20.0, converter, 1.0), "grade_3");
        assert_eq!(benchmark_level(99.0, 100.0, 117.0), "benchmark");
        assert_eq!(benchmark_level(110.0, 100.0, 117.0), "baseline");
        assert_eq!(benchmark_level(118.0, 100.0, 117.0), "below_baseline");
    }
}
