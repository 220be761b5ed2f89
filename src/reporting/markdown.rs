//! Markdown rendering for people: a title, then each section as a pipe table.

use super::cover;
use super::labels::{Lang, L};
use super::tables::{sections, Table};
use super::Report;

fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One section as a pipe table (numbers right-aligned).
pub fn table(tb: &Table, lang: Lang) -> String {
    let mut out = format!("## {}\n\n", lang.show(tb.title));
    if tb.rows.is_empty() {
        out.push_str(&format!("{}\n\n", lang.show(L("无", "none"))));
        return out;
    }
    let head: Vec<String> = tb
        .columns
        .iter()
        .map(|c| esc(&lang.show(c.label)))
        .collect();
    out.push_str(&format!("| {} |\n", head.join(" | ")));
    let align: Vec<&str> = (0..tb.columns.len())
        .map(|i| {
            if tb.rows.iter().any(|r| r.get(i).is_some_and(|c| c.is_num())) {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", align.join(" | ")));
    for row in &tb.rows {
        let cells: Vec<String> = row.iter().map(|c| esc(&c.human(lang))).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    out
}

pub fn render(r: &Report, lang: Lang) -> String {
    let mut out = format!(
        "# {} — {} {}\n\n",
        lang.show(cover::TITLE),
        r.site,
        r.period
    );
    // The title block: the cover's lines, then the signature and seal block.
    for (label, value) in cover::lines(r, lang) {
        out.push_str(&format!(
            "- **{}**: {}\n",
            esc(&lang.show(label)),
            esc(&value)
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "| | {} | {} |\n| --- | --- | --- |\n",
        lang.show(cover::SIGNATURE),
        lang.show(cover::DATE)
    ));
    for role in cover::SIGNATURES {
        out.push_str(&format!("| {} | | |\n", lang.show(role)));
    }
    out.push_str(&format!("\n{}:\n\n", lang.show(cover::SEAL)));
    for tb in sections(r, lang) {
        out.push_str(&table(&tb, lang));
    }
    out
}
