//! CSV rendering: one file holding every section as a tidy long table with the columns
//! `section,row,field,value` (row = 1-based row of the section, field = the section's column
//! key, value = full-precision number or text). Filter on `section` and pivot on `field` to get
//! the section's own table; the column keys are listed in `docs/report-formats.md`.

use super::labels::Lang;
use super::tables::{sections, Table};
use super::Report;

/// Quotes a CSV field when needed (RFC 4180).
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The long table of some sections.
pub fn render_tables(tables: &[Table]) -> String {
    let mut out = String::from("section,row,field,value\n");
    for tb in tables {
        for (i, row) in tb.rows.iter().enumerate() {
            for (c, cell) in tb.columns.iter().zip(row) {
                out.push_str(&format!(
                    "{},{},{},{}\n",
                    tb.id,
                    i + 1,
                    c.key,
                    field(&cell.raw())
                ));
            }
        }
    }
    out
}

pub fn render(r: &Report, lang: Lang) -> String {
    render_tables(&sections(r, lang))
}
