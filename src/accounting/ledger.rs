//! The plan of the accounts (which counters, which factors) and the energy ledgers of a range of
//! months: gross comprehensive energy (综合能耗, GB/T 2589) in 当量值 and 等价值, exports deducted,
//! feedstock (原料用能), non-fossil energy, and assessment energy = gross − feedstock − non-fossil
//! (发改环资〔2024〕113号).

use crate::carrier::Carrier;
use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use chrono_tz::Tz;
use serde::Serialize;

use super::calendar::{Month, SLOT_MS};
use super::config::AccountingContext;
use super::config::{
    default_counter, resolve_meters, AccountingConfig, EnergyUse, MeterRole, ResolvedMeter,
};
use super::counters::{integrate, CounterEvent, CounterSettings, Slots};
use super::factors::{report_unit, unit_ratio, Basis, Tables};
use super::store::{AccountingStore, ManualConsumption, ValueAdded};
use super::tariff::TouCalendar;
use crate::readings::{Quantity, TimestampMs};

/// The standard-coal factor used for a carrier, per its report unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierFactor {
    pub carrier: String,
    /// Unit quantities of the carrier are reported in.
    pub unit: String,
    pub kgce_per_unit: f64,
    /// Factor-table row (or `site` for a configured value).
    pub row: String,
    pub name: String,
    pub basis: Basis,
    /// Source tags.
    pub sources: Vec<String>,
    /// A site-given source ([[accounting.factors]]).
    pub site_source: Option<String>,
    pub note: Option<String>,
    pub verify: bool,
}

/// A CO₂ factor per report unit of a carrier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmissionFactor {
    pub carrier: String,
    pub tco2_per_unit: f64,
    pub row: String,
    /// 1 (fuel burnt on site) or 2 (purchased heat/steam).
    pub scope: u8,
    pub sources: Vec<String>,
    pub site_source: Option<String>,
    pub note: Option<String>,
}

/// One counter the accounts read.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    pub device: String,
    pub quantity: Quantity,
    pub carrier: String,
    pub unit: String,
    pub settings: CounterSettings,
}

/// Everything the accounts need from the configuration, resolved once.
#[derive(Debug, Clone)]
pub struct Plan {
    pub site: String,
    pub tz: Tz,
    pub tables: Tables,
    pub cfg: AccountingConfig,
    pub meters: Vec<ResolvedMeter>,
    pub series: Vec<SeriesSpec>,
    pub factors: BTreeMap<String, CarrierFactor>,
    pub emissions: BTreeMap<String, EmissionFactor>,
    pub tou: Option<TouCalendar>,
}

impl Plan {
    /// Builds the plan of a configuration that passed `check`.
    pub fn build(cfg: &AccountingContext) -> Result<Plan> {
        let acc = &cfg.accounting;
        let tz: Tz =
            cfg.site.timezone.parse().map_err(|_| {
                anyhow!("site.timezone \"{}\" is not a time zone", cfg.site.timezone)
            })?;
        let tables = Tables::load(&acc.factor_table, acc.factor_file.as_deref())
            .map_err(|e| anyhow!("factor tables: {e}"))?;
        let meters = resolve_meters(cfg, &tables);

        let mut factors = BTreeMap::new();
        for carrier in tables.carriers() {
            let f = carrier_factor(acc, &tables, carrier)?;
            factors.insert(carrier.to_string(), f);
        }
        let mut emissions = BTreeMap::new();
        for (carrier, f) in &factors {
            if let Some(e) = emission_factor(acc, &tables, carrier, &f.unit)? {
                emissions.insert(carrier.clone(), e);
            }
        }

        let gap = |device: &str| {
            acc.meters
                .iter()
                .find(|m| m.device == device)
                .and_then(|m| m.gap_after)
                .unwrap_or(acc.gap_after)
                .as_millis() as i64
        };
        let settings = |device: &str, q: Quantity| {
            let m = acc.meters.iter().find(|m| m.device == device);
            CounterSettings {
                max: m.and_then(|m| m.counter_max.get(&q).copied()),
                rated_per_hour: m.and_then(|m| m.rated_power),
                gap_after_ms: gap(device),
            }
        };
        let mut series: Vec<SeriesSpec> = Vec::new();
        let mut add = |device: &str, q: Quantity, carrier: &str, unit: &str| {
            if !series.iter().any(|s| s.device == device && s.quantity == q) {
                series.push(SeriesSpec {
                    device: device.to_string(),
                    quantity: q,
                    carrier: carrier.to_string(),
                    unit: unit.to_string(),
                    settings: settings(device, q),
                });
            }
        };
        for m in &meters {
            let unit = factors
                .get(m.carrier.as_str())
                .map(|f| f.unit.clone())
                .unwrap_or_else(|| m.counter.unit().to_string());
            if m.counter.unit() != unit {
                return Err(anyhow!(
                    "device \"{}\": counter {} measures {}, but carrier {} is accounted in {unit}",
                    m.device,
                    m.counter,
                    m.counter.unit(),
                    m.carrier
                ));
            }
            add(&m.device, m.counter, m.carrier.as_str(), &unit);
            if let Some(x) = m.export_counter {
                add(&m.device, x, m.carrier.as_str(), &unit);
            }
        }
        for p in &acc.products {
            if let Some(d) = &p.production_device {
                add(d, Quantity::ProductionCount, "production", &p.unit);
            }
        }
        let tou = match &acc.tou {
            None => None,
            Some(t) => Some(TouCalendar::build(t).map_err(|p| {
                anyhow!(
                    "accounting.tou: {}",
                    p.iter()
                        .map(|(a, b)| format!("{a}: {b}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?),
        };
        Ok(Plan {
            site: cfg.site.id.clone(),
            tz,
            tables,
            cfg: acc.clone(),
            meters,
            series,
            factors,
            emissions,
            tou,
        })
    }

    /// Index of a counter in [`Plan::series`].
    pub fn series_index(&self, device: &str, q: Quantity) -> Option<usize> {
        self.series
            .iter()
            .position(|s| s.device == device && s.quantity == q)
    }

    /// Electricity 等价值 for a year: configured, or the table's practice value (noted).
    pub fn equal_value(&self, year: i32) -> EqualValueUsed {
        if let Some(e) = self
            .cfg
            .electricity_equal_value
            .iter()
            .find(|e| e.year == year)
        {
            return EqualValueUsed {
                year,
                kgce_per_kwh: e.kgce_per_kwh,
                origin: "configured",
                sources: Vec::new(),
                site_source: Some(e.source.clone()),
                note: None,
            };
        }
        match self.tables.energy_row("electricity_equal_value") {
            Some(r) => EqualValueUsed {
                year,
                kgce_per_kwh: r.kgce_per_unit,
                origin: "factor_table",
                sources: r.sources.clone(),
                site_source: None,
                note: Some(super::notes::Note::EqualValuePractice {
                    year,
                    remark: r.note.clone().unwrap_or_default(),
                }),
            },
            None => {
                let f = self.factors.get("electricity");
                EqualValueUsed {
                    year,
                    kgce_per_kwh: f.map(|f| f.kgce_per_unit).unwrap_or(0.0),
                    origin: "equivalent",
                    sources: f.map(|f| f.sources.clone()).unwrap_or_default(),
                    site_source: None,
                    note: Some(super::notes::Note::EqualValueFallback),
                }
            }
        }
    }
}

fn carrier_factor(acc: &AccountingConfig, tables: &Tables, carrier: &str) -> Result<CarrierFactor> {
    let default = tables
        .default_energy_row(carrier)
        .ok_or_else(|| anyhow!("no factor row for carrier {carrier}"))?;
    let unit = default_counter(carrier)
        .map(|q| q.unit().to_string())
        .unwrap_or_else(|| report_unit(&default.unit).to_string());
    let per = |row_unit: &str| {
        unit_ratio(&unit, row_unit)
            .ok_or_else(|| anyhow!("carrier {carrier}: unit {row_unit} does not convert to {unit}"))
    };
    let over = acc.factors.iter().find(|f| f.carrier == carrier);
    let from_row = |r: &super::factors::EnergyRow| -> Result<CarrierFactor> {
        Ok(CarrierFactor {
            carrier: carrier.to_string(),
            unit: unit.clone(),
            kgce_per_unit: r.kgce_per_unit * per(&r.unit)?,
            row: r.id.clone(),
            name: r.name.clone(),
            basis: r.basis,
            sources: r.sources.clone(),
            site_source: None,
            note: r.note.clone(),
            verify: r.verify,
        })
    };
    match over {
        None => from_row(default),
        Some(o) => {
            if let Some(row) = &o.row {
                let r = tables
                    .energy_row(row)
                    .ok_or_else(|| anyhow!("unknown factor row {row}"))?;
                return from_row(r);
            }
            let (kgce, sources, note) = match (o.kgce_per_unit, o.ncv_kj_per_unit) {
                (Some(k), _) => (k, Vec::new(), None),
                (None, Some(ncv)) => {
                    let c = tables
                        .kj_per_kgce()
                        .ok_or_else(|| anyhow!("the tables lack constant kj_per_kgce"))?;
                    (
                        ncv / c.value,
                        c.sources.clone(),
                        Some(format!(
                            "measured net calorific value {ncv} kJ/{} ÷ {} kJ/kgce",
                            default.unit, c.value
                        )),
                    )
                }
                (None, None) => return from_row(default),
            };
            Ok(CarrierFactor {
                carrier: carrier.to_string(),
                unit: unit.clone(),
                kgce_per_unit: kgce * per(&default.unit)?,
                row: "site".into(),
                name: default.name.clone(),
                basis: default.basis,
                sources,
                site_source: o.source.clone(),
                note,
                verify: false,
            })
        }
    }
}

fn emission_factor(
    acc: &AccountingConfig,
    tables: &Tables,
    carrier: &str,
    unit: &str,
) -> Result<Option<EmissionFactor>> {
    if carrier == "electricity" {
        return Ok(None);
    }
    let per = |row_unit: &str| {
        unit_ratio(unit, row_unit)
            .ok_or_else(|| anyhow!("carrier {carrier}: unit {row_unit} does not convert to {unit}"))
    };
    let heat_carrier = tables.heat.iter().any(|h| h.carrier == carrier);
    if let Some(o) = acc.emission_factors.iter().find(|e| e.carrier == carrier) {
        return Ok(Some(EmissionFactor {
            carrier: carrier.into(),
            tco2_per_unit: o.tco2_per_unit * per(&o.unit)?,
            row: "site".into(),
            scope: if heat_carrier { 2 } else { 1 },
            sources: Vec::new(),
            site_source: Some(o.source.clone()),
            note: None,
        }));
    }
    if let Some((row, f)) = tables.heat_factor(carrier) {
        let mut sources = row.sources.clone();
        if row.heat_gj_per_unit.is_some() {
            if let Some(h) = tables.heat.iter().find(|h| h.id == "purchased_heat") {
                for s in &h.sources {
                    if !sources.contains(s) {
                        sources.push(s.clone());
                    }
                }
            }
        }
        return Ok(Some(EmissionFactor {
            carrier: carrier.into(),
            tco2_per_unit: f * per(&row.unit)?,
            row: row.id.clone(),
            scope: 2,
            sources,
            site_source: None,
            note: row.note.clone(),
        }));
    }
    if let Some(row) = tables.fuel_row(carrier) {
        // One calorific basis per carrier: a site-measured NCV (per unit of the carrier's energy
        // row) replaces the table's NCV in the CO₂ factor too.
        let measured = acc
            .factors
            .iter()
            .find(|o| o.carrier == carrier)
            .and_then(|o| o.ncv_kj_per_unit.map(|n| (n, o.source.clone())));
        if let Some((ncv_kj, source)) = measured {
            return Ok(Some(EmissionFactor {
                carrier: carrier.into(),
                tco2_per_unit: ncv_kj / 1e9 * row.cc_tc_per_tj * row.oxidation * 44.0 / 12.0,
                row: row.id.clone(),
                scope: 1,
                sources: row.sources.clone(),
                site_source: source,
                note: Some(format!(
                    "measured NCV {ncv_kj} kJ/{unit} (the energy's) with the row's carbon content and oxidation"
                )),
            }));
        }
        return Ok(Some(EmissionFactor {
            carrier: carrier.into(),
            tco2_per_unit: row.tco2_per_unit() * per(&row.unit)?,
            row: row.id.clone(),
            scope: 1,
            sources: row.sources.clone(),
            site_source: None,
            note: row.note.clone(),
        }));
    }
    Ok(None)
}

/// The 等价值 used for a year's electricity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EqualValueUsed {
    pub year: i32,
    pub kgce_per_kwh: f64,
    /// "configured", "factor_table" or "equivalent".
    pub origin: &'static str,
    pub sources: Vec<String>,
    pub site_source: Option<String>,
    pub note: Option<super::notes::Note>,
}

/// The intervals of every counter of the plan over a range of months.
#[derive(Debug, Clone)]
pub struct RangeData {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// Parallel to [`Plan::series`].
    pub slots: Vec<Slots>,
    /// Events inside the range, per series.
    pub events: Vec<Vec<CounterEvent>>,
}

/// Interval counts of one counter over a range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlotCounts {
    pub expected: usize,
    pub measured: usize,
    pub estimated: usize,
    pub covered: usize,
}

impl SlotCounts {
    pub fn add(&mut self, o: SlotCounts) {
        self.expected += o.expected;
        self.measured += o.measured;
        self.estimated += o.estimated;
        self.covered += o.covered;
    }

    /// The quality of a bucket with these counts (see [`bucket_quality`]); None without data.
    pub fn bucket_quality(&self) -> Option<&'static str> {
        if self.covered == 0 {
            None
        } else if self.measured == self.expected {
            Some("measured")
        } else if self.estimated > 0 {
            Some("estimated")
        } else {
            Some("partial")
        }
    }
}

/// What the accounts read of the counters over a range: totals and interval counts per series
/// and purchased electricity per interval. Held as intervals ([`RangeData`]) or as aggregates
/// of calendar chunks ([`super::chunks::PeriodData`]); the bounds asked for are those of months
/// inside the range, or the range's own.
pub trait SeriesData {
    /// Total consumption of series `i` (of [`Plan::series`]) in `[from, to)`.
    fn total(&self, i: usize, from: TimestampMs, to: TimestampMs) -> f64;
    /// Interval counts of series `i` in `[from, to)`.
    fn counts(&self, i: usize, from: TimestampMs, to: TimestampMs) -> SlotCounts;
    /// Purchased electricity per 15-minute interval in `[from, to)`.
    fn purchased(
        &self,
        plan: &Plan,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<(TimestampMs, f64, bool)>;
    /// Counter events inside the range, per series.
    fn events(&self, i: usize) -> Vec<CounterEvent>;
    /// Whether any interval of any series has data.
    fn any_covered(&self) -> bool;
}

impl SeriesData for RangeData {
    fn total(&self, i: usize, from: TimestampMs, to: TimestampMs) -> f64 {
        self.slots[i].total(from, to)
    }

    fn counts(&self, i: usize, from: TimestampMs, to: TimestampMs) -> SlotCounts {
        let sl = &self.slots[i];
        let r = sl.index_range(from, to);
        let t = sl.touched();
        let lo = r.start.max(t.start);
        let mut c = SlotCounts {
            expected: r.len(),
            ..SlotCounts::default()
        };
        for a in sl.iter(lo..r.end.min(t.end).max(lo)) {
            c.measured += usize::from(a.is_measured());
            c.estimated += usize::from(a.is_estimated());
            c.covered += usize::from(a.is_covered());
        }
        c
    }

    fn purchased(
        &self,
        plan: &Plan,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<(TimestampMs, f64, bool)> {
        let idx = purchase_series(plan);
        let Some(first) = idx.first() else {
            return Vec::new();
        };
        let range = self.slots[*first].index_range(from, to);
        range
            .map(|i| {
                let start = self.slots[*first].slot_start(i);
                let kwh = idx
                    .iter()
                    .fold(0.0, |a, j| a + self.slots[*j].get(i).amount);
                let measured = idx.iter().all(|j| self.slots[*j].get(i).is_measured());
                (start, kwh, measured)
            })
            .collect()
    }

    fn events(&self, i: usize) -> Vec<CounterEvent> {
        self.events[i].clone()
    }

    fn any_covered(&self) -> bool {
        self.slots.iter().any(|sl| sl.any_covered())
    }
}

/// Usable samples a counter's rules need before a range.
pub const SAMPLES_BEFORE: usize = 3;

/// Reads the counters of the plan for `[from, to)` and runs them through the counter rules.
pub fn load_range(
    plan: &Plan,
    store: &AccountingStore,
    from: TimestampMs,
    to: TimestampMs,
) -> Result<RangeData> {
    load_range_after(plan, store, from, to, None).map(|(d, _)| d)
}

/// [`load_range`] that may start from the samples the read of the range before left
/// (`before`, per series: the last [`SAMPLES_BEFORE`] usable samples before `from`) instead of
/// looking for them. Returns the data and the same for the next range (the samples before `to`).
///
/// Every counter is read in one pass over the store (each batch decoded once for all of them)
/// and the samples stream through the rules: nothing is collected.
pub fn load_range_after(
    plan: &Plan,
    store: &AccountingStore,
    from: TimestampMs,
    to: TimestampMs,
    before: Option<&[Vec<super::counters::Sample>]>,
) -> Result<(RangeData, Vec<Vec<super::counters::Sample>>)> {
    let keys: Vec<(&str, Quantity)> = plan
        .series
        .iter()
        .map(|s| (s.device.as_str(), s.quantity))
        .collect();
    let before = match before.filter(|b| b.len() == keys.len()) {
        Some(b) => b.to_vec(),
        None => store.samples_before_many(&keys, from, SAMPLES_BEFORE)?,
    };
    let mut reps = Vec::with_capacity(keys.len());
    for (s, b) in plan.series.iter().zip(&before) {
        let first = b.first().map(|b| b.ts_ms).unwrap_or(from);
        let r: Vec<_> = store
            .replacements(&s.device, s.quantity)?
            .into_iter()
            .filter(|r| r.ts_ms > first)
            .collect();
        reps.push(r);
    }
    let mut runs: Vec<_> = plan
        .series
        .iter()
        .zip(&reps)
        .map(|(s, r)| super::counters::CounterRun::new(&s.settings, r, Slots::new(from, to)))
        .collect();
    let mut tails = before;
    for (run, b) in runs.iter_mut().zip(&tails) {
        for x in b {
            run.push(*x);
        }
    }
    store.for_each_sample_many(&keys, from, to, SAMPLES_BEFORE, &mut |i, x| {
        runs[i].push(x);
        if x.ts_ms < to {
            let t = &mut tails[i];
            if t.len() == SAMPLES_BEFORE {
                t.remove(0);
            }
            t.push(x);
        }
    })?;
    let mut slots = Vec::with_capacity(runs.len());
    let mut events = Vec::with_capacity(runs.len());
    for run in runs {
        let (ev, sl) = run.finish();
        slots.push(sl);
        events.push(
            ev.into_iter()
                .filter(|e| e.ts_ms >= from && e.ts_ms < to)
                .collect(),
        );
    }
    Ok((
        RangeData {
            from_ms: from,
            to_ms: to,
            slots,
            events,
        },
        tails,
    ))
}

/// Counter rules → 15-minute intervals of `[from, to)`, with the events inside the range.
pub fn run_series(
    samples: &[super::counters::Sample],
    reps: &[super::counters::Replacement],
    settings: &CounterSettings,
    from: TimestampMs,
    to: TimestampMs,
) -> (Slots, Vec<CounterEvent>) {
    let mut sl = Slots::new(from, to);
    let ev = integrate(samples.iter().copied(), reps, settings, |st| sl.add(st));
    let ev = ev
        .into_iter()
        .filter(|e| e.ts_ms >= from && e.ts_ms < to)
        .collect();
    (sl, ev)
}

/// Inputs that are not meter readings.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub value_added: BTreeMap<Month, ValueAdded>,
    pub production: BTreeMap<(Month, String), f64>,
    pub consumption: Vec<ManualConsumption>,
}

impl Inputs {
    pub fn load(store: &AccountingStore) -> Result<Inputs> {
        Ok(Inputs {
            value_added: store.value_added()?,
            production: store.production()?,
            consumption: store.consumption()?,
        })
    }
}

/// One carrier in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierLine {
    pub carrier: String,
    pub unit: String,
    /// Bought (purchase meters' import counters).
    pub purchased: f64,
    /// Generated on site (generation meters).
    pub generated: f64,
    /// Sent out (purchase meters' export counters, export meters), deducted.
    pub exported: f64,
    /// Imported with `import consumption`.
    pub manual: f64,
    /// Consumed: purchased + generated + manual − exported.
    pub quantity: f64,
    pub factor: CarrierFactor,
    pub tce: f64,
    pub equal_value_kgce_per_unit: f64,
    pub equal_value_tce: f64,
    /// Of the quantity, used as raw material.
    pub feedstock_quantity: f64,
    pub feedstock_tce: f64,
}

/// Non-fossil energy (发改环资〔2024〕113号).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NonFossil {
    /// Self-generated and consumed on site: generation − electricity exported.
    pub self_generated_kwh: f64,
    /// Purchased green power (绿电 trades).
    pub green_power_kwh: f64,
    /// Certificates deducted (unbundled batches of the period's months).
    pub green_certificates: u64,
    pub kwh_per_certificate: f64,
    pub green_certificate_kwh: f64,
    pub total_kwh: f64,
    /// What is deducted: the total, at most the electricity consumed (no double deduction).
    pub deducted_kwh: f64,
    pub capped: bool,
    pub tce: f64,
    pub equal_value_tce: f64,
    /// Certificates not deducted: bundled with green power or issued for own generation.
    pub certificates_refused: u64,
    /// Every certificate batch of the period's months and what became of it.
    pub certificate_batches: Vec<super::certificates::BatchOut>,
    /// Every refused, capped or questionable deduction (in JSON: in words).
    pub warnings: Vec<super::notes::Note>,
}

/// Electricity flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ElectricityFlows {
    pub purchased_kwh: f64,
    pub generated_kwh: f64,
    pub exported_kwh: f64,
    pub manual_kwh: f64,
    pub consumed_kwh: f64,
}

/// The energy ledgers of a range of months.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub carriers: Vec<CarrierLine>,
    pub gross_tce: f64,
    pub gross_equal_value_tce: f64,
    pub exported_tce: f64,
    pub feedstock_tce: f64,
    pub feedstock_equal_value_tce: f64,
    pub non_fossil: NonFossil,
    pub assessment_tce: f64,
    pub assessment_equal_value_tce: f64,
    pub electricity: ElectricityFlows,
    pub equal_value: EqualValueUsed,
    /// Consumption of every series of the plan in the range (parallel to [`Plan::series`]).
    #[serde(skip)]
    pub series_totals: Vec<f64>,
}

/// Computes the ledgers of `months` (a contiguous run inside `data`'s range).
pub fn ledger(plan: &Plan, data: &impl SeriesData, inputs: &Inputs, months: &[Month]) -> Ledger {
    let (from, to) = months_bounds(plan.tz, months);
    let totals: Vec<f64> = (0..plan.series.len())
        .map(|i| data.total(i, from, to))
        .collect();
    let total_of = |device: &str, q: Quantity| {
        plan.series_index(device, q)
            .map(|i| totals[i])
            .unwrap_or(0.0)
    };

    #[derive(Default)]
    struct Acc {
        purchased: f64,
        generated: f64,
        exported: f64,
        manual: f64,
        feedstock: f64,
        present: bool,
    }
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for m in &plan.meters {
        let t = total_of(&m.device, m.counter);
        let a = acc.entry(m.carrier.to_string()).or_default();
        match m.role {
            MeterRole::Purchase => {
                a.present = true;
                a.purchased += t;
                if let Some(x) = m.export_counter {
                    a.exported += total_of(&m.device, x);
                }
            }
            MeterRole::Generation => {
                a.present = true;
                a.generated += t;
            }
            MeterRole::Export => {
                a.present = true;
                a.exported += t;
            }
            MeterRole::Submeter | MeterRole::Ignore => {}
        }
        if m.energy_use == EnergyUse::Feedstock
            && !matches!(m.role, MeterRole::Export | MeterRole::Ignore)
        {
            a.feedstock += t;
        }
    }
    for c in inputs
        .consumption
        .iter()
        .filter(|c| months.contains(&c.month))
    {
        let a = acc.entry(c.carrier.clone()).or_default();
        a.present = true;
        a.manual += c.quantity;
        if c.feedstock {
            a.feedstock += c.quantity;
        }
    }

    let year = months.first().map(|m| m.year).unwrap_or(1970);
    let eq = plan.equal_value(year);
    let mut carriers = Vec::new();
    let mut elec = ElectricityFlows::default();
    let (mut gross, mut gross_eq, mut exported_tce, mut feed, mut feed_eq) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for (carrier, a) in acc.into_iter().filter(|(_, a)| a.present) {
        let Some(f) = plan.factors.get(&carrier) else {
            continue;
        };
        let quantity = a.purchased + a.generated + a.manual - a.exported;
        let eq_factor = if carrier == "electricity" {
            eq.kgce_per_kwh
        } else {
            f.kgce_per_unit
        };
        if carrier == "electricity" {
            elec = ElectricityFlows {
                purchased_kwh: a.purchased,
                generated_kwh: a.generated,
                exported_kwh: a.exported,
                manual_kwh: a.manual,
                consumed_kwh: quantity,
            };
        }
        let line = CarrierLine {
            carrier: carrier.clone(),
            unit: f.unit.clone(),
            purchased: a.purchased,
            generated: a.generated,
            exported: a.exported,
            manual: a.manual,
            quantity,
            factor: f.clone(),
            tce: quantity * f.kgce_per_unit / 1000.0,
            equal_value_kgce_per_unit: eq_factor,
            equal_value_tce: quantity * eq_factor / 1000.0,
            feedstock_quantity: a.feedstock,
            feedstock_tce: a.feedstock * f.kgce_per_unit / 1000.0,
        };
        gross += line.tce;
        gross_eq += line.equal_value_tce;
        exported_tce += a.exported * f.kgce_per_unit / 1000.0;
        feed += line.feedstock_tce;
        feed_eq += a.feedstock * eq_factor / 1000.0;
        carriers.push(line);
    }

    let elec_factor = plan
        .factors
        .get("electricity")
        .map(|f| f.kgce_per_unit)
        .unwrap_or(0.0);
    let green_power_kwh: f64 = plan
        .cfg
        .green_power
        .iter()
        .filter(|g| g.period.parse::<Month>().is_ok_and(|m| months.contains(&m)))
        .fold(0.0, |a, g| a + g.kwh);
    let kwh_per_cert = plan
        .tables
        .kwh_per_green_certificate()
        .map(|c| c.value)
        .unwrap_or(0.0);
    let cert_ledger = super::certificates::certificates(plan, months, kwh_per_cert);
    let certs = cert_ledger.deductible;
    let self_generated = (elec.generated_kwh - elec.exported_kwh).max(0.0);
    let cert_kwh = certs as f64 * kwh_per_cert;
    let total_nf = self_generated + green_power_kwh + cert_kwh;
    let deducted = total_nf.min(elec.consumed_kwh.max(0.0));
    let mut warnings = cert_ledger.warnings;
    if deducted < total_nf {
        warnings.push(super::notes::Note::NonFossilCapped {
            total_kwh: total_nf,
            deducted_kwh: deducted,
        });
    }
    let non_fossil = NonFossil {
        self_generated_kwh: self_generated,
        green_power_kwh,
        green_certificates: certs,
        kwh_per_certificate: kwh_per_cert,
        green_certificate_kwh: cert_kwh,
        total_kwh: total_nf,
        deducted_kwh: deducted,
        capped: deducted < total_nf,
        tce: deducted * elec_factor / 1000.0,
        equal_value_tce: deducted * eq.kgce_per_kwh / 1000.0,
        certificates_refused: cert_ledger.refused,
        certificate_batches: cert_ledger.batches,
        warnings,
    };
    Ledger {
        from_ms: from,
        to_ms: to,
        assessment_tce: gross - feed - non_fossil.tce,
        assessment_equal_value_tce: gross_eq - feed_eq - non_fossil.equal_value_tce,
        carriers,
        gross_tce: gross,
        gross_equal_value_tce: gross_eq,
        exported_tce,
        feedstock_tce: feed,
        feedstock_equal_value_tce: feed_eq,
        non_fossil,
        electricity: elec,
        equal_value: eq,
        series_totals: totals,
    }
}

/// `[start, end)` of a contiguous run of months.
pub fn months_bounds(tz: Tz, months: &[Month]) -> (TimestampMs, TimestampMs) {
    match (months.first(), months.last()) {
        (Some(a), Some(b)) => (a.bounds(tz).0, b.bounds(tz).1),
        _ => (0, 0),
    }
}

/// Coverage of the counters over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesQuality {
    pub device: String,
    pub quantity: Quantity,
    pub expected_intervals: usize,
    pub measured_intervals: usize,
    pub estimated_intervals: usize,
    pub missing_intervals: usize,
    pub completeness_pct: f64,
}

/// Per-series interval counts in `[from, to)`.
pub fn quality(
    plan: &Plan,
    data: &impl SeriesData,
    from: TimestampMs,
    to: TimestampMs,
) -> Vec<SeriesQuality> {
    plan.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let c = data.counts(i, from, to);
            SeriesQuality {
                device: s.device.clone(),
                quantity: s.quantity,
                expected_intervals: c.expected,
                measured_intervals: c.measured,
                estimated_intervals: c.estimated,
                missing_intervals: c.expected - c.covered.min(c.expected),
                completeness_pct: if c.expected == 0 {
                    0.0
                } else {
                    c.measured as f64 / c.expected as f64 * 100.0
                },
            }
        })
        .collect()
}

/// Quality of a bucket of intervals: `measured` when every interval is, `estimated` when any
/// received estimated consumption, `partial` otherwise.
pub fn bucket_quality(slots: &[super::counters::SlotAcc]) -> &'static str {
    if slots.iter().all(|a| a.is_measured()) {
        "measured"
    } else if slots.iter().any(|a| a.is_estimated()) {
        "estimated"
    } else {
        "partial"
    }
}

/// Sums one counter's 15-minute intervals in `[from, to)` into local buckets (`Hour`, `Day`…):
/// `(bucket start, consumption, quality)`, for buckets with any data.
pub fn buckets(
    tz: Tz,
    sl: &Slots,
    res: super::calendar::Resolution,
    from: TimestampMs,
    to: TimestampMs,
) -> Vec<(TimestampMs, f64, &'static str)> {
    let mut out = Vec::new();
    // Buckets with any data lie inside the touched extent, widened to whole buckets.
    let range = sl.index_range(from, to);
    let t = sl.touched();
    if t.is_empty() {
        return out;
    }
    let first = sl.index_range(
        super::calendar::bucket_start(tz, res, sl.slot_start(t.start)),
        to,
    );
    let range = range.start.max(first.start)..range.end;
    let mut i = range.start;
    while i < range.end.min(t.end) {
        let start = super::calendar::bucket_start(tz, res, sl.slot_start(i));
        let mut j = i + 1;
        while j < range.end && super::calendar::bucket_start(tz, res, sl.slot_start(j)) == start {
            j += 1;
        }
        let part: Vec<super::counters::SlotAcc> = sl.iter(i..j).collect();
        if part.iter().any(|a| a.is_covered()) {
            let part = &part[..];
            out.push((
                start,
                part.iter().fold(0.0, |a, s| a + s.amount),
                bucket_quality(part),
            ));
        }
        i = j;
    }
    out
}

/// Purchased electricity per 15-minute interval (sum of the purchase meters' import counters):
/// `(interval start, kWh, fully measured)`.
pub fn purchased_electricity_intervals(
    plan: &Plan,
    data: &impl SeriesData,
    from: TimestampMs,
    to: TimestampMs,
) -> Vec<(TimestampMs, f64, bool)> {
    data.purchased(plan, from, to)
}

/// The series of the purchase meters' electricity import counters.
fn purchase_series(plan: &Plan) -> Vec<usize> {
    plan.meters
        .iter()
        .filter(|m| m.role == MeterRole::Purchase && m.carrier == Carrier::Electricity)
        .filter_map(|m| plan.series_index(&m.device, m.counter))
        .collect()
}

/// Maximum demand: the highest 15-minute average purchased power over fully measured intervals,
/// kW, with the interval's start.
pub fn max_demand(intervals: &[(TimestampMs, f64, bool)]) -> Option<(f64, TimestampMs)> {
    let per_hour = 3_600_000.0 / SLOT_MS as f64;
    intervals
        .iter()
        .filter(|(_, _, m)| *m)
        .map(|(t, kwh, _)| (kwh * per_hour, *t))
        .fold(None, |best: Option<(f64, TimestampMs)>, cur| match best {
            Some(b) if b.0 >= cur.0 => Some(b),
            _ => Some(cur),
        })
}

/// Purchased electricity per time-of-use band.
pub fn tou_kwh(
    plan: &Plan,
    intervals: &[(TimestampMs, f64, bool)],
) -> Option<BTreeMap<&'static str, f64>> {
    let cal = plan.tou.as_ref()?;
    let mut out: BTreeMap<&'static str, f64> = super::tariff::Band::ALL
        .iter()
        .map(|b| (b.as_str(), 0.0))
        .collect();
    for (t, kwh, _) in intervals {
        *out.entry(cal.band_at(plan.tz, *t).as_str()).or_default() += kwh;
    }
    Some(out)
}
