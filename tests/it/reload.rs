//! Configuration reload on SIGHUP, against the real binary (`energy-gateway run`) polling the
//! in-process simulated factory: a valid file replaces the pipeline without losing a reading
//! while the HTTP server stays up; an invalid one is rejected with `check`'s messages and the
//! running configuration is kept; one that cannot start falls back to the previous one.

use crate::common;
use crate::http_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use energy_gateway::config::Synchronous;
use energy_gateway::storage::Store;
use http_support::{json_lines, wait_for, write_config, ConfigSpec, Factory, Gateway, TOKEN};

const TOKEN2: &str = "second-token-abcdefghijklmnop";

fn status(gw: &Gateway) -> serde_json::Value {
    gw.get_json("/api/v1/status", 200)
}

/// Polls /healthz every 20 ms until stopped; counts answers and failures.
struct HealthPoller {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl HealthPoller {
    fn start(addr: String) -> HealthPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match common::http_request_timeout(
                    &addr,
                    "GET",
                    "/healthz",
                    &[],
                    b"",
                    Duration::from_secs(5),
                ) {
                    Ok(r) if r.status == 200 => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("HTTP {}", r.status));
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.push(e.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            errors
        });
        HealthPoller {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

#[test]
fn sighup_applies_a_valid_config_without_losing_readings() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.devices = &["main"];
    spec.interval = "100ms";
    spec.token_line = format!("token = \"{TOKEN}\"");
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, Some(TOKEN));
    gw.wait_running(1, Duration::from_secs(30));
    let health = HealthPoller::start(addr.clone());

    // Some readings under the first configuration.
    wait_for("readings", Duration::from_secs(10), || {
        (status(&gw)["readings_processed"].as_u64()? > 20).then_some(())
    });

    // The new configuration: another device, an alert rule, another token.
    spec.devices = &["main", "gas", "kiln"];
    spec.token_line = format!("token = \"{TOKEN2}\"");
    spec.extra = r#"
[[alerts]]
id = "main-high"
device = "main"
quantity = "active_power"
above = 1.0
"#
    .into();
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    gw.token = Some(TOKEN2.into());
    let st = wait_for("the reload to apply", Duration::from_secs(30), || {
        let r = gw.get("/api/v1/status");
        if r.status != 200 {
            return None;
        }
        let v = r.json();
        (v["reload"]["last_result"] == "applied" && v["devices"]["online"] == 3).then_some(v)
    });
    assert_eq!(st["reload"]["reloads"], 1);
    assert_eq!(st["reload"]["failures"], 0);
    assert_eq!(st["phase"], "running");
    // The new token applies at once; the old one no longer opens the API.
    let old = common::http_request(
        &addr,
        "GET",
        "/api/v1/status",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .unwrap();
    assert_eq!(old.status, 401);
    // The new configuration runs: the new devices are polled, the new rule fires.
    let d = gw.get_json("/api/v1/devices", 200);
    let ids: Vec<&str> = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["main", "gas", "kiln"]);
    wait_for(
        "the new alert rule to fire",
        Duration::from_secs(10),
        || {
            let a = gw.get_json("/api/v1/alerts/active", 200);
            (a["alerts"].as_array()?.len() == 1).then_some(())
        },
    );
    let metrics = gw.get("/metrics").text();
    assert!(
        metrics.contains("energy_gateway_config_reloads_total 1"),
        "{metrics}"
    );

    // A second reload in a row (back to one device) also applies.
    spec.devices = &["main"];
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    wait_for("the second reload", Duration::from_secs(30), || {
        let r = gw.get("/api/v1/status");
        (r.status == 200 && r.json()["reload"]["reloads"] == 2 && r.json()["devices"]["total"] == 1)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));

    let (ok, failed, errors) = health.finish();
    let log = gw.stop();
    // The HTTP server stayed up through both reloads.
    assert!(ok > 20, "only {ok} health answers");
    assert_eq!(
        failed, 0,
        "/healthz failed during the reloads: {errors:?}\n{log}"
    );

    // Nothing was lost: each pipeline committed everything it processed, and the store holds
    // exactly what all of them committed.
    let lines = json_lines(&log);
    let reloads: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("pipeline stopped for the reload"))
        })
        .collect();
    assert_eq!(reloads.len(), 2, "{log}");
    let mut committed = 0;
    for r in &reloads {
        let p = r["processed"].as_u64().unwrap();
        let c = r["committed"].as_u64().unwrap();
        assert!(p > 0);
        assert_eq!(p, c, "processed and committed differ at a reload: {r}");
        committed += c;
    }
    let last = lines
        .iter()
        .find(|l| l["message"] == "stopped cleanly")
        .unwrap_or_else(|| panic!("no clean stop in\n{log}"));
    committed += last["readings"].as_u64().unwrap();
    let store = Store::open(&dir.path().join("data/store.sqlite"), Synchronous::Normal).unwrap();
    assert_eq!(store.count_readings().unwrap(), committed, "{log}");
    let by_device = store.count_by_device().unwrap();
    assert!(
        by_device["gas"] > 0 && by_device["kiln"] > 0,
        "{by_device:?}"
    );
    assert!(log.contains("configuration reload done"), "{log}");
}

#[test]
fn sighup_rejects_an_invalid_config_and_keeps_the_running_one() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.devices = &["main"];
    spec.interval = "100ms";
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(1, Duration::from_secs(30));
    let before = wait_for("readings", Duration::from_secs(10), || {
        let n = status(&gw)["readings_processed"].as_u64()?;
        (n > 10).then_some(n)
    });

    // Three problems: a bad interval, an unknown key, an alert on a device that does not exist.
    spec.devices = &["main", "gas"];
    spec.interval = "-1s";
    spec.extra = r#"
[[alerts]]
id = "ghost"
device = "ghost"
quantity = "active_power"
above = 1.0
"#
    .into();
    write_config(dir.path(), &factory, &spec);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("[http]\n", "[http]\nport = 8080\n");
    std::fs::write(&config, &text).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let check_out = String::from_utf8(check.stdout).unwrap();
    let check_lines: Vec<&str> = check_out.lines().collect();
    assert!(check_lines[0].ends_with(" problems"), "{check_out}");
    assert!(check_lines.len() >= 4, "{check_out}");

    gw.signal("HUP");
    let st = wait_for("the reload to be rejected", Duration::from_secs(15), || {
        let v = status(&gw);
        (v["reload"]["last_result"] == "rejected").then_some(v)
    });
    // The same problems as `check`, in the API and in the log.
    let problems: Vec<String> = st["reload"]["last_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = check_lines[1..]
        .iter()
        .map(|l| l.trim_start().to_string())
        .collect();
    assert_eq!(problems, expected);
    let log = gw.log();
    let messages: Vec<String> = json_lines(&log)
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        messages.iter().any(|m| m
            .starts_with("configuration reload rejected, the running configuration is kept")
            && m.ends_with(check_lines[0])),
        "{messages:#?}"
    );
    for line in &check_lines[1..] {
        assert!(
            messages.iter().any(|m| m == line),
            "the log lacks {line:?}: {messages:#?}"
        );
    }

    // The old pipeline runs on, untouched: same devices, its counter still growing (a restart
    // would have started it from zero).
    assert!(gw.is_running());
    assert_eq!(st["devices"]["total"], 1);
    assert_eq!(st["phase"], "running");
    let later = wait_for("more readings", Duration::from_secs(10), || {
        let n = status(&gw)["readings_processed"].as_u64()?;
        (n > before + 10).then_some(n)
    });
    assert!(later > before);
    let ready = gw.get_json("/readyz", 200);
    assert_eq!(ready["ready"], true);
    let metrics = gw.get("/metrics").text();
    assert!(
        metrics.contains("energy_gateway_config_reload_failures_total 1"),
        "{metrics}"
    );

    // A fixed file then applies.
    spec.interval = "100ms";
    spec.extra = String::new();
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    wait_for("the fixed config to apply", Duration::from_secs(30), || {
        let r = gw.get("/api/v1/status");
        (r.status == 200
            && r.json()["reload"]["last_result"] == "applied"
            && r.json()["devices"]["online"] == 2)
            .then_some(())
    });
    let log = gw.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sighup_with_a_config_that_cannot_start_falls_back_to_the_previous_one() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.devices = &["main"];
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(1, Duration::from_secs(30));

    // Valid for `check` (the data directory is writable), but its store cannot be opened: a
    // directory sits where the store file would be.
    let blocker = dir.path().join("blocked");
    std::fs::create_dir_all(blocker.join("data").join("store.sqlite")).unwrap();
    spec.devices = &["main", "gas"];
    write_config(dir.path(), &factory, &spec);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("data_dir = \"{}\"", dir.path().join("data").display()),
        &format!("data_dir = \"{}\"", blocker.join("data").display()),
    );
    std::fs::write(&config, text).unwrap();
    gw.signal("HUP");
    let st = wait_for("the reload to fail", Duration::from_secs(30), || {
        let r = gw.get("/api/v1/status");
        (r.status == 200 && r.json()["reload"]["last_result"] == "failed").then(|| r.json())
    });
    // Back on the previous configuration, polling again.
    assert_eq!(st["devices"]["total"], 1);
    gw.wait_running(1, Duration::from_secs(30));
    assert!(gw.log().contains("starting the previous one again"));
    gw.stop();
}
