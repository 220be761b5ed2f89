//! The report's notes as data: what a note says ([`Note`], one variant per kind, with its
//! parameters), not a sentence. The sentence is made when the note is shown: in English by
//! `Display`, which is also the note's text in the JSON report and the API (unchanged, so
//! machines reading it keep working), and per language by `crate::reporting::notes` for the
//! people's formats (HTML, Markdown, CSV).
//!
//! Notes that other computations hand over as sentences (certificate and grid-factor choices,
//! the equal-value factor) are carried as [`Note::Text`] and shown as they are.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// The period has not ended: its data go to `data_to` (site time, minutes).
    InProgress { data_to: String },
    /// Months without value added.
    ValueAddedMissing { months: Vec<String> },
    /// Last year's same period has no meter data.
    NoYearOnYear { period: String },
    /// A configured base intensity without `base_basis`: taken as gross.
    BaseBasisUnset,
    /// The base year computed from the store with part of its intervals measured.
    BaseYearPartial { year: i32, measured_pct: f64 },
    /// Green certificates bundled with a green-power purchase: not deducted again.
    CertBundled {
        id: Option<String>,
        month: String,
        certificates: u64,
    },
    /// Bundled certificates standing for more than the green power configured for the month.
    CertBundledShort {
        id: Option<String>,
        month: String,
        kwh: f64,
        bought: f64,
    },
    /// Certificates of the plant's own generation: not deducted again.
    CertOwnPv {
        id: Option<String>,
        month: String,
        certificates: u64,
    },
    /// Certificates from another province.
    CertOtherProvince {
        id: Option<String>,
        month: String,
        origin: String,
        site: String,
    },
    /// More non-fossil electricity than electricity consumed: the deduction is capped.
    NonFossilCapped { total_kwh: f64, deducted_kwh: f64 },
    /// No configured 等价值 for the year: the table's practice value, with the table's remark.
    EqualValuePractice { year: i32, remark: String },
    /// No 等价值 configured or in the tables: 当量值 used.
    EqualValueFallback,
    /// Neither a configured base intensity nor the base year's data.
    NoBaseIntensity { year: i32 },
    /// The period's value added has no comparable prices outside the base year.
    NoComparablePrices { period: String },
    /// Months of the year to date without value added.
    YtdValueAddedMissing {
        missing: usize,
        months: usize,
        from: String,
        to: String,
    },
    /// A month or quarter is not judged against the annual path.
    NotJudgedAgainstPath { kind: &'static str },
    /// A factor marked "verify" in its table.
    FactorVerify {
        row: String,
        carrier: String,
        note: String,
    },
    /// More of a carrier exported than bought.
    NetExport { carrier: String },
    /// Carriers without an emission factor.
    MissingEmissionFactors { carriers: Vec<String> },
    /// A product without production for some months.
    ProductionMissing {
        product: String,
        months: Vec<String>,
    },
    /// A parent meter and the sum of its children differ beyond the tolerance.
    BalanceFlagged {
        parent: String,
        difference: f64,
        unit: String,
        difference_pct: Option<f64>,
        tolerance_pct: f64,
    },
    /// `[accounting.enterprise]` keys not set.
    EnterpriseIncomplete { keys: Vec<&'static str> },
    /// Nothing stored for a period without data.
    NoData { period: String },
    /// No grid factor up to the report's year: the earliest published is used.
    GridEarliest { report_year: i32, year: i32 },
    /// Levels without a grid factor (e.g. "province jiangxi"), and the level used.
    GridSkipped {
        configured_year: Option<i32>,
        report_year: i32,
        /// (level, area): ("province", "jiangxi").
        skipped: Vec<(&'static str, String)>,
        basis: &'static str,
        area: String,
    },
    /// The latest published grid factor is of an earlier year.
    GridOlderYear {
        report_year: i32,
        area: String,
        year: i32,
    },
    /// The grid-factor table's own remark on the row used (data, as written there).
    GridFactorNote {
        year: i32,
        area: String,
        note: String,
    },
    /// Several products' unit energy weighted within one green-factory indicator.
    ProductsWeighted { products: usize },
    /// An output-value indicator without the gross output value of some months.
    OutputValueNeeded {
        indicator: &'static str,
        months: Vec<String>,
    },
    /// An indicator without configured 基准值/引领值.
    NotScored { indicator: &'static str },
    /// The renewable-share band from the period's energy scaled to a year.
    RenewableBandScaled { annual_tce: f64, band: &'static str },
    /// How the renewable share is computed.
    RenewableShareBasis,
    /// No levels for the renewable-share band.
    RenewableBandNotScored { band: &'static str },
    /// 亩均 indicators without the land area.
    MuNeedsLand,
    /// 亩均 indicators of a period that is not a calendar year.
    MuPeriod,
    /// A sentence from another computation, shown as it is.
    Text(String),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::InProgress { data_to } => write!(f, "period in progress: data to {data_to}"),
            Note::ValueAddedMissing { months } => write!(
                f,
                "value added missing for {}: import it with `energy-gateway import value-added`",
                months.join(", ")
            ),
            Note::NoYearOnYear { period } => {
                write!(f, "no meter data for {period}: no year-on-year change")
            }
            Note::BaseBasisUnset => f.write_str("accounting.target.base_basis is not set: the configured base intensity is taken as gross (nothing deducted, as in the statistical returns) and compared with this period's gross energy"),
            Note::BaseYearPartial { year, measured_pct } => write!(
                f,
                "base year {year} computed from the store with {measured_pct:.1} % of its intervals measured"
            ),
            Note::NoBaseIntensity { year } => write!(
                f,
                "no base-year intensity: set accounting.target.base_intensity_tce_per_10k_cny or import {year} readings and value added"
            ),
            Note::NoComparablePrices { period } => write!(
                f,
                "no change against the base year for {period}: its value added has no comparable prices (import value_added_comparable_10k_cny)"
            ),
            Note::YtdValueAddedMissing {
                missing,
                months,
                from,
                to,
            } => write!(
                f,
                "no year-to-date progress: value added is missing for {missing} of the {months} months {from}..{to}"
            ),
            Note::NotJudgedAgainstPath { kind } => write!(
                f,
                "a {kind} is shown for information and not judged against the annual path; progress is judged on the year to date (progress.on_track)"
            ),
            Note::FactorVerify { row, carrier, note } => write!(
                f,
                "factor {row} of {carrier} is marked verify in the table: {note}"
            ),
            Note::NetExport { carrier } => write!(
                f,
                "{carrier} exported exceeds {carrier} bought: a net deduction"
            ),
            Note::MissingEmissionFactors { carriers } => write!(
                f,
                "no emission factor for {}: left out of the CO2 totals (set [[accounting.emission_factors]])",
                carriers.join(", ")
            ),
            Note::ProductionMissing { product, months } => write!(
                f,
                "product {product}: no production for {} (import it or set production_device)",
                months.join(", ")
            ),
            Note::BalanceFlagged {
                parent,
                difference,
                unit,
                difference_pct,
                tolerance_pct,
            } => write!(
                f,
                "sub-meter balance: {parent} differs from the sum of its children by {difference} {unit} ({}), beyond {tolerance_pct} %",
                difference_pct
                    .map(|p| format!("{p:.2} %"))
                    .unwrap_or_else(|| "parent measured nothing".into()),
            ),
            Note::EnterpriseIncomplete { keys } => write!(
                f,
                "enterprise identity incomplete: set {} in [accounting.enterprise]",
                keys.join(", ")
            ),
            Note::NoData { period } => write!(f, "no data for {period}: no accounts stored"),
            Note::GridEarliest { report_year, year } => write!(
                f,
                "no grid factor is published up to {report_year}; the earliest, {year}, is used"
            ),
            Note::GridSkipped {
                configured_year,
                report_year,
                skipped,
                basis,
                area,
            } => {
                let when = match configured_year {
                    Some(y) => format!("for {y}"),
                    None => format!("up to {report_year}"),
                };
                write!(
                    f,
                    "no factor {when} for {}; {basis} {area} used",
                    skipped
                        .iter()
                        .map(|(b, a)| format!("{b} {a}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Note::GridOlderYear {
                report_year,
                area,
                year,
            } => write!(
                f,
                "no {report_year} grid factor for {area}; {year}, its latest published year up to {report_year}, is used"
            ),
            Note::GridFactorNote { year, area, note } => {
                write!(f, "grid factor {year} {area}: {note}")
            }
            Note::ProductsWeighted { products } => write!(
                f,
                "单位产品综合能耗 of {products} products weighted by their energy (tce) within one indicator"
            ),
            Note::OutputValueNeeded { indicator, months } => write!(
                f,
                "{indicator} needs the gross output value: set [[accounting.indicators.output_value]] for {}",
                months.join(", ")
            ),
            Note::NotScored { indicator } => write!(
                f,
                "{indicator}: no 基准值/引领值 configured (they are not in the standards reference); not scored"
            ),
            Note::RenewableBandScaled { annual_tce, band } => write!(
                f,
                "renewable-share band from the period's energy scaled to a year: {annual_tce:.1} tce → {band}"
            ),
            Note::RenewableShareBasis => f.write_str("可再生能源利用率 = non-fossil energy (self-generated PV, green power, green certificates; 当量值) ÷ comprehensive energy (当量值); the standard's exact ratio basis is not in the reference"),
            Note::RenewableBandNotScored { band } => write!(
                f,
                "可再生能源利用率: no 基准值/引领值 configured for band {band} (not in the standards reference); not scored"
            ),
            Note::MuNeedsLand => {
                f.write_str("亩均 indicators per 亩 need accounting.indicators.land_area_mu")
            }
            Note::MuPeriod => f.write_str(
                "亩均 indicators are for the report's period; the evaluations use a calendar year",
            ),
            Note::CertBundled {
                id,
                month,
                certificates,
            } => write!(
                f,
                "{}: {certificates} certificates bundled with a green-power purchase are not deducted again; the purchase is deducted through [[accounting.green_power]] (113号: no double deduction)",
                cert_batch(id, month)
            ),
            Note::CertBundledShort {
                id,
                month,
                kwh,
                bought,
            } => write!(
                f,
                "{}: the bundled certificates stand for {kwh} kWh but only {bought} kWh of green power is configured for {month}; configure the purchase in [[accounting.green_power]]",
                cert_batch(id, month)
            ),
            Note::CertOwnPv {
                id,
                month,
                certificates,
            } => write!(
                f,
                "{}: {certificates} non-tradable certificates of the plant's own generation are not deducted again; the metered self-generation is (113号: no double deduction)",
                cert_batch(id, month)
            ),
            Note::CertOtherProvince {
                id,
                month,
                origin,
                site,
            } => write!(
                f,
                "{}: from another province ({origin}); 113号 counts certificates not tied to a trade where the certificate goes, but how an enterprise assessment in {site} treats them is for the local authority to confirm",
                cert_batch(id, month)
            ),
            Note::NonFossilCapped {
                total_kwh,
                deducted_kwh,
            } => write!(
                f,
                "non-fossil electricity ({total_kwh} kWh) exceeds the electricity consumed; {deducted_kwh} kWh deducted"
            ),
            Note::EqualValuePractice { year, remark } => write!(
                f,
                "no [[accounting.electricity_equal_value]] for {year}; the table's practice value is used. {remark}"
            ),
            Note::EqualValueFallback => {
                f.write_str("no 等价值 configured or in the tables; 当量值 used")
            }
            Note::Text(t) => f.write_str(t),
        }
    }
}

/// How a certificate batch is named in a note.
fn cert_batch(id: &Option<String>, month: &str) -> String {
    match id {
        Some(id) => format!("green certificates {id} ({month})"),
        None => format!("green certificates of {month}"),
    }
}

/// In JSON a note is its English sentence, as before notes were data.
impl Serialize for Note {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
