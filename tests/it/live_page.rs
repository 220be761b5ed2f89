//! The live page in headless Chromium (Debian's `chromium`): `energy-gateway demo --http` serves
//! it, Chromium loads it, runs its script against the live API and the test reads the DOM
//! Chromium ends with (site power, devices online, today's energy and tce, the device table).
//! A second test checks that the page asks for the token when the API needs one.
//!
//! `EGW_UPDATE_SCREENSHOT=1` also writes the screenshot to docs/live-page.png.

use crate::common;
use crate::http_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use http_support::{wait_for, write_config, ConfigSpec, Factory, Gateway, TOKEN};

/// Chromium for the live page: a desktop-sized window, and virtual time that runs the page's
/// timers (two polls at least) before the dump.
fn run_chromium(url: &str, extra: &[String], limit: Duration) -> Output {
    let mut flags = vec![
        "--window-size=1280,900".to_string(),
        "--virtual-time-budget=8000".to_string(),
    ];
    flags.extend_from_slice(extra);
    common::run_chromium(url, &flags, limit)
}

/// The text of the first element with `id` in a serialized DOM (no nested elements).
fn text_of(dom: &str, id: &str) -> String {
    let key = format!("id=\"{id}\"");
    let at = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let rest = &dom[at..];
    let open_end = rest.find('>').unwrap() + 1;
    let rest = &rest[open_end..];
    let close = rest.find('<').unwrap();
    rest[..close].trim().replace("&nbsp;", " ")
}

fn start_demo(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--duration",
            "300s",
            "--summary-every",
            "60s",
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("live page: http://") {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo did not print its live page address");
    (child, addr)
}

#[test]
fn live_page_shows_live_data_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, addr) = start_demo(&dir.path().join("demo"));
    let gw = Gateway {
        child: Command::new("true").spawn().unwrap(),
        addr: addr.clone(),
        log: dir.path().join("none.log"),
        token: None,
    };
    // Wait until the API has what the page shows, today's accounts included.
    let st = wait_for("live data", Duration::from_secs(60), || {
        let v = gw.get_json("/api/v1/status", 200);
        (v["devices"]["online"] == 5
            && v["site_power_kw"].is_f64()
            && v["accounts"]["today"]["energy_kwh"].is_f64())
        .then_some(v)
    });
    let api_power = st["site_power_kw"].as_f64().unwrap();

    let url = format!("http://{addr}/");
    let out = run_chromium(&url, &["--dump-dom".to_string()], Duration::from_secs(60));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // Live values, rendered by the script from the API.
    let power = text_of(&dom, "site-power");
    let kw: f64 = power
        .strip_suffix(" kW")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("site power {power:?} is not a number of kW\n{dom}"));
    assert!(
        (kw - api_power).abs() <= api_power * 0.5,
        "page shows {kw} kW, the API said {api_power} kW"
    );
    assert_eq!(text_of(&dom, "devices-online"), "5/5");
    assert_eq!(text_of(&dom, "site-name"), "Demo ceramic tile plant");
    let energy = text_of(&dom, "energy-today");
    assert!(energy.ends_with(" kWh"), "energy today {energy:?}");
    let tce = text_of(&dom, "tce-today");
    assert!(tce.contains(" tce (equivalent value)"), "tce today {tce:?}");
    assert!(text_of(&dom, "conn").starts_with("live"), "{dom}");
    assert_eq!(
        dom.matches("class=\"state-online\">online<").count(),
        5,
        "{dom}"
    );
    assert!(dom.contains("main (Main incomer 10 kV/0.4 kV)"));
    assert!(
        dom.contains("<div id=\"login\" hidden"),
        "the token dialog is shown"
    );

    // A screenshot, kept in the docs when asked for.
    let shot = dir.path().join("live-page.png");
    let out = run_chromium(
        &url,
        &[format!("--screenshot={}", shot.display())],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "suspiciously small screenshot ({} bytes)",
        png.len()
    );
    if std::env::var_os("EGW_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/live-page.png");
        std::fs::write(docs, &png).unwrap();
    }

    // The demo serves /metrics and /healthz too, and stops cleanly.
    assert_eq!(gw.get_json("/healthz", 200)["status"], "ok");
    assert!(gw
        .get("/metrics")
        .text()
        .contains("energy_gateway_device_online{device=\"main\"} 1.0"));
    let st = common::sigterm_within(&mut demo, Duration::from_secs(20)).unwrap();
    assert!(st.success());
}

#[test]
fn live_page_asks_for_the_token_when_the_api_needs_one() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.token_line = format!("token = \"{TOKEN}\"");
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, Some(TOKEN));
    gw.wait_running(2, Duration::from_secs(30));

    let out = run_chromium(
        &format!("http://{addr}/"),
        &["--dump-dom".to_string()],
        Duration::from_secs(60),
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The static page loads without the token; the API refuses, so the page asks for it.
    assert!(
        dom.contains("<div id=\"login\">"),
        "the token dialog is hidden:\n{dom}"
    );
    assert_eq!(text_of(&dom, "conn"), "token needed");
    assert_eq!(text_of(&dom, "site-power"), "–");
    gw.stop();
}
