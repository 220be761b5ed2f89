//! The cover of the fileable report (a page of its own in HTML/PDF, a title block in Markdown):
//! who reports (enterprise name, 统一社会信用代码 and the other `[accounting.enterprise]` keys that
//! are set), the period and whether it is complete ("数据截至"), the basis of the accounts
//! (GB/T 2589-2020 and the factor tables), when and by which gateway version it was made, and
//! the signature and seal block (编制/审核/批准).

use super::labels::{Lang, L};
use super::Report;

/// The title of every report format.
pub const TITLE: L = L("能源与碳排放报告", "Energy and carbon report");

/// The signature block's roles.
pub const SIGNATURES: [L; 3] = [
    L("编制", "prepared by"),
    L("审核", "reviewed by"),
    L("批准", "approved by"),
];
pub const SIGNATURE: L = L("签字", "signature");
pub const DATE: L = L("日期", "date");
pub const SEAL: L = L("单位盖章", "seal of the enterprise");
/// The label of the line saying whether the period is complete.
pub const STATUS: L = L("报告期状态", "period status");

/// The cover's lines, label and value, in the order they are shown. Enterprise keys that are
/// not configured are left out (the notes list them), except the name, which every cover has.
pub fn lines(r: &Report, lang: Lang) -> Vec<(L, String)> {
    let e = &r.enterprise;
    let mut out = vec![(
        L("企业名称", "enterprise"),
        e.name.clone().unwrap_or_else(|| r.site.clone()),
    )];
    for (label, v) in [
        (
            L("统一社会信用代码", "unified social credit code"),
            &e.credit_code,
        ),
        (
            L("行业代码(GB/T 4754)", "industry (GB/T 4754)"),
            &e.industry_code,
        ),
        (L("地址", "address"), &e.address),
        (L("联系人", "contact"), &e.contact),
    ] {
        if let Some(v) = v {
            out.push((label, v.clone()));
        }
    }
    out.push((
        L("报告期", "period"),
        format!("{} ({} — {}, {})", r.period, r.from, r.to, r.timezone),
    ));
    let (status, to) = match &r.data_to {
        Some(d) if r.in_progress => (
            L(
                "进行中：数据不完整，非最终报告",
                "in progress: incomplete data, not a final report",
            ),
            d.clone(),
        ),
        _ => (L("已结束(完整报告期)", "complete period"), r.to.clone()),
    };
    out.push((STATUS, lang.show(status)));
    out.push((L("数据截至", "data to"), to));
    out.push((
        L("核算依据", "basis"),
        format!(
            "GB/T 2589-2020 {}; {} {}",
            lang.pick(L(
                "综合能耗计算通则",
                "General rules for calculation of the comprehensive energy consumption"
            )),
            lang.pick(L("折标系数表", "factor table")),
            r.factor_table
        ),
    ));
    out.push((
        L("系数来源", "factor sources"),
        e.factor_tables
            .iter()
            .map(|f| match &f.edition {
                Some(ed) => format!("{} ({ed})", f.file),
                None => f.file.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    ));
    out.push((L("生成日期", "generated"), e.report_date.clone()));
    out.push((
        L("软件版本", "gateway version"),
        format!("energy-gateway {}", e.software_version),
    ));
    out
}
