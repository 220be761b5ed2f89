//! Green-certificate (绿证) batches and what of them may be deducted (发改环资〔2024〕113号, S33).
//!
//! Each `[[accounting.green_certificates]]` row is a batch: the month it is counted for
//! (`period`), its `id`, the `production_period` of the electricity, its `kind` and the
//! `origin_province` of the plant. 1 certificate = 1 MWh (S35, S36).
//!
//! - `unbundled` (绿证单独交易): deducted.
//! - `bundled` (the certificate that comes with a green-power purchase, 证电合一): never
//!   deducted again — the purchase already is, through `[[accounting.green_power]]`.
//! - `own_pv` (the non-tradable certificates issued for the plant's own generation): never
//!   deducted again — the metered self-generation already is.
//!
//! Every refusal is a warning in the report; so is a certificate from another province (113号:
//! physical and green-power trades count at the receiving province, certificates not tied to a
//! trade follow the certificate; how an enterprise-level assessment treats them is for the local
//! authority) and a bundled batch larger than the green power configured for its month.

use super::notes::Note;
use serde::{Deserialize, Serialize};

use super::calendar::Month;
use super::ledger::Plan;

/// What a certificate batch is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateKind {
    /// Bought alone (绿证单独交易): deductible.
    #[default]
    Unbundled,
    /// Came with a green-power purchase: that purchase is what is deducted.
    Bundled,
    /// Issued for the plant's own generation (non-tradable): the metered generation is deducted.
    OwnPv,
}

impl CertificateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateKind::Unbundled => "unbundled",
            CertificateKind::Bundled => "bundled",
            CertificateKind::OwnPv => "own_pv",
        }
    }
}

/// One batch as counted in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchOut {
    pub id: Option<String>,
    pub period: String,
    pub production_period: Option<String>,
    pub kind: CertificateKind,
    pub origin_province: Option<String>,
    pub certificates: u64,
    pub kwh: f64,
    /// kWh this batch adds to the non-fossil deduction (before the cap at consumption).
    pub deductible_kwh: f64,
    /// "deducted", "refused_bundled" or "refused_own_pv".
    pub status: &'static str,
    pub source: Option<String>,
}

/// The certificates of some months.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Certificates {
    pub batches: Vec<BatchOut>,
    /// Certificates that may be deducted (unbundled).
    pub deductible: u64,
    /// Certificates refused (bundled or own PV).
    pub refused: u64,
    pub warnings: Vec<super::notes::Note>,
}

fn in_months(period: &str, months: &[Month]) -> Option<Month> {
    period.parse::<Month>().ok().filter(|m| months.contains(m))
}

/// Sorts the batches of `months` into deductible and refused, with a warning for each refusal.
pub fn certificates(plan: &Plan, months: &[Month], kwh_per_certificate: f64) -> Certificates {
    let mut out = Certificates::default();
    let site_province = plan.cfg.carbon.province.as_deref();
    for b in &plan.cfg.green_certificates {
        let Some(month) = in_months(&b.period, months) else {
            continue;
        };
        let kwh = b.certificates as f64 * kwh_per_certificate;
        let (id, m) = (b.id.clone(), month.to_string());
        let status = match b.kind {
            CertificateKind::Unbundled => {
                out.deductible += b.certificates;
                "deducted"
            }
            CertificateKind::Bundled => {
                out.refused += b.certificates;
                out.warnings.push(Note::CertBundled {
                    id: id.clone(),
                    month: m.clone(),
                    certificates: b.certificates,
                });
                let bought: f64 = plan
                    .cfg
                    .green_power
                    .iter()
                    .filter(|g| g.period.parse::<Month>().ok() == Some(month))
                    .map(|g| g.kwh)
                    .sum();
                if bought < kwh {
                    out.warnings.push(Note::CertBundledShort {
                        id: id.clone(),
                        month: m.clone(),
                        kwh,
                        bought,
                    });
                }
                "refused_bundled"
            }
            CertificateKind::OwnPv => {
                out.refused += b.certificates;
                out.warnings.push(Note::CertOwnPv {
                    id: id.clone(),
                    month: m.clone(),
                    certificates: b.certificates,
                });
                "refused_own_pv"
            }
        };
        if let (Some(origin), Some(site)) = (b.origin_province.as_deref(), site_province) {
            if origin != site && b.kind == CertificateKind::Unbundled {
                out.warnings.push(Note::CertOtherProvince {
                    id: id.clone(),
                    month: m.clone(),
                    origin: origin.to_string(),
                    site: site.to_string(),
                });
            }
        }
        out.batches.push(BatchOut {
            id: b.id.clone(),
            period: month.to_string(),
            production_period: b.production_period.clone(),
            kind: b.kind,
            origin_province: b.origin_province.clone(),
            certificates: b.certificates,
            kwh,
            deductible_kwh: if status == "deducted" { kwh } else { 0.0 },
            status,
            source: b.source.clone(),
        });
    }
    out
}
