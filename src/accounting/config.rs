//! The `[accounting]` section of the configuration and its checks, and [`AccountingContext`]:
//! everything the accounts are computed from.
//!
//! Every key is documented in `config/example.toml`. [`validate`] is called by
//! `energy-gateway check` (through `config::validate`) and reports every problem with its key
//! path, like the rest of the configuration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::factors::Tables;
use super::tariff::{TouCalendar, TouConfig};
use crate::acquisition::config::DeviceConfig;
use crate::carrier::Carrier;
use crate::readings::{valid_id, Quantity};
use crate::settings::SiteConfig;
use crate::storage::config::StorageConfig;

/// What the accounts are computed from, given to them by the wiring (`run`, the CLI, the HTTP
/// API) instead of the whole configuration: the site (time zone, main meters, name), the
/// devices (carriers, parents, points), `[accounting]` and `[storage]` (where the store is).
#[derive(Debug, Clone)]
pub struct AccountingContext {
    pub site: SiteConfig,
    pub devices: Vec<DeviceConfig>,
    pub accounting: AccountingConfig,
    pub storage: StorageConfig,
}

impl AccountingContext {
    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Path of the SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.storage.store_path()
    }
}

/// `[accounting]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingConfig {
    /// Shipped standard-coal table (edition).
    #[serde(default = "default_factor_table")]
    pub factor_table: String,
    /// Site file in the factor-table format whose rows replace or add to the shipped ones.
    #[serde(default)]
    pub factor_file: Option<PathBuf>,
    /// A counter step longer than this is a gap: its consumption is spread evenly over the
    /// intervals it spans and those intervals are marked estimated.
    #[serde(default = "default_gap_after", with = "crate::units::duration")]
    pub gap_after: Duration,
    /// A parent meter whose consumption differs from the sum of its children by more than this
    /// (percent of the parent) over a report period is flagged.
    #[serde(default = "default_balance_tolerance")]
    pub balance_tolerance_pct: f64,
    /// Electricity 等价值 per year.
    #[serde(default)]
    pub electricity_equal_value: Vec<EqualValue>,
    #[serde(default)]
    pub target: TargetConfig,
    #[serde(default)]
    pub carbon: CarbonConfig,
    #[serde(default)]
    pub tou: Option<TouConfig>,
    #[serde(default)]
    pub meters: Vec<MeterConfig>,
    #[serde(default)]
    pub products: Vec<ProductConfig>,
    /// Site standard-coal factors (measured calorific value, or another shipped row).
    #[serde(default)]
    pub factors: Vec<FactorOverride>,
    /// Site emission factors.
    #[serde(default)]
    pub emission_factors: Vec<EmissionOverride>,
    /// Purchased green electricity (绿电 trades), per month.
    #[serde(default)]
    pub green_power: Vec<GreenPower>,
    /// Green certificates (绿证) held, per month.
    #[serde(default)]
    pub green_certificates: Vec<GreenCertificates>,
    /// `[accounting.indicators]`: inputs of the green-factory and 亩均 indicators of the report
    /// (see `crate::accounting::indicators`).
    #[serde(default)]
    pub indicators: super::indicators::IndicatorsConfig,
    /// `[accounting.service]`: the cadence of the accounting service of `run`.
    #[serde(default)]
    pub service: super::service::ServiceConfig,
    /// `[accounting.enterprise]`: the identity every report carries.
    #[serde(default)]
    pub enterprise: EnterpriseConfig,
}

/// `[accounting.enterprise]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseConfig {
    /// Registered name (default: `[site] name`).
    #[serde(default)]
    pub name: Option<String>,
    /// 统一社会信用代码 (GB 32100-2015: 18 characters).
    #[serde(default)]
    pub credit_code: Option<String>,
    /// Industry, GB/T 4754-2017 code (e.g. "C3071").
    #[serde(default)]
    pub industry_code: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// Contact person and telephone.
    #[serde(default)]
    pub contact: Option<String>,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            factor_table: default_factor_table(),
            factor_file: None,
            gap_after: default_gap_after(),
            balance_tolerance_pct: default_balance_tolerance(),
            electricity_equal_value: Vec::new(),
            target: TargetConfig::default(),
            carbon: CarbonConfig::default(),
            tou: None,
            meters: Vec::new(),
            products: Vec::new(),
            factors: Vec::new(),
            emission_factors: Vec::new(),
            green_power: Vec::new(),
            green_certificates: Vec::new(),
            indicators: Default::default(),
            service: Default::default(),
            enterprise: EnterpriseConfig::default(),
        }
    }
}

fn default_factor_table() -> String {
    "gbt2589-2020".into()
}
fn default_gap_after() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_balance_tolerance() -> f64 {
    5.0
}

/// `[[accounting.electricity_equal_value]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EqualValue {
    pub year: i32,
    pub kgce_per_kwh: f64,
    pub source: String,
}

/// `[accounting.target]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default = "default_base_year")]
    pub base_year: i32,
    /// The base year's intensity from the statistical returns; computed from the store when absent.
    #[serde(default)]
    pub base_intensity_tce_per_10k_cny: Option<f64>,
    #[serde(default = "default_target_year")]
    pub target_year: i32,
    /// Cumulative change of intensity from the base year to the target year, percent.
    #[serde(default = "default_target_change")]
    pub target_change_pct: f64,
    /// What the configured base intensity counts: `gross` (default; statistical returns) or
    /// `after_deductions`.
    #[serde(default)]
    pub base_basis: Option<super::targets::BaseBasis>,
    /// Price year of the comparable value added behind the base intensity (reported).
    #[serde(default)]
    pub base_price_year: Option<i32>,
    /// A shipped target from a published plan (`chongqing-manufacturing-2023-2027`,
    /// `rongchang-manufacturing-2023-2027`); it sets the source.
    #[serde(default)]
    pub preset: Option<String>,
    /// Where the target comes from (plan, notice, responsibility letter).
    #[serde(default)]
    pub source: Option<String>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            base_year: default_base_year(),
            base_intensity_tce_per_10k_cny: None,
            target_year: default_target_year(),
            target_change_pct: default_target_change(),
            base_basis: None,
            base_price_year: None,
            preset: None,
            source: None,
        }
    }
}

fn default_base_year() -> i32 {
    2022
}
fn default_target_year() -> i32 {
    2027
}
fn default_target_change() -> f64 {
    -13.0
}

/// How purchased electricity is turned into scope-2 CO₂.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope2Method {
    /// All purchased electricity × the grid average factor.
    #[default]
    Location,
    /// Green power purchased counts zero; the rest × the national factor excluding
    /// market-traded non-fossil electricity.
    Market,
}

impl Scope2Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope2Method::Location => "location",
            Scope2Method::Market => "market",
        }
    }
}

/// `[accounting.carbon]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarbonConfig {
    /// Province of the site (grid factor by province where published).
    #[serde(default)]
    pub province: Option<String>,
    /// Grid region; derived from the province when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Pin the grid-factor year; default the latest published year up to the report's year.
    #[serde(default)]
    pub factor_year: Option<i32>,
    #[serde(default)]
    pub scope2_method: Scope2Method,
    /// The enterprise is in the national carbon market (power, cement, steel, aluminium…): its
    /// sector's supplementary data table prescribes the national average grid factor.
    #[serde(default)]
    pub national_ets: bool,
}

/// What a meter measures for the accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterRole {
    /// Energy bought from outside (grid incomer, gas supply). Its export counter, when it has one,
    /// is energy sold back.
    Purchase,
    /// On-site non-fossil generation (PV, wind…).
    Generation,
    /// Energy delivered to others (sold steam, electricity fed out).
    Export,
    /// A sub-meter inside the site (line, workshop): counted in its parent, used for products and
    /// balance checks.
    Submeter,
    /// Kept out of the accounts.
    Ignore,
}

impl MeterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterRole::Purchase => "purchase",
            MeterRole::Generation => "generation",
            MeterRole::Export => "export",
            MeterRole::Submeter => "submeter",
            MeterRole::Ignore => "ignore",
        }
    }
}

/// Whether a meter's energy is used as fuel/power or as raw material (原料用能).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyUse {
    #[default]
    Energy,
    Feedstock,
}

/// `[[accounting.meters]]`: accounting settings of one device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    pub device: String,
    /// Default: `submeter` for a device with a parent, `purchase` otherwise.
    #[serde(default)]
    pub role: Option<MeterRole>,
    /// The counter that measures the carrier (default by carrier: energy_import, gas_volume…).
    #[serde(default)]
    pub counter: Option<Quantity>,
    /// The counter of energy sent out by a purchase meter (default energy_export when the device
    /// has that point and measures electricity).
    #[serde(default)]
    pub export_counter: Option<Quantity>,
    #[serde(default, rename = "use")]
    pub energy_use: EnergyUse,
    /// The largest plausible increase of the counter per hour, in its unit per hour (kW for kWh
    /// counters, m3/h for gas…). A step above it is a spike.
    #[serde(default)]
    pub rated_power: Option<f64>,
    /// Value at which a counter wraps to zero, per counter quantity.
    #[serde(default)]
    pub counter_max: BTreeMap<Quantity, f64>,
    /// Overrides `[accounting] gap_after` for this device.
    #[serde(default, deserialize_with = "opt_duration")]
    pub gap_after: Option<Duration>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    crate::units::duration::parse_value(&v)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `[[accounting.products]]`: a product (line) whose unit energy is graded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Unit of output: m2, t, weight_box, piece…
    pub unit: String,
    /// Devices measuring this product's line directly.
    #[serde(default)]
    pub meters: Vec<String>,
    /// Share of the site's common energy (not measured by any product's meters), 0..1.
    #[serde(default)]
    pub common_share: f64,
    /// Device whose `production_count` counter measures the output (imported production wins
    /// for a month that has it).
    #[serde(default)]
    pub production_device: Option<String>,
    /// Row id of the limit-grade table.
    #[serde(default)]
    pub limit: Option<String>,
    /// Multiplies the limit's grade values (thickness, altitude… corrections of the standard).
    #[serde(default = "one")]
    pub limit_correction: f64,
    /// The product's share that moves the limit's grades additively, percent (GB 16780-2021
    /// cement: clinker share; the grades are for 75 %).
    #[serde(default)]
    pub share_pct: Option<f64>,
    /// 标杆 level, in the limit's unit.
    #[serde(default)]
    pub benchmark: Option<f64>,
    /// 基准 level, in the limit's unit.
    #[serde(default)]
    pub baseline: Option<f64>,
    /// Where the 标杆/基准 values come from.
    #[serde(default)]
    pub levels_source: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// `[[accounting.factors]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorOverride {
    pub carrier: String,
    /// Use this row of the table instead of the carrier's default.
    #[serde(default)]
    pub row: Option<String>,
    /// Or: a factor, per unit of the carrier's default row.
    #[serde(default)]
    pub kgce_per_unit: Option<f64>,
    /// Or: a measured net calorific value, kJ per unit of the carrier's default row.
    #[serde(default)]
    pub ncv_kj_per_unit: Option<f64>,
    #[serde(default)]
    pub source: Option<String>,
}

/// `[[accounting.emission_factors]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmissionOverride {
    pub carrier: String,
    pub unit: String,
    pub tco2_per_unit: f64,
    pub source: String,
}

/// `[[accounting.green_power]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreenPower {
    pub period: String,
    pub kwh: f64,
    #[serde(default)]
    pub source: Option<String>,
}

/// `[[accounting.green_certificates]]`: one batch of certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreenCertificates {
    /// The month the batch is counted for.
    pub period: String,
    pub certificates: u64,
    #[serde(default)]
    pub source: Option<String>,
    /// Batch id (certificate numbers or the trade's reference).
    #[serde(default)]
    pub id: Option<String>,
    /// The month the electricity was produced.
    #[serde(default)]
    pub production_period: Option<String>,
    /// `unbundled` (default), `bundled` (with a green-power purchase) or `own_pv`.
    #[serde(default)]
    pub kind: super::certificates::CertificateKind,
    /// Province of the generating plant.
    #[serde(default)]
    pub origin_province: Option<String>,
}

/// The counter that measures a carrier's consumption by default.
pub fn default_counter(carrier: &str) -> Option<Quantity> {
    Some(match carrier {
        "electricity" => Quantity::EnergyImport,
        "natural_gas" => Quantity::GasVolume,
        "steam" => Quantity::SteamMass,
        "heat" => Quantity::HeatEnergy,
        "water" => Quantity::WaterVolume,
        "compressed_air" => Quantity::CompressedAirVolume,
        "production" => Quantity::ProductionCount,
        _ => return None,
    })
}

/// How a device takes part in the accounts, after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMeter {
    pub device: String,
    pub carrier: Carrier,
    pub role: MeterRole,
    pub counter: Quantity,
    pub export_counter: Option<Quantity>,
    pub energy_use: EnergyUse,
    pub parent: Option<String>,
}

fn has_point(d: &DeviceConfig, q: Quantity) -> bool {
    d.measures(q)
}

/// The energy meters of the accounts: explicit `[[accounting.meters]]` entries, and every other
/// device with a carrier that has a factor row and a point for its default counter.
pub fn resolve_meters(cfg: &AccountingContext, tables: &Tables) -> Vec<ResolvedMeter> {
    let acc = &cfg.accounting;
    let mut out = Vec::new();
    for d in &cfg.devices {
        let Some(carrier) = d.carrier else {
            continue;
        };
        if carrier == Carrier::Production {
            continue;
        }
        let explicit = acc.meters.iter().find(|m| m.device == d.id);
        let role = explicit
            .and_then(|m| m.role)
            .unwrap_or(if d.parent.is_some() {
                MeterRole::Submeter
            } else {
                MeterRole::Purchase
            });
        if role == MeterRole::Ignore || tables.default_energy_row(carrier.as_str()).is_none() {
            continue;
        }
        let Some(counter) = explicit
            .and_then(|m| m.counter)
            .or_else(|| default_counter(carrier.as_str()))
        else {
            continue;
        };
        if explicit.is_none() && !has_point(d, counter) {
            continue;
        }
        let export_counter = explicit.and_then(|m| m.export_counter).or_else(|| {
            (role == MeterRole::Purchase
                && carrier == Carrier::Electricity
                && has_point(d, Quantity::EnergyExport)
                && counter != Quantity::EnergyExport)
                .then_some(Quantity::EnergyExport)
        });
        out.push(ResolvedMeter {
            device: d.id.to_string(),
            carrier,
            role,
            counter,
            export_counter,
            energy_use: explicit.map(|m| m.energy_use).unwrap_or_default(),
            parent: d.parent.clone(),
        });
    }
    out
}

/// Checks `[accounting]` and the devices' `parent` keys. Problems go to `push(path, message)`.
pub fn validate(
    cfg: &AccountingContext,
    device_index: &[usize],
    undecoded: &HashSet<String>,
    push: &mut dyn FnMut(String, String),
) {
    let acc = &cfg.accounting;
    let dev_path = |i: usize| format!("devices[{}]", device_index.get(i).copied().unwrap_or(i));
    let known = |id: &str| cfg.device(id).is_some() || undecoded.contains(id);

    // devices[].parent: exists, same carrier, no cycles.
    for (i, d) in cfg.devices.iter().enumerate() {
        let Some(parent) = &d.parent else { continue };
        let at = format!("{}.parent", dev_path(i));
        if parent == &d.id {
            push(at, "a device cannot be its own parent".into());
            continue;
        }
        match cfg.device(parent) {
            None if undecoded.contains(parent) => {}
            None => push(at, format!("refers to unknown device \"{parent}\"")),
            Some(p) => {
                if p.carrier != d.carrier {
                    push(
                        at.clone(),
                        format!(
                            "parent \"{parent}\" measures {} but this device measures {}; a parent and its children measure the same carrier",
                            p.carrier.map_or("no carrier", Carrier::as_str),
                            d.carrier.map_or("no carrier", Carrier::as_str)
                        ),
                    );
                }
                let mut seen = HashSet::from([d.id.as_str()]);
                let mut cur = Some(p);
                while let Some(c) = cur {
                    if !seen.insert(c.id.as_str()) {
                        push(at.clone(), format!("parent chain of \"{}\" loops", d.id));
                        break;
                    }
                    cur = c.parent.as_deref().and_then(|x| cfg.device(x));
                }
            }
        }
    }

    // Factor tables.
    let tables = match Tables::load(&acc.factor_table, acc.factor_file.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            let key = if acc.factor_file.is_some() && Tables::load(&acc.factor_table, None).is_ok()
            {
                "accounting.factor_file"
            } else {
                "accounting.factor_table"
            };
            push(key.into(), e);
            None
        }
    };

    if acc.gap_after.is_zero() {
        push(
            "accounting.gap_after".into(),
            "must be greater than 0".into(),
        );
    }
    if !(acc.balance_tolerance_pct.is_finite() && acc.balance_tolerance_pct >= 0.0) {
        push(
            "accounting.balance_tolerance_pct".into(),
            "must be zero or a positive number".into(),
        );
    }

    let mut years = HashSet::new();
    for (i, e) in acc.electricity_equal_value.iter().enumerate() {
        let at = format!("accounting.electricity_equal_value[{i}]");
        if !(1990..=2200).contains(&e.year) {
            push(
                format!("{at}.year"),
                format!("{} is not a plausible year", e.year),
            );
        } else if !years.insert(e.year) {
            push(
                format!("{at}.year"),
                format!("year {} is given twice", e.year),
            );
        }
        if !(e.kgce_per_kwh.is_finite() && e.kgce_per_kwh > 0.0) {
            push(
                format!("{at}.kgce_per_kwh"),
                "must be a positive number".into(),
            );
        }
        if e.source.trim().is_empty() {
            push(
                format!("{at}.source"),
                "must say where the value comes from".into(),
            );
        }
    }

    // [accounting.target]
    let t = &acc.target;
    if !(1990..=2200).contains(&t.base_year) {
        push(
            "accounting.target.base_year".into(),
            format!("{} is not a plausible year", t.base_year),
        );
    }
    if t.target_year <= t.base_year {
        push(
            "accounting.target.target_year".into(),
            format!("must be after base_year ({})", t.base_year),
        );
    }
    if !(t.target_change_pct.is_finite() && t.target_change_pct > -100.0) {
        push(
            "accounting.target.target_change_pct".into(),
            "must be a number greater than -100".into(),
        );
    }
    if let Some(id) = &t.preset {
        match super::targets::preset(id) {
            None => push(
                "accounting.target.preset".into(),
                format!(
                    "unknown preset \"{id}\"; available: {}",
                    super::targets::PRESETS
                        .iter()
                        .map(|p| p.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(p) => {
                if (p.base_year, p.target_year, p.target_change_pct)
                    != (t.base_year, t.target_year, t.target_change_pct)
                {
                    push(
                        "accounting.target.preset".into(),
                        format!(
                            "{id} is {} → {}, {} %; base_year, target_year and target_change_pct must match it (or drop the preset)",
                            p.base_year, p.target_year, p.target_change_pct
                        ),
                    );
                }
            }
        }
    }
    if let Some(y) = t.base_price_year {
        if !(1990..=2200).contains(&y) {
            push(
                "accounting.target.base_price_year".into(),
                format!("{y} is not a plausible year"),
            );
        }
    }
    if let Some(b) = t.base_intensity_tce_per_10k_cny {
        if !(b.is_finite() && b > 0.0) {
            push(
                "accounting.target.base_intensity_tce_per_10k_cny".into(),
                "must be a positive number".into(),
            );
        }
    }

    // [accounting.carbon]
    if let Some(tables) = &tables {
        let c = &acc.carbon;
        if let Some(p) = &c.province {
            if tables.province(p).is_none() {
                push(
                    "accounting.carbon.province".into(),
                    format!(
                        "unknown province \"{p}\"; the tables know: {} (set `region` for others)",
                        tables
                            .provinces
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if let Some(r) = &c.region {
            if !tables.regions.iter().any(|x| &x.id == r) {
                push(
                    "accounting.carbon.region".into(),
                    format!(
                        "unknown grid region \"{r}\"; expected one of: {}",
                        tables
                            .regions
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            } else if let Some(p) = c.province.as_deref().and_then(|p| tables.province(p)) {
                if &p.region != r {
                    push(
                        "accounting.carbon.region".into(),
                        format!(
                            "province \"{}\" belongs to region \"{}\", not \"{r}\"",
                            p.id, p.region
                        ),
                    );
                }
            }
        }
        if let Some(y) = c.factor_year {
            if !tables.grid.iter().any(|g| g.year == y) {
                let mut ys: Vec<i32> = tables.grid.iter().map(|g| g.year).collect();
                ys.sort_unstable();
                ys.dedup();
                push(
                    "accounting.carbon.factor_year".into(),
                    format!(
                        "no grid factors for {y}; the tables have {}",
                        ys.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }

    // [accounting.tou]
    if let Some(tou) = &acc.tou {
        if let Err(problems) = TouCalendar::build(tou) {
            for (p, m) in problems {
                push(format!("accounting.tou.{p}"), m);
            }
        }
    }

    // [[accounting.meters]]
    let mut meter_devices = HashMap::new();
    for (i, m) in acc.meters.iter().enumerate() {
        let at = format!("accounting.meters[{i}]");
        if let Some(first) = meter_devices.insert(m.device.as_str(), i) {
            push(
                format!("{at}.device"),
                format!(
                    "device \"{}\" already has accounting.meters[{first}]",
                    m.device
                ),
            );
        }
        let Some(d) = cfg.device(&m.device) else {
            if !undecoded.contains(&m.device) {
                push(
                    format!("{at}.device"),
                    format!("refers to unknown device \"{}\"", m.device),
                );
            }
            continue;
        };
        let carrier = d.carrier.map(Carrier::as_str);
        let production = d.carrier == Some(Carrier::Production);
        if production && m.role.is_some() {
            push(
                format!("{at}.role"),
                "a production counter has no energy role; leave `role` out".into(),
            );
        }
        let role = m.role.unwrap_or(if d.parent.is_some() {
            MeterRole::Submeter
        } else {
            MeterRole::Purchase
        });
        if role == MeterRole::Submeter && d.parent.is_none() {
            push(
                format!("{at}.role"),
                format!(
                    "a sub-meter needs a parent: set `parent` on device \"{}\"",
                    d.id
                ),
            );
        }
        if role != MeterRole::Submeter
            && role != MeterRole::Ignore
            && d.parent.is_some()
            && !production
        {
            push(
                format!("{at}.role"),
                format!(
                    "device \"{}\" has a parent, so it is a sub-meter; role \"{}\" is for top-level meters",
                    d.id,
                    role.as_str()
                ),
            );
        }
        if role == MeterRole::Generation && carrier != Some("electricity") {
            push(
                format!("{at}.role"),
                "generation is for electricity meters".into(),
            );
        }
        if !production && role != MeterRole::Ignore {
            match carrier {
                None => push(
                    format!("{at}.device"),
                    format!(
                        "device \"{}\" has no carrier; set `carrier` on the device",
                        d.id
                    ),
                ),
                Some(c) => {
                    if let Some(tables) = &tables {
                        if tables.default_energy_row(c).is_none() {
                            push(
                                format!("{at}.device"),
                                format!(
                                    "carrier \"{c}\" of device \"{}\" has no standard-coal factor",
                                    d.id
                                ),
                            );
                        }
                    }
                }
            }
        }
        let counter = m.counter.or_else(|| carrier.and_then(default_counter));
        match counter {
            None if role != MeterRole::Ignore => push(
                format!("{at}.counter"),
                format!(
                    "no default counter for carrier \"{}\"; name one",
                    carrier.unwrap_or("none")
                ),
            ),
            Some(q) if !q.is_cumulative() => push(
                format!("{at}.counter"),
                format!("{q} is not a cumulative counter"),
            ),
            Some(q) if !has_point(d, q) => push(
                format!("{at}.counter"),
                format!("device \"{}\" has no point for {q}", d.id),
            ),
            Some(q) => {
                let expected = carrier.and_then(default_counter).map(|d| d.unit());
                if expected.is_some_and(|u| u != q.unit()) {
                    push(
                        format!("{at}.counter"),
                        format!(
                            "{q} counts {} but {} is accounted in {}",
                            q.unit(),
                            carrier.unwrap_or(""),
                            expected.unwrap_or("")
                        ),
                    );
                }
            }
            _ => {}
        }
        if let Some(q) = m.export_counter {
            if !q.is_cumulative() {
                push(
                    format!("{at}.export_counter"),
                    format!("{q} is not a cumulative counter"),
                );
            } else if !has_point(d, q) {
                push(
                    format!("{at}.export_counter"),
                    format!("device \"{}\" has no point for {q}", d.id),
                );
            }
            if role != MeterRole::Purchase {
                push(
                    format!("{at}.export_counter"),
                    "only a purchase meter has an export counter".into(),
                );
            }
        }
        if let Some(r) = m.rated_power {
            if !(r.is_finite() && r > 0.0) {
                push(
                    format!("{at}.rated_power"),
                    "must be a positive number".into(),
                );
            }
        }
        for (q, max) in &m.counter_max {
            if !q.is_cumulative() {
                push(
                    format!("{at}.counter_max.{q}"),
                    format!("{q} is not a cumulative counter"),
                );
            }
            if !(max.is_finite() && *max > 0.0) {
                push(
                    format!("{at}.counter_max.{q}"),
                    "must be a positive number".into(),
                );
            }
        }
        if m.gap_after.is_some_and(|g| g.is_zero()) {
            push(format!("{at}.gap_after"), "must be greater than 0".into());
        }
    }

    let Some(tables) = tables else { return };
    let resolved = resolve_meters(cfg, &tables);

    // [[accounting.products]]
    let mut ids = HashSet::new();
    let mut share_sum = 0.0;
    let mut claimed: HashMap<&str, usize> = HashMap::new();
    for (i, p) in acc.products.iter().enumerate() {
        let at = format!("accounting.products[{i}]");
        if !valid_id(&p.id) {
            push(format!("{at}.id"), crate::readings::ID_RULE.into());
        } else if !ids.insert(p.id.as_str()) {
            push(
                format!("{at}.id"),
                format!("duplicate product id \"{}\"", p.id),
            );
        }
        if p.unit.trim().is_empty() || p.unit.contains(['/', ',']) {
            push(
                format!("{at}.unit"),
                "must be a unit such as \"m2\", \"t\" or \"piece\"".into(),
            );
        }
        for (j, m) in p.meters.iter().enumerate() {
            if !known(m) {
                push(
                    format!("{at}.meters[{j}]"),
                    format!("refers to unknown device \"{m}\""),
                );
            } else if cfg.device(m).is_some() && !resolved.iter().any(|r| &r.device == m) {
                push(
                    format!("{at}.meters[{j}]"),
                    format!("device \"{m}\" is not an energy meter of the accounts (no carrier with a factor, no counter point, or role ignore)"),
                );
            }
            if let Some(prev) = claimed.insert(m.as_str(), i) {
                push(
                    format!("{at}.meters[{j}]"),
                    format!("device \"{m}\" is already a meter of accounting.products[{prev}]"),
                );
            }
        }
        if !(p.common_share.is_finite() && (0.0..=1.0).contains(&p.common_share)) {
            push(
                format!("{at}.common_share"),
                "must be between 0 and 1".into(),
            );
        } else {
            share_sum += p.common_share;
        }
        if let Some(dev) = &p.production_device {
            match cfg.device(dev) {
                None if undecoded.contains(dev) => {}
                None => push(
                    format!("{at}.production_device"),
                    format!("refers to unknown device \"{dev}\""),
                ),
                Some(d) if !has_point(d, Quantity::ProductionCount) => push(
                    format!("{at}.production_device"),
                    format!("device \"{dev}\" has no point for production_count"),
                ),
                Some(_) => {}
            }
        }
        if let Some(l) = &p.limit {
            match tables.limit(l) {
                None => push(
                    format!("{at}.limit"),
                    format!("unknown limit row \"{l}\" (rows are listed in config/factors/limits-gb.toml)"),
                ),
                Some(row) if row.product_unit() != p.unit => push(
                    format!("{at}.unit"),
                    format!(
                        "limit \"{l}\" is in {}, so the product's unit must be \"{}\"",
                        row.unit,
                        row.product_unit()
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some(s) = p.share_pct {
            if !(s.is_finite() && s > 0.0 && s <= 100.0) {
                push(
                    format!("{at}.share_pct"),
                    "must be a percentage above 0 and at most 100".into(),
                );
            }
        }
        if !(p.limit_correction.is_finite() && p.limit_correction > 0.0) {
            push(
                format!("{at}.limit_correction"),
                "must be a positive number".into(),
            );
        }
        match (p.benchmark, p.baseline) {
            (None, None) => {}
            (Some(b), Some(l)) => {
                if !(b.is_finite() && l.is_finite()) || b > l {
                    push(
                        format!("{at}.benchmark"),
                        "benchmark (标杆) must be a number at or below baseline (基准)".into(),
                    );
                }
                if p.levels_source
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    push(
                        format!("{at}.levels_source"),
                        "say where the 标杆/基准 values come from".into(),
                    );
                }
                if p.limit.is_none() {
                    push(
                        format!("{at}.limit"),
                        "needed with benchmark/baseline: it sets their unit".into(),
                    );
                }
            }
            _ => push(
                format!("{at}.benchmark"),
                "give both benchmark (标杆) and baseline (基准), or neither".into(),
            ),
        }
    }
    if share_sum > 1.0 + 1e-9 {
        push(
            "accounting.products".into(),
            format!("the common_share values add up to {share_sum}, more than 1"),
        );
    }

    // [[accounting.factors]]
    let mut seen = HashSet::new();
    for (i, f) in acc.factors.iter().enumerate() {
        let at = format!("accounting.factors[{i}]");
        if !seen.insert(f.carrier.as_str()) {
            push(
                format!("{at}.carrier"),
                format!("carrier \"{}\" is given twice", f.carrier),
            );
        }
        if tables.default_energy_row(&f.carrier).is_none() {
            push(
                format!("{at}.carrier"),
                format!(
                    "no factor row for carrier \"{}\"; known: {}",
                    f.carrier,
                    tables.carriers().join(", ")
                ),
            );
        }
        let given = [
            f.row.is_some(),
            f.kgce_per_unit.is_some(),
            f.ncv_kj_per_unit.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            push(
                at.clone(),
                "give exactly one of row, kgce_per_unit and ncv_kj_per_unit".into(),
            );
        }
        if let Some(r) = &f.row {
            match tables.energy_row(r) {
                None => push(format!("{at}.row"), format!("unknown factor row \"{r}\"")),
                Some(row) if row.carrier != f.carrier => push(
                    format!("{at}.row"),
                    format!("row \"{r}\" is for carrier \"{}\"", row.carrier),
                ),
                Some(_) => {}
            }
        }
        for (k, v) in [
            ("kgce_per_unit", f.kgce_per_unit),
            ("ncv_kj_per_unit", f.ncv_kj_per_unit),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    push(format!("{at}.{k}"), "must be a positive number".into());
                }
                if f.source.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    push(
                        format!("{at}.source"),
                        format!("say where the {k} comes from"),
                    );
                }
            }
        }
    }

    // [[accounting.emission_factors]]
    let mut seen = HashSet::new();
    for (i, e) in acc.emission_factors.iter().enumerate() {
        let at = format!("accounting.emission_factors[{i}]");
        if !seen.insert(e.carrier.as_str()) {
            push(
                format!("{at}.carrier"),
                format!("carrier \"{}\" is given twice", e.carrier),
            );
        }
        match tables.default_energy_row(&e.carrier) {
            None => push(
                format!("{at}.carrier"),
                format!("unknown carrier \"{}\"", e.carrier),
            ),
            Some(row) => {
                if e.carrier == "electricity" {
                    push(
                        format!("{at}.carrier"),
                        "electricity uses the grid factors ([accounting.carbon])".into(),
                    );
                } else if super::factors::unit_ratio(&e.unit, &row.unit).is_none() {
                    push(
                        format!("{at}.unit"),
                        format!(
                            "\"{}\" does not convert to {} (the carrier's unit)",
                            e.unit, row.unit
                        ),
                    );
                }
            }
        }
        if !(e.tco2_per_unit.is_finite() && e.tco2_per_unit >= 0.0) {
            push(
                format!("{at}.tco2_per_unit"),
                "must be zero or a positive number".into(),
            );
        }
        if e.source.trim().is_empty() {
            push(
                format!("{at}.source"),
                "must say where the factor comes from".into(),
            );
        }
    }

    // green power and certificates
    let mut months = HashSet::new();
    for (i, g) in acc.green_power.iter().enumerate() {
        let at = format!("accounting.green_power[{i}]");
        match g.period.parse::<super::calendar::Month>() {
            Err(e) => push(format!("{at}.period"), e),
            Ok(m) => {
                if !months.insert(m) {
                    push(format!("{at}.period"), format!("{m} is given twice"));
                }
            }
        }
        if !(g.kwh.is_finite() && g.kwh >= 0.0) {
            push(
                format!("{at}.kwh"),
                "must be zero or a positive number".into(),
            );
        }
    }
    let (mut ids, mut anonymous) = (HashSet::new(), HashSet::new());
    for (i, g) in acc.green_certificates.iter().enumerate() {
        let at = format!("accounting.green_certificates[{i}]");
        let period = g.period.parse::<super::calendar::Month>();
        match (&period, &g.id) {
            (Err(e), _) => push(format!("{at}.period"), e.clone()),
            (Ok(_), Some(id)) => {
                if !ids.insert(id.clone()) {
                    push(format!("{at}.id"), format!("batch {id} is given twice"));
                }
            }
            (Ok(m), None) => {
                if !anonymous.insert(*m) {
                    push(
                        format!("{at}.period"),
                        format!("{m} is given twice (give each batch an id)"),
                    );
                }
            }
        }
        if let Some(p) = &g.production_period {
            match (p.parse::<super::calendar::Month>(), &period) {
                (Err(e), _) => push(format!("{at}.production_period"), e),
                (Ok(pm), Ok(m)) if pm > *m => push(
                    format!("{at}.production_period"),
                    format!("{pm} is after the period the batch is counted for ({m})"),
                ),
                _ => {}
            }
        }
    }
    let e = &acc.enterprise;
    if let Some(c) = &e.credit_code {
        // GB 32100-2015: 18 characters of 0-9 and A-Y without I, O, S, V, Z.
        let ok = c.chars().count() == 18
            && c.chars()
                .all(|ch| ch.is_ascii_digit() || "ABCDEFGHJKLMNPQRTUWXY".contains(ch));
        if !ok {
            push(
                "accounting.enterprise.credit_code".into(),
                "a 统一社会信用代码 is 18 characters: digits and capital letters except I, O, S, V, Z".into(),
            );
        } else if let Some(expected) = credit_code_check(c).filter(|x| !c.ends_with(*x)) {
            push(
                "accounting.enterprise.credit_code".into(),
                format!("\"{c}\": the check character (the 18th) should be {expected} (GB 32100-2015 clause 5); check for a mistyped character"),
            );
        }
    }
    if let Some(c) = &e.industry_code {
        // GB/T 4754-2017: an optional section letter A-T, then 2 to 4 digits.
        let digits = c
            .strip_prefix(|ch: char| ('A'..='T').contains(&ch))
            .unwrap_or(c);
        if !(2..=4).contains(&digits.len()) || !digits.chars().all(|ch| ch.is_ascii_digit()) {
            push(
                "accounting.enterprise.industry_code".into(),
                format!("\"{c}\" is not a GB/T 4754 code (e.g. \"C3071\")"),
            );
        }
    }
    super::indicators::validate(&acc.indicators, push);
}

/// The check character of a 统一社会信用代码 (GB 32100-2015, clause 5 and appendix B):
/// the first 17 characters' values (0-9, then A=10 … Y=30 without I, O, S, V, Z) weighted by
/// 3^(i−1) mod 31, C18 = 31 − (sum mod 31), 31 written 0. `None` for a character outside the set.
pub fn credit_code_check(code: &str) -> Option<char> {
    const SET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut sum = 0usize;
    let mut weight = 1usize;
    for ch in code.chars().take(17) {
        sum += SET.find(ch)? * weight;
        weight = weight * 3 % 31;
    }
    SET.chars().nth((31 - sum % 31) % 31)
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const BASE: &str = r#"
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
[[devices.points]]
quantity = "energy_export"
register = 2
type = "f32"

[[devices]]
id = "kiln"
carrier = "electricity"
parent = "main"
[devices.modbus]
address = "127.0.0.1:5021"
[[devices.points]]
quantity = "energy_import"
register = 0
type = "f32"

[[devices]]
id = "gas"
carrier = "natural_gas"
[devices.modbus]
address = "127.0.0.1:5022"
[[devices.points]]
quantity = "gas_volume"
register = 0
type = "u32"

[[devices]]
id = "count"
carrier = "production"
[devices.modbus]
address = "127.0.0.1:5023"
[[devices.points]]
quantity = "production_count"
register = 0
type = "u32"
"#;

    fn problems(toml: &str) -> Vec<String> {
        match load_str(toml) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn base_is_valid_and_meters_resolve_by_default() {
        assert_eq!(problems(BASE), Vec::<String>::new());
        let cfg = load_str(BASE).unwrap().accounting_context();
        let t = super::Tables::load("gbt2589-2020", None).unwrap();
        let m = super::resolve_meters(&cfg, &t);
        let summary: Vec<(&str, &str, super::MeterRole)> = m
            .iter()
            .map(|m| (m.device.as_str(), m.counter.as_str(), m.role))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("main", "energy_import", super::MeterRole::Purchase),
                ("kiln", "energy_import", super::MeterRole::Submeter),
                ("gas", "gas_volume", super::MeterRole::Purchase),
            ]
        );
        assert_eq!(
            m[0].export_counter,
            Some(crate::readings::Quantity::EnergyExport)
        );
        assert_eq!(cfg.accounting.target.base_year, 2022);
        assert_eq!(cfg.accounting.target.target_change_pct, -13.0);
    }

    #[test]
    fn full_section_is_valid() {
        let toml = format!(
            "{BASE}\n{}",
            r#"
[accounting]
gap_after = "1h"
balance_tolerance_pct = 3.0
[[accounting.electricity_equal_value]]
year = 2026
kgce_per_kwh = 0.3
source = "provincial statistics bureau notice"
[accounting.target]
base_year = 2022
base_intensity_tce_per_10k_cny = 0.4
[accounting.carbon]
province = "chongqing"
factor_year = 2022
scope2_method = "market"
[accounting.tou]
[[accounting.tou.seasons]]
name = "all year"
months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
peak = ["08:00-12:00", "17:00-21:00"]
flat = ["12:00-17:00", "21:00-23:00"]
valley = ["00:00-08:00", "23:00-24:00"]
[[accounting.meters]]
device = "main"
rated_power = 2500
counter_max = { energy_import = 99999999.9 }
[[accounting.meters]]
device = "count"
gap_after = "2h"
[[accounting.products]]
id = "tile"
unit = "m2"
meters = ["kiln", "gas"]
common_share = 1.0
production_device = "count"
limit = "gb21252-2023.tile_dry_pressed_e_le_0_2"
benchmark = 4.0
baseline = 5.0
levels_source = "provincial benchmark list"
[[accounting.factors]]
carrier = "natural_gas"
ncv_kj_per_unit = 35588
source = "supplier certificate"
[[accounting.emission_factors]]
carrier = "natural_gas"
unit = "m3"
tco2_per_unit = 0.00216
source = "supplier"
[[accounting.green_power]]
period = "2026-10"
kwh = 1000
[[accounting.green_certificates]]
period = "2026-10"
certificates = 5
"#
        );
        assert_eq!(problems(&toml), Vec::<String>::new());
    }

    #[test]
    fn every_accounting_problem_has_its_path() {
        let toml = format!(
            "{}\n{}",
            BASE.replace("parent = \"main\"", "parent = \"gas\""),
            r#"
[accounting]
factor_table = "gbt2589-1999"
gap_after = "0s"
[[accounting.electricity_equal_value]]
year = 2026
kgce_per_kwh = -1
source = ""
[accounting.target]
target_year = 2020
[accounting.carbon]
province = "atlantis"
[[accounting.meters]]
device = "ghost"
[[accounting.meters]]
device = "main"
rated_power = 0
counter_max = { active_power = 5 }
counter = "reactive_energy_import"
[[accounting.products]]
id = "tile"
unit = "m2"
common_share = 1.5
production_device = "main"
benchmark = 4.0
[[accounting.green_power]]
period = "2026-13"
kwh = 1
"#
        );
        let p = problems(&toml);
        let expect = [
            "devices[1].parent: parent \"gas\" measures natural_gas but this device measures electricity",
            "accounting.factor_table: unknown factor table \"gbt2589-1999\"",
            "accounting.gap_after: must be greater than 0",
            "accounting.electricity_equal_value[0].kgce_per_kwh: must be a positive number",
            "accounting.electricity_equal_value[0].source: must say where the value comes from",
            "accounting.target.target_year: must be after base_year (2022)",
            "accounting.meters[0].device: refers to unknown device \"ghost\"",
            "accounting.meters[1].rated_power: must be a positive number",
            "accounting.meters[1].counter_max.active_power: active_power is not a cumulative counter",
            "accounting.meters[1].counter: device \"main\" has no point for reactive_energy_import",
        ];
        for e in expect {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e}\n{p:#?}");
        }
    }

    #[test]
    fn product_and_override_problems() {
        let toml = format!(
            "{BASE}\n{}",
            r#"
[accounting.carbon]
province = "atlantis"
region = "central"
[[accounting.products]]
id = "tile"
unit = "t"
meters = ["count", "nobody"]
common_share = 1.5
production_device = "main"
limit = "gb21252-2023.tile_dry_pressed_e_le_0_2"
benchmark = 4.0
[[accounting.factors]]
carrier = "natural_gas"
kgce_per_unit = 1.3
row = "coke"
[[accounting.emission_factors]]
carrier = "natural_gas"
unit = "kg"
tco2_per_unit = 1.0
source = "x"
[accounting.enterprise]
credit_code = "91500226MA00EXAMPS"
industry_code = "3071X"
[[accounting.green_certificates]]
period = "2026"
certificates = 1
[[accounting.green_certificates]]
id = "B1"
period = "2026-10"
production_period = "2026-11"
certificates = 1
kind = "bundled"
[[accounting.green_certificates]]
id = "B1"
period = "2026-09"
certificates = 1
[[accounting.green_certificates]]
period = "2026-10"
certificates = 1
[[accounting.green_certificates]]
period = "2026-10"
certificates = 2
"#
        );
        let p = problems(&toml);
        let expect = [
            "accounting.carbon.province: unknown province \"atlantis\"",
            "accounting.products[0].unit: limit \"gb21252-2023.tile_dry_pressed_e_le_0_2\" is in kgce/m2, so the product's unit must be \"m2\"",
            "accounting.products[0].meters[0]: device \"count\" is not an energy meter",
            "accounting.products[0].meters[1]: refers to unknown device \"nobody\"",
            "accounting.products[0].common_share: must be between 0 and 1",
            "accounting.products[0].production_device: device \"main\" has no point for production_count",
            "accounting.products[0].benchmark: give both benchmark",
            "accounting.factors[0]: give exactly one of row, kgce_per_unit and ncv_kj_per_unit",
            "accounting.factors[0].row: row \"coke\" is for carrier \"coke\"",
            "accounting.factors[0].source: say where the kgce_per_unit comes from",
            "accounting.emission_factors[0].unit: \"kg\" does not convert to m3",
            "accounting.green_certificates[0].period: \"2026\" is not a month",
            "accounting.enterprise.credit_code: a 统一社会信用代码 is 18 characters",
            "accounting.enterprise.industry_code: \"3071X\" is not a GB/T 4754 code",
            "accounting.green_certificates[1].production_period: 2026-11 is after the period the batch is counted for (2026-10)",
            "accounting.green_certificates[2].id: batch B1 is given twice",
            "accounting.green_certificates[4].period: 2026-10 is given twice (give each batch an id)",
        ];
        for e in expect {
            assert!(p.iter().any(|m| m.starts_with(e)), "missing {e}\n{p:#?}");
        }
    }

    #[test]
    fn credit_code_check_character() {
        // A code printed on a business licence, and the report example's.
        assert_eq!(super::credit_code_check("91350100M000100Y43"), Some('3'));
        assert_eq!(super::credit_code_check("91500226MA00EXAMPU"), Some('U'));
        let toml =
            BASE.to_string() + "[accounting.enterprise]\ncredit_code = \"91350100M000100Y44\"\n";
        let p = problems(&toml);
        assert!(
            p.iter().any(|m| m.starts_with(
                "accounting.enterprise.credit_code: \"91350100M000100Y44\": the check character (the 18th) should be 3"
            )),
            "{p:#?}"
        );
        let ok =
            BASE.to_string() + "[accounting.enterprise]\ncredit_code = \"91350100M000100Y43\"\n";
        assert!(
            !problems(&ok).iter().any(|m| m.contains("credit_code")),
            "{:#?}",
            problems(&ok)
        );
    }

    #[test]
    fn counter_unit_must_match_the_carrier() {
        let toml = BASE.replace(
            "quantity = \"energy_export\"",
            "quantity = \"reactive_energy_import\"",
        )
            + "\n[[accounting.meters]]\ndevice = \"main\"\ncounter = \"reactive_energy_import\"\n";
        let p = problems(&toml);
        assert_eq!(
            p,
            vec!["accounting.meters[0].counter: reactive_energy_import counts kvarh but electricity is accounted in kWh".to_string()]
        );
    }

    #[test]
    fn parent_cycles_and_unknown_parents() {
        let toml = BASE
            .replace(
                "id = \"main\"\ncarrier = \"electricity\"",
                "id = \"main\"\ncarrier = \"electricity\"\nparent = \"kiln\"",
            )
            .replace(
                "id = \"gas\"\ncarrier = \"natural_gas\"",
                "id = \"gas\"\ncarrier = \"natural_gas\"\nparent = \"pipe\"",
            );
        let p = problems(&toml);
        assert!(
            p.iter()
                .any(|m| m.starts_with("devices[0].parent: parent chain of \"main\" loops")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m == "devices[2].parent: refers to unknown device \"pipe\""),
            "{p:#?}"
        );
    }
}
