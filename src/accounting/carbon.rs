//! CO₂: scope 1 from fuels burnt on site, scope 2 from purchased electricity (official grid factor
//! by year and province/region/nation) and purchased heat and steam.
//!
//! Grid factor choice: the year is `[accounting.carbon] factor_year`, or the latest year in the
//! tables up to the report's year. Within that year: the province's factor where published,
//! otherwise its grid region's (重庆 and 四川 are in 西南), otherwise the national average.
//! Location-based: all purchased electricity × that factor. Market-based: purchased green power
//! counts zero and the rest × the national factor excluding market-traded non-fossil electricity.
//! Unbundled green certificates are not netted against scope 2 (no rule for it is sourced).

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::{MeterRole, Scope2Method};
use super::factors::GridSeries;
use super::ledger::{Ledger, Plan};

/// The grid factor used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridChoice {
    pub tco2_per_mwh: f64,
    pub year: i32,
    /// "national", a region id or a province id.
    pub area: String,
    /// "province", "region" or "national".
    pub basis: &'static str,
    pub series: GridSeries,
    pub sources: Vec<String>,
    pub notes: Vec<String>,
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

/// Chooses the grid factor for a report year.
pub fn grid_choice(plan: &Plan, report_year: i32, series: GridSeries) -> Option<GridChoice> {
    let t = &plan.tables;
    let c = &plan.cfg.carbon;
    let mut notes = Vec::new();
    let year = match c.factor_year {
        Some(y) => y,
        None => {
            let y = t
                .latest_grid_year(report_year)
                .or_else(|| t.grid.iter().map(|g| g.year).min())?;
            if y != report_year {
                notes.push(format!(
                    "no {report_year} grid factor is published in the tables; {y}, the latest up to {report_year}, is used"
                ));
            }
            y
        }
    };
    let region = c.region.clone().or_else(|| {
        c.province
            .as_deref()
            .and_then(|p| t.province(p))
            .map(|p| p.region.clone())
    });
    let mut tried = Vec::new();
    if series == GridSeries::Average {
        if let Some(p) = &c.province {
            if let Some(g) = t.grid_factor(year, p, series) {
                return Some(GridChoice {
                    tco2_per_mwh: g.tco2_per_mwh,
                    year,
                    area: p.clone(),
                    basis: "province",
                    series,
                    sources: g.sources.clone(),
                    notes,
                });
            }
            tried.push(format!("province {p}"));
        }
        if let Some(r) = &region {
            if let Some(g) = t.grid_factor(year, r, series) {
                if !tried.is_empty() {
                    notes.push(format!(
                        "no {year} factor for {}; region {r} used",
                        tried.join(", ")
                    ));
                }
                let mut sources = g.sources.clone();
                if c.region.is_none() {
                    if let Some(p) = c.province.as_deref().and_then(|p| t.province(p)) {
                        sources.extend(p.sources.iter().cloned());
                    }
                }
                return Some(GridChoice {
                    tco2_per_mwh: g.tco2_per_mwh,
                    year,
                    area: r.clone(),
                    basis: "region",
                    series,
                    sources,
                    notes,
                });
            }
            tried.push(format!("region {r}"));
        }
    }
    let g = t.grid_factor(year, "national", series)?;
    if !tried.is_empty() {
        notes.push(format!(
            "no {year} factor for {}; national factor used",
            tried.join(", ")
        ));
    }
    Some(GridChoice {
        tco2_per_mwh: g.tco2_per_mwh,
        year,
        area: "national".into(),
        basis: "national",
        series,
        sources: g.sources.clone(),
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
        let t = if m.carrier == "electricity" {
            if m.role == MeterRole::Generation {
                0.0
            } else {
                q * elec_avg.unwrap_or(0.0)
            }
        } else {
            plan.emissions
                .get(&m.carrier)
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
