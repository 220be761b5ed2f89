//! Rounding of the figures shown to people.
//!
//! Every total is computed from the unrounded parts, and every figure is rounded only when it is
//! shown (half away from zero, to the decimals of its column). This is the practice of the
//! statistics bureau's tables, whose notes say that totals and the sums of their items may differ
//! through rounding (因四舍五入，合计与分项之和可能不等); a total made from rounded parts would
//! instead drift from the stored accounts and from the JSON/CSV figures. So a shown total may
//! differ from the sum of its shown parts by a unit or so of the last decimal: where it does, the
//! report says so in its notes, naming the total, both shown values and the difference (the
//! issue's "0.005 + 0.003 = 0.007").

use super::labels::{Lang, L};
use super::Report;

/// A total and the parts it is the unrounded sum of (with their signs).
struct Sum<'a> {
    total: L,
    unit: &'a str,
    decimals: usize,
    value: f64,
    parts: Vec<f64>,
}

/// `v` rounded to `d` decimals as an integer count of the last decimal, the way it is shown.
fn shown(v: f64, d: usize) -> Option<i128> {
    let s = format!("{v:.d$}");
    let digits: String = s.chars().filter(|c| *c != '.').collect();
    digits.parse().ok()
}

/// The shown total and the sum of the shown parts (counts of the last decimal), when the total
/// is the sum of its parts unrounded and the shown figures disagree.
pub fn discrepancy(total: f64, parts: &[f64], d: usize) -> Option<(i128, i128)> {
    if !total.is_finite() || parts.iter().any(|p| !p.is_finite()) {
        return None;
    }
    let sum: f64 = parts.iter().sum();
    if (total - sum).abs() > 1e-9 * total.abs().max(1.0) {
        return None; // not a sum of these parts: nothing to say about rounding
    }
    let t = shown(total, d)?;
    let s = parts.iter().map(|p| shown(*p, d)).sum::<Option<i128>>()?;
    (t != s).then_some((t, s))
}

fn fmt(count: i128, d: usize) -> String {
    let v = count as f64 / 10f64.powi(d as i32);
    super::tables::group(&format!("{v:.d$}"))
}

/// The totals of the report and their parts, as the tables show them.
fn sums(r: &Report) -> Vec<Sum<'_>> {
    let c = &r.carbon;
    let mut scope2: Vec<f64> = vec![c.scope2.electricity_tco2];
    scope2.extend(c.scope2.heat.iter().map(|l| l.tco2));
    let mut out = vec![
        Sum {
            total: L(
                "综合能耗(当量值)：各品种当量值之和",
                "comprehensive energy (calorific equivalent), the sum of the carriers' tce",
            ),
            unit: "tce",
            decimals: 3,
            value: r.comprehensive_energy_tce,
            parts: r.carriers.iter().map(|c| c.tce).collect(),
        },
        Sum {
            total: L(
                "综合能耗(等价值)：各品种等价值之和",
                "comprehensive energy (generation-input equivalent), the sum of the carriers' tce",
            ),
            unit: "tce",
            decimals: 3,
            value: r.comprehensive_energy_equal_value_tce,
            parts: r.carriers.iter().map(|c| c.equal_value_tce).collect(),
        },
        Sum {
            total: L(
                "考核能耗(当量值)：综合能耗减原料用能和非化石能源",
                "assessment energy (calorific equivalent): comprehensive energy less feedstock and non-fossil",
            ),
            unit: "tce",
            decimals: 3,
            value: r.assessment_energy_tce,
            parts: vec![
                r.comprehensive_energy_tce,
                -r.feedstock_tce,
                -r.non_fossil_tce,
            ],
        },
        Sum {
            total: L("二氧化碳排放范围一合计", "CO2 scope 1 total"),
            unit: "tCO2",
            decimals: 3,
            value: c.scope1_tco2,
            parts: c.scope1.iter().map(|l| l.tco2).collect(),
        },
        Sum {
            total: L("二氧化碳排放范围二合计", "CO2 scope 2 total"),
            unit: "tCO2",
            decimals: 3,
            value: c.scope2_tco2,
            parts: scope2,
        },
        Sum {
            total: L("二氧化碳排放范围一、二合计", "CO2 scope 1+2 total"),
            unit: "tCO2",
            decimals: 3,
            value: c.total_tco2,
            parts: vec![c.scope1_tco2, c.scope2_tco2],
        },
    ];
    if let Some(tou) = &r.tou_kwh {
        let total: f64 = tou.values().sum();
        if total > 0.0 {
            out.push(Sum {
                total: L("分时电量占比合计", "time-of-use shares"),
                unit: "%",
                decimals: 2,
                value: 100.0,
                parts: tou.values().map(|v| v / total * 100.0).collect(),
            });
        }
    }
    out
}

/// One note per shown total that is not the sum of its shown parts, in `lang`.
pub fn notes(r: &Report, lang: Lang) -> Vec<String> {
    say(sums(r), lang)
}

fn say(sums: Vec<Sum<'_>>, lang: Lang) -> Vec<String> {
    sums.into_iter()
        .filter_map(|s| {
            let (t, p) = discrepancy(s.value, &s.parts, s.decimals)?;
            let d = s.decimals;
            let (t, p, diff) = (fmt(t, d), fmt(p, d), fmt(t - p, d));
            let u = s.unit;
            Some(match lang {
                Lang::Zh => format!(
                    "四舍五入：{} 显示为 {t} {u}，所列分项显示值之和为 {p} {u}（相差 {diff}）；合计由未修约的分项计算。",
                    lang.pick(s.total)
                ),
                Lang::En => format!(
                    "Rounding: {} is shown as {t} {u} while its shown parts add up to {p} {u} (difference {diff}); totals are computed from the unrounded parts.",
                    lang.pick(s.total)
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_total_both_figures_and_the_difference() {
        let sum = || Sum {
            total: L("二氧化碳排放范围一合计", "CO2 scope 1 total"),
            unit: "tCO2",
            decimals: 3,
            value: 0.00702,
            parts: vec![0.00451, 0.00251],
        };
        assert_eq!(
            say(vec![sum()], Lang::Zh),
            vec!["四舍五入：二氧化碳排放范围一合计 显示为 0.007 tCO2，所列分项显示值之和为 0.008 tCO2（相差 -0.001）；合计由未修约的分项计算。"]
        );
        assert_eq!(
            say(vec![sum()], Lang::En),
            vec!["Rounding: CO2 scope 1 total is shown as 0.007 tCO2 while its shown parts add up to 0.008 tCO2 (difference -0.001); totals are computed from the unrounded parts."]
        );
        let fine = Sum {
            value: 0.0082,
            parts: vec![0.0051, 0.0031],
            ..sum()
        };
        assert!(say(vec![fine], Lang::Zh).is_empty());
    }

    #[test]
    fn a_total_that_is_not_the_sum_of_its_shown_parts_is_found() {
        // The case: 0.005 + 0.003 shown, the total 0.007.
        assert_eq!(discrepancy(0.00702, &[0.00451, 0.00251], 3), Some((7, 8)));
        // Shown parts that add up: nothing to say.
        assert_eq!(discrepancy(0.0082, &[0.0051, 0.0031], 3), None);
        // Not a sum of these parts at all: not a rounding matter.
        assert_eq!(discrepancy(1.0, &[0.2, 0.3], 3), None);
        // Signs and larger numbers: 599.427 = 631.959 − 0 − 32.532 shown exactly.
        assert_eq!(discrepancy(599.4269, &[631.9586, -0.0, -32.5317], 3), None);
        // Shares: 33.34 + 33.33 + 33.33 % shown as 33 + 33 + 33 (0 decimals) against 100.
        assert_eq!(
            discrepancy(100.0, &[33.34, 33.33, 33.33], 0),
            Some((100, 99))
        );
    }
}
