//! The accounts of one site for one period (month, quarter or year): computed from the store
//! ([`build_with`]: counters → intervals → ledgers, carbon, products, balance, quality, progress,
//! indicators) and persisted with revisions ([`AccountingStore::write_outputs`]). The model,
//! [`Report`], is what `crate::reporting` renders; every field is documented in
//! `docs/report-json.md`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::balance::{balance, BalanceLine};
use super::calendar::{rfc3339, Month, Period};
use super::carbon::{carbon, Carbon, CarbonLine, Scope2};
use super::chunks::{period_data, ChunkCache, PeriodData};
use super::config::AccountingContext;
use super::grades::{products, ProductLine};
use super::ledger::{
    ledger, max_demand, months_bounds, purchased_electricity_intervals, quality, tou_kwh,
    CarrierLine, Inputs, Ledger, NonFossil, Plan, SeriesData, SeriesQuality,
};
use super::notes::Note;
use super::store::{AccountRow, AccountingStore};
use super::targets::{annual_change_pct, change_pct, completion_pct, path_change_pct, BaseBasis};
use crate::readings::Quantity;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierOut {
    pub carrier: String,
    pub name: String,
    pub quantity: f64,
    pub unit: String,
    pub purchased: f64,
    pub generated: f64,
    pub exported: f64,
    pub manual: f64,
    pub factor_kgce_per_unit: f64,
    pub factor_row: String,
    pub factor_basis: super::factors::Basis,
    pub factor_sources: Vec<String>,
    pub factor_site_source: Option<String>,
    pub factor_note: Option<String>,
    pub tce: f64,
    pub equal_value_kgce_per_unit: f64,
    pub equal_value_tce: f64,
    pub feedstock_quantity: f64,
    pub feedstock_tce: f64,
}

impl From<&CarrierLine> for CarrierOut {
    fn from(c: &CarrierLine) -> Self {
        CarrierOut {
            carrier: c.carrier.clone(),
            name: c.factor.name.clone(),
            quantity: c.quantity,
            unit: c.unit.clone(),
            purchased: c.purchased,
            generated: c.generated,
            exported: c.exported,
            manual: c.manual,
            factor_kgce_per_unit: c.factor.kgce_per_unit,
            factor_row: c.factor.row.clone(),
            factor_basis: c.factor.basis,
            factor_sources: c.factor.sources.clone(),
            factor_site_source: c.factor.site_source.clone(),
            factor_note: c.factor.note.clone(),
            tce: c.tce,
            equal_value_kgce_per_unit: c.equal_value_kgce_per_unit,
            equal_value_tce: c.equal_value_tce,
            feedstock_quantity: c.feedstock_quantity,
            feedstock_tce: c.feedstock_tce,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElectricityOut {
    pub purchased_kwh: f64,
    pub generated_kwh: f64,
    pub exported_kwh: f64,
    pub manual_kwh: f64,
    pub consumed_kwh: f64,
    pub equal_value_kgce_per_kwh: f64,
    pub equal_value_origin: &'static str,
    pub equal_value_sources: Vec<String>,
    pub equal_value_site_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineOut {
    pub year: i32,
    pub intensity_tce_per_10k_cny: Option<f64>,
    /// "configured", "computed" or "missing".
    pub origin: &'static str,
    /// "gross" or "after_deductions": what the base intensity counts; the current period is
    /// compared on the same basis.
    pub basis: &'static str,
    /// Price year of the comparable value added behind a configured base (as configured).
    pub price_year: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetOut {
    pub base_year: i32,
    pub target_year: i32,
    pub target_change_pct: f64,
    pub annual_change_pct: f64,
    /// The cumulative change the path allows in the period's year.
    pub path_change_pct: f64,
    /// The shipped preset, when configured.
    pub preset: Option<String>,
    /// Where the target comes from: the configured `source`, else the preset's source tags.
    pub source: Option<String>,
}

/// Progress against the target, judged on the calendar year to date (never on a single month).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressOut {
    /// The months of the year to date (January to the period's last month).
    pub ytd_from: String,
    pub ytd_to: String,
    /// Year-to-date intensity on the baseline's basis, at comparable prices.
    pub ytd_intensity_tce_per_10k_cny: Option<f64>,
    /// Cumulative change since the base year: (YTD intensity ÷ base − 1) × 100.
    pub cumulative_change_pct: Option<f64>,
    /// 完成进度: cumulative change ÷ target change × 100 (100 = the target met).
    pub completion_pct: Option<f64>,
    /// The path's cumulative change for the period's year.
    pub path_change_pct: f64,
    /// Cumulative change ≤ the path.
    pub on_track: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarbonOut {
    pub scope1_tco2: f64,
    pub scope2_tco2: f64,
    pub total_tco2: f64,
    pub scope1: Vec<CarbonLine>,
    pub scope2: Scope2,
    pub missing_factors: Vec<String>,
    pub electricity_tco2_per_kwh: Option<f64>,
    pub intensity_tco2_per_10k_cny: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthOut {
    pub period: String,
    pub comprehensive_energy_tce: f64,
    pub comprehensive_energy_equal_value_tce: f64,
    pub feedstock_tce: f64,
    pub non_fossil_tce: f64,
    pub assessment_energy_tce: f64,
    pub value_added_10k_cny: Option<f64>,
    pub intensity_tce_per_10k_cny: Option<f64>,
    pub total_tco2: f64,
    pub max_demand_kw: Option<f64>,
    pub completeness_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventOut {
    pub device: String,
    pub quantity: Quantity,
    pub time: String,
    pub kind: &'static str,
    pub from_value: Option<f64>,
    pub to_value: Option<f64>,
    pub counted: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataQuality {
    pub completeness_pct: f64,
    pub expected_intervals: usize,
    pub measured_intervals: usize,
    pub estimated_intervals: usize,
    pub missing_intervals: usize,
    pub series: Vec<SeriesQuality>,
    pub counter_events: Vec<EventOut>,
    /// Serialized as English sentences; rendered per language by `crate::reporting::notes`.
    pub notes: Vec<Note>,
}

/// Who the report is about and what made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnterpriseOut {
    pub name: Option<String>,
    /// 统一社会信用代码.
    pub credit_code: Option<String>,
    /// GB/T 4754-2017 industry code.
    pub industry_code: Option<String>,
    pub address: Option<String>,
    pub contact: Option<String>,
    /// energy-gateway version that computed the report.
    pub software_version: &'static str,
    /// The day the report was made, in the site's time zone (`YYYY-MM-DD`); the
    /// `SOURCE_DATE_EPOCH` environment variable (seconds) fixes it for reproducible reports.
    pub report_date: String,
    /// Each factor-table file and its edition.
    pub factor_tables: Vec<FactorTableOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FactorTableOut {
    pub file: String,
    pub edition: Option<String>,
}

/// The account of one site for one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub site: String,
    pub enterprise: EnterpriseOut,
    pub period: String,
    pub period_kind: &'static str,
    pub timezone: String,
    pub from: String,
    /// End of the period (exclusive), even while it is in progress.
    pub to: String,
    /// The period has not ended: its accounts cover its closed 15-minute intervals up to
    /// `data_to`, and its completeness counts only those.
    pub in_progress: bool,
    /// End of the data of a period in progress (RFC 3339, an interval boundary).
    pub data_to: Option<String>,
    pub factor_table: String,
    pub factor_file: Option<String>,
    pub carriers: Vec<CarrierOut>,
    pub comprehensive_energy_tce: f64,
    pub comprehensive_energy_equal_value_tce: f64,
    pub exported_tce: f64,
    pub feedstock_tce: f64,
    pub non_fossil_tce: f64,
    pub non_fossil: NonFossil,
    pub assessment_energy_tce: f64,
    pub assessment_energy_equal_value_tce: f64,
    pub electricity: ElectricityOut,
    pub value_added_10k_cny: Option<f64>,
    pub value_added_comparable_10k_cny: Option<f64>,
    pub value_added_missing_months: Vec<String>,
    pub intensity_tce_per_10k_cny: Option<f64>,
    pub intensity_gross_tce_per_10k_cny: Option<f64>,
    pub intensity_comparable_tce_per_10k_cny: Option<f64>,
    pub intensity_ytd_tce_per_10k_cny: Option<f64>,
    pub intensity_yoy_change_pct: Option<f64>,
    /// "comparable" or "current": the prices of the intensity compared with the baseline.
    pub intensity_basis: &'static str,
    pub baseline: BaselineOut,
    /// The period's intensity on the baseline's basis (gross or after deductions) and prices.
    pub intensity_compared_tce_per_10k_cny: Option<f64>,
    pub change_vs_baseline_pct: Option<f64>,
    pub target: TargetOut,
    /// Judged for a year only (a month or quarter is shown for information; see `progress`).
    pub on_track: Option<bool>,
    pub progress: ProgressOut,
    pub products: Vec<ProductLine>,
    pub carbon: CarbonOut,
    pub max_demand_kw: Option<f64>,
    pub max_demand_at: Option<String>,
    pub tou_kwh: Option<BTreeMap<&'static str, f64>>,
    pub balance: Vec<BalanceLine>,
    pub months: Vec<MonthOut>,
    pub data_quality: DataQuality,
    /// Green-factory (GB/T 36132-2025) and 亩均 indicators.
    pub indicators: super::indicators::Indicators,
    /// Alert transitions of the period (store table `alert_events`).
    pub alerts: super::alert_summary::AlertsSummary,
    pub sources: BTreeMap<String, String>,
}

/// Value added of some months: (current, comparable when every month has it, missing months).
fn value_added(inputs: &Inputs, months: &[Month]) -> (Option<f64>, Option<f64>, Vec<String>) {
    let missing: Vec<String> = months
        .iter()
        .filter(|m| !inputs.value_added.contains_key(m))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() {
        return (None, None, missing);
    }
    let current = months
        .iter()
        .filter_map(|m| inputs.value_added.get(m))
        .fold(0.0, |a, v| a + v.current);
    let comparable = months
        .iter()
        .map(|m| inputs.value_added.get(m).and_then(|v| v.comparable))
        .sum::<Option<f64>>();
    (Some(current), comparable, missing)
}

fn ratio(a: f64, b: Option<f64>) -> Option<f64> {
    b.filter(|b| *b > 0.0).map(|b| a / b)
}

/// Intensity (tce/10⁴ CNY) of a ledger at comparable prices when available, else current.
fn intensity(l: &Ledger, inputs: &Inputs, months: &[Month]) -> Option<(f64, &'static str)> {
    let (cur, comp, _) = value_added(inputs, months);
    match (ratio(l.assessment_tce, comp), ratio(l.assessment_tce, cur)) {
        (Some(i), _) => Some((i, "comparable")),
        (None, Some(i)) => Some((i, "current")),
        _ => None,
    }
}

/// Intensity of a ledger on the baseline's basis: gross energy or the assessment energy, over
/// comparable value added when every month has it, else current.
fn compared_intensity(
    l: &Ledger,
    basis: BaseBasis,
    inputs: &Inputs,
    months: &[Month],
) -> Option<(f64, &'static str)> {
    let energy = match basis {
        BaseBasis::Gross => l.gross_tce,
        BaseBasis::AfterDeductions => l.assessment_tce,
    };
    let (cur, comp, _) = value_added(inputs, months);
    match (ratio(energy, comp), ratio(energy, cur)) {
        (Some(i), _) => Some((i, "comparable")),
        (None, Some(i)) => Some((i, "current")),
        _ => None,
    }
}

/// (intensity ÷ base − 1) × 100, refused with a note when the intensity is at current prices
/// outside the base year (the statistics bureau compares comparable prices:
/// (1 + energy growth) ÷ (1 + comparable value-added growth) − 1, which is this ratio).
fn versus_base(
    intensity: Option<(f64, &'static str)>,
    base: Option<f64>,
    what: &str,
    base_year: bool,
    notes: &mut Vec<Note>,
) -> Option<f64> {
    let ((i, prices), b) = intensity.zip(base)?;
    if prices == "current" && !base_year {
        notes.push(Note::NoComparablePrices {
            period: what.to_string(),
        });
        return None;
    }
    Some(change_pct(i, b))
}

fn overall_completeness(q: &[SeriesQuality]) -> (f64, usize, usize, usize, usize) {
    let e: usize = q.iter().map(|s| s.expected_intervals).sum();
    let m: usize = q.iter().map(|s| s.measured_intervals).sum();
    let est: usize = q.iter().map(|s| s.estimated_intervals).sum();
    let miss: usize = q.iter().map(|s| s.missing_intervals).sum();
    let pct = if e == 0 {
        0.0
    } else {
        m as f64 / e as f64 * 100.0
    };
    (pct, e, m, est, miss)
}

/// A ledger of other months (YTD, last year, base year), with its data completeness.
fn other_ledger(
    plan: &Plan,
    store: &mut AccountingStore,
    inputs: &Inputs,
    months: &[Month],
    cache: Option<&mut ChunkCache>,
) -> Result<(Ledger, f64)> {
    let (from, to) = months_bounds(plan.tz, months);
    let data = period_data(plan, store, from, to, cache, false)?;
    let l = ledger(plan, &data, inputs, months);
    let (pct, ..) = overall_completeness(&quality(plan, &data, from, to));
    Ok((l, pct))
}

/// Builds the report of `period` with the data up to now. With `write`, the intervals, accounts
/// and counter events are also written to the store.
pub fn build(cfg: &AccountingContext, period: Period, write: bool) -> Result<Report> {
    build_as_of(cfg, period, write, crate::readings::now_ms())
}

/// Builds the report of `period` as it stands at `as_of`: a period that has not started is
/// refused; one in progress covers its closed 15-minute intervals only (up to the start of the
/// interval containing `as_of`), counts its completeness over those and says so (`in_progress`,
/// `data_to`, a note). With `write`, the intervals, accounts and counter events are written to
/// the store, unless the period has no data at all (nothing is stored then, and a note says so).
pub fn build_as_of(
    cfg: &AccountingContext,
    period: Period,
    write: bool,
    as_of: i64,
) -> Result<Report> {
    build_with(cfg, period, write, as_of, None)
}

/// [`build_as_of`] with the chunks the accounting service keeps between its cycles.
pub fn build_with(
    cfg: &AccountingContext,
    period: Period,
    write: bool,
    as_of: i64,
    mut cache: Option<&mut ChunkCache>,
) -> Result<Report> {
    let plan = Plan::build(cfg)?;
    let mut store = AccountingStore::open(&cfg.store_path())?;
    let inputs = Inputs::load(&store)?;
    let tz = plan.tz;
    let months = period.months();
    let (from, period_end) = period.bounds(tz);
    let (to, in_progress) = period_extent(tz, period, as_of)?;
    let data = period_data(&plan, &mut store, from, to, cache.as_deref_mut(), write)?;
    let l = ledger(&plan, &data, &inputs, &months);
    let year = period.year();
    let c = carbon(&plan, &l, year);
    let prods = products(&plan, &data, &inputs, &l, &c, &months);
    let bal = balance(&plan, &l);
    let q = quality(&plan, &data, from, to);
    let (completeness, expected, measured, estimated, missing) = overall_completeness(&q);
    let intervals = purchased_electricity_intervals(&plan, &data, from, to);
    let demand = max_demand(&intervals);
    let tou = tou_kwh(&plan, &intervals);
    let mut notes = Vec::new();
    let mut tags: Vec<String> = Vec::new();
    if in_progress {
        notes.push(Note::InProgress {
            data_to: local_minute(tz, to),
        });
    }

    // Value added and intensity.
    let (va, va_comp, va_missing) = value_added(&inputs, &months);
    if !va_missing.is_empty() {
        notes.push(Note::ValueAddedMissing {
            months: va_missing.clone(),
        });
    }
    let this = intensity(&l, &inputs, &months);
    let ytd_months = period.year_to_date();
    // Year to date only when every month of it has its value added (the months before are
    // read again from the store: not for nothing).
    let ytd_ledger = if !value_added(&inputs, &ytd_months).2.is_empty() {
        None
    } else if ytd_months == months {
        Some(l.clone())
    } else {
        Some(
            other_ledger(
                &plan,
                &mut store,
                &inputs,
                &ytd_months,
                cache.as_deref_mut(),
            )?
            .0,
        )
    };
    let ytd = ytd_ledger
        .as_ref()
        .and_then(|yl| ratio(yl.assessment_tce, value_added(&inputs, &ytd_months).0));
    // Year on year, at comparable prices where both years have them.
    let prev = period.previous_year();
    let prev_months = prev.months();
    let yoy = match this {
        None => None,
        Some((i, basis)) => {
            let (pl, pct) = other_ledger(
                &plan,
                &mut store,
                &inputs,
                &prev_months,
                cache.as_deref_mut(),
            )?;
            let (pcur, pcomp, _) = value_added(&inputs, &prev_months);
            let prev_i = match basis {
                "comparable" => ratio(pl.assessment_tce, pcomp),
                _ => ratio(pl.assessment_tce, pcur),
            };
            match prev_i {
                Some(p) if pct > 0.0 => Some(change_pct(i, p)),
                Some(_) => {
                    notes.push(Note::NoYearOnYear {
                        period: prev.to_string(),
                    });
                    None
                }
                None => None,
            }
        }
    };
    // Baseline.
    let t = &plan.cfg.target;
    let basis = match t.base_intensity_tce_per_10k_cny {
        Some(_) => t.base_basis.unwrap_or_default(),
        None => BaseBasis::AfterDeductions,
    };
    if t.base_intensity_tce_per_10k_cny.is_some() && t.base_basis.is_none() {
        notes.push(Note::BaseBasisUnset);
    }
    let baseline = match t.base_intensity_tce_per_10k_cny {
        Some(b) => BaselineOut {
            year: t.base_year,
            intensity_tce_per_10k_cny: Some(b),
            origin: "configured",
            basis: basis.as_str(),
            price_year: t.base_price_year,
        },
        None => {
            let base_months = Period::Year(t.base_year).months();
            // Without the base year's value added there is no base intensity: its readings
            // are not read (a year of every counter).
            let base = if value_added(&inputs, &base_months).2.is_empty() {
                let (bl, pct) = other_ledger(&plan, &mut store, &inputs, &base_months, cache)?;
                intensity(&bl, &inputs, &base_months)
                    .filter(|_| pct > 0.0)
                    .map(|i| (i, pct))
            } else {
                None
            };
            match base {
                Some(((b, _), pct)) => {
                    if pct < 100.0 {
                        notes.push(Note::BaseYearPartial {
                            year: t.base_year,
                            measured_pct: pct,
                        });
                    }
                    BaselineOut {
                        year: t.base_year,
                        intensity_tce_per_10k_cny: Some(b),
                        origin: "computed",
                        basis: basis.as_str(),
                        price_year: None,
                    }
                }
                None => {
                    notes.push(Note::NoBaseIntensity { year: t.base_year });
                    BaselineOut {
                        year: t.base_year,
                        intensity_tce_per_10k_cny: None,
                        origin: "missing",
                        basis: basis.as_str(),
                        price_year: None,
                    }
                }
            }
        }
    };
    // Like with like: the period's energy on the baseline's basis, at comparable prices.
    let compared = compared_intensity(&l, basis, &inputs, &months);
    let change = versus_base(
        compared,
        baseline.intensity_tce_per_10k_cny,
        &period.to_string(),
        year == t.base_year,
        &mut notes,
    );
    let path = path_change_pct(t, year);
    let ytd_compared = ytd_ledger
        .as_ref()
        .and_then(|yl| compared_intensity(yl, basis, &inputs, &ytd_months));
    let cumulative = versus_base(
        ytd_compared,
        baseline.intensity_tce_per_10k_cny,
        "the year to date",
        year == t.base_year,
        &mut Vec::new(),
    );
    let ytd_missing = value_added(&inputs, &ytd_months).2;
    if baseline.intensity_tce_per_10k_cny.is_some() && !ytd_missing.is_empty() {
        notes.push(Note::YtdValueAddedMissing {
            missing: ytd_missing.len(),
            months: ytd_months.len(),
            from: ytd_months
                .first()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            to: ytd_months.last().map(|m| m.to_string()).unwrap_or_default(),
        });
    }
    let progress = ProgressOut {
        ytd_from: ytd_months
            .first()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        ytd_to: ytd_months.last().map(|m| m.to_string()).unwrap_or_default(),
        ytd_intensity_tce_per_10k_cny: ytd_compared.map(|(i, _)| i),
        cumulative_change_pct: cumulative,
        completion_pct: cumulative.and_then(|c| completion_pct(c, t.target_change_pct)),
        path_change_pct: path,
        on_track: cumulative.map(|c| c <= path),
    };
    let on_track = if period.kind() == "year" {
        change.map(|c| c <= path)
    } else {
        if change.is_some() {
            notes.push(Note::NotJudgedAgainstPath {
                kind: period.kind(),
            });
        }
        None
    };
    if change.is_some() || cumulative.is_some() {
        tags.push("S24".into());
    }
    let target_sources: Vec<String> = t
        .preset
        .as_deref()
        .and_then(super::targets::preset)
        .map(|p| p.sources.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    tags.extend(target_sources.iter().cloned());

    // Notes from the ledgers.
    notes.extend(l.non_fossil.warnings.iter().cloned());
    if let Some(n) = &l.equal_value.note {
        notes.push(n.clone());
    }
    for cl in &l.carriers {
        if cl.factor.verify {
            notes.push(Note::FactorVerify {
                row: cl.factor.row.clone(),
                carrier: cl.carrier.clone(),
                note: cl.factor.note.clone().unwrap_or_default(),
            });
        }
        if cl.quantity < 0.0 {
            notes.push(Note::NetExport {
                carrier: cl.carrier.clone(),
            });
        }
    }
    if let Some(g) = &c.scope2.grid_factor {
        notes.extend(g.notes.iter().cloned());
        tags.extend(g.sources.iter().cloned());
    }
    if !c.missing_factors.is_empty() {
        notes.push(Note::MissingEmissionFactors {
            carriers: c.missing_factors.clone(),
        });
    }
    for p in &prods {
        if !p.output_missing_months.is_empty() {
            notes.push(Note::ProductionMissing {
                product: p.id.clone(),
                months: p.output_missing_months.clone(),
            });
        }
        if let Some(lim) = &p.limit {
            tags.extend(lim.sources.iter().cloned());
        }
    }
    for b in bal.iter().filter(|b| b.flagged) {
        notes.push(Note::BalanceFlagged {
            parent: b.parent.clone(),
            difference: b.difference,
            unit: b.unit.clone(),
            difference_pct: b.difference_pct,
            tolerance_pct: b.tolerance_pct,
        });
    }
    for cl in &l.carriers {
        tags.extend(cl.factor.sources.iter().cloned());
    }
    tags.extend(l.equal_value.sources.iter().cloned());
    for line in c.scope1.iter().chain(&c.scope2.heat) {
        tags.extend(line.sources.iter().cloned());
    }
    if l.non_fossil.total_kwh > 0.0 {
        tags.push("S33".into());
    }
    if l.non_fossil.green_certificates > 0 {
        if let Some(k) = plan.tables.kwh_per_green_certificate() {
            tags.extend(k.sources.iter().cloned());
        }
    }

    // Months of a quarter or year.
    let mut month_outs = Vec::new();
    let mut month_ledgers = Vec::new();
    if months.len() > 1 {
        for m in &months {
            let ml = ledger(&plan, &data, &inputs, &[*m]);
            let mc = carbon(&plan, &ml, year);
            let (a, b) = m.bounds(tz);
            let (mva, _, _) = value_added(&inputs, &[*m]);
            let (mpct, ..) = overall_completeness(&quality(&plan, &data, a, b));
            let md = max_demand(&purchased_electricity_intervals(&plan, &data, a, b));
            month_outs.push(MonthOut {
                period: m.to_string(),
                comprehensive_energy_tce: ml.gross_tce,
                comprehensive_energy_equal_value_tce: ml.gross_equal_value_tce,
                feedstock_tce: ml.feedstock_tce,
                non_fossil_tce: ml.non_fossil.tce,
                assessment_energy_tce: ml.assessment_tce,
                value_added_10k_cny: mva,
                intensity_tce_per_10k_cny: ratio(ml.assessment_tce, mva),
                total_tco2: mc.total_tco2,
                max_demand_kw: md.map(|d| d.0),
                completeness_pct: mpct,
            });
            month_ledgers.push((*m, ml, mc));
        }
    }

    let events: Vec<EventOut> = plan
        .series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            data.events(i).into_iter().map(move |e| EventOut {
                device: s.device.clone(),
                quantity: s.quantity,
                time: rfc3339(tz, e.ts_ms),
                kind: e.kind.as_str(),
                from_value: e.from_value,
                to_value: e.to_value,
                counted: e.counted,
                detail: e.detail.clone(),
            })
        })
        .collect();

    let alerts_summary = super::alert_summary::summary(&cfg.store_path(), tz, from, to)?;
    tags.extend(["S40", "S55", "S59"].map(String::from));
    tags.sort();
    tags.dedup();
    let e = &plan.cfg.enterprise;
    let enterprise = EnterpriseOut {
        name: e.name.clone().or_else(|| cfg.site.name.clone()),
        credit_code: e.credit_code.clone(),
        industry_code: e.industry_code.clone(),
        address: e.address.clone(),
        contact: e.contact.clone(),
        software_version: env!("CARGO_PKG_VERSION"),
        report_date: report_date(tz),
        factor_tables: plan
            .tables
            .editions
            .iter()
            .map(|(file, edition)| FactorTableOut {
                file: file.clone(),
                edition: edition.clone(),
            })
            .collect(),
    };
    let unset: Vec<&str> = [
        ("name", enterprise.name.is_none()),
        ("credit_code", enterprise.credit_code.is_none()),
        ("industry_code", enterprise.industry_code.is_none()),
        ("address", enterprise.address.is_none()),
        ("contact", enterprise.contact.is_none()),
    ]
    .into_iter()
    .filter(|(_, m)| *m)
    .map(|(k, _)| k)
    .collect();
    if !unset.is_empty() {
        notes.insert(0, Note::EnterpriseIncomplete { keys: unset });
    }
    let mut report = Report {
        site: plan.site.clone(),
        enterprise,
        period: period.to_string(),
        period_kind: period.kind(),
        timezone: tz.name().to_string(),
        from: rfc3339(tz, from),
        to: rfc3339(tz, period_end),
        in_progress,
        data_to: in_progress.then(|| rfc3339(tz, to)),
        factor_table: plan.tables.edition.clone(),
        factor_file: plan.tables.override_file.clone(),
        carriers: l.carriers.iter().map(CarrierOut::from).collect(),
        comprehensive_energy_tce: l.gross_tce,
        comprehensive_energy_equal_value_tce: l.gross_equal_value_tce,
        exported_tce: l.exported_tce,
        feedstock_tce: l.feedstock_tce,
        non_fossil_tce: l.non_fossil.tce,
        non_fossil: l.non_fossil.clone(),
        assessment_energy_tce: l.assessment_tce,
        assessment_energy_equal_value_tce: l.assessment_equal_value_tce,
        electricity: ElectricityOut {
            purchased_kwh: l.electricity.purchased_kwh,
            generated_kwh: l.electricity.generated_kwh,
            exported_kwh: l.electricity.exported_kwh,
            manual_kwh: l.electricity.manual_kwh,
            consumed_kwh: l.electricity.consumed_kwh,
            equal_value_kgce_per_kwh: l.equal_value.kgce_per_kwh,
            equal_value_origin: l.equal_value.origin,
            equal_value_sources: l.equal_value.sources.clone(),
            equal_value_site_source: l.equal_value.site_source.clone(),
        },
        value_added_10k_cny: va,
        value_added_comparable_10k_cny: va_comp,
        value_added_missing_months: va_missing,
        intensity_tce_per_10k_cny: ratio(l.assessment_tce, va),
        intensity_gross_tce_per_10k_cny: ratio(l.gross_tce, va),
        intensity_comparable_tce_per_10k_cny: ratio(l.assessment_tce, va_comp),
        intensity_ytd_tce_per_10k_cny: ytd,
        intensity_yoy_change_pct: yoy,
        intensity_basis: this.map(|(_, b)| b).unwrap_or("current"),
        baseline,
        intensity_compared_tce_per_10k_cny: compared.map(|(i, _)| i),
        change_vs_baseline_pct: change,
        target: TargetOut {
            base_year: t.base_year,
            target_year: t.target_year,
            target_change_pct: t.target_change_pct,
            annual_change_pct: annual_change_pct(t),
            path_change_pct: path,
            preset: t.preset.clone(),
            source: t
                .source
                .clone()
                .or_else(|| (!target_sources.is_empty()).then(|| target_sources.join(" "))),
        },
        on_track,
        progress,
        products: prods,
        carbon: CarbonOut {
            scope1_tco2: c.scope1_tco2,
            scope2_tco2: c.scope2_tco2,
            total_tco2: c.total_tco2,
            scope1: c.scope1.clone(),
            scope2: c.scope2.clone(),
            missing_factors: c.missing_factors.clone(),
            electricity_tco2_per_kwh: c.electricity_tco2_per_kwh,
            intensity_tco2_per_10k_cny: ratio(c.total_tco2, va),
        },
        max_demand_kw: demand.map(|d| d.0),
        max_demand_at: demand.map(|d| rfc3339(tz, d.1)),
        tou_kwh: tou,
        balance: bal,
        months: month_outs,
        data_quality: DataQuality {
            completeness_pct: completeness,
            expected_intervals: expected,
            measured_intervals: measured,
            estimated_intervals: estimated,
            missing_intervals: missing,
            series: q,
            counter_events: events,
            notes,
        },
        indicators: super::indicators::Indicators {
            output_value_10k_cny: None,
            land_area_mu: None,
            green_factory: Vec::new(),
            mu: Vec::new(),
            notes: Vec::new(),
        },
        alerts: alerts_summary,
        sources: plan.tables.cite(&tags),
    };
    report.indicators = super::indicators::compute(&cfg.accounting.indicators, &report, &months);

    let has_data = data.any_covered()
        || l.carriers
            .iter()
            .any(|c| c.manual != 0.0 || c.feedstock_quantity != 0.0);
    if write && !has_data {
        report.data_quality.notes.push(Note::NoData {
            period: period.to_string(),
        });
    }
    if write && has_data {
        write_outputs(
            &plan,
            &mut store,
            &data,
            &report,
            &l,
            &c,
            &month_ledgers,
            &inputs,
        )?;
    }
    Ok(report)
}

/// The end of the data of `period` at `as_of` and whether the period is still in progress; a
/// period that has not started is an error.
pub fn period_extent(tz: chrono_tz::Tz, period: Period, as_of: i64) -> Result<(i64, bool)> {
    let (from, to) = period.bounds(tz);
    if from >= as_of {
        anyhow::bail!(
            "period {period} has not started yet (it starts {}): no account of a future period",
            local_minute(tz, from)
        );
    }
    if to <= as_of {
        return Ok((to, false));
    }
    Ok((super::calendar::slot_start(as_of).max(from), true))
}

/// `2026-11-30 10:15` in the site's time zone.
pub fn local_minute(tz: chrono_tz::Tz, ts_ms: i64) -> String {
    super::calendar::local_time(tz, ts_ms)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn account_rows(
    period: &str,
    kind: &'static str,
    (start, end): (i64, i64),
    l: &Ledger,
    c: &Carbon,
    va: Option<f64>,
    extra: &[(String, f64, String)],
) -> Vec<AccountRow> {
    let mut fields: Vec<(String, f64, String)> = vec![
        ("comprehensive_energy_tce".into(), l.gross_tce, "tce".into()),
        (
            "comprehensive_energy_equal_value_tce".into(),
            l.gross_equal_value_tce,
            "tce".into(),
        ),
        ("feedstock_tce".into(), l.feedstock_tce, "tce".into()),
        ("non_fossil_tce".into(), l.non_fossil.tce, "tce".into()),
        (
            "assessment_energy_tce".into(),
            l.assessment_tce,
            "tce".into(),
        ),
        ("scope1_tco2".into(), c.scope1_tco2, "tCO2".into()),
        ("scope2_tco2".into(), c.scope2_tco2, "tCO2".into()),
        ("total_tco2".into(), c.total_tco2, "tCO2".into()),
    ];
    for cl in &l.carriers {
        fields.push((
            format!("carrier.{}.quantity", cl.carrier),
            cl.quantity,
            cl.unit.clone(),
        ));
        fields.push((format!("carrier.{}.tce", cl.carrier), cl.tce, "tce".into()));
    }
    if let Some(v) = va {
        fields.push(("value_added_10k_cny".into(), v, "10k CNY".into()));
        if v > 0.0 {
            fields.push((
                "intensity_tce_per_10k_cny".into(),
                l.assessment_tce / v,
                "tce/10k CNY".into(),
            ));
        }
    }
    fields.extend(extra.iter().cloned());
    fields
        .into_iter()
        .filter(|(_, v, _)| v.is_finite())
        .map(|(field, value, unit)| AccountRow {
            period: period.to_string(),
            kind,
            start_ms: start,
            end_ms: end,
            field,
            value,
            unit,
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    plan: &Plan,
    store: &mut AccountingStore,
    data: &PeriodData,
    r: &Report,
    l: &Ledger,
    c: &Carbon,
    months: &[(Month, Ledger, Carbon)],
    inputs: &Inputs,
) -> Result<()> {
    // The intervals were written as they were read (`period_data`).
    let (from, to) = (data.from_ms, data.to_ms);
    let mut extra = vec![(
        "completeness_pct".to_string(),
        r.data_quality.completeness_pct,
        "%".to_string(),
    )];
    if let Some(d) = r.max_demand_kw {
        extra.push(("max_demand_kw".into(), d, "kW".into()));
    }
    if let Some(t) = &r.tou_kwh {
        for (b, v) in t {
            extra.push((format!("tou.{b}_kwh"), *v, "kWh".into()));
        }
    }
    for p in &r.products {
        if let Some(o) = p.output {
            extra.push((format!("product.{}.output", p.id), o, p.unit.clone()));
        }
        if let Some(u) = p.unit_energy {
            extra.push((
                format!("product.{}.unit_energy", p.id),
                u,
                p.unit_energy_unit.clone(),
            ));
        }
    }
    let mut accounts = account_rows(
        &r.period,
        r.period_kind,
        (from, to),
        l,
        c,
        r.value_added_10k_cny,
        &extra,
    );
    for (m, ml, mc) in months {
        let (mva, _, _) = value_added(inputs, &[*m]);
        accounts.extend(account_rows(
            &m.to_string(),
            "month",
            m.bounds(plan.tz),
            ml,
            mc,
            mva,
            &[],
        ));
    }
    let events: Vec<(String, Quantity, super::counters::CounterEvent)> = plan
        .series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            data.events(i)
                .into_iter()
                .map(move |e| (s.device.clone(), s.quantity, e))
        })
        .collect();
    store.write_outputs(&[], &accounts, &events)?;
    Ok(())
}

/// Today in `tz`, or the day of `SOURCE_DATE_EPOCH` (seconds since the epoch) when it is set:
/// the reproducible-builds convention, so that a report made again is the same file.
fn report_date(tz: chrono_tz::Tz) -> String {
    let ms = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or_else(crate::readings::now_ms);
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}
