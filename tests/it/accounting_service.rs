//! The accounting service of `run` with real parts: three gateway processes, each polling its
//! own simulated plant (Modbus TCP meters on loopback), send to one real influxd 1.6, the park's
//! central database. Nobody runs `report` at the factories: once the first interval closes,
//! `report --park` lists all three with their month-to-date accounts. A meter's backlog
//! imported afterwards changes a closed interval: its value and revision change in the store and
//! the new revision overwrites the point in InfluxDB (no second series). And the honest gaps:
//! `export monitoring` of the month in progress has no row for missing or future intervals, a
//! future period is refused, and `report` stores nothing for a period without data.
//!
//! The gateways run with libfaketime, their clock set 25 s before an interval boundary, so
//! an interval closes without waiting up to 15 minutes (interval_grace 2 s in the configs).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use energy_gateway::accounting::calendar::{month_of, Month, Period};
use energy_gateway::demo::simulator::SimulatedFactory;
use energy_gateway::demo::DEMO_CONFIG;
use serde_json::Value;

const SLOT_MS: i64 = 15 * 60 * 1000;
/// How long before an interval boundary the gateways' clock starts.
const LEAD_MS: i64 = 25_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn tz() -> chrono_tz::Tz {
    "Asia/Shanghai".parse().unwrap()
}

/// libfaketime (Debian package `faketime`), multi-threaded flavour.
pub(crate) fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime not found: apt-get install faketime")
}

/// The gateway binary with its clock shifted by `offset_s` (libfaketime preloaded, so signals
/// reach the gateway itself; the monotonic clock is left alone, so timers run at the real pace).
fn faked(data_dir: &Path, offset_s: i64) -> Command {
    let mut c = common::gateway_cmd(data_dir);
    c.env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("{offset_s:+}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_DONT_RESET", "1");
    c
}

/// One factory: its simulated meters and its gateway process.
struct Plant {
    site: String,
    dir: PathBuf,
    cfg: PathBuf,
    child: Child,
}

/// The demo plant's configuration under another site id, its meters at `factory`, with an
/// InfluxDB output to the park's database and short service cadences.
fn plant_config(site: &str, factory: &SimulatedFactory, influx_url: &str) -> String {
    let mut text = DEMO_CONFIG
        .replace("id = \"demo-ceramics\"", &format!("id = \"{site}\""))
        .replace("park = \"demo-park\"", "park = \"test-park\"");
    for (id, port) in [
        ("main", 15021),
        ("kiln", 15022),
        ("press", 15023),
        ("gas", 15024),
        ("production", 15025),
    ] {
        text = text.replace(
            &format!("address = \"127.0.0.1:{port}\""),
            &format!("address = \"{}\"", factory.addr(id).unwrap()),
        );
    }
    text.push_str(&format!(
        "\n[accounting.service]\ninterval_grace = \"2s\"\nrepublish_every = \"2s\"\n\n\
         [outputs.influxdb.park]\nurl = \"{influx_url}\"\ndatabase = \"park\"\nflush_interval = \"200ms\"\n"
    ));
    text
}

fn start_plant(
    root: &Path,
    site: &str,
    factory: &SimulatedFactory,
    url: &str,
    off: i64,
    extra: &str,
) -> Plant {
    let dir = root.join(site);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, plant_config(site, factory, url) + extra).unwrap();
    let child = faked(&dir, off)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    Plant {
        site: site.into(),
        dir,
        cfg,
        child,
    }
}

fn park_report(influx: &common::Influxd, period: &str) -> Output {
    let url = format!("http://{}", influx.addr());
    let dir = tempfile::tempdir().unwrap();
    common::gateway_cmd(dir.path())
        .args([
            "report", "--park", "--source", "influxdb", "--url", &url, "--db", "park", "--period",
            period, "--format", "json",
        ])
        .output()
        .unwrap()
}

/// (value, quality, rev) of a 15-minute interval in a gateway's store.
fn stored_interval(dir: &Path, device: &str, start_ms: i64) -> Option<(f64, String, i64)> {
    let c = rusqlite::Connection::open(dir.join("store.sqlite")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(
        "SELECT value, quality, rev FROM energy_intervals WHERE device = ?1
         AND quantity = 'energy_import' AND resolution = '15m' AND start_ms = ?2",
        rusqlite::params![device, start_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

/// The 15-minute `energy_interval` points of one device in InfluxDB: (time ms, value).
fn influx_intervals(influx: &common::Influxd, site: &str, device: &str) -> Vec<(i64, f64)> {
    let v = influx.query(
        "park",
        &format!(
            "SELECT \"value\" FROM energy_interval WHERE site = '{site}' AND device = '{device}' \
             AND quantity = 'energy_import' AND resolution = '15m'"
        ),
    );
    let rows = v["results"][0]["series"][0]["values"].as_array().cloned();
    rows.unwrap_or_default()
        .iter()
        .map(|r| {
            let t = chrono::DateTime::parse_from_rfc3339(r[0].as_str().unwrap_or(""))
                .map_or(0, |t| t.timestamp_millis());
            (t, r[1].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

fn series_count(influx: &common::Influxd, site: &str) -> usize {
    let v = influx.query(
        "park",
        &format!("SHOW SERIES FROM energy_interval WHERE site = '{site}'"),
    );
    v["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, |a| a.len())
}

/// Every indicators message of the broker, parsed.
fn watch_indicators(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    use rumqttc::{Client, Event, Packet, QoS};
    let mut o = rumqttc::MqttOptions::new("watcher", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(o, 10);
    client
        .subscribe("energy-gateway/+/indicators", QoS::AtLeastOnce)
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        s.lock().unwrap().push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    seen
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn three_gateways_keep_their_books_and_the_park_sees_them() {
    let influx = common::Influxd::start();
    influx.create_database("park");
    let url = format!("http://{}", influx.addr());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let factories: Vec<SimulatedFactory> = (0..3)
        .map(|_| rt.block_on(SimulatedFactory::start()).unwrap())
        .collect();

    // Fake clock: an interval boundary LEAD_MS after the start, in whole seconds of offset.
    let now = now_ms();
    let boundary = ((now + LEAD_MS) / SLOT_MS + 1) * SLOT_MS;
    let off_s = (boundary - LEAD_MS - now) / 1000;
    let real_boundary =
        Instant::now() + Duration::from_millis((boundary - now - off_s * 1000) as u64);
    let period = Period::Month(month_of(tz(), boundary - 1)).to_string();

    // Plant A also publishes its indicators over MQTT (slowly: only new accounts come at once).
    let broker = common::Mosquitto::start();
    let indicators = watch_indicators(broker.port);
    let mqtt = format!(
        "\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"plant-a\"\n[mqtt.publish]\nindicators_every = \"10m\"\n",
        broker.port
    );

    let root = tempfile::tempdir().unwrap();
    let mut plants: Vec<Plant> = ["plant-a", "plant-b", "plant-c"]
        .iter()
        .zip(&factories)
        .map(|(s, f)| {
            let extra = if *s == "plant-a" { mqtt.as_str() } else { "" };
            start_plant(root.path(), s, f, &url, off_s, extra)
        })
        .collect();

    // Nothing closed with data before the boundary: the park has nothing yet.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!park_report(&influx, &period).status.success());

    // After the boundary (+ 2 s grace): all three, month to date, with nobody running `report`.
    let park: Value = wait_for(
        "the park to list three factories",
        Duration::from_secs(90),
        || {
            let out = park_report(&influx, &period);
            if !out.status.success() {
                return None;
            }
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let ok = v["factories"].as_array().is_some_and(|f| {
                f.len() == 3
                    && f.iter()
                        .all(|x| x["comprehensive_energy_tce"].as_f64().unwrap_or(0.0) > 0.0)
            });
            ok.then_some(v)
        },
    );
    let delay = Instant::now().saturating_duration_since(real_boundary);
    eprintln!("interval end -> park report lists all three: {delay:?}");
    let sites: Vec<&str> = park["factories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["site"].as_str().unwrap())
        .collect();
    assert_eq!(
        {
            let mut s = sites.clone();
            s.sort();
            s
        },
        ["plant-a", "plant-b", "plant-c"]
    );
    for f in park["factories"].as_array().unwrap() {
        // A partly covered month: completeness counted over the closed intervals only.
        let c = f["completeness_pct"].as_f64().unwrap();
        assert!((0.0..100.0).contains(&c), "{f}");
    }
    // The interval of the boundary went out too, and the stored accounts say "in progress".
    let closed = boundary - SLOT_MS;
    for p in &plants {
        let (v, quality, _) = stored_interval(&p.dir, "main", closed).unwrap();
        assert!(v > 0.0 && quality == "partial", "{v} {quality}");
        assert!(
            stored_interval(&p.dir, "main", boundary).is_none(),
            "open interval stored"
        );
    }
    assert!(delay < Duration::from_secs(60), "{delay:?}");
    // Plant A's indicators carry the month's accounts as soon as they are produced.
    let data_to = energy_gateway::accounting::calendar::rfc3339(tz(), boundary);
    let acc = wait_for(
        "the accounts in the MQTT indicators",
        Duration::from_secs(20),
        || {
            indicators
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["accounts"]["data_to"].as_str() == Some(data_to.as_str()))
                .map(|v| v["accounts"].clone())
        },
    );
    assert_eq!(acc["period"], period.as_str());
    assert_eq!(acc["in_progress"], true);
    assert!(
        acc["comprehensive_energy_tce"].as_f64().unwrap() > 0.0,
        "{acc}"
    );
    assert!(acc["revision"].as_i64().unwrap() > 0, "{acc}");

    // A backlog after an outage: plant A's main meter logged readings before the gateway read
    // it; imported now, they change the closed interval, which gets a new revision and
    // overwrites its point in InfluxDB.
    let a = &plants[0];
    let (v1, _, rev1) = stored_interval(&a.dir, "main", closed).unwrap();
    let points = wait_for("the interval in InfluxDB", Duration::from_secs(30), || {
        let p = influx_intervals(&influx, "plant-a", "main");
        p.iter()
            .any(|(t, v)| *t == closed && (*v - v1).abs() < 1e-9)
            .then_some(p)
    });
    let series_before = series_count(&influx, "plant-a");
    // The first good counter reading of the main meter.
    let (t1, x1): (i64, f64) = energy_gateway::storage::Store::open(
        &a.dir.join("store.sqlite"),
        energy_gateway::config::Synchronous::Normal,
    )
    .and_then(|s| s.first_good_since("main", energy_gateway::readings::Quantity::EnergyImport, 0))
    .unwrap()
    .expect("a counter reading");
    let backlog_ts = t1 - 60_000;
    assert!(
        backlog_ts >= closed,
        "the backlog must fall in the closed interval"
    );
    let csv = a.dir.join("backlog.csv");
    let time = chrono::DateTime::from_timestamp_millis(backlog_ts)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::fs::write(
        &csv,
        format!(
            "time,device,quantity,value\n{time},main,energy_import,{}\n",
            x1 - 5.0
        ),
    )
    .unwrap();
    let imported = Instant::now();
    common::expect_success(
        &faked(&a.dir, off_s)
            .args([
                "import",
                "readings",
                csv.to_str().unwrap(),
                "--config",
                a.cfg.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    let (v2, _, rev2) = wait_for("the recomputed interval", Duration::from_secs(30), || {
        stored_interval(&a.dir, "main", closed).filter(|(_, _, r)| *r > rev1)
    });
    assert!((v2 - (v1 + 5.0)).abs() < 1e-6, "{v1} + 5 kWh != {v2}");
    assert!(rev2 > rev1);
    let after = wait_for(
        "the new revision in InfluxDB",
        Duration::from_secs(30),
        || {
            let p = influx_intervals(&influx, "plant-a", "main");
            p.iter()
                .any(|(t, v)| *t == closed && (*v - v2).abs() < 1e-9)
                .then_some(p)
        },
    );
    eprintln!(
        "backlog imported -> new revision in InfluxDB: {:?}",
        imported.elapsed()
    );
    // Overwritten: one point per interval, no new series.
    assert_eq!(
        after.iter().filter(|(t, _)| *t == closed).count(),
        1,
        "{points:?} -> {after:?}"
    );
    assert_eq!(series_count(&influx, "plant-a"), series_before);

    for p in &mut plants {
        let st = common::sigterm_within(&mut p.child, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{}: {e}", p.site));
        assert!(
            st.success(),
            "{}: {}",
            p.site,
            std::fs::read_to_string(p.dir.join("stderr.log")).unwrap_or_default()
        );
    }
    drop(factories);
}

/// A store with readings of the worked example's main meter: every minute from `from` to `to`
/// (ms), increasing.
fn import_minutes(dir: &Path, cfg: &Path, spans: &[(i64, i64)]) {
    let mut csv = String::from("time,device,quantity,value\n");
    let mut v = 1000.0;
    for (from, to) in spans {
        let mut t = *from;
        while t <= *to {
            let time = chrono::DateTime::from_timestamp_millis(t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            csv.push_str(&format!("{time},main,energy_import,{v}\n"));
            v += 2.5;
            t += 60_000;
        }
    }
    let f = dir.join("minutes.csv");
    std::fs::write(&f, csv).unwrap();
    common::expect_success(&common::run_gateway(
        dir,
        &[
            "import",
            "readings",
            f.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    ));
}

fn worked_config(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testcases/accounting_ceramic_month/config.toml");
    let cfg = dir.join("config.toml");
    std::fs::copy(src, &cfg).unwrap();
    cfg
}

#[test]
fn a_month_in_progress_has_no_zero_for_missing_or_future_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = worked_config(dir.path());
    let tz = tz();
    let now = now_ms();
    let month = month_of(tz, now);
    let (month_start, month_end) = month.bounds(tz);
    // Two hours of data ending three hours ago: the meter has said nothing since (a bridged
    // gap between two readings would be estimated, not missing).
    let h = 3_600_000;
    let base = (now / SLOT_MS) * SLOT_MS - 5 * h;
    import_minutes(dir.path(), &cfg, &[(base, base + 2 * h)]);
    let out = dir.path().join("out");
    common::expect_success(&common::run_gateway(
        dir.path(),
        &[
            "export",
            "monitoring",
            "--config",
            cfg.to_str().unwrap(),
            "--period",
            &month.to_string(),
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let file = out.join(format!("monitoring-cq-ceramics-01-{month}-15m.json"));
    let e: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(e["in_progress"], true);
    let data_to = chrono::DateTime::parse_from_rfc3339(e["data_to"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(data_to, (now / SLOT_MS) * SLOT_MS);
    let rows = e["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let t = chrono::DateTime::parse_from_rfc3339(r["time"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(t < data_to, "a row in the future: {r}");
        assert!(
            (base..base + 2 * h).contains(&t),
            "a row for an interval without data: {r}"
        );
        assert!(r["value"].as_f64().unwrap() > 0.0, "a 0: {r}");
    }
    // Exactly the intervals with data (of this month), nothing else.
    let covered = (base..base + 2 * h)
        .step_by(SLOT_MS as usize)
        .filter(|t| *t >= month_start)
        .count();
    // (main's purchase; `consumed` also needs its export counter, which has no data here.)
    let purchased = rows
        .iter()
        .filter(|r| r["item"] == "purchased" && r["carrier"] == "electricity")
        .count();
    assert_eq!(purchased, covered);
    // Days and the month: only what has data, never a 0.
    for res in ["1d", "1mo"] {
        let f = out.join(format!("monitoring-cq-ceramics-01-{month}-{res}.json"));
        let e: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for r in e["rows"].as_array().unwrap() {
            assert!(r["value"].as_f64().unwrap() > 0.0, "{res}: {r}");
            assert_ne!(
                r["quality"], "measured",
                "{res}: a partly covered bucket: {r}"
            );
        }
    }

    // The report of the month says it is in progress and counts completeness up to now.
    let report = |format: &str| {
        common::expect_success(&common::run_gateway(
            dir.path(),
            &[
                "report",
                "--config",
                cfg.to_str().unwrap(),
                "--period",
                &month.to_string(),
                "--format",
                format,
                "--no-store",
            ],
        ))
    };
    let r: Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(r["in_progress"], true);
    assert!(r["data_quality"]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n
            .as_str()
            .unwrap()
            .starts_with("period in progress: data to ")));
    // Its cover says so, in Chinese and English, with the end of the data.
    let md = report("md");
    assert!(
        md.contains("- **报告期状态 period status**: 进行中：数据不完整，非最终报告 in progress: incomplete data, not a final report\n"),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "- **数据截至 data to**: {}\n",
            r["data_to"].as_str().unwrap()
        )),
        "{md}"
    );
    let main = r["data_quality"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device"] == "main" && s["quantity"] == "energy_import")
        .unwrap()
        .clone();
    assert_eq!(
        main["expected_intervals"].as_i64().unwrap(),
        (data_to - month_start) / SLOT_MS
    );
    assert!(month_end > data_to);

    // A future month is refused, with a clear message.
    let next = month.next().to_string();
    let out = common::run_gateway(
        dir.path(),
        &[
            "report",
            "--config",
            cfg.to_str().unwrap(),
            "--period",
            &next,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("period {next} has not started yet")),
        "{err}"
    );
    let out = common::run_gateway(
        dir.path(),
        &[
            "export",
            "monitoring",
            "--config",
            cfg.to_str().unwrap(),
            "--period",
            &next,
            "--out",
            dir.path().join("next").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());

    // `report` (storing) of a month without any data stores nothing.
    let empty = Month::new(2025, 1).unwrap().to_string();
    let out = common::expect_success(&common::run_gateway(
        dir.path(),
        &[
            "report",
            "--config",
            cfg.to_str().unwrap(),
            "--period",
            &empty,
            "--format",
            "json",
        ],
    ));
    assert!(out.contains("no data for 2025-01: no accounts stored"));
    let c = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM accounts WHERE period = '2025-01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

/// `config/example.toml` documents `[accounting.service]` with the defaults the code uses.
#[test]
fn example_config_documents_the_service_cadence() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "[accounting.service]",
        "interval_grace = ",
        "republish_every = ",
    ] {
        assert!(text.contains(key), "{key} is not documented");
    }
    let cfg = energy_gateway::config::load(&path).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(
        cfg.accounting.service,
        energy_gateway::accounting::service::ServiceConfig::default()
    );
    assert_eq!(
        cfg.accounting.service.interval_grace,
        Duration::from_secs(60)
    );
    assert_eq!(
        cfg.accounting.service.republish_every,
        Duration::from_secs(300)
    );
}
