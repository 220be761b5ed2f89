//! The live page in headless Chromium (Debian's `chromium`): `energy-gateway demo --http` serves
//! it, Chromium loads it, runs its script against the live API and the test reads the DOM
//! Chromium ends with (site power, devices online, today's carriers, the device table).
//! The layout test drives Chromium over the DevTools protocol (`tests/peers/chromium_cdp.py`):
//! phone (390×844) and desktop (1400×1000) viewports, Chinese and English, a meter cut off
//! behind a socat proxy so that it goes stale. A third test checks that the page asks for the
//! token when the API needs one. A fourth stores days of history whose raw readings are gone
//! before the gateway starts and checks that the seven-day curve (`?range=week`) draws every
//! half hour of it: the page reads `/api/v1/history`, which answers from the minute aggregates.
//!
//! `EGW_UPDATE_SCREENSHOT=1` also writes the screenshots to docs/ (live-page*.png).

use crate::common;
use crate::http_support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use energy_gateway::config::Synchronous;
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::storage::Store;
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

/// The DOM Chromium ends with on `url` (after the page's timers ran).
fn dump_dom(url: &str) -> String {
    let out = run_chromium(url, &["--dump-dom".to_string()], Duration::from_secs(60));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
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
            && v["accounts"]["today"]["energy_kwh"].is_f64()
            && v["accounts"]["today"]["carriers"].as_array().map(Vec::len) == Some(2))
        .then_some(v)
    });
    let api_power = st["site_power_kw"].as_f64().unwrap();

    let url = format!("http://{addr}/");
    let dom = dump_dom(&url);

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
    // Chinese by default ([site] language), every carrier of today, the contracted demand.
    assert!(dom.contains("<html lang=\"zh-CN\""), "{dom}");
    assert!(dom.contains("data-carrier=\"electricity\""), "{dom}");
    assert!(dom.contains("data-carrier=\"natural_gas\""), "{dom}");
    assert!(
        text_of(&dom, "demand-contracted").starts_with("合同需量 400 kW"),
        "{dom}"
    );
    assert!(text_of(&dom, "conn").starts_with("实时"), "{dom}");
    assert_eq!(
        dom.matches("class=\"state-online\">在线<").count(),
        5,
        "{dom}"
    );
    assert!(dom.contains("Main incomer 10 kV/0.4 kV<span class=\"id\">main</span>"));
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

/// The site's midnight today (ms), from the status answer's site time.
fn site_midnight_ms(gw: &Gateway) -> i64 {
    let t = gw.get_json("/api/v1/status", 200)["time"]
        .as_str()
        .unwrap()
        .to_string();
    let midnight = format!("{}T00:00:00{}", &t[..10], &t[t.len() - 6..]);
    chrono::DateTime::parse_from_rfc3339(&midnight)
        .unwrap()
        .timestamp_millis()
}

/// Steps with a mean in a `/api/v1/history` answer of aggregates.
fn means(history: &serde_json::Value) -> usize {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["mean"].is_f64())
        .count()
}

#[test]
fn live_page_draws_the_week_from_the_minute_aggregates_once_raw_readings_are_gone() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(dir.path(), &factory, &ConfigSpec::new(addr.clone()));
    // Before the gateway starts: the main meter's power every 10 s from 5½ to 2 days ago,
    // then the raw readings older than a day dropped (rolled up into minutes first).
    let now = chrono::Utc::now().timestamp_millis();
    let (from, to) = (now - 132 * 3_600_000, now - 48 * 3_600_000);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let mut store = Store::open(&data.join("store.sqlite"), Synchronous::Normal).unwrap();
        let readings: Vec<Reading> = (from..to)
            .step_by(10_000)
            .map(|ts| {
                Reading::new(
                    "main",
                    Quantity::ActivePower,
                    200.0 + (ts / 1_800_000 % 7) as f64,
                    ts,
                )
            })
            .collect();
        for chunk in readings.chunks(2000) {
            store.insert_readings(chunk).unwrap();
        }
        assert_eq!(store.prune(now - 86_400_000, &[]).unwrap(), readings.len());
        assert!(store.raw_dropped_through().unwrap() >= Some(to - 10_000));
    }
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(2, Duration::from_secs(30));
    // The page's week: from midnight six days ago, in steps of 30 minutes.
    let week = site_midnight_ms(&gw) - 6 * 86_400_000;
    let path = format!("/api/v1/history?device=main&quantity=active_power&from={week}&step=30m");
    let half_hour = 1_800_000;
    let seeded = ((to - 10_000).div_euclid(half_hour) - from.div_euclid(half_hour) + 1) as usize;
    let history = wait_for("today's readings", Duration::from_secs(30), || {
        let h = gw.get_json(&path, 200);
        (means(&h) > seeded).then_some(h)
    });
    assert_eq!(history["kind"], "aggregate");
    assert!(history["raw_dropped_through"].is_string(), "{history}");

    let dom = dump_dom(&format!("http://{addr}/?range=week"));
    let tag = |id: &str| {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap();
        dom[at..at + dom[at..].find('>').unwrap()].to_string()
    };
    assert!(tag("range-week").contains("class=\"on\""), "{dom}");
    assert!(!tag("range-day").contains("class=\"on\""), "{dom}");
    // The load curve has a point for every half hour the history has a mean: those of the
    // seeded days (only minute aggregates hold them now) and today's (one more if a half hour
    // began meanwhile).
    let load = &dom[dom.find("id=\"load-chart\"").unwrap()..];
    let load = &load[..load.find("</section>").unwrap()];
    let drawn: usize = load
        .split("data-points=\"")
        .nth(1)
        .and_then(|r| r[..r.find('"')?].parse().ok())
        .unwrap_or_else(|| panic!("no load curve: {load}"));
    let expected = means(&history);
    assert!(
        drawn == expected || drawn == expected + 1,
        "{drawn} points drawn, the history has {expected} means"
    );
    // The page reads the history API: the old endpoint is gone.
    assert_eq!(gw.get("/api/v1/curve?devices=main&since=0").status, 404);
    gw.stop();
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

    let dom = dump_dom(&format!("http://{addr}/"));
    // The static page loads without the token; the API refuses, so the page asks for it.
    assert!(
        dom.contains("<div id=\"login\">"),
        "the token dialog is hidden:\n{dom}"
    );
    assert_eq!(text_of(&dom, "conn"), "需要令牌");
    assert_eq!(text_of(&dom, "site-power"), "–");
    gw.stop();
}

/// What `tests/peers/chromium_cdp.py` reports of a page in a `width`×`height` viewport.
struct Layout {
    viewport: u64,
    scroll_width: u64,
    overflowing: Vec<String>,
    dom: String,
}

fn load_in_viewport(url: &str, width: u32, height: u32, shot: &Path) -> Layout {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/chromium_cdp.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([url, &width.to_string(), &height.to_string(), "6"])
        .arg(shot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium (DevTools) did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium_cdp.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Layout {
        viewport: v["viewport"].as_u64().unwrap(),
        scroll_width: v["scroll_width"].as_u64().unwrap(),
        overflowing: v["overflowing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        dom: v["dom"].as_str().unwrap().to_string(),
    }
}

/// The inner text of the element whose opening tag contains `marker` (tags removed).
fn inner_text(dom: &str, marker: &str) -> String {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    let open_end = rest.find('>').unwrap() + 1;
    let end = rest.find("</tr>").unwrap_or(rest.len());
    let mut out = String::new();
    let mut in_tag = false;
    for c in rest[open_end..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn live_page_fits_phone_and_desktop_in_chinese_and_english_and_shows_stale_devices() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    // The press meter sits behind a socat proxy: killing socat cuts it off.
    let proxy_port = common::free_port();
    let mut socat = Command::new("socat")
        .arg(format!(
            "TCP-LISTEN:{proxy_port},bind=127.0.0.1,reuseaddr,fork"
        ))
        .arg(format!("TCP:{}", factory.addr("press")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("socat");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.extra = format!(
        r#"
[[devices]]
id = "press"
name = "压机 Press"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:{proxy_port}"
interval = "200ms"
timeout = "300ms"
[[devices.points]]
quantity = "active_power"
register = 0x0034
kind = "input"
type = "f32"
scale = 0.001

[[alerts]]
id = "demand-charge"
kind = "demand"
device = "main"
contracted_kw = 400.0
"#
    );
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(3, Duration::from_secs(30));
    // Today's carriers computed, some history stored for the curves.
    wait_for("today's carriers", Duration::from_secs(60), || {
        let v = gw.get_json("/api/v1/status", 200);
        (v["accounts"]["today"]["carriers"].as_array().map(Vec::len) == Some(2)).then_some(())
    });
    let midnight = site_midnight_ms(&gw);
    for device in ["main", "press"] {
        let url = format!(
            "/api/v1/history?device={device}&quantity=active_power&from={midnight}&step=60s"
        );
        wait_for("stored history", Duration::from_secs(30), || {
            let h = gw.get_json(&url, 200);
            (means(&h) > 0).then_some(())
        });
    }

    // Cut the press off; the gateway marks it offline and keeps its last values.
    // socat forks per connection: end its whole process group.
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", socat.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    socat.wait().unwrap();
    wait_for("press offline", Duration::from_secs(30), || {
        let v = gw.get_json("/api/v1/devices/press", 200);
        (v["status"]["online"] == false && v["status"]["last_success_ms"].is_i64()).then_some(())
    });

    let update = std::env::var_os("EGW_UPDATE_SCREENSHOT").is_some();
    for (lang, power, stale_word, gas) in [
        ("zh", "全厂有功功率", "最后数据", "天然气"),
        ("en", "Site power", "last seen", "Natural gas"),
    ] {
        for (w, h) in [(390u32, 844u32), (1400, 1000)] {
            let shot = dir.path().join(format!("live-page-{lang}-{w}.png"));
            let l = load_in_viewport(&format!("http://{addr}/?lang={lang}"), w, h, &shot);
            let at = format!("{lang} at {w}×{h}");
            assert_eq!(l.viewport, u64::from(w), "{at}");
            assert!(
                l.scroll_width <= u64::from(w) && l.overflowing.is_empty(),
                "{at}: the page is {} px wide; sticking out: {:?}",
                l.scroll_width,
                l.overflowing
            );
            let dom = &l.dom;
            assert!(dom.contains(&format!(">{power}<")), "{at}: {dom}");
            // Both carriers of today, named in the page's language, in physical units.
            let today = inner_text(dom, "data-carrier=\"natural_gas\"");
            assert!(
                today.starts_with(gas) && today.contains(" m³"),
                "{at}: {today}"
            );
            assert!(dom.contains("data-carrier=\"electricity\""), "{at}");
            // The site's load curve and a curve per device, drawn from the stored history.
            let load = &dom[dom.find("id=\"load-chart\"").unwrap()..];
            assert!(
                load[..load.find("</section>").unwrap()].contains("class=\"line\""),
                "{at}: no load curve"
            );
            assert!(dom.contains("class=\"mini\" data-device=\"main\""), "{at}");
            // The press is shown stale with the time it was last read.
            let press = inner_text(dom, "<tr data-device=\"press\"");
            assert!(
                dom.contains("<tr data-device=\"press\" class=\"stale\">"),
                "{at}: {press}"
            );
            assert!(press.contains(stale_word), "{at}: {press}");
            assert!(
                press.starts_with("压机 Press"),
                "{at}: device name, not id: {press}"
            );
            let main = inner_text(dom, "<tr data-device=\"main\"");
            assert!(
                !dom.contains("<tr data-device=\"main\" class=\"stale\">"),
                "{at}: {main}"
            );
            // 15-minute demand against the contract.
            assert!(text_of(dom, "demand-contracted").contains("400 kW"), "{at}");
            let png = std::fs::read(&shot).unwrap();
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
            if update {
                let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("docs/live-page-{lang}-{w}.png"));
                std::fs::write(docs, &png).unwrap();
            }
        }
    }
    gw.stop();
}
