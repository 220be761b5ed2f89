//! DL/T 645 and CJ/T 188 meters against a simulator written from the standards
//! (`tests/fixtures/meter_line_sim.py`, independent of the gateway's codecs): a shared RS-485
//! line on a socat pty pair with two answering DL/T 645-2007 meters and a silent one, a
//! DL/T 645-1997 meter and broadcast discovery through `probe` over TCP (serial device server),
//! CJ/T 188 water, heat and gas meters. Every value of every identifier in the built-in
//! families is compared exactly.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use energy_gateway::config::{self, Synchronous};
use energy_gateway::pipeline;
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::storage::Store;
use serde_json::{json, Value};

/// The simulator process; killed on drop.
struct Sim {
    child: Child,
    port: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// `pty`: serve that pty end; else a TCP port.
    fn start(cfg: &Value, pty: Option<&Path>) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meters.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/meter_line_sim.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--config").arg(&path);
        match pty {
            Some(p) => cmd.arg("--pty").arg(p),
            None => cmd.arg("--tcp").arg("0"),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the meter simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("port ")
            .map(|p| p.trim().parse().unwrap());
        assert!(
            line.starts_with("ready") || port.is_some(),
            "simulator said {line:?}"
        );
        Sim {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An identifier, what the simulated meter holds there, and what the gateway must read.
type Row<E> = (&'static str, Value, E);

fn num(v: f64, f: &str) -> Value {
    json!([{"v": v, "f": f}])
}
fn signed(v: f64, f: &str) -> Value {
    json!([{"v": v, "f": f, "s": true}])
}

/// Every identifier of `dlt645-2007-three-phase` with a value in its format (DL/T 645-2007
/// Appendix A) and the quantity it must give.
fn dlt645_2007_items() -> (BTreeMap<String, Value>, Vec<(Quantity, f64)>) {
    use Quantity::*;
    let e = "XXXXXX.XX";
    let rows: Vec<Row<Vec<(Quantity, f64)>>> = vec![
        ("00010000", num(12345.67, e), vec![(EnergyImport, 12345.67)]),
        ("00010100", num(1000.01, e), vec![(EnergyImportT1, 1000.01)]),
        ("00010200", num(2000.02, e), vec![(EnergyImportT2, 2000.02)]),
        ("00010300", num(3000.03, e), vec![(EnergyImportT3, 3000.03)]),
        ("00010400", num(4000.04, e), vec![(EnergyImportT4, 4000.04)]),
        ("00020000", num(55.5, e), vec![(EnergyExport, 55.5)]),
        ("00020100", num(11.11, e), vec![(EnergyExportT1, 11.11)]),
        ("00020200", num(22.22, e), vec![(EnergyExportT2, 22.22)]),
        ("00020300", num(0.0, e), vec![(EnergyExportT3, 0.0)]),
        ("00020400", num(22.17, e), vec![(EnergyExportT4, 22.17)]),
        ("00050000", num(300.25, e), vec![(ReactiveEnergyQ1, 300.25)]),
        ("00060000", num(12.5, e), vec![(ReactiveEnergyQ2, 12.5)]),
        ("00070000", num(0.75, e), vec![(ReactiveEnergyQ3, 0.75)]),
        ("00080000", num(88.0, e), vec![(ReactiveEnergyQ4, 88.0)]),
        (
            "01010000",
            json!([{"v": 35.1234, "f": "XX.XXXX"}, {"d": "2611290815"}]),
            // 2026-11-29 08:15 in Shanghai
            vec![
                (MaxDemandImport, 35.1234),
                (MaxDemandImportTime, 1_795_911_300.0),
            ],
        ),
        ("02010100", num(220.1, "XXX.X"), vec![(VoltageL1, 220.1)]),
        ("02010200", num(221.2, "XXX.X"), vec![(VoltageL2, 221.2)]),
        ("02010300", num(219.9, "XXX.X"), vec![(VoltageL3, 219.9)]),
        (
            "02020100",
            signed(10.123, "XXX.XXX"),
            vec![(CurrentL1, 10.123)],
        ),
        ("02020200", signed(-2.5, "XXX.XXX"), vec![(CurrentL2, -2.5)]),
        (
            "02020300",
            signed(7.001, "XXX.XXX"),
            vec![(CurrentL3, 7.001)],
        ),
        (
            "02800001",
            signed(0.456, "XXX.XXX"),
            vec![(CurrentN, 0.456)],
        ),
        (
            "02030000",
            signed(12.3456, "XX.XXXX"),
            vec![(ActivePower, 12.3456)],
        ),
        (
            "02030100",
            signed(4.1, "XX.XXXX"),
            vec![(ActivePowerL1, 4.1)],
        ),
        (
            "02030200",
            signed(-0.25, "XX.XXXX"),
            vec![(ActivePowerL2, -0.25)],
        ),
        (
            "02030300",
            signed(8.4956, "XX.XXXX"),
            vec![(ActivePowerL3, 8.4956)],
        ),
        (
            "02040000",
            signed(-3.21, "XX.XXXX"),
            vec![(ReactivePower, -3.21)],
        ),
        (
            "02040100",
            signed(1.0, "XX.XXXX"),
            vec![(ReactivePowerL1, 1.0)],
        ),
        (
            "02040200",
            signed(-2.0, "XX.XXXX"),
            vec![(ReactivePowerL2, -2.0)],
        ),
        (
            "02040300",
            signed(-2.21, "XX.XXXX"),
            vec![(ReactivePowerL3, -2.21)],
        ),
        (
            "02050000",
            signed(12.7567, "XX.XXXX"),
            vec![(ApparentPower, 12.7567)],
        ),
        (
            "02060000",
            signed(0.968, "X.XXX"),
            vec![(PowerFactor, 0.968)],
        ),
        (
            "02060100",
            signed(0.999, "X.XXX"),
            vec![(PowerFactorL1, 0.999)],
        ),
        (
            "02060200",
            signed(-0.5, "X.XXX"),
            vec![(PowerFactorL2, -0.5)],
        ),
        ("02060300", signed(0.9, "X.XXX"), vec![(PowerFactorL3, 0.9)]),
        ("02800002", num(49.98, "XX.XX"), vec![(Frequency, 49.98)]),
        ("04000101", json!([{"clock": "date"}]), vec![]),
        ("04000102", json!([{"clock": "time"}]), vec![]),
    ];
    let mut items = BTreeMap::new();
    let mut expected = Vec::new();
    for (di, v, q) in rows {
        items.insert(di.to_string(), v);
        expected.extend(q);
    }
    (items, expected)
}

/// The latest 29 November 08:15 in Shanghai (not more than a day from now), Unix seconds.
fn latest_nov29_0815() -> f64 {
    use chrono::{Datelike, TimeZone};
    let tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now().with_timezone(&tz);
    let at = |y| {
        tz.with_ymd_and_hms(y, 11, 29, 8, 15, 0)
            .unwrap()
            .timestamp() as f64
    };
    let this_year = at(now.year());
    if this_year <= (now.timestamp() + 86_400) as f64 {
        this_year
    } else {
        at(now.year() - 1)
    }
}

/// Every identifier of `dlt645-1997-three-phase` (DL/T 645-1997 Appendix A).
fn dlt645_1997_items() -> (BTreeMap<String, Value>, Vec<(Quantity, f64)>) {
    use Quantity::*;
    let e = "XXXXXX.XX";
    let rows: Vec<Row<Option<(Quantity, f64)>>> = vec![
        ("9010", num(8888.88, e), Some((EnergyImport, 8888.88))),
        ("9011", num(1.11, e), Some((EnergyImportT1, 1.11))),
        ("9012", num(2.22, e), Some((EnergyImportT2, 2.22))),
        ("9013", num(3.33, e), Some((EnergyImportT3, 3.33))),
        ("9014", num(4.44, e), Some((EnergyImportT4, 4.44))),
        ("9020", num(0.5, e), Some((EnergyExport, 0.5))),
        ("9021", num(0.1, e), Some((EnergyExportT1, 0.1))),
        ("9022", num(0.2, e), Some((EnergyExportT2, 0.2))),
        ("9023", num(0.13, e), Some((EnergyExportT3, 0.13))),
        ("9024", num(0.07, e), Some((EnergyExportT4, 0.07))),
        ("9130", num(10.0, e), Some((ReactiveEnergyQ1, 10.0))),
        ("9140", num(20.0, e), Some((ReactiveEnergyQ4, 20.0))),
        ("9150", num(30.0, e), Some((ReactiveEnergyQ2, 30.0))),
        ("9160", num(40.0, e), Some((ReactiveEnergyQ3, 40.0))),
        (
            "A010",
            num(5.4321, "XX.XXXX"),
            Some((MaxDemandImport, 5.4321)),
        ),
        // MMDDhhmm, no year: the latest 29 November 08:15 in Shanghai.
        (
            "B010",
            json!([{"d": "11290815"}]),
            Some((MaxDemandImportTime, latest_nov29_0815())),
        ),
        ("B611", num(220.0, "XXX"), Some((VoltageL1, 220.0))),
        ("B612", num(221.0, "XXX"), Some((VoltageL2, 221.0))),
        ("B613", num(222.0, "XXX"), Some((VoltageL3, 222.0))),
        ("B621", num(5.5, "XX.XX"), Some((CurrentL1, 5.5))),
        ("B622", num(6.6, "XX.XX"), Some((CurrentL2, 6.6))),
        ("B623", num(7.7, "XX.XX"), Some((CurrentL3, 7.7))),
        ("B630", num(3.3, "XX.XXXX"), Some((ActivePower, 3.3))),
        ("B631", num(1.1, "XX.XXXX"), Some((ActivePowerL1, 1.1))),
        ("B632", num(1.2, "XX.XXXX"), Some((ActivePowerL2, 1.2))),
        ("B633", num(1.0, "XX.XXXX"), Some((ActivePowerL3, 1.0))),
        ("B640", num(0.9, "XX.XX"), Some((ReactivePower, 0.9))),
        ("B641", num(0.3, "XX.XX"), Some((ReactivePowerL1, 0.3))),
        ("B642", num(0.31, "XX.XX"), Some((ReactivePowerL2, 0.31))),
        ("B643", num(0.29, "XX.XX"), Some((ReactivePowerL3, 0.29))),
        ("B650", num(0.95, "X.XXX"), Some((PowerFactor, 0.95))),
        ("B651", num(0.9, "X.XXX"), Some((PowerFactorL1, 0.9))),
        ("B652", num(0.96, "X.XXX"), Some((PowerFactorL2, 0.96))),
        ("B653", num(0.99, "X.XXX"), Some((PowerFactorL3, 0.99))),
        ("C010", json!([{"clock": "date"}]), None),
        ("C011", json!([{"clock": "time"}]), None),
    ];
    let mut items = BTreeMap::new();
    let mut expected = Vec::new();
    for (di, v, q) in rows {
        items.insert(di.to_string(), v);
        expected.extend(q);
    }
    (items, expected)
}

fn gateway_config(dir: &Path, body: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"t\"\ntimezone = \"Asia/Shanghai\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{body}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn stored(dir: &Path) -> Vec<Reading> {
    let store = Store::open(&dir.join("store.sqlite"), Synchronous::Normal).unwrap();
    store
        .readings_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|r| r.reading)
        .collect()
}

/// Latest reading of every (device, quantity).
fn latest(rows: &[Reading]) -> BTreeMap<(String, Quantity), Reading> {
    rows.iter()
        .map(|r| ((r.device.clone(), r.quantity), r.clone()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_shared_dlt645_line_with_a_silent_meter_and_a_noisy_one() {
    let (items, expected) = dlt645_2007_items();
    let mut items_b = items.clone();
    items_b.insert("02010100".into(), num(230.4, "XXX.X"));
    let pty = common::PtyPair::start();
    let _sim = Sim::start(
        &json!({"protocol": "dlt645", "meters": [
            {"address": "000012345678", "clock_skew_s": 120, "items": items},
            {"address": "000012345679", "noise": true, "abnormal": {"02800002": 2}, "items": items_b},
            {"address": "000012345680", "silent": true, "items": {}},
        ]}),
        Some(&pty.a),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[[buses]]\nid = \"rs485\"\ntransport = \"rtu\"\nprotocol = \"dlt645-2007\"\nport = \"{}\"\nbaud = 115200\nparity = \"even\"\n",
        pty.b.display()
    );
    for (id, addr) in [
        ("a", "000012345678"),
        ("b", "000012345679"),
        ("c", "000012345680"),
    ] {
        body += &format!(
            "[[devices]]\nid = \"{id}\"\nmodel = \"dlt645-2007-three-phase\"\n[devices.dlt645]\nbus = \"rs485\"\naddress = \"{addr}\"\ninterval = \"2s\"\ntimeout = \"300ms\"\ndegraded_after = 2\nmax_backoff = \"4s\"\n"
        );
    }
    // The meter clock as a health signal: a rule per meter on its offset from the gateway's.
    for id in ["a", "b"] {
        body += &format!(
            "[[alerts]]\nid = \"clock-{id}\"\nkind = \"threshold\"\ndevice = \"{id}\"\nquantity = \"meter_clock_offset\"\nabove = 60.0\nbelow = -60.0\n"
        );
    }
    let cfg = gateway_config(dir.path(), &body);
    let rt = runtime();
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(8000));
    let snap: BTreeMap<String, _> = gw
        .devices
        .iter()
        .map(|(k, v)| (k.to_string(), v.snapshot()))
        .collect();
    rt.block_on(gw.shutdown()).unwrap();

    let rows = stored(dir.path());
    let got = latest(&rows);
    // Meter a: every identifier of the family, exactly.
    for (q, want) in &expected {
        let r = &got
            .get(&("a".to_string(), *q))
            .unwrap_or_else(|| panic!("a: no {q}"));
        assert_eq!(r.good_value(), Some(*want), "a {q}: {r:?}");
    }
    // The meter clock runs 120 s ahead of the gateway's (one-second resolution).
    let clock = got[&("a".to_string(), Quantity::MeterClockOffset)]
        .good_value()
        .unwrap();
    assert!((118.0..=122.0).contains(&clock), "clock offset {clock}");
    // ... which fires a's clock rule, and only a's (b's clock is the gateway's).
    let alerts = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal)
        .unwrap()
        .alert_events()
        .unwrap();
    let fired: Vec<_> = alerts.iter().filter(|e| e.state == "firing").collect();
    assert_eq!(fired.len(), 1, "{alerts:?}");
    assert_eq!(fired[0].rule, "clock-a");
    assert_eq!(fired[0].quantity, Some(Quantity::MeterClockOffset));
    assert!(
        (118.0..=122.0).contains(&fired[0].value.unwrap_or(0.0)),
        "{alerts:?}"
    );
    // Meter b: its own values through the noise, the abnormal answer as a bad reading.
    assert_eq!(
        got[&("b".to_string(), Quantity::VoltageL1)].good_value(),
        Some(230.4)
    );
    assert_eq!(
        got[&("b".to_string(), Quantity::EnergyImport)].good_value(),
        Some(12345.67)
    );
    let f = &got[&("b".to_string(), Quantity::Frequency)];
    assert_eq!(f.good_value(), None);
    assert!(
        f.quality.reason().unwrap().contains("no such data"),
        "{f:?}"
    );
    assert!(snap["b"].garbage > 0, "{:?}", snap["b"]);
    assert!(snap["b"].exceptions > 0, "{:?}", snap["b"]);
    assert!(snap["a"].online && snap["b"].online);
    assert_eq!(snap["a"].failures, 0, "{:?}", snap["a"]);
    // Meter c never answered: offline, nothing stored.
    assert!(
        !snap["c"].online && snap["c"].failures >= 2,
        "{:?}",
        snap["c"]
    );
    assert!(rows.iter().all(|r| r.device != "c"));
    // The silent meter does not shift the others: a's power is read every 2 s, give or take
    // one timeout of c and one pass over the 21 instantaneous items of b (a slow machine's
    // share of the line).
    for id in ["a", "b"] {
        let ts: Vec<i64> = rows
            .iter()
            .filter(|r| r.device == id && r.quantity == Quantity::ActivePower)
            .map(|r| r.ts_ms)
            .collect();
        assert!(ts.len() >= 4, "{id}: {} polls in 8 s", ts.len());
        let gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            gap <= 2000 + 300 + 700,
            "{id}: {gap} ms between polls: {ts:?}"
        );
    }
}

fn probe_cmd(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .arg("probe")
        .args(args)
        .args(["--timeout", "500ms", "--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn probe_finds_dlt645_meters_by_broadcast_through_a_serial_server() {
    // 2007: "read address" (13H) to AAAAAAAAAAAA.
    let (items, expected) = dlt645_2007_items();
    let sim = Sim::start(
        &json!({"protocol": "dlt645", "meters": [{"address": "202411300001", "items": items}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, v, err) = probe_cmd(&["--dlt645", &target]);
    assert!(ok, "{err}");
    assert_eq!(v["address"], "202411300001");
    assert_eq!(v["discovered"], true);
    assert_eq!(v["protocol"], "dlt645-2007");
    for (q, want) in &expected {
        assert_eq!(v["values"][q.as_str()]["value"], json!(want), "{q}");
    }
    // 1997: no address read; a read of 9010 to the wildcard address finds it.
    let (items, expected) = dlt645_1997_items();
    let sim = Sim::start(
        &json!({"protocol": "dlt645", "meters": [{"address": "000000001997", "version": 1997, "clock_skew_s": -30, "items": items}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, v, err) = probe_cmd(&["--dlt645", &target]);
    assert!(ok, "{err}");
    assert_eq!(v["address"], "000000001997");
    assert_eq!(v["protocol"], "dlt645-1997");
    assert_eq!(v["model"], "dlt645-1997-three-phase");
    for (q, want) in &expected {
        assert_eq!(v["values"][q.as_str()]["value"], json!(want), "{q}");
    }
    let clock = v["values"]["meter_clock_offset"]["value"].as_f64().unwrap();
    assert!((-32.0..=-28.0).contains(&clock), "{clock}");
    // The table for people: values with units, the demand's time also as a date.
    let out = Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["probe", "--dlt645", &target, "--timeout", "500ms"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("found by broadcast"), "{text}");
    let line = |q: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(q))
            .unwrap_or_else(|| panic!("no {q} in {text}"))
            .to_string()
    };
    assert!(line("energy_import").contains("8888.8800 kWh"), "{text}");
    let when = chrono::DateTime::from_timestamp(latest_nov29_0815() as i64, 0).unwrap();
    assert!(
        line("max_demand_import_time")
            .contains(&when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "{text}"
    );
    // The meter clock read across midnight: the date (yesterday) is read, the day ends, the
    // time (00:00:05) is read; the date is read again, so the offset is seconds, not a day.
    let tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let yesterday = today.pred_opt().unwrap();
    let week = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        format!("{:02}", d.weekday().num_days_from_sunday())
    };
    let (mut items, _) = dlt645_2007_items();
    items.insert(
        "04000101".into(),
        json!({"seq": [[{"d": format!("{}{}", yesterday.format("%y%m%d"), week(yesterday))}],
                       [{"d": format!("{}{}", today.format("%y%m%d"), week(today))}]]}),
    );
    items.insert("04000102".into(), json!([{"d": "000005"}]));
    let sim = Sim::start(
        &json!({"protocol": "dlt645", "meters": [{"address": "202411300002", "items": items}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, v, err) = probe_cmd(&["--dlt645", &target, "--address", "202411300002"]);
    assert!(ok, "{err}");
    let meter = today
        .and_hms_opt(0, 0, 5)
        .unwrap()
        .and_local_timezone(tz)
        .unwrap()
        .timestamp_millis();
    let want = (meter - now.timestamp_millis()) as f64 / 1000.0;
    let clock = v["values"]["meter_clock_offset"]["value"].as_f64().unwrap();
    assert!(
        (clock - want).abs() < 3.0,
        "offset {clock}, expected {want}"
    );
    drop(sim);
    // Nothing answers: a clear message and a failing exit status.
    let sim = Sim::start(
        &json!({"protocol": "dlt645", "meters": [{"address": "000000000001", "silent": true, "items": {}}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, _, err) = probe_cmd(&["--dlt645", &target]);
    assert!(!ok);
    assert!(err.contains("no DL/T 645 meter answered"), "{err}");
}

/// 901FH of water/gas meters: current flow + unit, settlement-day flow + unit, real time,
/// status (CJ/T 188).
fn water_901f(flow: f64, unit: u8) -> Value {
    json!([{"v": flow, "f": "XXXXXX.XX"}, {"b": unit}, {"v": 1.0, "f": "XXXXXX.XX"}, {"b": unit},
           {"d": "20261129081500"}, {"b": 0}, {"b": 0}])
}

#[test]
fn cjt188_water_heat_and_gas_meters_on_one_line() {
    let pty = common::PtyPair::start();
    // Heat meter 901FH: settlement heat, current heat, heat power, flow, cumulative flow
    // (+ unit codes), supply and return temperature, working hours, real time, status.
    let heat = json!([
        {"v": 100.0, "f": "XXXXXX.XX"}, {"b": 0x05},
        {"v": 2500.5, "f": "XXXXXX.XX"}, {"b": 0x05},
        {"v": 12.34, "f": "XXXXXX.XX"}, {"b": 0x17},
        {"v": 1.5, "f": "XXXX.XXXX"}, {"b": 0x35},
        {"v": 777.0, "f": "XXXXXX.XX"}, {"b": 0x2C},
        {"v": 75.5, "f": "XXXX.XX"}, {"v": 55.25, "f": "XXXX.XX"},
        {"v": 1234.0, "f": "XXXXXX"}, {"d": "20261129081500"}, {"b": 0}, {"b": 0}
    ]);
    let _sim = Sim::start(
        &json!({"protocol": "cjt188", "meters": [
            {"address": "00000012345678", "type": 16, "items": {"901F": water_901f(1234.56, 0x2C)}},
            {"address": "00000012345679", "type": 16, "items": {"901F": water_901f(8765.0, 0x29)}},
            {"address": "00000000000020", "type": 32, "items": {"901F": heat.clone()}},
            {"address": "00000000000030", "type": 48, "abnormal": {"901F": 3}, "items": {}},
        ]}),
        Some(&pty.a),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[[buses]]\nid = \"m\"\ntransport = \"rtu\"\nprotocol = \"cjt188\"\nport = \"{}\"\nbaud = 2400\nparity = \"even\"\n",
        pty.b.display()
    );
    for (id, model, addr) in [
        ("w1", "cjt188-water", "00000012345678"),
        ("w2", "cjt188-water", "00000012345679"),
        ("h", "cjt188-heat", "00000000000020"),
        ("g", "cjt188-gas", "00000000000030"),
    ] {
        body += &format!(
            "[[devices]]\nid = \"{id}\"\nmodel = \"{model}\"\n[devices.cjt188]\nbus = \"m\"\naddress = \"{addr}\"\ninterval = \"1s\"\ntimeout = \"300ms\"\n"
        );
    }
    let cfg = gateway_config(dir.path(), &body);
    let rt = runtime();
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    rt.block_on(gw.shutdown()).unwrap();
    let got = latest(&stored(dir.path()));
    let v = |d: &str, q| got.get(&(d.to_string(), q)).and_then(|r| r.good_value());
    assert_eq!(v("w1", Quantity::WaterVolume), Some(1234.56));
    // 8765 L = 8.765 m3 (= t)
    assert!((v("w2", Quantity::WaterVolume).unwrap() - 8.765).abs() < 1e-9);
    // 2500.5 kWh = 9.0018 GJ; 12.34 kW
    assert!((v("h", Quantity::HeatEnergy).unwrap() - 9.0018).abs() < 1e-9);
    assert_eq!(v("h", Quantity::HeatPower), Some(12.34));
    let g = &got[&("g".to_string(), Quantity::GasVolume)];
    assert_eq!(g.good_value(), None);
    assert!(g.quality.reason().unwrap().contains("abnormal"), "{g:?}");

    // Discovery through a serial device server: "read address" to type AA, address AA..AA.
    let sim = Sim::start(
        &json!({"protocol": "cjt188", "meters": [
            {"address": "00000012345678", "type": 16, "items": {"901F": water_901f(42.42, 0x2C)}}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, v, err) = probe_cmd(&["--cjt188", &target]);
    assert!(ok, "{err}");
    assert_eq!(v["address"], "00000012345678");
    assert_eq!(v["model"], "cjt188-water");
    assert_eq!(v["values"]["water_volume"]["value"], json!(42.42));
    // The discovered type picks the family: a heat meter counting cooling (21H), a gas meter
    // (30H). Other meters (40H-49H) have none built in: probe says so.
    for (t, items, model, q, want) in [
        (
            0x21,
            json!({"901F": heat}),
            "cjt188-heat",
            "heat_energy",
            9.0018,
        ),
        (
            0x30,
            json!({"901F": water_901f(77.5, 0x2C)}),
            "cjt188-gas",
            "gas_volume",
            77.5,
        ),
    ] {
        let sim = Sim::start(
            &json!({"protocol": "cjt188", "meters": [
                {"address": "20261130000001", "type": t, "items": items}]}),
            None,
        );
        let target = format!("127.0.0.1:{}", sim.port.unwrap());
        let (ok, v, err) = probe_cmd(&["--cjt188", &target]);
        assert!(ok, "{err}");
        assert_eq!(v["address"], "20261130000001");
        assert_eq!(v["model"], model, "{v}");
        let got = v["values"][q]["value"].as_f64().unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{q}: {v}");
    }
    let sim = Sim::start(
        &json!({"protocol": "cjt188", "meters": [
            {"address": "20261130000002", "type": 0x40, "items": {"901F": water_901f(1.0, 0x2C)}}]}),
        None,
    );
    let target = format!("127.0.0.1:{}", sim.port.unwrap());
    let (ok, _, err) = probe_cmd(&["--cjt188", &target]);
    assert!(!ok);
    assert!(err.contains("type 40H") && err.contains("--model"), "{err}");
}

#[test]
fn the_daemon_reads_meters_behind_serial_servers_and_shows_them_in_the_api() {
    use crate::http_support::Gateway;
    let (items, _) = dlt645_2007_items();
    let dlt = Sim::start(
        &json!({"protocol": "dlt645", "meters": [{"address": "000012345678", "items": items}]}),
        None,
    );
    let cjt = Sim::start(
        &json!({"protocol": "cjt188", "meters": [
            {"address": "00000012345678", "type": 16, "items": {"901F": water_901f(1234.56, 0x2C)}}]}),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[site]\nid = \"t\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n[http]\nenabled = true\nbind = \"{addr}\"\n\
             [[buses]]\nid = \"s645\"\ntransport = \"rtu_over_tcp\"\nprotocol = \"dlt645-2007\"\naddress = \"127.0.0.1:{}\"\n\
             [[buses]]\nid = \"s188\"\ntransport = \"rtu_over_tcp\"\nprotocol = \"cjt188\"\naddress = \"127.0.0.1:{}\"\n\
             [[devices]]\nid = \"main\"\ncarrier = \"electricity\"\nmodel = \"dlt645-2007\"\n[devices.dlt645]\nbus = \"s645\"\naddress = \"000012345678\"\ninterval = \"1s\"\n\
             [[devices]]\nid = \"water\"\ncarrier = \"water\"\nmodel = \"cjt188-water\"\n[devices.cjt188]\nbus = \"s188\"\naddress = \"00000012345678\"\ninterval = \"1s\"\n",
            dir.path().display(),
            dlt.port.unwrap(),
            cjt.port.unwrap()
        ),
    )
    .unwrap();
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(2, Duration::from_secs(20));
    let main = gw.get_json("/api/v1/devices/main", 200);
    assert_eq!(main["source"]["kind"], "dlt645", "{main}");
    assert_eq!(main["source"]["address"], "000012345678");
    // 37 identifiers (demand and its time share one) and the time item of the clock
    assert_eq!(main["requests_per_cycle"], 38, "{main}");
    assert_eq!(main["status"]["garbage"], 0, "{main}");
    let latest = |d: &Value, q: &str| {
        d["latest"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["quantity"] == q)
            .map(|r| r["value"].clone())
    };
    assert_eq!(
        latest(&main, "energy_import"),
        Some(json!(12345.67)),
        "{main}"
    );
    let water = gw.get_json("/api/v1/devices/water", 200);
    assert_eq!(water["source"]["kind"], "cjt188");
    assert_eq!(
        latest(&water, "water_volume"),
        Some(json!(1234.56)),
        "{water}"
    );
    let metrics = gw.get("/metrics").text();
    for line in [
        "energy_gateway_device_garbage_frames_total{device=\"main\"} 0",
        "energy_gateway_device_online{device=\"water\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    gw.stop();
}
