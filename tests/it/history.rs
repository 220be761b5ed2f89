//! History API and CLI (`GET /api/v1/history`, `energy-gateway history`) against a running
//! gateway polling simulated Modbus meters.

use std::time::Duration;

use crate::common;
use crate::http_support::{wait_for, write_config, ConfigSpec, Factory, Gateway};

#[test]
fn history_returns_readings_and_aggregates_over_http_and_the_cli() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let spec = ConfigSpec::new(format!("127.0.0.1:{port}"));
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &format!("127.0.0.1:{port}"), None);
    gw.wait_running(2, Duration::from_secs(30));
    let from = chrono::Utc::now().timestamp_millis() - 60_000;

    // Readings (the raw tier holds the range: auto gives readings).
    let path = format!("/api/v1/history?device=main&quantity=active_power&from={from}");
    let raw = wait_for("readings in the history", Duration::from_secs(30), || {
        let v = gw.get_json(&path, 200);
        (v["points"].as_array().unwrap().len() >= 10).then_some(v)
    });
    assert_eq!(raw["kind"], "raw", "{raw}");
    assert_eq!(raw["unit"], "kW");
    let points = raw["points"].as_array().unwrap();
    assert!(points
        .iter()
        .all(|p| p["value"].is_f64() && p["quality"] == "good"));
    let ts: Vec<i64> = points
        .iter()
        .map(|p| p["ts_ms"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let to = *ts.last().unwrap();

    // Aggregates per minute over the same range count the same readings.
    let agg = gw.get_json(
        &format!("/api/v1/history?device=main&quantity=active_power&from={from}&to={to}&step=1m"),
        200,
    );
    assert_eq!(agg["kind"], "aggregate");
    assert_eq!(agg["step_ms"], 60_000);
    let raw_n = gw.get_json(
        &format!("/api/v1/history?device=main&quantity=active_power&from={from}&to={to}&step=raw"),
        200,
    )["points"]
        .as_array()
        .unwrap()
        .len() as u64;
    let counted: u64 = agg["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, raw_n, "{agg}");
    for p in agg["points"].as_array().unwrap() {
        let (min, max, mean) = (
            p["min"].as_f64().unwrap(),
            p["max"].as_f64().unwrap(),
            p["mean"].as_f64().unwrap(),
        );
        assert!(min <= mean && mean <= max, "{p}");
    }

    // CSV.
    let r = gw.get(&format!(
        "/api/v1/history?device=main&quantity=energy_import&from={from}&format=csv"
    ));
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let text = r.text();
    assert_eq!(
        text.lines().next(),
        Some("time,device,quantity,value,quality")
    );
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .contains(",main,energy_import,"));

    // Bad requests say why; an unknown device is 404.
    for (q, status, says) in [
        ("quantity=active_power&from={from}", 400, "device"),
        ("device=main&quantity=nope&from={from}", 400, "quantity"),
        (
            "device=main&quantity=active_power&from=yesterday",
            400,
            "from",
        ),
        (
            "device=main&quantity=active_power&from={from}&to=5",
            400,
            "before",
        ),
        (
            "device=main&quantity=active_power&from={from}&step=0s",
            400,
            "step",
        ),
        ("device=main&quantity=active_power&from=0", 400, "ten years"),
        (
            "device=ghost&quantity=active_power&from={from}",
            404,
            "ghost",
        ),
    ] {
        let q = q.replace("{from}", &from.to_string());
        let e = gw.get_json(&format!("/api/v1/history?{q}"), status);
        assert!(e["error"].as_str().unwrap().contains(says), "{q}: {e}");
    }
    gw.stop();

    // The CLI reads the same store.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["history", "--config"])
        .arg(&config)
        .args([
            "--device",
            "main",
            "--quantity",
            "active_power",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--step",
            "1m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,device,quantity,count,bad,min,max,mean,last,estimated")
    );
    let n: u64 = lines
        .map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(n, raw_n);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["history", "--config"])
        .arg(&config)
        .args([
            "--device",
            "main",
            "--quantity",
            "active_power",
            "--from",
            "soon",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("from \"soon\""));
}
