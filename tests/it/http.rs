//! The HTTP server of `energy-gateway run` (`[http]`), against the real binary polling the
//! in-process simulated factory: every endpoint with the token off (loopback) and on (a
//! non-loopback bind), bad requests, and the `check` rules of `[http]`.

use crate::common;
use crate::http_support;

use std::collections::BTreeMap;
use std::time::Duration;

use energy_gateway::http::{ENDPOINTS, PUBLIC_ENDPOINTS};
use http_support::{current_month, wait_for, write_config, ConfigSpec, Factory, Gateway, TOKEN};

/// An alert rule that fires at once (the main meter draws hundreds of kW), an output whose
/// InfluxDB is down (so the outbox grows), and a product for the production import.
fn extras(closed_port: u16) -> String {
    format!(
        r#"
[[alerts]]
id = "main-high"
device = "main"
quantity = "active_power"
above = 1.0
severity = "critical"

[outputs.influxdb.down]
url = "http://127.0.0.1:{closed_port}"
database = "energy"
timeout = "1s"
backoff_initial = "200ms"
backoff_max = "1s"

[[accounting.products]]
id = "tile"
unit = "m2"
"#
    )
}

/// `name{labels} value` lines of a metrics text.
fn metric_values(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn path_for(p: &str, month: &str) -> String {
    p.replace("{id}", "main").replace("{period}", month)
}

#[test]
fn every_endpoint_without_a_token_on_loopback() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let closed = common::free_port();
    let mut spec = ConfigSpec::new(format!("127.0.0.1:{port}"));
    spec.extra = extras(closed);
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &format!("127.0.0.1:{port}"), None);
    gw.wait_running(2, Duration::from_secs(30));
    let month = current_month();

    // The page and its files.
    let r = gw.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("<script src=\"/app.js\"></script>"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    let r = gw.get("/app.js");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("/api/v1/status"));
    assert_eq!(gw.get("/style.css").status, 200);

    // Health.
    let h = gw.get_json("/healthz", 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["phase"], "running");
    let ready = gw.get_json("/readyz", 200);
    assert_eq!(ready["ready"], true, "{ready}");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pipeline",
            "sources",
            "pollers",
            "influxdb",
            "store",
            "outbox",
            "clock",
            "keeping_up"
        ]
    );

    // Status, with today's and the month's accounts once they are computed.
    let st = wait_for(
        "the accounts in /api/v1/status",
        Duration::from_secs(60),
        || {
            let v = gw.get_json("/api/v1/status", 200);
            (v["accounts"]["today"]["energy_kwh"].is_f64() && !v["accounts"]["month"].is_null())
                .then_some(v)
        },
    );
    assert_eq!(st["site"]["id"], "plant-t");
    assert_eq!(st["devices"]["online"], 2);
    assert!(st["site_power_kw"].as_f64().unwrap() > 10.0, "{st}");
    assert!(st["readings_processed"].as_u64().unwrap() > 0);
    let today = &st["accounts"]["today"];
    assert!(today["tce"].as_f64().unwrap() >= 0.0, "{st}");
    assert!(today["energy_kwh"].as_f64().is_some(), "{st}");
    assert_eq!(st["accounts"]["month"]["period"], month.as_str());
    assert_eq!(st["reload"]["reloads"], 0);
    let rate = wait_for("a readings rate", Duration::from_secs(15), || {
        gw.get_json("/api/v1/status", 200)["readings_per_second"].as_f64()
    });
    assert!(rate > 0.0);

    // Devices and latest readings.
    let d = gw.get_json("/api/v1/devices", 200);
    assert_eq!(d["total"], 2);
    let devs = d["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["id"], "main");
    assert_eq!(devs[0]["status"]["online"], true);
    assert_eq!(devs[0]["source"]["kind"], "modbus_tcp");
    assert!(devs[0]["latest"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["quantity"] == "active_power" && r["unit"] == "kW"));
    let one = gw.get_json("/api/v1/devices/gas", 200);
    assert_eq!(one["carrier"], "natural_gas");
    let nf = gw.get_json("/api/v1/devices/nope", 404);
    assert!(nf["error"].as_str().unwrap().contains("nope"));
    let l = gw.get_json(
        "/api/v1/readings/latest?device=main&quantity=active_power",
        200,
    );
    let readings = l["readings"].as_array().unwrap();
    assert_eq!(readings.len(), 1, "{l}");
    assert!(readings[0]["value"].as_f64().unwrap() > 10.0);
    let all = gw.get_json("/api/v1/readings/latest", 200);
    assert!(all["readings"].as_array().unwrap().len() >= 4, "{all}");
    gw.get_json("/api/v1/readings/latest?quantity=bogus", 400);
    gw.get_json("/api/v1/readings/latest?device=nope", 404);
    gw.get_json("/api/v1/readings/latest?colour=red", 400);

    // Alerts: the rule fires at once, so it is active and in the history.
    let active = wait_for("the alert to fire", Duration::from_secs(15), || {
        let a = gw.get_json("/api/v1/alerts/active", 200);
        (!a["alerts"].as_array().unwrap().is_empty()).then_some(a)
    });
    assert_eq!(active["alerts"][0]["rule"], "main-high");
    assert_eq!(active["alerts"][0]["state"], "firing");
    assert_eq!(active["alerts"][0]["severity"], "critical");
    let hist = gw.get_json("/api/v1/alerts/history?rule=main-high&limit=5", 200);
    assert!(hist["total"].as_u64().unwrap() >= 1);
    assert_eq!(hist["events"][0]["state"], "firing");
    let none = gw.get_json("/api/v1/alerts/history?rule=other", 200);
    assert_eq!(none["total"], 0);
    let since = gw.get_json(
        "/api/v1/alerts/history?since=2000-01-01T00:00:00%2B08:00&state=firing",
        200,
    );
    assert!(since["total"].as_u64().unwrap() >= 1);
    for bad in [
        "limit=0",
        "limit=many",
        "limit=100000",
        "since=yesterday",
        "state=angry",
    ] {
        let e = gw.get_json(&format!("/api/v1/alerts/history?{bad}"), 400);
        assert!(e["error"].is_string(), "{bad}: {e}");
    }

    // Outputs: InfluxDB is down, so the outbox of its destination grows and ages.
    std::thread::sleep(Duration::from_millis(1500));
    let o = gw.get_json("/api/v1/outputs", 200);
    let out = &o["outputs"][0];
    assert_eq!(out["destination"], "influxdb.down");
    assert!(out["depth"].as_u64().unwrap() > 0, "{o}");
    assert!(out["age_seconds"].as_f64().unwrap() > 0.5, "{o}");
    assert!(out["requests_failed"].as_u64().unwrap() > 0, "{o}");
    assert!(o["outbox"]["rows"].as_u64().unwrap() > 0, "{o}");

    // Metrics.
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let m = metric_values(&text);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("no metric {k} in\n{text}"))
    };
    assert!(get("energy_gateway_device_polls_total{device=\"main\"}") > 0.0);
    assert_eq!(
        get("energy_gateway_device_errors_total{device=\"main\"}"),
        0.0
    );
    assert_eq!(get("energy_gateway_device_online{device=\"gas\"}"), 1.0);
    assert!(get("energy_gateway_device_round_trip_seconds{device=\"main\"}") > 0.0);
    assert!(get("energy_gateway_readings_total") > 0.0);
    assert!(get("energy_gateway_readings_per_second") > 0.0);
    assert!(get("energy_gateway_output_outbox_depth{destination=\"influxdb.down\"}") > 0.0);
    assert!(get("energy_gateway_output_outbox_age_seconds{destination=\"influxdb.down\"}") > 0.5);
    assert!(
        get("energy_gateway_output_request_failures_total{destination=\"influxdb.down\"}") > 0.0
    );
    assert!(get("energy_gateway_outbox_rows") > 0.0);
    assert!(get("energy_gateway_store_commit_latency_seconds_count") > 0.0);
    assert!(
        get("energy_gateway_store_commit_latency_seconds_bucket{le=\"+Inf\"}")
            == get("energy_gateway_store_commit_latency_seconds_count")
    );
    assert_eq!(get("energy_gateway_alerts_firing"), 1.0);
    assert_eq!(
        get(
            "energy_gateway_alert_firing{rule=\"main-high\",device=\"main\",severity=\"critical\"}"
        ),
        1.0
    );
    assert_eq!(get("energy_gateway_pipeline_running"), 1.0);
    assert_eq!(get("energy_gateway_build_info{version=\"0.1.0\"}"), 1.0);

    // Accounts of this month; bad periods.
    let acc = gw.get_json(&format!("/api/v1/accounts/{month}"), 200);
    assert_eq!(acc["period"], month.as_str());
    assert_eq!(acc["site"], "plant-t");
    assert!(acc["value_added_10k_cny"].is_null());
    for bad in ["2026-13", "last-month", "26"] {
        let e = gw.get_json(&format!("/api/v1/accounts/{bad}"), 400);
        assert!(e["error"].is_string());
    }

    // Value added: JSON, then CSV (replaces the month), then refused rows that write nothing.
    let body = format!(r#"[{{"period": "{month}", "value_added_10k_cny": 500}}]"#);
    let r = gw.post("/api/v1/value-added", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["written"], 1);
    let acc = gw.get_json(&format!("/api/v1/accounts/{month}"), 200);
    assert_eq!(acc["value_added_10k_cny"], 500.0);
    let csv = format!("period,value_added_10k_cny\n{month},600\n");
    let r = gw.post("/api/v1/value-added", "text/csv", csv.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let acc = gw.get_json(&format!("/api/v1/accounts/{month}"), 200);
    assert_eq!(acc["value_added_10k_cny"], 600.0);
    if acc["assessment_energy_tce"].as_f64().unwrap() > 0.0 {
        assert!(acc["intensity_tce_per_10k_cny"].as_f64().is_some(), "{acc}");
    }
    let bad = format!(
        r#"[{{"period": "{month}", "value_added_10k_cny": 1}}, {{"period": "{month}", "value_added_10k_cny": -5}}]"#
    );
    let r = gw.post("/api/v1/value-added", "application/json", bad.as_bytes());
    assert_eq!(r.status, 422, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("items[1]") && msg.contains("negative"),
        "{msg}"
    );
    assert!(
        !msg.contains("energy-gateway-import"),
        "temporary path leaked: {msg}"
    );
    let acc = gw.get_json(&format!("/api/v1/accounts/{month}"), 200);
    assert_eq!(
        acc["value_added_10k_cny"], 600.0,
        "a refused body wrote something"
    );
    let r = gw.post(
        "/api/v1/value-added",
        "text/csv",
        b"period,value\n2026-10,1\n",
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("line 1"));
    for (ct, body, status) in [
        ("application/json", &b"["[..], 400),
        ("application/json", &br#"{"period": "2026-10"}"#[..], 400),
        (
            "application/json",
            &br#"[{"period": "2026-10", "value_added_10k_cny": "lots"}]"#[..],
            400,
        ),
        (
            "application/json",
            &br#"[{"period": "2026-10", "value_added_10k_cny": 1, "colour": "red"}]"#[..],
            400,
        ),
        ("text/plain", &b"hello"[..], 415),
        ("application/json", &b""[..], 400),
        ("text/csv", &b"\xff\xfe"[..], 400),
    ] {
        let r = gw.post("/api/v1/value-added", ct, body);
        assert_eq!(
            r.status,
            status,
            "{ct} {:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert!(r.json()["error"].is_string());
    }
    let r = gw.post(
        "/api/v1/value-added",
        "application/json",
        br#"[{"period": "2026-10", "value_added_10k_cny": 1}]"#,
    );
    assert!(r.status == 200, "{}", r.text());

    // Production.
    let body = format!(r#"[{{"period": "{month}", "product": "tile", "quantity": 1000}}]"#);
    let r = gw.post("/api/v1/production", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let acc = gw.get_json(&format!("/api/v1/accounts/{month}"), 200);
    assert_eq!(acc["products"][0]["id"], "tile");
    assert_eq!(acc["products"][0]["output"], 1000.0, "{}", acc["products"]);
    let r = gw.post(
        "/api/v1/production",
        "application/json",
        br#"[{"period": "2026-10", "product": "brick", "quantity": 5}]"#,
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown product \"brick\""));
    let r = gw.post(
        "/api/v1/production",
        "text/csv",
        format!("period,product,quantity\n{month},tile,1200\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Meter replacements.
    let r = gw.post(
        "/api/v1/meter-replacements",
        "application/json",
        br#"{"device": "main", "quantity": "energy_import", "time": "2026-10-12T14:30:00+08:00", "old_final": 1000.5, "new_initial": 0, "note": "CT upgrade"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let rec = r.json();
    assert_eq!(rec["device"], "main");
    assert_eq!(rec["old_final"], 1000.5);
    assert_eq!(rec["time"], "2026-10-12T14:30:00+08:00");
    for (body, status, needle) in [
        (&br#"{"device": "nope", "quantity": "energy_import", "time": "2026-10-12T14:30:00+08:00", "old_final": 1, "new_initial": 0}"#[..], 422, "unknown device"),
        (&br#"{"device": "main", "quantity": "active_power", "time": "2026-10-12T14:30:00+08:00", "old_final": 1, "new_initial": 0}"#[..], 422, "cumulative"),
        (&br#"{"device": "main", "quantity": "energy_import", "time": "2026-10-12 14:30", "old_final": 1, "new_initial": 0}"#[..], 422, "RFC 3339"),
        (&br#"{"device": "main", "quantity": "energy_import", "time": "2026-10-12T14:30:00+08:00", "old_final": -1, "new_initial": 0}"#[..], 422, "old_final"),
        (&br#"{"device": "main", "quantity": "energy_import"}"#[..], 400, "time"),
        (&b"[]"[..], 400, "body"),
    ] {
        let r = gw.post("/api/v1/meter-replacements", "application/json", body);
        assert_eq!(r.status, status, "{}: {}", String::from_utf8_lossy(body), r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(needle), "{e} should mention {needle}");
    }

    // Unknown paths.
    gw.get_json("/api/v1/nope", 404);
    gw.get_json("/api/v2/status", 404);

    // Every listed endpoint is routed (none answers 404 or 405).
    for (method, p) in ENDPOINTS {
        let path = path_for(p, &month);
        let r = if *method == "get" {
            gw.get(&path)
        } else {
            gw.post(&path, "application/json", b"[]")
        };
        assert!(
            r.status != 404 && r.status != 405,
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
    }

    // Still alive after all that, and it stops cleanly.
    assert!(gw.is_running());
    gw.get_json("/healthz", 200);
    let log = gw.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn token_required_on_every_endpoint_but_healthz_and_the_page() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let token_file = dir.path().join("http-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // A non-loopback bind (all interfaces); the test talks to it over loopback only.
    let mut spec = ConfigSpec::new(format!("0.0.0.0:{port}"));
    spec.token_line = format!("token = {{ file = \"{}\" }}", token_file.display());
    let config = write_config(dir.path(), &factory, &spec);
    let addr = format!("127.0.0.1:{port}");
    let mut gw = Gateway::spawn(&config, &addr, Some(TOKEN));
    gw.wait_running(2, Duration::from_secs(30));
    let month = current_month();

    let request = |method: &str, path: &str, auth: Option<&str>| {
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        let body: &[u8] = if method == "POST" { b"[]" } else { b"" };
        if method == "POST" {
            h.push(("Content-Type", "application/json"));
        }
        common::http_request(&addr, method, path, &h, body).unwrap()
    };
    let good = format!("Bearer {TOKEN}");
    let lower = format!("bearer {TOKEN}");
    for (method, p) in ENDPOINTS {
        let path = path_for(p, &month);
        let method = method.to_ascii_uppercase();
        if PUBLIC_ENDPOINTS.contains(p) {
            let r = request(&method, &path, None);
            assert_eq!(r.status, 200, "{method} {path} must be public");
            continue;
        }
        let r = request(&method, &path, None);
        assert_eq!(
            r.status,
            401,
            "{method} {path} without a token: {}",
            r.text()
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"energy-gateway\""),
            "{method} {path}"
        );
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"));
        for wrong in [
            "Bearer wrong-token-0123456789abcdef".to_string(),
            format!("Bearer {TOKEN}x"),
            format!("Basic {TOKEN}"),
            TOKEN.to_string(),
        ] {
            let r = request(&method, &path, Some(&wrong));
            assert_eq!(r.status, 401, "{method} {path} with {wrong:?}");
        }
        for ok in [&good, &lower] {
            let r = request(&method, &path, Some(ok));
            assert!(
                r.status != 401 && r.status != 404,
                "{method} {path} with the token: {} {}",
                r.status,
                r.text()
            );
        }
    }
    // A token in the query string is not a token.
    let r = request("GET", &format!("/api/v1/status?token={TOKEN}"), None);
    assert_eq!(r.status, 401);
    // With the token the API answers normally.
    let st = gw.get_json("/api/v1/status", 200);
    assert_eq!(st["devices"]["online"], 2);
    assert!(gw
        .get("/metrics")
        .text()
        .contains("energy_gateway_readings_total"));
    gw.stop();
}

fn check(dir: &std::path::Path, http: &str, env: &[(&str, &str)]) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[site]
id = "plant-c"
main_meters = ["main"]
[storage]
data_dir = "{data}"
[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:5020"
[[devices.points]]
quantity = "active_power"
register = 0
type = "f32"
{http}
"#,
            data = dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    cmd.args(["check", "--config"]).arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_enforces_the_http_rules_with_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Valid forms.
    for ok in [
        "",
        "[http]\nenabled = true",
        "[http]\nenabled = true\nbind = \"[::1]:8081\"",
        "[http]\nenabled = true\nbind = \"0.0.0.0:8080\"\ntoken = \"0123456789abcdef\"",
        // Disabled: nothing is served, so no token is needed yet.
        "[http]\nenabled = false\nbind = \"0.0.0.0:8080\"",
    ] {
        let (good, out) = check(d, ok, &[]);
        assert!(good, "{ok:?} should pass:\n{out}");
    }
    let (good, out) = check(
        d,
        "[http]\nenabled = true\nbind = \"0.0.0.0:8080\"\ntoken = { env = \"EGW_TEST_HTTP_TOKEN\" }",
        &[("EGW_TEST_HTTP_TOKEN", "0123456789abcdefXYZ")],
    );
    assert!(good, "{out}");

    for (http, line) in [
        (
            "[http]\nenabled = true\nbind = \"0.0.0.0:8080\"",
            "  http.token: required when http.bind (0.0.0.0:8080) is not a loopback address: the API and metrics would be open to the network",
        ),
        (
            "[http]\nenabled = true\nbind = \"192.0.2.7:8080\"",
            "  http.token: required when http.bind (192.0.2.7:8080) is not a loopback address",
        ),
        (
            "[http]\nenabled = true\nbind = \"localhost:8080\"",
            "  http.bind: \"localhost:8080\" is not IP:port",
        ),
        ("[http]\nbind = \"127.0.0.1:0\"", "  http.bind: \"127.0.0.1:0\": port must be 1-65535"),
        (
            "[http]\nenabled = true\ntoken = \"short\"",
            "  http.token: must be at least 16 characters (it is 5)",
        ),
        (
            "[http]\nenabled = true\ntoken = \"0123456789 abcdef\"",
            "  http.token: must not contain white space",
        ),
        (
            "[http]\nenabled = true\ntoken = { env = \"EGW_TEST_UNSET_TOKEN\" }",
            "  http.token: environment variable `EGW_TEST_UNSET_TOKEN` is not set",
        ),
        (
            "[http]\nenabled = true\ntoken = { file = \"/nonexistent/token\" }",
            "  http.token: cannot read secret file /nonexistent/token",
        ),
        ("[http]\nenabled = \"yes\"", "  http.enabled: invalid type"),
        ("[http]\nport = 8080", "  http.port: unknown key `port`"),
    ] {
        let (good, out) = check(d, http, &[]);
        assert!(!good, "{http:?} should fail");
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "{http:?}: expected a line starting with {line:?} in\n{out}"
        );
    }
    // An environment override is checked the same way.
    let (good, out) = check(
        d,
        "[http]\nenabled = true",
        &[("EGW__HTTP__BIND", "0.0.0.0:9000")],
    );
    assert!(!good);
    assert!(
        out.contains("http.token: required when http.bind (0.0.0.0:9000)"),
        "{out}"
    );
}

#[test]
fn run_refuses_a_port_in_use_with_a_clear_error() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let config = write_config(dir.path(), &factory, &ConfigSpec::new(addr.clone()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for HTTP on {addr}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn slow_clients_are_closed_by_the_header_timeout_while_others_are_served() {
    use std::io::{Read, Write};
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(dir.path(), &factory, &ConfigSpec::new(addr.clone()));
    let mut gw = Gateway::spawn_with_env(
        &config,
        &addr,
        None,
        &[
            ("EGW__HTTP__HEADER_TIMEOUT", "1s"),
            ("EGW__HTTP__MAX_CONNECTIONS", "32"),
        ],
    );
    gw.wait_running(2, Duration::from_secs(30));
    // 100 clients that start a request and never finish its headers (slowloris), three times
    // the connection limit.
    let slow: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // A legitimate request behind them is served once the limit frees up, within seconds.
    let t0 = std::time::Instant::now();
    let r = common::http_request_timeout(
        &addr,
        "GET",
        "/api/v1/status",
        &[],
        b"",
        Duration::from_secs(15),
    )
    .expect("a legitimate request is served");
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Every slow connection is closed by the server (EOF or reset), none held forever.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        // EOF (possibly after a 408 answer), or a reset.
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a slow connection stayed open: {e}"
            ),
        }
    }
    let log = gw.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn readyz_and_metrics_know_mqtt_and_the_process() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let dead_broker = common::free_port();
    let mut spec = ConfigSpec::new(format!("127.0.0.1:{port}"));
    spec.extra = format!(
        "\n[health]\nsource_grace = \"1s\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{dead_broker}\"\nclient_id = \"gw-dead\"\nmax_backoff = \"1s\"\n\
         [mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/+\"\ndevice = \"{{1}}\"\nquantity = \"{{2}}\"\n"
    );
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &format!("127.0.0.1:{port}"), None);
    // The Modbus meters are all online, but the broker is dead: not ready, and it says why.
    gw.wait_running(2, Duration::from_secs(30));
    let ready = wait_for("readyz names mqtt", Duration::from_secs(30), || {
        let r = gw.get("/readyz");
        let body = r.json();
        let mqtt = body["checks"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "mqtt_source")?
            .clone();
        // Within source_grace it is a warning; 503 after.
        (r.status == 503).then_some((r.status, mqtt))
    });
    assert_eq!(ready.0, 503, "{ready:?}");
    assert_eq!(ready.1["ok"], false, "{ready:?}");
    let text = gw.get("/metrics").text();
    let m = metric_values(&text);
    assert_eq!(
        m.get("energy_gateway_mqtt_source_connected"),
        Some(&0.0),
        "{text}"
    );
    assert!(
        m["energy_gateway_process_resident_memory_bytes"] > 1e6,
        "{text}"
    );
    assert!(m["energy_gateway_process_open_fds"] >= 3.0, "{text}");
    assert!(
        m.contains_key("energy_gateway_process_cpu_seconds_total"),
        "{text}"
    );
    gw.stop();
}
