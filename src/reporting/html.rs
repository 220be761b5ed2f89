//! HTML rendering: one self-contained file (inline CSS, inline SVG charts, no script, no
//! network), printable on A4 (`@page`). Key figures first, then charts, then every section of
//! [`tables`](super::tables).

use super::cover;
use super::labels::{Lang, L};
use super::tables::{group, sections, Table};
use super::Report;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub const CSS: &str = r#"
@page { size: A4; margin: 14mm 12mm; }
@page wide { size: A4 landscape; margin: 14mm 12mm; }
section.wide { page: wide; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
  font-size: 10pt; color: #1b1f24; margin: 0 auto; max-width: 190mm; line-height: 1.35; }
h1 { font-size: 16pt; margin: 0 0 2mm; }
h2 { font-size: 12pt; margin: 6mm 0 2mm; border-bottom: 1px solid #9aa4af; padding-bottom: 1mm;
  break-after: avoid; }
.meta { color: #4a5561; margin-bottom: 4mm; }
.kpis { display: grid; grid-template-columns: repeat(3, 1fr); gap: 2mm; margin: 3mm 0; }
.kpi { border: 1px solid #c9d1d9; border-radius: 2mm; padding: 2mm 3mm; break-inside: avoid; }
.kpi .v { font-size: 14pt; font-weight: 600; }
.kpi .l { color: #4a5561; font-size: 8.5pt; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 3mm; }
figure { margin: 0; break-inside: avoid; border: 1px solid #e1e4e8; padding: 2mm; }
figcaption { font-size: 9pt; font-weight: 600; margin-bottom: 1mm; }
svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 8.5pt; margin-bottom: 2mm; }
th, td { border: 1px solid #c9d1d9; padding: 1mm 1.5mm; vertical-align: top; }
th { background: #eef1f4; text-align: left; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th, td { overflow-wrap: anywhere; }
tr { break-inside: avoid; }
.none { color: #6a737d; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #cf222e; font-weight: 600; }
.cover h1 { font-size: 20pt; margin: 10mm 0 2mm; }
.cover .sub { font-size: 12pt; color: #4a5561; margin: 0 0 8mm; }
.cover table { font-size: 10pt; }
.cover th { width: 34%; }
table.sign { margin-top: 10mm; }
table.sign td { height: 12mm; }
.seal { margin-top: 8mm; margin-left: auto; width: 45mm; height: 45mm; border: 1px dashed #9aa4af;
  border-radius: 50%; display: flex; align-items: center; justify-content: center; color: #6a737d;
  text-align: center; padding: 4mm; }
footer { margin-top: 6mm; color: #6a737d; font-size: 8pt; }
@media print { body { max-width: none; } .cover { break-after: page; }
  .charts { grid-template-columns: 1fr 1fr; } a { color: inherit; }
  table { font-size: 7.5pt; } th, td { padding: 0.6mm 1mm; } }
"#;

/// Series colours: none of them green or red, which the tables keep for good and bad.
const COLORS: &[&str] = &[
    "#0969da", "#bf8700", "#8250df", "#57606a", "#0a7ea4", "#953800",
];

fn num(v: f64, d: usize) -> String {
    group(&format!("{v:.d$}"))
}

/// Horizontal bars: (label, value, value text). `marker`: a vertical line at a value.
pub fn hbars(items: &[(String, f64, String)], marker: Option<(f64, String)>) -> String {
    let w = 360.0;
    let left = 120.0;
    let right = 70.0;
    let bar = 16.0;
    let gap = 6.0;
    let h = 10.0 + items.len() as f64 * (bar + gap) + if marker.is_some() { 14.0 } else { 0.0 };
    let max = items
        .iter()
        .map(|i| i.1)
        .chain(marker.as_ref().map(|m| m.0))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 {
        (w - left - right) / max
    } else {
        0.0
    };
    let mut s =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img">"#);
    for (i, (label, v, text)) in items.iter().enumerate() {
        let y = 5.0 + i as f64 * (bar + gap);
        let bw = (v.max(0.0) * scale).max(0.5);
        s.push_str(&format!(
            r#"<text x="{tx}" y="{ty}" font-size="10" text-anchor="end">{l}</text><rect x="{left}" y="{y}" width="{bw:.2}" height="{bar}" fill="{c}"/><text x="{vx:.2}" y="{ty}" font-size="10">{t}</text>"#,
            tx = left - 4.0,
            ty = y + bar - 4.0,
            l = esc(label),
            c = COLORS[i % COLORS.len()],
            vx = left + bw + 3.0,
            t = esc(text),
        ));
    }
    if let Some((m, label)) = marker {
        let x = left + m * scale;
        s.push_str(&format!(
            r##"<line x1="{x:.2}" y1="2" x2="{x:.2}" y2="{y2}" stroke="#cf222e" stroke-dasharray="3 2"/><text x="{x:.2}" y="{ty}" font-size="9" text-anchor="middle" fill="#cf222e">{l}</text>"##,
            y2 = h - 12.0,
            ty = h - 2.0,
            l = esc(&label)
        ));
    }
    s.push_str("</svg>");
    s
}

/// One stacked bar of shares with a legend below.
pub fn stacked(items: &[(String, f64)]) -> String {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let w = 360.0;
    let mut s =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} 70" role="img">"#);
    let mut x = 0.0;
    for (i, (label, v)) in items.iter().enumerate() {
        let share = if total > 0.0 { v / total } else { 0.0 };
        let bw = share * w;
        let c = COLORS[i % COLORS.len()];
        s.push_str(&format!(
            r#"<rect x="{x:.2}" y="4" width="{bw:.2}" height="22" fill="{c}"/>"#
        ));
        let lx = (i as f64) * (w / items.len().max(1) as f64);
        s.push_str(&format!(
            r#"<rect x="{lx:.2}" y="36" width="10" height="10" fill="{c}"/><text x="{tx:.2}" y="45" font-size="10">{l}</text><text x="{tx:.2}" y="60" font-size="10">{p} %</text>"#,
            tx = lx + 13.0,
            l = esc(label),
            p = num(share * 100.0, 1)
        ));
        x += bw;
    }
    s.push_str("</svg>");
    s
}

/// Tables of this many columns or more are printed on landscape pages (`@page wide`).
pub const WIDE_COLUMNS: usize = 10;

pub fn table_html(tb: &Table, lang: Lang) -> String {
    let wide = if tb.columns.len() >= WIDE_COLUMNS {
        " class=\"wide\""
    } else {
        ""
    };
    let mut out = format!(
        "<section id=\"{}\"{wide}><h2>{}</h2>\n",
        tb.id,
        esc(&lang.show(tb.title))
    );
    if tb.rows.is_empty() {
        out.push_str(&format!(
            "<p class=\"none\">{}</p></section>\n",
            esc(&lang.show(L("无", "none")))
        ));
        return out;
    }
    out.push_str("<table><thead><tr>");
    for c in &tb.columns {
        out.push_str(&format!("<th>{}</th>", esc(&lang.show(c.label))));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in &tb.rows {
        out.push_str("<tr>");
        for c in row {
            // Good green, bad red and marked ⚠: the colour is never the only sign.
            let (class, mark) = match (c, c.verdict()) {
                (super::tables::Cell::Num(..), _) => (" class=\"n\"", ""),
                (_, Some(true)) => (" class=\"ok\"", ""),
                (_, Some(false)) => (" class=\"bad\"", "⚠ "),
                _ => ("", ""),
            };
            out.push_str(&format!("<td{class}>{mark}{}</td>", esc(&c.human(lang))));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></section>\n");
    out
}

/// The cover page: identity, period, basis, the signature and seal block.
fn cover_html(r: &Report, lang: Lang) -> String {
    let mut o = format!(
        "<section id=\"cover\" class=\"cover\"><h1>{}</h1><p class=\"sub\">{}</p>\n<table><tbody>\n",
        esc(&lang.show(cover::TITLE)),
        esc(&format!("{} {}", r.site, r.period))
    );
    for (label, value) in cover::lines(r, lang) {
        // An unfinished period is marked, not only coloured.
        let (class, mark) = if r.in_progress && label == cover::STATUS {
            (" class=\"bad\"", "⚠ ")
        } else {
            ("", "")
        };
        o.push_str(&format!(
            "<tr><th>{}</th><td{class}>{mark}{}</td></tr>\n",
            esc(&lang.show(label)),
            esc(&value)
        ));
    }
    o.push_str(&format!(
        "</tbody></table>\n<table class=\"sign\"><thead><tr><th></th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
        esc(&lang.show(cover::SIGNATURE)),
        esc(&lang.show(cover::DATE))
    ));
    for role in cover::SIGNATURES {
        o.push_str(&format!(
            "<tr><th>{}</th><td></td><td></td></tr>\n",
            esc(&lang.show(role))
        ));
    }
    o.push_str(&format!(
        "</tbody></table>\n<div class=\"seal\">{}</div></section>\n",
        esc(&lang.show(cover::SEAL))
    ));
    o
}

fn kpi(lang: Lang, label: L, value: String, unit: &str) -> String {
    format!(
        "<div class=\"kpi\"><div class=\"v\">{} <small>{}</small></div><div class=\"l\">{}</div></div>",
        esc(&value),
        esc(unit),
        esc(&lang.show(label))
    )
}

fn opt(v: Option<f64>, d: usize) -> String {
    v.map(|v| num(v, d)).unwrap_or_else(|| "—".into())
}

pub fn render(r: &Report, lang: Lang) -> String {
    let title = format!("{} — {} {}", lang.show(cover::TITLE), r.site, r.period);
    let mut o = format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>\n",
        lang.code(),
        esc(&title),
        CSS
    );
    o.push_str(&cover_html(r, lang));
    // Key figures
    o.push_str("<div class=\"kpis\">");
    o.push_str(&kpi(
        lang,
        L(
            "综合能耗(当量值)",
            "comprehensive energy (calorific equivalent)",
        ),
        num(r.comprehensive_energy_tce, 3),
        "tce",
    ));
    o.push_str(&kpi(
        lang,
        L(
            "综合能耗(等价值)",
            "comprehensive energy (generation-input equivalent)",
        ),
        num(r.comprehensive_energy_equal_value_tce, 3),
        "tce",
    ));
    o.push_str(&kpi(
        lang,
        L("考核能耗", "assessment energy"),
        num(r.assessment_energy_tce, 3),
        "tce",
    ));
    o.push_str(&kpi(
        lang,
        L("万元增加值能耗", "energy intensity"),
        opt(
            r.intensity_comparable_tce_per_10k_cny
                .or(r.intensity_tce_per_10k_cny),
            4,
        ),
        "tce/10k CNY",
    ));
    o.push_str(&kpi(
        lang,
        L("较基期变化", "change vs base year"),
        opt(r.change_vs_baseline_pct, 2),
        "%",
    ));
    o.push_str(&kpi(
        lang,
        L("二氧化碳排放", "CO2 emissions"),
        num(r.carbon.total_tco2, 3),
        "tCO2",
    ));
    o.push_str("</div>\n<div class=\"charts\">\n");

    // Charts
    let carriers: Vec<(String, f64, String)> = r
        .carriers
        .iter()
        .map(|c| {
            (
                lang.carrier_name(&c.carrier, &c.name),
                c.tce,
                format!("{} tce", num(c.tce, 1)),
            )
        })
        .collect();
    o.push_str(&format!(
        "<figure><figcaption>{}</figcaption>{}</figure>\n",
        esc(&lang.show(L(
            "分品种综合能耗(当量值)",
            "Energy by carrier (calorific equivalent)"
        ))),
        hbars(&carriers, None)
    ));
    if let (Some(b), Some(i)) = (
        r.baseline.intensity_tce_per_10k_cny,
        if r.intensity_basis == "comparable" {
            r.intensity_comparable_tce_per_10k_cny
        } else {
            r.intensity_tce_per_10k_cny
        },
    ) {
        let path = b * (1.0 + r.target.path_change_pct / 100.0);
        let target = b * (1.0 + r.target.target_change_pct / 100.0);
        let items = vec![
            (
                format!("{} {}", lang.show(L("基期", "base")), r.baseline.year),
                b,
                num(b, 4),
            ),
            (
                format!("{} {}", lang.show(L("路径", "path")), r.period),
                path,
                num(path, 4),
            ),
            (
                format!(
                    "{} {}",
                    lang.show(L("目标", "target")),
                    r.target.target_year
                ),
                target,
                num(target, 4),
            ),
            (
                format!("{} {}", lang.show(L("实际", "actual")), r.period),
                i,
                num(i, 4),
            ),
        ];
        o.push_str(&format!(
            "<figure><figcaption>{}</figcaption>{}</figure>\n",
            esc(&lang.show(L(
                "能耗强度与目标路径 tce/万元",
                "Intensity vs target path, tce/10k CNY"
            ))),
            hbars(&items, None)
        ));
    }
    if let Some(tou) = &r.tou_kwh {
        let items: Vec<(String, f64)> = ["sharp", "peak", "flat", "valley"]
            .iter()
            .filter_map(|b| {
                tou.get(*b).map(|v| {
                    let l = match *b {
                        "sharp" => L("尖峰", "sharp"),
                        "peak" => L("高峰", "peak"),
                        "flat" => L("平段", "flat"),
                        _ => L("低谷", "valley"),
                    };
                    (lang.show(l), *v)
                })
            })
            .collect();
        o.push_str(&format!(
            "<figure><figcaption>{}</figcaption>{}</figure>\n",
            esc(&lang.show(L("分时电量", "Time-of-use split"))),
            stacked(&items)
        ));
    }
    let comp: Vec<(String, f64, String)> = r
        .data_quality
        .series
        .iter()
        .map(|q| {
            (
                format!("{} {}", q.device, q.quantity.as_str()),
                q.completeness_pct,
                format!("{} %", num(q.completeness_pct, 2)),
            )
        })
        .collect();
    o.push_str(&format!(
        "<figure><figcaption>{}</figcaption>{}</figure>\n",
        esc(&lang.show(L("各计量器具数据完整率", "Completeness per meter"))),
        hbars(&comp, Some((90.0, "90 %".into())))
    ));
    if !r.months.is_empty() {
        let items: Vec<(String, f64, String)> = r
            .months
            .iter()
            .map(|m| {
                (
                    m.period.clone(),
                    m.comprehensive_energy_tce,
                    format!("{} tce", num(m.comprehensive_energy_tce, 1)),
                )
            })
            .collect();
        o.push_str(&format!(
            "<figure><figcaption>{}</figcaption>{}</figure>\n",
            esc(&lang.show(L("分月综合能耗", "Energy by month"))),
            hbars(&items, None)
        ));
    }
    o.push_str("</div>\n");
    for tb in sections(r, lang) {
        o.push_str(&table_html(&tb, lang));
    }
    o.push_str(&format!(
        "<footer>energy-gateway report · {} {}</footer>\n</body></html>\n",
        esc(&r.site),
        esc(&r.period)
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporting::tables::{Cell, Col};

    #[test]
    fn a_bad_outcome_is_red_and_marked_whatever_its_polarity() {
        let tb = Table {
            id: "t",
            title: L("表", "table"),
            columns: vec![
                Col {
                    key: "met",
                    label: L("达到", "met"),
                },
                Col {
                    key: "flagged",
                    label: L("超差", "flagged"),
                },
            ],
            rows: vec![
                vec![Cell::Flag(true), Cell::Warn(true)],
                vec![Cell::Flag(false), Cell::Warn(false)],
            ],
        };
        let html = table_html(&tb, Lang::En);
        // Met / not over tolerance: green; not met / over tolerance: red with ⚠.
        assert!(html.contains("<tr><td class=\"ok\">yes</td><td class=\"bad\">⚠ yes</td></tr>"));
        assert!(html.contains("<tr><td class=\"bad\">⚠ no</td><td class=\"ok\">no</td></tr>"));
        // Chart series never use the status colours.
        assert!(!COLORS.contains(&"#1a7f37") && !COLORS.contains(&"#cf222e"));
    }
}
