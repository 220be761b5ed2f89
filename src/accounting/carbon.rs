//! CO₂: scope 1 from fuels burnt on site, scope 2 from purchased electricity (official grid factor
//! by year and province/region/nation) and purchased heat and steam.
//!
//! Grid factor choice ([`grid_choice`]): the province's own factor first, at its latest published
//! year not after the report's year; then its grid region's (重庆 and 四川 are in 西南); then the
//! national average. A site in the national ETS (`national_ets = true`) takes the national
//! factor. `[accounting.carbon] factor_year` pins the year (province → region → national in it).
//! Location-based: all purchased electricity × that factor. Market-based: purchased green power
//! counts zero and the rest × the national factor excluding market-traded non-fossil electricity.
//! Unbundled green certificates are not netted against scope 2 (no rule for it is sourced).

use crate::carrier::Carrier;
use std::collections::BTreeMap;

use serde::Serialize;

use super::config::{MeterRole, Scope2Method};
use super::factors::GridSeries;
use super::ledger::{Ledger, Plan};
use super::notes::Note;

/// The grid factor used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridChoice {
    pub tco2_per_mwh: f64,
    pub year: i32,
    /// "national", a region id or a province id.
    pub area: String,
    /// The area's name in the tables (重庆, 西南, 全国).
    pub area_name: String,
    /// "province", "region" or "national".
    pub basis: &'static str,
    /// Why this factor: one of [`reason`].
    pub reason: &'static str,
    pub series: GridSeries,
    pub sources: Vec<String>,
    pub notes: Vec<Note>,
}

/// CO₂ of one carrier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarbonLine {
    pub carrier: String,
    pub quantity: f64,
    pub unit: String,
    pub tco2_per_unit: f64,
    pub factor_row: String,
    pub sources: Vec<String>,
    pub site_source: Option<String>,
    pub tco2: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scope2 {
    pub method: &'static str,
    pub purchased_kwh: f64,
    /// Green power counted at zero (market-based only).
    pub zero_carbon_kwh: f64,
    pub grid_factor: Option<GridChoice>,
    pub electricity_tco2: f64,
    pub heat: Vec<CarbonLine>,
    pub heat_tco2: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Carbon {
    pub scope1_tco2: f64,
    pub scope2_tco2: f64,
    pub total_tco2: f64,
    pub scope1: Vec<CarbonLine>,
    pub scope2: Scope2,
    /// Carriers consumed that have no emission factor (fuels left out of scope 1: set
    /// `[[accounting.emission_factors]]`).
    pub missing_factors: Vec<String>,
    /// Average CO₂ of the site's consumed electricity, t/kWh (scope-2 electricity ÷ consumption).
    pub electricity_tco2_per_kwh: Option<f64>,
    /// CO₂ of each meter of the plan (by device id), for attributing CO₂ to products.
    #[serde(skip)]
    pub per_device_tco2: BTreeMap<String, f64>,
}

/// Why a grid factor was chosen (`GridChoice::reason`).
pub mod reason {
    /// `[accounting.carbon] factor_year` pins the year; within it province, region, national.
    pub const CONFIGURED_YEAR: &str = "configured_year";
    /// The province's own factor, its latest published year not after the report year.
    pub const PROVINCE_LATEST_YEAR: &str = "province_latest_year";
    /// The province has no factor up to the report year (or only the region is configured).
    pub const REGION_LATEST_YEAR: &str = "region_latest_year";
    /// Neither province nor region configured, or neither has a factor.
    pub const NATIONAL_LATEST_YEAR: &str = "national_latest_year";
    /// `national_ets = true`: the national ETS's sector tables prescribe the national average.
    pub const NATIONAL_ETS: &str = "national_ets";
    /// Market-based scope 2: the national factor excluding market-traded non-fossil electricity.
    pub const MARKET_RESIDUAL: &str = "market_residual";
}

/// Chooses the grid factor for a report year.
///
/// Without `factor_year`: the first level that has a factor — the province's own, then its
/// region's, then the national — each at its latest published year not after the report year
/// (so 重庆's own 2022 factor wins over 西南's 2023). A national-ETS site and the market-based
/// series use the national factor only. With `factor_year`: that year, province → region →
/// national.
pub fn grid_choice(plan: &Plan, report_year: i32, series: GridSeries) -> Option<GridChoice> {
    let t = &plan.tables;
    let c = &plan.cfg.carbon;
    let mut notes = Vec::new();
    let region = c.region.clone().or_else(|| {
        c.province
            .as_deref()
            .and_then(|p| t.province(p))
            .map(|p| p.region.clone())
    });
    let mut levels: Vec<(&'static str, String)> = Vec::new();
    if series == GridSeries::Average && !c.national_ets {
        if let Some(p) = &c.province {
            levels.push(("province", p.clone()));
        }
        if let Some(r) = &region {
            levels.push(("region", r.clone()));
        }
    }
    levels.push(("national", "national".into()));
    let found = match c.factor_year {
        Some(y) => levels
            .iter()
            .enumerate()
            .find_map(|(i, (basis, area))| t.grid_factor(y, area, series).map(|g| (i, *basis, g))),
        None => {
            let latest = levels.iter().enumerate().find_map(|(i, (basis, area))| {
                t.latest_grid(area, series, report_year)
                    .map(|g| (i, *basis, g))
            });
            latest.or_else(|| {
                let first = levels.iter().enumerate().find_map(|(i, (basis, area))| {
                    t.earliest_grid(area, series).map(|g| (i, *basis, g))
                });
                if let Some((_, _, g)) = first {
                    notes.push(Note::GridEarliest {
                        report_year,
                        year: g.year,
                    });
                }
                first
            })
        }
    };
    let (i, basis, g) = found?;
    let skipped: Vec<(&'static str, String)> = levels[..i].to_vec();
    if !skipped.is_empty() {
        notes.push(Note::GridSkipped {
            configured_year: c.factor_year,
            report_year,
            skipped,
            basis,
            area: g.area.clone(),
        });
    }
    if c.factor_year.is_none() && g.year != report_year {
        notes.push(Note::GridOlderYear {
            report_year,
            area: g.area.clone(),
            year: g.year,
        });
    }
    let reason = if c.factor_year.is_some() {
        reason::CONFIGURED_YEAR
    } else if series == GridSeries::ExclMarketNonfossil {
        reason::MARKET_RESIDUAL
    } else if c.national_ets {
        reason::NATIONAL_ETS
    } else {
        match basis {
            "province" => reason::PROVINCE_LATEST_YEAR,
            "region" => reason::REGION_LATEST_YEAR,
            _ => reason::NATIONAL_LATEST_YEAR,
        }
    };
    let mut sources = g.sources.clone();
    if basis == "region" && c.region.is_none() {
        if let Some(p) = c.province.as_deref().and_then(|p| t.province(p)) {
            sources.extend(p.sources.iter().cloned());
        }
    }
    if let Some(n) = &g.note {
        notes.push(Note::GridFactorNote {
            year: g.year,
            area: g.area.clone(),
            note: n.clone(),
        });
    }
    let area_name = match basis {
        "province" => t.province(&g.area).map(|p| p.name.clone()),
        "region" => t
            .regions
            .iter()
            .find(|r| r.id == g.area)
            .map(|r| r.name.clone()),
        _ => Some("全国".to_string()),
    }
    .unwrap_or_else(|| g.area.clone());
    Some(GridChoice {
        tco2_per_mwh: g.tco2_per_mwh,
        year: g.year,
        area: g.area.clone(),
        area_name,
        basis,
        reason,
        series,
        sources,
        notes,
    })
}

/// CO₂ of a ledger.
pub fn carbon(plan: &Plan, ledger: &Ledger, report_year: i32) -> Carbon {
    let mut scope1 = Vec::new();
    let mut heat = Vec::new();
    let mut missing = Vec::new();
    for c in &ledger.carriers {
        if c.carrier == "electricity" || c.quantity == 0.0 {
            continue;
        }
        match plan.emissions.get(&c.carrier) {
            Some(e) => {
                let line = CarbonLine {
                    carrier: c.carrier.clone(),
                    quantity: c.quantity,
                    unit: c.unit.clone(),
                    tco2_per_unit: e.tco2_per_unit,
                    factor_row: e.row.clone(),
                    sources: e.sources.clone(),
                    site_source: e.site_source.clone(),
                    tco2: c.quantity * e.tco2_per_unit,
                };
                if e.scope == 2 {
                    heat.push(line);
                } else {
                    scope1.push(line);
                }
            }
            None if c.factor.basis == super::factors::Basis::Equivalent => {
                missing.push(c.carrier.clone())
            }
            None => {}
        }
    }
    let method = plan.cfg.carbon.scope2_method;
    let purchased = ledger.electricity.purchased_kwh;
    let (series, zero) = match method {
        Scope2Method::Location => (GridSeries::Average, 0.0),
        Scope2Method::Market => (
            GridSeries::ExclMarketNonfossil,
            ledger.non_fossil.green_power_kwh.min(purchased),
        ),
    };
    let grid = grid_choice(plan, report_year, series);
    let electricity_tco2 = match &grid {
        Some(g) => (purchased - zero) * g.tco2_per_mwh / 1000.0,
        None => {
            if purchased > 0.0 {
                missing.push("electricity".into());
            }
            0.0
        }
    };
    let heat_tco2: f64 = heat.iter().map(|l| l.tco2).fold(0.0, |a, b| a + b);
    let scope1_tco2: f64 = scope1.iter().map(|l| l.tco2).fold(0.0, |a, b| a + b);
    let scope2_tco2 = electricity_tco2 + heat_tco2;
    let consumed = ledger.electricity.consumed_kwh;
    let elec_avg = (consumed > 0.0).then(|| electricity_tco2 / consumed);

    let mut per_device = BTreeMap::new();
    for m in &plan.meters {
        if matches!(m.role, MeterRole::Export | MeterRole::Ignore) {
            continue;
        }
        let Some(i) = plan.series_index(&m.device, m.counter) else {
            continue;
        };
        let mut q = ledger.series_totals[i];
        if let Some(x) = m
            .export_counter
            .and_then(|x| plan.series_index(&m.device, x))
        {
            q -= ledger.series_totals[x];
        }
        let t = if m.carrier == Carrier::Electricity {
            if m.role == MeterRole::Generation {
                0.0
            } else {
                q * elec_avg.unwrap_or(0.0)
            }
        } else {
            plan.emissions
                .get(m.carrier.as_str())
                .map(|e| q * e.tco2_per_unit)
                .unwrap_or(0.0)
        };
        per_device.insert(m.device.clone(), t);
    }

    Carbon {
        scope1_tco2,
        scope2_tco2,
        total_tco2: scope1_tco2 + scope2_tco2,
        scope1,
        scope2: Scope2 {
            method: method.as_str(),
            purchased_kwh: purchased,
            zero_carbon_kwh: zero,
            grid_factor: grid,
            electricity_tco2,
            heat,
            heat_tco2,
        },
        missing_factors: missing,
        electricity_tco2_per_kwh: elec_avg,
        per_device_tco2: per_device,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(carbon: &str, year: i32, series: GridSeries) -> GridChoice {
        let toml = format!(
            r#"
[site]
id = "plant-1"

[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:5020"
[[devices.points]]
quantity = "energy_import"
register = 0
type = "f32"

[accounting.carbon]
{carbon}
"#
        );
        let cfg = crate::config::load_str(&toml).unwrap().accounting_context();
        let plan = Plan::build(&cfg).unwrap();
        grid_choice(&plan, year, series).unwrap()
    }

    #[test]
    fn province_first_at_its_latest_year_then_region_then_national() {
        // 重庆: its own 2022 factor, not 西南's 2023 one, for 2026 and 2023 reports alike.
        let g = choice("province = \"chongqing\"", 2026, GridSeries::Average);
        assert_eq!(
            (g.area.as_str(), g.year, g.tco2_per_mwh),
            ("chongqing", 2022, 0.5227)
        );
        assert_eq!(
            (g.basis, g.reason),
            ("province", reason::PROVINCE_LATEST_YEAR)
        );
        assert_eq!(g.area_name, "重庆");
        // A 2021 report takes 2021.
        let g = choice("province = \"chongqing\"", 2021, GridSeries::Average);
        assert_eq!((g.year, g.tco2_per_mwh), (2021, 0.4743));
        // Before any published year: the province's earliest, said in a note.
        let g = choice("province = \"chongqing\"", 2019, GridSeries::Average);
        assert_eq!((g.year, g.basis), (2021, "province"));
        assert!(
            g.notes.iter().any(|n| n.to_string().contains("earliest")),
            "{:?}",
            g.notes
        );
        // 江西 has no provincial factor in the tables: 华中 2023.
        let g = choice("province = \"jiangxi\"", 2026, GridSeries::Average);
        assert_eq!(
            (g.area.as_str(), g.year, g.tco2_per_mwh),
            ("central", 2023, 0.5271)
        );
        assert_eq!(g.reason, reason::REGION_LATEST_YEAR);
        assert!(
            g.notes
                .iter()
                .any(|n| n.to_string().contains("province jiangxi")),
            "{:?}",
            g.notes
        );
        // Nothing configured: national.
        let g = choice("", 2026, GridSeries::Average);
        assert_eq!(
            (g.area.as_str(), g.year, g.tco2_per_mwh),
            ("national", 2023, 0.5306)
        );
        assert_eq!(g.reason, reason::NATIONAL_LATEST_YEAR);
        // National ETS: national even with a province.
        let g = choice(
            "province = \"sichuan\"\nnational_ets = true",
            2026,
            GridSeries::Average,
        );
        assert_eq!((g.area.as_str(), g.tco2_per_mwh), ("national", 0.5306));
        assert_eq!(g.reason, reason::NATIONAL_ETS);
        // Market-based series: national only.
        let g = choice(
            "province = \"chongqing\"",
            2026,
            GridSeries::ExclMarketNonfossil,
        );
        assert_eq!((g.area.as_str(), g.tco2_per_mwh), ("national", 0.6096));
        assert_eq!(g.reason, reason::MARKET_RESIDUAL);
        // A configured year wins; within it 重庆 has none for 2023, so 西南 2023.
        let g = choice(
            "province = \"chongqing\"\nfactor_year = 2023",
            2026,
            GridSeries::Average,
        );
        assert_eq!(
            (g.area.as_str(), g.year, g.tco2_per_mwh),
            ("southwest", 2023, 0.2472)
        );
        assert_eq!(g.reason, reason::CONFIGURED_YEAR);
    }

    #[test]
    fn a_measured_ncv_changes_energy_and_co2_alike() {
        let toml = r#"
[site]
id = "plant-1"

[[devices]]
id = "gas"
carrier = "natural_gas"
[devices.modbus]
address = "127.0.0.1:5022"
[[devices.points]]
quantity = "gas_volume"
register = 0
type = "u32"

[[accounting.factors]]
carrier = "natural_gas"
ncv_kj_per_unit = 36000
source = "gas supplier's monthly analysis (example)"
"#;
        let cfg = crate::config::load_str(toml).unwrap().accounting_context();
        let plan = Plan::build(&cfg).unwrap();
        // Energy: 36 000 / 29 307 kgce/m³.
        let f = &plan.factors["natural_gas"];
        assert!((f.kgce_per_unit - 36_000.0 / 29_307.0).abs() < 1e-12);
        // CO₂: 36 000 kJ = 3.6e-5 TJ × 15.3 tC/TJ × 0.99 × 44/12 t/m³, not the table's 389.31 GJ/10⁴ m³.
        let e = &plan.emissions["natural_gas"];
        let expected = 36_000.0 / 1e9 * 15.3 * 0.99 * 44.0 / 12.0;
        assert!(
            (e.tco2_per_unit - expected).abs() < 1e-15,
            "{}",
            e.tco2_per_unit
        );
        assert_eq!(
            e.site_source.as_deref(),
            Some("gas supplier's monthly analysis (example)")
        );
    }
}
