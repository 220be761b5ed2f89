//! Intensity targets: progress of energy per value added against a base year, with the
//! cumulative target (default −13 % from 2022 to 2027) interpolated geometrically per year.
//!
//! Change vs base (S24): (intensity ÷ base intensity − 1) × 100 %.
//! Path for year y: ((1 + T/100)^((y − base) / (target − base)) − 1) × 100 %, so −13 % over five
//! years is −2.75 % a year, compounding (0.87^(1/5) = 0.9725). After the target year the same
//! annual rate is carried on.

use serde::{Deserialize, Serialize};

use super::config::TargetConfig;

/// What the base-year intensity counts, so that the current year is compared like with like
/// (发改环资〔2024〕113号 and the 803号 rule: deductions "同步从基年和目标年度").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseBasis {
    /// Comprehensive energy with nothing deducted (the statistical returns): compared with the
    /// current year's gross energy.
    #[default]
    Gross,
    /// After the feedstock and non-fossil deductions: compared with the assessment energy.
    AfterDeductions,
}

impl BaseBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            BaseBasis::Gross => "gross",
            BaseBasis::AfterDeductions => "after_deductions",
        }
    }
}

/// A named target from a published plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub id: &'static str,
    pub base_year: i32,
    pub target_year: i32,
    pub target_change_pct: f64,
    /// Source tags of the factor tables (`config/factors/sources.toml`).
    pub sources: &'static [&'static str],
}

/// The shipped presets (`[accounting.target] preset`).
pub const PRESETS: &[Preset] = &[
    // 《深入推进新时代新征程新重庆制造业高质量发展行动方案(2023—2027年)》: 规模以上工业单位增加值
    // 能耗较2022年累计下降13%.
    Preset {
        id: "chongqing-manufacturing-2023-2027",
        base_year: 2022,
        target_year: 2027,
        target_change_pct: -13.0,
        sources: &["S87"],
    },
    // 《深入推进荣昌区制造业高质量发展行动方案(2023-2027年)》, implementing the municipal plan.
    Preset {
        id: "rongchang-manufacturing-2023-2027",
        base_year: 2022,
        target_year: 2027,
        target_change_pct: -13.0,
        sources: &["S88", "S87"],
    },
];

pub fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// 完成进度: the share of the cumulative target reached, percent (100 = the target met).
pub fn completion_pct(change_pct: f64, target_change_pct: f64) -> Option<f64> {
    (target_change_pct != 0.0).then(|| change_pct / target_change_pct * 100.0)
}

/// The cumulative change allowed by the path in `year`, percent (negative = a decline).
pub fn path_change_pct(t: &TargetConfig, year: i32) -> f64 {
    let span = (t.target_year - t.base_year) as f64;
    let k = (year - t.base_year) as f64 / span;
    ((1.0 + t.target_change_pct / 100.0).powf(k) - 1.0) * 100.0
}

/// The annual change of the path, percent.
pub fn annual_change_pct(t: &TargetConfig) -> f64 {
    let span = (t.target_year - t.base_year) as f64;
    ((1.0 + t.target_change_pct / 100.0).powf(1.0 / span) - 1.0) * 100.0
}

/// (intensity ÷ base − 1) × 100.
pub fn change_pct(intensity: f64, base: f64) -> f64 {
    (intensity / base - 1.0) * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_13_pct_by_2027_is_2_75_pct_a_year() {
        let t = TargetConfig::default();
        // 1 − 0.87^(1/5) = 0.02747… (standards reference §2.2: 2.75 %/yr).
        let a = annual_change_pct(&t);
        assert!((a - (0.87f64.powf(0.2) - 1.0) * 100.0).abs() < 1e-12);
        assert!((a + 2.7471).abs() < 1e-3, "{a}");
        assert!((path_change_pct(&t, 2027) + 13.0).abs() < 1e-12);
        assert_eq!(path_change_pct(&t, 2022), 0.0);
        // 2026: 0.87^(4/5) − 1
        assert!((path_change_pct(&t, 2026) - (0.87f64.powf(0.8) - 1.0) * 100.0).abs() < 1e-12);
        assert!((change_pct(0.9, 1.0) + 10.0).abs() < 1e-12);
        // −6.5 % of a −13 % target is half done.
        assert_eq!(completion_pct(-6.5, -13.0), Some(50.0));
        assert_eq!(completion_pct(1.0, 0.0), None);
    }

    #[test]
    fn presets_are_2022_to_2027_minus_13_pct_with_sources() {
        let t = crate::accounting::factors::Tables::load("gbt2589-2020", None).unwrap();
        for p in PRESETS {
            assert_eq!(
                (p.base_year, p.target_year, p.target_change_pct),
                (2022, 2027, -13.0)
            );
            assert!(!t.cite(p.sources).is_empty(), "{}", p.id);
            assert_eq!(t.cite(p.sources).len(), p.sources.len(), "{}", p.id);
        }
        assert!(preset("chongqing-manufacturing-2023-2027").is_some());
        assert!(preset("atlantis").is_none());
    }
}
