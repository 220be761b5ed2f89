//! JSON rendering of a [`Report`](super::Report). Numbers are written with full precision
//! (shortest round-trip form); absent values are `null`.

use super::Report;

/// Pretty-printed JSON with a trailing newline.
pub fn render(report: &Report) -> String {
    match serde_json::to_string_pretty(report) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serialising plain data cannot fail; keep the error visible if it ever does.
        Err(e) => format!("{{\"error\": \"{e}\"}}\n"),
    }
}
