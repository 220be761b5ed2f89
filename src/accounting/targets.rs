//! Intensity targets: progress of energy per value added against a base year, with the
//! cumulative target (default −13 % from 2022 to 2027) interpolated geometrically per year.
//!
//! Change vs base (S24): (intensity ÷ base intensity − 1) × 100 %.
//! Path for year y: ((1 + T/100)^((y − base) / (target − base)) − 1) × 100 %, so −13 % over five
//! years is −2.75 % a year, compounding (0.87^(1/5) = 0.9725). After the target year the same
//! annual rate is carried on.

use super::config::TargetConfig;

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
    }
}
