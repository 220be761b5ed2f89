//! The report's notes ([`Note`]) in the report's language: Chinese sentences in `zh`, the
//! English ones (the same as the JSON's) in `en`. Numbers are rounded for people here; the JSON
//! keeps them whole. Notes handed over as sentences ([`Note::Text`]) are shown as they are.

use super::labels::Lang;
use crate::accounting::notes::Note;

/// Month, quarter, year.
fn kind_zh(kind: &str) -> &'static str {
    match kind {
        "month" => "月度",
        "quarter" => "季度",
        "year" => "年度",
        _ => "本期",
    }
}

/// Province, region, national.
fn level_zh(basis: &str) -> &'static str {
    match basis {
        "province" => "省级",
        "region" => "区域电网",
        _ => "全国",
    }
}

/// A note as shown to people in `lang`.
pub fn text(n: &Note, lang: Lang) -> String {
    if lang == Lang::En {
        return n.to_string();
    }
    match n {
        Note::InProgress { data_to } => format!("报告期进行中：数据截至 {data_to}"),
        Note::ValueAddedMissing { months } => format!(
            "缺少 {} 的工业增加值：请用 `energy-gateway import value-added` 导入",
            months.join("、")
        ),
        Note::NoYearOnYear { period } => format!("{period} 无计量数据：不计算同比变化"),
        Note::BaseBasisUnset => "未设置 accounting.target.base_basis：配置的基期强度按未扣除口径(与统计报表一致，不扣除任何项)处理，并与本期未扣除的综合能耗比较".into(),
        Note::BaseYearPartial { year, measured_pct } => format!(
            "基期 {year} 年由本机存储的数据计算，实测区间占 {measured_pct:.1} %"
        ),
        Note::NoBaseIntensity { year } => format!(
            "无基期强度：请设置 accounting.target.base_intensity_tce_per_10k_cny，或导入 {year} 年的读数和工业增加值"
        ),
        Note::NoComparablePrices { period } => format!(
            "{period} 的工业增加值无可比价，不计算较基期变化(请导入 value_added_comparable_10k_cny)"
        ),
        Note::YtdValueAddedMissing {
            missing,
            months,
            from,
            to,
        } => format!(
            "无年初至今进度：{from}..{to} 共 {months} 个月，其中 {missing} 个月缺少工业增加值"
        ),
        Note::NotJudgedAgainstPath { kind } => format!(
            "{}数据仅供参考，不按年度目标路径评判；进度按年初至今评判(progress.on_track)",
            kind_zh(kind)
        ),
        Note::FactorVerify { row, carrier, note } => {
            format!("{carrier} 的折标系数 {row} 在系数表中标为待核实：{note}")
        }
        Note::NetExport { carrier } => format!("{carrier} 外供量超过购入量：净扣减"),
        Note::MissingEmissionFactors { carriers } => format!(
            "{} 无排放因子：未计入二氧化碳排放合计(请设置 [[accounting.emission_factors]])",
            carriers.join("、")
        ),
        Note::ProductionMissing { product, months } => format!(
            "产品 {product}：{} 无产量数据(请导入产量或设置 production_device)",
            months.join("、")
        ),
        Note::BalanceFlagged {
            parent,
            difference,
            unit,
            difference_pct,
            tolerance_pct,
        } => format!(
            "分项计量平衡：{parent} 与其分表合计相差 {} {unit}({})，超过允许的 {tolerance_pct} %",
            super::tables::group(&format!("{difference:.2}")),
            difference_pct
                .map(|p| format!("{p:.2} %"))
                .unwrap_or_else(|| "总表无计量".into()),
        ),
        Note::EnterpriseIncomplete { keys } => format!(
            "企业信息不完整：请在 [accounting.enterprise] 中设置 {}",
            keys.join("、")
        ),
        Note::NoData { period } => format!("{period} 无数据：未保存核算结果"),
        Note::GridEarliest { report_year, year } => {
            format!("{report_year} 年及以前无已发布的电网排放因子：采用最早的 {year} 年因子")
        }
        Note::GridSkipped {
            configured_year,
            report_year,
            skipped,
            basis,
            area,
        } => {
            let when = match configured_year {
                Some(y) => format!("{y} 年"),
                None => format!("{report_year} 年及以前"),
            };
            format!(
                "{} 无{when}的电网排放因子：采用{}因子 {area}",
                skipped
                    .iter()
                    .map(|(b, a)| format!("{}{a}", level_zh(b)))
                    .collect::<Vec<_>>()
                    .join("、"),
                level_zh(basis)
            )
        }
        Note::GridOlderYear {
            report_year,
            area,
            year,
        } => format!(
            "{area} 无 {report_year} 年电网排放因子：采用截至 {report_year} 年最新发布的 {year} 年因子"
        ),
        // The remark is the factor table's own text.
        Note::GridFactorNote { year, area, note } => {
            format!("电网排放因子 {year} {area}：{note}")
        }
        Note::ProductsWeighted { products } => {
            format!("单位产品综合能耗：{products} 种产品在同一指标内按各自能耗(tce)加权")
        }
        Note::OutputValueNeeded { indicator, months } => format!(
            "{indicator} 需要工业总产值：请为 {} 设置 [[accounting.indicators.output_value]]",
            months.join("、")
        ),
        Note::NotScored { indicator } => {
            format!("{indicator}：未配置基准值/引领值(标准资料中没有)，不计分")
        }
        Note::RenewableBandScaled { annual_tce, band } => format!(
            "可再生能源利用率的能耗档按本期能耗折算全年确定：{} tce → {band}",
            super::tables::group(&format!("{annual_tce:.1}"))
        ),
        Note::RenewableShareBasis => "可再生能源利用率 = 非化石能源(自发自用光伏、绿电、绿证；当量值) ÷ 综合能耗(当量值)；标准的确切比值口径不在参考资料中".into(),
        Note::RenewableBandNotScored { band } => {
            format!("可再生能源利用率：能耗档 {band} 未配置基准值/引领值(标准资料中没有)，不计分")
        }
        Note::MuNeedsLand => "亩均指标需要用地面积：请设置 accounting.indicators.land_area_mu".into(),
        Note::MuPeriod => "亩均指标按本报告期计算；亩均评价按自然年".into(),
        Note::CertBundled {
            id,
            month,
            certificates,
        } => format!(
            "{}：{certificates} 张随绿电交易绑定的绿证不再重复扣除；该绿电已通过 [[accounting.green_power]] 扣除(113号：不重复扣除)",
            cert_batch_zh(id, month)
        ),
        Note::CertBundledShort {
            id,
            month,
            kwh,
            bought,
        } => format!(
            "{}：绑定的绿证对应 {} kWh，但 {month} 只配置了 {} kWh 绿电；请在 [[accounting.green_power]] 中配置该笔交易",
            cert_batch_zh(id, month),
            super::tables::group(&format!("{:.0}", kwh.round())),
            super::tables::group(&format!("{:.0}", bought.round()))
        ),
        Note::CertOwnPv {
            id,
            month,
            certificates,
        } => format!(
            "{}：{certificates} 张自发电量核发的不可交易绿证不再重复扣除；已扣除的是计量的自发自用电量(113号：不重复扣除)",
            cert_batch_zh(id, month)
        ),
        Note::CertOtherProvince {
            id,
            month,
            origin,
            site,
        } => format!(
            "{}：来自外省({origin})；113号规定未随交易的绿证计入绿证所在地，但 {site} 的企业考核如何认定需向当地主管部门确认",
            cert_batch_zh(id, month)
        ),
        Note::NonFossilCapped {
            total_kwh,
            deducted_kwh,
        } => format!(
            "非化石电量({} kWh)超过用电量；只扣除 {} kWh",
            super::tables::group(&format!("{:.0}", total_kwh.round())),
            super::tables::group(&format!("{:.0}", deducted_kwh.round()))
        ),
        Note::EqualValuePractice { year, remark } => format!(
            "未配置 {year} 年的 [[accounting.electricity_equal_value]]：采用系数表的惯用值。{remark}"
        ),
        Note::EqualValueFallback => "未配置电力等价值，系数表中也没有：按当量值计算".into(),
        Note::Text(t) => t.clone(),
    }
}

/// How a certificate batch is named in a Chinese note.
fn cert_batch_zh(id: &Option<String>, month: &str) -> String {
    match id {
        Some(id) => format!("绿证 {id}({month})"),
        None => format!("{month} 的绿证"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_speak_the_reports_language_and_json_keeps_english() {
        let n = Note::BalanceFlagged {
            parent: "main".into(),
            difference: 1234.5678,
            unit: "kWh".into(),
            difference_pct: Some(6.25),
            tolerance_pct: 5.0,
        };
        assert_eq!(
            text(&n, Lang::Zh),
            "分项计量平衡：main 与其分表合计相差 1,234.57 kWh(6.25 %)，超过允许的 5 %"
        );
        let en = "sub-meter balance: main differs from the sum of its children by 1234.5678 kWh (6.25 %), beyond 5 %";
        assert_eq!(text(&n, Lang::En), en);
        assert_eq!(serde_json::to_string(&n).unwrap(), format!("\"{en}\""));
        let n = Note::NotJudgedAgainstPath { kind: "month" };
        assert!(text(&n, Lang::Zh).starts_with("月度数据仅供参考"));
    }

    #[test]
    fn certificate_and_equal_value_notes_are_chinese_in_zh_and_unchanged_in_json() {
        let n = Note::CertOwnPv {
            id: Some("PV-2026-10".into()),
            month: "2026-10".into(),
            certificates: 114,
        };
        assert_eq!(
            text(&n, Lang::Zh),
            "绿证 PV-2026-10(2026-10)：114 张自发电量核发的不可交易绿证不再重复扣除；已扣除的是计量的自发自用电量(113号：不重复扣除)"
        );
        let en = "green certificates PV-2026-10 (2026-10): 114 non-tradable certificates of the plant's own generation are not deducted again; the metered self-generation is (113号: no double deduction)";
        assert_eq!(serde_json::to_string(&n).unwrap(), format!("\"{en}\""));
        let n = Note::NonFossilCapped {
            total_kwh: 12000.0,
            deducted_kwh: 9500.5,
        };
        assert_eq!(
            text(&n, Lang::Zh),
            "非化石电量(12,000 kWh)超过用电量；只扣除 9,501 kWh"
        );
        assert_eq!(
            text(&n, Lang::En),
            "non-fossil electricity (12000 kWh) exceeds the electricity consumed; 9500.5 kWh deducted"
        );
        for n in [
            Note::EqualValueFallback,
            Note::CertOtherProvince {
                id: None,
                month: "2026-10".into(),
                origin: "sichuan".into(),
                site: "chongqing".into(),
            },
        ] {
            assert!(
                !text(&n, Lang::Zh).contains(" the "),
                "{}",
                text(&n, Lang::Zh)
            );
        }
    }
}
