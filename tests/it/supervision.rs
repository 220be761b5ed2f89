//! Supervised pipeline tasks, on the real binary: a task made to panic while the daemon runs
//! (the fault hook of debug builds, `EGW_FAULT_PANIC`, see `src/pipeline/fault.rs`), with
//! simulated Modbus meters and a real InfluxDB 1.6.
//!
//! - an output that panics once: `/readyz` is 503 naming it (zh by default, en on request),
//!   `/metrics` counts the panic, the output is built again and restarted in the process after
//!   its pause (`task_restarts_total`), `/readyz` is 200 again, and every stored reading reaches
//!   InfluxDB exactly once;
//! - an output that panics in a loop is given up: the process exits non-zero, and started again
//!   (as systemd does, `Restart=on-failure`) it delivers everything;
//! - the processing stage, which cannot be restarted alone: the process exits non-zero at once,
//!   and started again it goes on from the store.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use energy_gateway::config::Synchronous;
use energy_gateway::storage::Store;

use crate::common::{self, Influxd};
use crate::http_support::{wait_for, write_config, ConfigSpec, Factory, Gateway};

/// `/readyz` with `?lang=…` (0 while the server does not answer).
fn readyz(gw: &Gateway, query: &str) -> (u16, serde_json::Value) {
    match common::http_get(&gw.addr, &format!("/readyz{query}")) {
        Ok(r) => (r.status, r.json()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

fn tasks_check(body: &serde_json::Value) -> Option<serde_json::Value> {
    body["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "tasks")
        .cloned()
}

/// The value of a sample line of `/metrics` (`name value`).
fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let text = gw.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The simulated meters (which stop when dropped: keep `_factory` bound), InfluxDB and a gateway delivering to it, with `fault` in
/// `EGW_FAULT_PANIC`.
struct Setup {
    _factory: Factory,
    influx: Influxd,
    dir: tempfile::TempDir,
    http: String,
    config: PathBuf,
    gw: Gateway,
}

fn start(fault: &str) -> Setup {
    let factory = Factory::start();
    let influx = Influxd::start();
    influx.create_database("energy");
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let mut spec = ConfigSpec::new(http.clone());
    spec.extra = format!(
        "\n[outputs.influxdb.t]\nurl = \"{}\"\ndatabase = \"energy\"\ntimeout = \"2s\"\n\
         flush_interval = \"200ms\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n",
        influx.url
    );
    let config = write_config(dir.path(), &factory, &spec);
    let gw = Gateway::spawn_with_env(&config, &http, None, &[("EGW_FAULT_PANIC", fault)]);
    Setup {
        _factory: factory,
        influx,
        dir,
        http,
        config,
        gw,
    }
}

fn open_store(dir: &Path) -> Store {
    Store::open(&dir.join("data/store.sqlite"), Synchronous::Normal).unwrap()
}

/// Every stored reading is in InfluxDB exactly once and the cursor covers the whole store;
/// returns how many.
fn assert_everything_delivered(dir: &Path, influx: &Influxd, log: &str) -> u64 {
    let store = open_store(dir);
    let stored = store.count_readings().unwrap();
    let max_id = store.max_reading_id().unwrap();
    assert_eq!(
        store.cursor("influxdb.t").unwrap(),
        max_id,
        "not everything was confirmed\n{log}"
    );
    assert_eq!(max_id as u64, stored, "ids are dense (nothing evicted)");
    let delivered = influx.count_field("energy", "reading", "quality");
    assert_eq!(
        delivered, stored,
        "InfluxDB holds {delivered} points, the store {stored}\n{log}"
    );
    stored
}

/// Waits for the gateway to exit by itself, non-zero; returns its log.
fn exits_non_zero(s: &mut Setup, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(st) = s.gw.child.try_wait().unwrap() {
            let log = s.gw.log();
            assert!(!st.success(), "exit status {st}\n{log}");
            return log;
        }
        assert!(
            t0.elapsed() < limit,
            "the gateway did not exit within {limit:?}\n{}",
            s.gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Started again without a fault (as the service manager does), then stopped: it delivers
/// what the previous run left in the store, and goes on storing (more than `stored` readings).
fn restart_as_systemd(s: &Setup, stored: u64) {
    let dir = s.dir.path();
    let mut gw = Gateway::spawn(&s.config, &s.http, None);
    gw.wait_running(2, Duration::from_secs(30));
    let before = open_store(dir).max_reading_id().unwrap();
    wait_for(
        "delivery after the restart",
        Duration::from_secs(30),
        || {
            let store = open_store(dir);
            (store.cursor("influxdb.t").unwrap() > before).then_some(())
        },
    );
    let log = gw.stop();
    assert!(!log.contains("EGW_FAULT_PANIC"), "{log}");
    let now = assert_everything_delivered(dir, &s.influx, &log);
    assert!(
        now > stored,
        "{now} readings after the restart, {stored} before"
    );
}

#[test]
fn a_panicking_output_is_503_named_counted_and_restarted_without_losing_a_reading() {
    let Setup {
        _factory: _meters,
        influx,
        dir,
        mut gw,
        ..
    } = start("output:influxdb.t:after=3s");
    gw.wait_running(2, Duration::from_secs(30));
    assert!(
        influx.wait_for_count("energy", "reading", 1, Duration::from_secs(10)) > 0,
        "nothing delivered before the fault\n{}",
        gw.log()
    );
    assert_eq!(readyz(&gw, "").0, 200, "{}", gw.log());

    // The output panics: 503 naming it, in Chinese by default and in English on request, while
    // it waits for its restart.
    let (zh, en) = wait_for(
        "/readyz 503 naming the task",
        Duration::from_secs(20),
        || {
            let (s, zh) = readyz(&gw, "");
            let (t, en) = readyz(&gw, "?lang=en");
            (s == 503 && t == 503 && tasks_check(&zh).is_some() && tasks_check(&en).is_some())
                .then_some((zh, en))
        },
    );
    let check = tasks_check(&zh).unwrap();
    assert_eq!(check["ok"], false, "{zh}");
    let message = check["message"].as_str().unwrap();
    assert!(
        message.contains("output:influxdb.t 崩溃") && message.contains("第 1 次重启"),
        "{zh}"
    );
    assert!(
        message.contains("fault injected by EGW_FAULT_PANIC"),
        "the panic's message: {zh}"
    );
    assert!(zh["problems"].to_string().contains("处理任务中断"), "{zh}");
    assert!(
        tasks_check(&en).unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("output:influxdb.t panicked"),
        "{en}"
    );
    assert_eq!(
        metric(&gw, "energy_gateway_task_panics_total"),
        Some(1.0),
        "{}",
        gw.log()
    );

    // Restarted in the process: ready again, counted, delivering from its cursor.
    let body = wait_for("/readyz 200 again", Duration::from_secs(20), || {
        let (s, body) = readyz(&gw, "");
        (s == 200).then_some(body)
    });
    assert!(tasks_check(&body).is_none(), "{body}");
    assert_eq!(metric(&gw, "energy_gateway_task_restarts_total"), Some(1.0));
    assert_eq!(metric(&gw, "energy_gateway_task_panics_total"), Some(1.0));
    let at_restart = open_store(dir.path()).cursor("influxdb.t").unwrap();
    wait_for(
        "delivery by the restarted output",
        Duration::from_secs(20),
        || (open_store(dir.path()).cursor("influxdb.t").unwrap() > at_restart).then_some(()),
    );
    assert!(gw.is_running(), "{}", gw.log());
    let log = gw.stop();
    assert!(log.contains("pipeline task restarted"), "{log}");
    assert!(log.contains("a pipeline task panicked"), "{log}");
    let n = assert_everything_delivered(dir.path(), &influx, &log);
    assert!(n > 20, "{n} readings");
}

#[test]
fn an_output_in_a_crash_loop_ends_the_process_non_zero_and_a_restart_delivers_everything() {
    let mut s = start("output:influxdb.t:after=300ms:times=10");
    s.gw.wait_running(2, Duration::from_secs(30));
    // Pauses of 1 s, 2 s, 4 s (±20 %) between the four panics: 503 meanwhile.
    wait_for(
        "/readyz 503 naming the task",
        Duration::from_secs(20),
        || {
            let (status, body) = readyz(&s.gw, "");
            (status == 503 && tasks_check(&body).is_some()).then_some(())
        },
    );
    let log = exits_non_zero(&mut s, Duration::from_secs(60));
    assert!(log.contains("4 panics within 10m"), "{log}");
    assert_eq!(log.matches("pipeline task restarted").count(), 3, "{log}");
    assert!(log.contains("a pipeline task died"), "{log}");
    let stored = open_store(s.dir.path()).count_readings().unwrap();
    assert!(stored > 0);
    restart_as_systemd(&s, stored);
}

#[test]
fn a_panicking_processing_stage_ends_the_process_non_zero_and_a_restart_goes_on() {
    let mut s = start("processing:after=2s");
    let log = exits_non_zero(&mut s, Duration::from_secs(30));
    assert!(
        log.contains("it cannot be restarted alone") && log.contains("processing"),
        "{log}"
    );
    let stored = open_store(s.dir.path()).count_readings().unwrap();
    assert!(stored > 0, "readings before the panic are stored\n{log}");
    restart_as_systemd(&s, stored);
}
