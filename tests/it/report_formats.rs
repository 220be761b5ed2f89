//! The factory report in every format through the real binary, on the golden case
//! `tests/testcases/report_ceramic_month/` (the worked example's readings, value added and
//! production from `accounting_ceramic_month`, plus indicator inputs and alert transitions):
//! JSON, CSV, HTML and Markdown compared with the checked-in `expected_report.*`; the HTML
//! rendered by headless Chromium (no console error, key numbers in the DOM, a PDF and a PNG);
//! the online-monitoring export; clear errors for bad input.
//!
//! `EGW_UPDATE_GOLDEN=1` rewrites the expected files (review the diff);
//! `EGW_UPDATE_SCREENSHOT=1` rewrites `docs/report-example.png`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use energy_gateway::config::Synchronous;
use energy_gateway::storage::{AlertEvent, Store};
use serde_json::Value;

fn testcases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases")
}

fn case() -> PathBuf {
    testcases().join("report_ceramic_month")
}

fn config() -> String {
    case().join("config.toml").to_string_lossy().into_owned()
}

/// A store with the case's inputs and alert transitions.
fn prepared() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    // The alert history table belongs to the gateway's store; create it the way `run` does.
    let mut store = Store::open(&data.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let alerts = std::fs::read_to_string(case().join("alerts.csv")).unwrap();
    for line in alerts.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let ts = chrono::DateTime::parse_from_rfc3339(f[0])
            .unwrap()
            .timestamp_millis();
        let state: &'static str = if f[4] == "firing" {
            "firing"
        } else {
            "resolved"
        };
        let severity: &'static str = match f[5] {
            "critical" => "critical",
            _ => "warning",
        };
        store
            .insert_alert_event(&AlertEvent {
                ts_ms: ts,
                rule: f[1].into(),
                device: f[2].into(),
                quantity: f[3].parse().ok(),
                state,
                severity,
                value: f[6].parse().ok(),
                message: f[7].into(),
            })
            .unwrap();
    }
    drop(store);
    let src = testcases().join("accounting_ceramic_month");
    for (file, kind) in [
        ("readings.csv", "readings"),
        ("value_added.csv", "value-added"),
        ("production.csv", "production"),
    ] {
        let f = src.join(file);
        common::expect_success(&common::run_gateway(
            data.path(),
            &["import", kind, f.to_str().unwrap(), "--config", &config()],
        ));
    }
    data
}

fn report(data: &Path, format: &str, lang: &str) -> String {
    common::expect_success(&common::run_gateway(
        data,
        &[
            "report",
            "--config",
            &config(),
            "--period",
            "2026-10",
            "--format",
            format,
            "--lang",
            lang,
            "--no-store",
        ],
    ))
}

fn golden(name: &str, actual: &str) -> String {
    let p = case().join(name);
    if std::env::var_os("EGW_UPDATE_GOLDEN").is_some() {
        std::fs::write(&p, actual).unwrap();
    }
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Numbers equal to 1e-9 relative; everything else exactly; the same keys on both sides.
fn assert_json_close(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                (a - e).abs() <= 1e-9 * e.abs().max(1e-12),
                "{path}: {a} != {e}"
            );
        }
        (Value::Object(a), Value::Object(e)) => {
            let ak: Vec<&String> = a.keys().collect();
            let ek: Vec<&String> = e.keys().collect();
            assert_eq!(ak, ek, "{path}: keys differ");
            for (k, v) in e {
                assert_json_close(&a[k], v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: lengths differ");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_json_close(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

fn assert_text_eq(name: &str, actual: &str, expected: &str) {
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\n  actual:   {:?}\n  expected: {:?}\n(EGW_UPDATE_GOLDEN=1 rewrites it; review the diff)",
            line + 1,
            actual.lines().nth(line),
            expected.lines().nth(line)
        );
    }
}

#[test]
fn every_format_reproduces_its_golden_file() {
    let data = prepared();
    let json = report(data.path(), "json", "zh");
    let actual: Value = serde_json::from_str(&json).unwrap();
    let expected: Value = serde_json::from_str(&golden("expected_report.json", &json)).unwrap();
    assert_json_close(&actual, &expected, "report");
    for (format, lang, file) in [
        ("csv", "zh", "expected_report.csv"),
        ("md", "zh", "expected_report.md"),
        ("md", "en", "expected_report.en.md"),
        ("html", "zh", "expected_report.html"),
    ] {
        let text = report(data.path(), format, lang);
        assert_text_eq(file, &text, &golden(file, &text));
    }
}

/// The new sections' numbers, by hand (see the case's README.md).
#[test]
fn indicators_alerts_and_quality_by_hand() {
    let data = prepared();
    let r: Value = serde_json::from_str(&report(data.path(), "json", "zh")).unwrap();
    let close = |v: &Value, e: f64| {
        let a = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
        assert!((a - e).abs() <= 1e-9 * e.abs().max(1e-12), "{a} != {e}");
    };
    let g = &r["indicators"]["green_factory"];
    // Tile 4.8612… kgce/m², GB 21252-2023 E ≤ 0.2 %: leading 4.5 (grade 1), baseline 5.5
    // (grade 2): score (5.5 − 4.8612…) / (5.5 − 4.5).
    assert_eq!(g[0]["id"], "unit_product_energy.tile");
    close(&g[0]["baseline"], 5.5);
    close(&g[0]["leading"], 4.5);
    close(&g[0]["score"], 5.5 - 631958.595 / 130000.0);
    // Carbon per output value: 1 510.9462… t (scope 2 from 重庆's own 2022 factor) × 1000 /
    // 8 000 (10⁴ CNY) = 188.87… kg; levels 200 → 100: score (200 − 188.87…) / 100.
    let cpo = (804.334236948 + 1_351_850.0 * 0.5227 / 1000.0) * 1000.0 / 8000.0;
    close(&g[1]["value"], cpo);
    close(&g[1]["score"], (200.0 - cpo) / 100.0);
    // Renewable share 32.53163 / 631.958595 = 5.1477… %; band from 631.96 × 12 = 7 583 tce →
    // 5000-10000; levels 3 → 10 %.
    let share = 32.53163 / 631.958595 * 100.0;
    close(&g[2]["value"], share);
    assert_eq!(g[2]["band"], "5000-10000");
    close(&g[2]["score"], (share - 3.0) / 7.0);
    let mu = &r["indicators"]["mu"];
    close(&mu[0]["value"], 2000.0 / 891.6846);
    close(&mu[1]["value"], 2000.0 / 150.0);
    close(&mu[2]["value"], 891.6846 / 150.0);
    // Alerts: three rules, one firing each inside October (the September one is outside).
    assert_eq!(r["alerts"]["fired"], 3);
    assert_eq!(r["alerts"]["resolved"], 3);
    assert_eq!(r["alerts"]["rules"][0]["rule"], "counter-main");
    assert_eq!(r["alerts"]["rules"][0]["severity"], "critical");
    // Data quality in CSV: the gas meter 99.46 % ≥ 90 %.
    let csv = report(data.path(), "csv", "zh");
    assert!(csv.contains("data_quality,4,completeness_pct,99.46236559139786\n"));
    assert!(csv.contains("data_quality,4,meets_90_pct,true\n"));
}

/// Chromium for the report: an A4-like window and console messages on stderr.
fn run_chromium(url: &str, extra: &[String], limit: Duration) -> Output {
    let mut flags = vec![
        "--enable-logging=stderr".to_string(),
        "--v=0".to_string(),
        "--window-size=900,1270".to_string(),
    ];
    flags.extend_from_slice(extra);
    common::run_chromium(url, &flags, limit)
}

fn no_console_errors(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    for bad in [
        "Uncaught",
        "CONSOLE",
        ":ERROR:CONSOLE",
        "Failed to load resource",
    ] {
        assert!(
            !err.contains(bad),
            "console error in the report page ({bad}):\n{err}"
        );
    }
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let data = prepared();
    let html = report(data.path(), "html", "zh");
    // Self-contained: no script, no external resource.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("@page { size: A4"));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.display());

    let out = run_chromium(&url, &["--dump-dom".into()], Duration::from_secs(90));
    no_console_errors(&out);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("</html>"), "no DOM");
    for key in [
        "631.959",                                  // comprehensive energy, tce (当量值)
        "891.685",                                  // 等价值
        "0.3155",                                   // intensity, comparable prices
        "-16.85",    // vs the 2022 baseline (gross, like with like), %
        "1,510.946", // tCO2
        "本省因子，最新年份 province, latest year", // why this grid factor
        "2,800.0",   // maximum demand, kW
        "99.46",     // gas meter completeness, %
        "综合能耗(当量值) comprehensive energy (calorific equivalent)",
        // The cover: identity, completeness of the period, signatures.
        "91500226MA00EXAMPU",
        "已结束(完整报告期) complete period",
        "数据截至 data to",
        "GB/T 2589-2020",
        "批准 approved by",
    ] {
        assert!(dom.contains(key), "{key} is not in the rendered page");
    }
    assert!(dom.matches("<svg").count() >= 4, "charts missing");

    let pdf = dir.path().join("report.pdf");
    let out = run_chromium(
        &url,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
        Duration::from_secs(90),
    );
    no_console_errors(&out);
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    // A4 = 595 × 842 points.
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("/MediaBox [0 0 595") || text.contains("/MediaBox [0 0 594.9"),
        "not printed on A4"
    );

    let shot = dir.path().join("report.png");
    let out = run_chromium(
        &url,
        &[format!("--screenshot={}", shot.display())],
        Duration::from_secs(90),
    );
    no_console_errors(&out);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "suspiciously small screenshot");
    if std::env::var_os("EGW_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-example.png");
        std::fs::write(docs, &png).unwrap();
    }
}

/// An A4 page's content box in CSS px: 210 mm less the 2 × 12 mm margins of the report's
/// `@page` rule, at 96 px per inch.
const A4_CONTENT_PX: f64 = (210.0 - 24.0) / 25.4 * 96.0;

#[test]
fn example_report_prints_on_a4_with_every_table_inside_the_page() {
    let data = prepared();
    let html = report(data.path(), "html", "zh");
    assert!(
        html.contains("@page { size: A4; margin: 14mm 12mm; }"),
        "the page box below assumes these margins"
    );
    // The CJK fonts are named for the printer (Debian: fonts-noto-cjk, recommended by the .deb).
    assert!(html.contains("font-family: \"Noto Sans CJK SC\", \"Source Han Sans SC\""));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let pdf = dir.path().join("report.pdf");
    // Laid out for print in a viewport as wide as the page's content box, then printed.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/chromium_cdp.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--print")
        .arg(format!("file://{}", page.display()))
        .args([&format!("{}", A4_CONTENT_PX.floor()), "1000", "2"])
        .arg(&pdf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = facts["tables"].as_array().unwrap();
    assert!(tables.len() >= 10, "{facts}");
    for t in tables {
        let right = t["right"].as_f64().unwrap();
        assert!(
            right <= A4_CONTENT_PX + 0.5
                && t["scroll_width"].as_f64().unwrap() <= A4_CONTENT_PX + 0.5,
            "table \"{}\" is {right} px wide, beyond the A4 content box of {A4_CONTENT_PX:.0} px",
            t["id"]
        );
    }
    assert_eq!(facts["overflowing"], serde_json::json!([]), "{facts}");
    // Chinese drawn with a CJK font when one is installed (fc-list knows), and embedded in the
    // PDF as text (Chromium embeds Type 3 fonts, so pdffonts lists no family names: the text
    // layer and the font actually drawn are what can be checked).
    let cjk_installed = std::process::Command::new("fc-list")
        .arg(":lang=zh")
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let fonts: Vec<&str> = facts["h1_fonts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if cjk_installed {
        assert!(
            fonts
                .iter()
                .any(|f| f.contains("CJK") || f.contains("Han Sans")),
            "the title was not drawn with a CJK font: {fonts:?}"
        );
    }
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let text = std::process::Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    let text = String::from_utf8_lossy(&text.stdout);
    for key in ["分品种能源消费", "等价值", "原料用能", "数据来源"] {
        assert!(text.contains(key), "{key} is not in the PDF's text");
    }
    // On the PDF itself (page sizes and word boxes in points): every word inside its page's
    // content box, the cover on a portrait page, the widest tables on landscape pages.
    let pages = pdf_pages(&pdf);
    let margin = 12.0 / 25.4 * 72.0;
    for (i, p) in pages.iter().enumerate() {
        for (word, x0, x1) in &p.words {
            assert!(
                *x0 >= margin - 1.0 && *x1 <= p.width - margin + 1.0,
                "\"{word}\" on page {} spans x {x0:.1}..{x1:.1} pt, outside the content box of a {:.0} pt wide page",
                i + 1,
                p.width
            );
        }
    }
    assert!(
        pages[0].width < pages[0].height,
        "the cover is not portrait"
    );
    assert!(pages[0].text().contains("编制") && pages[0].text().contains("单位盖章"));
    let landscape: String = pages
        .iter()
        .filter(|p| p.width > p.height)
        .map(|p| p.text())
        .collect();
    for key in ["分品种能源消费", "单位产品综合能耗", "绿色工厂", "绿证批次"]
    {
        assert!(
            landscape.contains(key),
            "the table {key} is not printed on a landscape page"
        );
    }
    // The pages as PNGs for the docs.
    if std::env::var_os("EGW_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-a4-page");
        let st = std::process::Command::new("pdftoppm")
            .args(["-r", "70", "-png", "-f", "1", "-l", "4"])
            .arg(&pdf)
            .arg(&docs)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// A PDF page as `pdftotext -bbox` sees it: size and words with their left and right edges (pt).
struct PdfPage {
    width: f64,
    height: f64,
    words: Vec<(String, f64, f64)>,
}

impl PdfPage {
    fn text(&self) -> String {
        self.words.iter().map(|w| w.0.as_str()).collect()
    }
}

fn pdf_pages(pdf: &Path) -> Vec<PdfPage> {
    let out = std::process::Command::new("pdftotext")
        .arg("-bbox")
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    let html = String::from_utf8_lossy(&out.stdout);
    let attr = |line: &str, name: &str| -> f64 {
        let key = format!("{name}=\"");
        let from = line.find(&key).unwrap() + key.len();
        let len = line[from..].find('"').unwrap();
        line[from..from + len].parse().unwrap()
    };
    let mut pages: Vec<PdfPage> = Vec::new();
    for line in html.lines().map(str::trim_start) {
        if line.starts_with("<page ") {
            pages.push(PdfPage {
                width: attr(line, "width"),
                height: attr(line, "height"),
                words: Vec::new(),
            });
        } else if line.starts_with("<word ") {
            let word =
                line[line.find('>').unwrap() + 1..line.rfind("</word>").unwrap()].to_string();
            let page = pages.last_mut().expect("a word outside a page");
            page.words
                .push((word, attr(line, "xMin"), attr(line, "xMax")));
        }
    }
    assert!(pages.len() >= 3, "{html}");
    pages
}

#[test]
fn monitoring_export_writes_15min_daily_and_monthly_items() {
    let data = prepared();
    let out_dir = data.path().join("monitoring");
    let listed = common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "export",
            "monitoring",
            "--config",
            &config(),
            "--period",
            "2026-10",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    ));
    assert_eq!(listed.lines().count(), 3);
    let read = |res: &str| -> Value {
        let p = out_dir.join(format!("monitoring-cq-ceramics-01-2026-10-{res}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let month = read("1mo");
    let rows = month["rows"].as_array().unwrap();
    let item = |c: &str, i: &str| {
        rows.iter()
            .find(|r| r["carrier"] == c && r["item"] == i)
            .unwrap_or_else(|| panic!("no {c}/{i}"))
    };
    // The worked example: purchased 1 351 850, exported 9 300, generated 124 000, consumed
    // 1 466 550 kWh; gas 372 000 m³ with 16 estimated intervals.
    let close = |v: &Value, e: f64| assert!((v.as_f64().unwrap() - e).abs() < 1e-6, "{v} != {e}");
    close(&item("electricity", "purchased")["value"], 1351850.0);
    close(&item("electricity", "exported")["value"], 9300.0);
    close(&item("electricity", "generated")["value"], 124000.0);
    close(&item("electricity", "consumed")["value"], 1466550.0);
    close(&item("natural_gas", "consumed")["value"], 372000.0);
    assert_eq!(item("natural_gas", "consumed")["quality"], "estimated");
    assert_eq!(
        item("electricity", "consumed")["code"],
        "PLACEHOLDER-ELEC-CONSUMED"
    );
    let day = read("1d");
    assert_eq!(
        day["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["carrier"] == "electricity" && r["item"] == "consumed")
            .count(),
        31
    );
    let q = read("15m");
    let gas15: Vec<&Value> = q["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["carrier"] == "natural_gas" && r["item"] == "consumed")
        .collect();
    assert_eq!(gas15.len(), 2976);
    assert_eq!(
        gas15.iter().filter(|r| r["quality"] == "estimated").count(),
        16
    );
    // CSV form.
    common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "export",
            "monitoring",
            "--config",
            &config(),
            "--period",
            "2026-10",
            "--out",
            out_dir.to_str().unwrap(),
            "--format",
            "csv",
        ],
    ));
    let csv =
        std::fs::read_to_string(out_dir.join("monitoring-cq-ceramics-01-2026-10-1mo.csv")).unwrap();
    assert!(csv.starts_with("unit_id,site,resolution,time,code,"));
    assert!(csv.contains(",electricity,consumed,电力消费量,1466550,kWh,measured,100\n"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let cfg = config();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "report",
                "--config",
                "no-such.toml",
                "--period",
                "2026-10",
                "--format",
                "pdf",
            ],
            "unknown format \"pdf\"; available: json, csv, html, md, lp",
        ),
        (
            vec![
                "report", "--config", &cfg, "--period", "2026-10", "--lang", "fr",
            ],
            "unknown language \"fr\"; available: zh, en",
        ),
        (
            vec![
                "export",
                "monitoring",
                "--config",
                &cfg,
                "--period",
                "2026-10",
                "--out",
                "x",
                "--format",
                "xml",
            ],
            "unknown format \"xml\"; available: json, csv",
        ),
        (
            vec![
                "report", "--park", "--url", "ftp://x", "--db", "energy", "--period", "2026-10",
            ],
            "--url must start with http:// or https://",
        ),
    ];
    for (args, msg) in cases {
        let out = common::run_gateway(data.path(), &args);
        // Formats and languages are refused when the command line is read (clap: exit 2),
        // before the configuration or the store is opened.
        let parse_time = args.contains(&"pdf") || args.contains(&"fr") || args.contains(&"xml");
        assert_eq!(
            out.status.code(),
            Some(if parse_time { 2 } else { 1 }),
            "{args:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A bad indicators section is reported by `check` with its key path.
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(case().join("config.toml"))
        .unwrap()
        .replace("land_area_mu = 150.0", "land_area_mu = -1.0")
        .replace("band = \"5000-10000\"", "band = \"5000-9000\"")
        .replace("leading = 100.0", "leading = 300.0");
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, bad).unwrap();
    let out = common::run_gateway(data.path(), &["check", "--config", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for path in [
        "accounting.indicators.land_area_mu",
        "accounting.indicators.renewable_share[0].band",
        "accounting.indicators.carbon_per_output",
    ] {
        assert!(all.contains(path), "{path} not reported:\n{all}");
    }
}
