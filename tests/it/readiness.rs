//! `/readyz` tells the truth about sources and sinks, and the systemd watchdog about progress, on
//! real parts: a Mosquitto broker and an InfluxDB 1.6 stopped and started again, Modbus meters
//! that do not answer, a store another process keeps locked.
//!
//! - a broker or a destination down says 503 only after its `[health]` grace (warnings before),
//!   naming the check in the site's language, and 200 again once it is back;
//! - one dead meter among live ones is a warning; every meter behind one gateway dead is 503;
//! - the watchdog is not pinged while the store writer cannot commit (HTTP still answers), and
//!   is pinged again as soon as it can;
//! - a poller that hangs without failing (the fault hook of debug builds, `EGW_FAULT_HANG`) is
//!   503 naming its device, `energy_gateway_device_stalled` 1, and stops the watchdog pings,
//!   while the other devices go on being stored.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Influxd, Mosquitto};
use crate::http_support::{wait_for, write_config, ConfigSpec, Factory, Gateway};

/// `/readyz` (0 while the server does not answer yet).
fn readyz(gw: &Gateway) -> (u16, serde_json::Value) {
    match common::http_get(&gw.addr, "/readyz") {
        Ok(r) => (r.status, r.json()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

fn check<'a>(body: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    body["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `/readyz` answers `status` with check `name` as `ok`; returns the body.
fn wait_ready(
    gw: &Gateway,
    status: u16,
    name: &str,
    ok: bool,
    limit: Duration,
) -> serde_json::Value {
    wait_for(
        &format!("/readyz {status} with {name} ok={ok}"),
        limit,
        || {
            let (s, body) = readyz(gw);
            (s == status && check(&body, name).is_some_and(|c| c["ok"] == ok)).then_some(body)
        },
    )
}

#[test]
fn a_broker_or_a_destination_down_beyond_its_grace_is_503_until_it_returns() {
    let factory = Factory::start();
    let mut broker = Mosquitto::start();
    let mut influx = Influxd::start();
    influx.create_database("energy");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut spec = ConfigSpec::new(format!("127.0.0.1:{port}"));
    spec.extra = format!(
        "\n[health]\nsource_grace = \"3s\"\nsink_grace = \"4s\"\n\
         [mqtt]\nurl = \"{}\"\nclient_id = \"gw-ready\"\nmax_backoff = \"1s\"\n\
         [mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/+\"\ndevice = \"{{1}}\"\nquantity = \"{{2}}\"\n\
         [outputs.influxdb.t]\nurl = \"{}\"\ndatabase = \"energy\"\ntimeout = \"1s\"\n\
         flush_interval = \"200ms\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n",
        broker.url(),
        influx.url
    );
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &format!("127.0.0.1:{port}"), None);
    gw.wait_running(2, Duration::from_secs(30));
    let body = wait_ready(&gw, 200, "influxdb", true, Duration::from_secs(30));
    assert_eq!(body["ready"], true, "{body}");
    assert!(check(&body, "mqtt_source").is_some(), "{body}");

    // The broker goes away: a warning at once, 503 only after source_grace.
    // The clock starts before the stop: the gateway may see the broker go while `stop` waits
    // for the process to end.
    let stopped = Instant::now();
    broker.stop();
    let warned = wait_for(
        "a warning about the broker",
        Duration::from_secs(10),
        || {
            let (s, body) = readyz(&gw);
            (s == 200
                && strings(&body["warnings"])
                    .iter()
                    .any(|w| w.contains("MQTT")))
            .then_some(body)
        },
    );
    assert_eq!(
        check(&warned, "mqtt_source").unwrap()["ok"],
        true,
        "{warned}"
    );
    let body = wait_ready(&gw, 503, "mqtt_source", false, Duration::from_secs(30));
    assert!(
        stopped.elapsed() >= Duration::from_secs(3),
        "503 before the grace: {:?}",
        stopped.elapsed()
    );
    // Named in the site's language (zh by default), English on request.
    let problems = strings(&body["problems"]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("MQTT 数据源") && p.contains("未连接")),
        "{body}"
    );
    let en = gw.get("/readyz?lang=en").json();
    assert!(
        strings(&en["problems"])
            .iter()
            .any(|p| p.contains("MQTT source not connected")),
        "{en}"
    );
    broker.restart();
    wait_ready(&gw, 200, "mqtt_source", true, Duration::from_secs(30));

    // InfluxDB goes away while readings keep coming: 503 after sink_grace, named.
    let stopped = Instant::now();
    influx.stop();
    let body = wait_ready(&gw, 503, "influxdb", false, Duration::from_secs(40));
    assert!(
        stopped.elapsed() >= Duration::from_secs(4),
        "503 before the grace: {:?}",
        stopped.elapsed()
    );
    assert!(
        strings(&body["problems"])
            .iter()
            .any(|p| p.contains("InfluxDB 输出 influxdb.t") && p.contains("已中断")),
        "{body}"
    );
    influx.start_again();
    wait_ready(&gw, 200, "influxdb", true, Duration::from_secs(60));
    gw.stop();
}

fn dead_meter(id: &str, addr: &str, unit: u8) -> String {
    format!(
        "\n[[devices]]\nid = \"{id}\"\ncarrier = \"electricity\"\n[devices.modbus]\naddress = \"{addr}\"\n\
         unit = {unit}\ninterval = \"200ms\"\ntimeout = \"200ms\"\nmax_backoff = \"1s\"\n\
         [[devices.points]]\nquantity = \"active_power\"\nregister = 0\ntype = \"f32\"\n"
    )
}

#[test]
fn one_dead_meter_is_a_warning_a_dead_gateway_or_site_is_not_ready() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let ports = common::free_ports(3);
    let (http, gateway_port, lone_port) = (ports[0], ports[1], ports[2]);
    let mut spec = ConfigSpec::new(format!("127.0.0.1:{http}"));
    // Two meters behind one (dead) serial device server, one more dead meter on its own.
    let base = format!(
        "\n[health]\nsource_grace = \"2s\"\n{}",
        dead_meter("lone", &format!("127.0.0.1:{lone_port}"), 1)
    );
    spec.extra = format!(
        "{base}{}{}",
        dead_meter("line-a", &format!("127.0.0.1:{gateway_port}"), 1),
        dead_meter("line-b", &format!("127.0.0.1:{gateway_port}"), 2)
    );
    let config = write_config(dir.path(), &factory, &spec);
    let gw = Gateway::spawn(&config, &format!("127.0.0.1:{http}"), None);
    let body = wait_ready(&gw, 503, "sources", false, Duration::from_secs(30));
    let detail = check(&body, "sources").unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains(&format!("modbus 127.0.0.1:{gateway_port} (line-a, line-b)")),
        "{body}"
    );
    assert!(!detail.contains("lone"), "{body}");
    assert!(
        strings(&body["problems"])
            .iter()
            .any(|p| p.contains("线路或网关整体") && p.contains("line-a")),
        "{body}"
    );

    // Without the dead gateway: the lone dead meter is a warning, the gateway is ready.
    spec.extra = base;
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    let body = wait_for("ready with a warning", Duration::from_secs(30), || {
        let (s, body) = readyz(&gw);
        (s == 200
            && strings(&body["warnings"])
                .iter()
                .any(|w| w.contains("lone")))
        .then_some(body)
    });
    assert_eq!(check(&body, "sources").unwrap()["ok"], true, "{body}");
    // Still ready well past the grace.
    std::thread::sleep(Duration::from_secs(3));
    let (s, body) = readyz(&gw);
    assert_eq!(s, 200, "{body}");

    // A site whose only meter is dead measures nothing: not ready.
    spec.devices = &[];
    spec.extra = format!(
        "\n[health]\nsource_grace = \"2s\"\n{}",
        dead_meter("main", &format!("127.0.0.1:{lone_port}"), 1)
    );
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    let body = wait_ready(&gw, 503, "sources", false, Duration::from_secs(30));
    assert!(
        check(&body, "sources").unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("none of the 1 devices answered"),
        "{body}"
    );
    gw.stop();
}

fn watchdog_pings(sock: &UnixDatagram, within: Duration) -> usize {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while t0.elapsed() < within {
        if let Ok(k) = sock.recv(&mut buf) {
            n += String::from_utf8_lossy(&buf[..k])
                .lines()
                .filter(|l| *l == "WATCHDOG=1")
                .count();
        }
    }
    n
}

/// A gateway on the simulated meters "main" and "gas" (`extra` appended to its configuration,
/// `env` added) with a systemd watchdog of 2 s whose notify socket is returned.
fn spawn_watched(
    dir: &std::path::Path,
    factory: &Factory,
    extra: &str,
    env: &[(&str, &str)],
) -> (Gateway, UnixDatagram) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut spec = ConfigSpec::new(addr.clone());
    spec.extra = extra.to_string();
    let config = write_config(dir, factory, &spec);
    let mut all = vec![
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ];
    all.extend_from_slice(env);
    (Gateway::spawn_with_env(&config, &addr, None, &all), sock)
}

#[test]
fn the_watchdog_is_pinged_only_while_the_pipeline_makes_progress() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let (gw, sock) = spawn_watched(dir.path(), &factory, "", &[]);
    // Pings every second while readings are committed.
    let t0 = Instant::now();
    while watchdog_pings(&sock, Duration::from_millis(500)) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", gw.log());
    }
    assert!(watchdog_pings(&sock, Duration::from_secs(3)) >= 2);

    // Another process holds the store's write lock for 8 s (less than the store's busy timeout,
    // so no commit fails): the writer waits, nothing is committed, no ping — while HTTP answers.
    let store = dir.path().join("data").join("store.sqlite");
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(8)\n\
             c.execute('COMMIT')\n",
        ])
        .arg(&store)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let locked = Instant::now();
    // A probe already under way and the ping after it may still come.
    watchdog_pings(&sock, Duration::from_millis(1500));
    let during = watchdog_pings(&sock, Duration::from_secs(4));
    assert!(
        locked.elapsed() < Duration::from_secs(8),
        "the lock ended too early"
    );
    assert_eq!(
        during,
        0,
        "pinged while the store writer was stuck\n{}",
        gw.log()
    );
    assert_eq!(gw.get("/healthz").status, 200);
    assert!(locker.wait().unwrap().success());
    // The lock is gone: the writer commits and the pings resume.
    let t0 = Instant::now();
    while watchdog_pings(&sock, Duration::from_millis(500)) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(15), "{}", gw.log());
    }
    assert!(
        gw.log().contains("the pipeline makes no progress"),
        "{}",
        gw.log()
    );
    gw.stop();
}

/// The value of a sample line of `/metrics` (`name value`).
fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let text = gw.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn stored_by_device(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    energy_gateway::storage::Store::open(
        &dir.join("data/store.sqlite"),
        energy_gateway::config::Synchronous::Normal,
    )
    .unwrap()
    .count_by_device()
    .unwrap()
}

#[test]
fn a_poller_that_hangs_without_failing_is_503_named_and_stops_the_watchdog() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    // "main" and "gas" are polled by pollers of their own (two Modbus TCP addresses); the one
    // of "gas" stops being polled 6 s after it started: no answer, no failure, no panic.
    let (gw, sock) = spawn_watched(
        dir.path(),
        &factory,
        "\n[health]\nsource_grace = \"2s\"\n",
        &[("EGW_FAULT_HANG", "source:modbus:gas:after=6s")],
    );
    let ok = wait_ready(&gw, 200, "pollers", true, Duration::from_secs(6));
    assert_eq!(
        check(&ok, "pollers").unwrap()["message"],
        "采集任务均在运行"
    );
    assert_eq!(
        metric(&gw, "energy_gateway_device_stalled{device=\"gas\"}"),
        Some(0.0)
    );
    assert!(
        watchdog_pings(&sock, Duration::from_secs(2)) >= 1,
        "{}",
        gw.log()
    );

    // The hang, then the poll it owes and the grace: 503, the device named, in zh by default.
    let body = wait_ready(&gw, 503, "pollers", false, Duration::from_secs(30));
    let log = gw.log();
    assert!(log.contains("EGW_FAULT_HANG"), "{log}");
    let zh = check(&body, "pollers").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(zh.starts_with("采集任务停滞"), "{zh}");
    assert!(zh.contains("gas ("), "{zh}");
    assert!(!zh.contains("main"), "{zh}");
    assert!(strings(&body["problems"]).contains(&zh), "{body}");
    // The device still looks online: no poll of it failed.
    assert_eq!(check(&body, "sources").unwrap()["ok"], true, "{body}");
    let en = common::http_get(&gw.addr, "/readyz?lang=en")
        .unwrap()
        .json();
    let en = check(&en, "pollers").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        en.starts_with("pollers stalled") && en.contains("devices gas ("),
        "{en}"
    );
    assert_eq!(
        metric(&gw, "energy_gateway_device_stalled{device=\"gas\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&gw, "energy_gateway_device_stalled{device=\"main\"}"),
        Some(0.0)
    );

    // No watchdog ping while it hangs (a ping already under way may still come).
    watchdog_pings(&sock, Duration::from_millis(1500));
    let during = watchdog_pings(&sock, Duration::from_secs(3));
    assert_eq!(during, 0, "pinged while a poller hangs\n{}", gw.log());
    assert!(
        gw.log()
            .contains("the pipeline makes no progress (pollers stalled, no poll ended: gas for"),
        "{}",
        gw.log()
    );

    // The other meter goes on being stored, the hung one does not.
    let before = stored_by_device(dir.path());
    std::thread::sleep(Duration::from_secs(2));
    let after = stored_by_device(dir.path());
    assert!(after["main"] > before["main"] + 5, "{before:?} → {after:?}");
    assert_eq!(
        after.get("gas"),
        before.get("gas"),
        "{before:?} → {after:?}"
    );
    // Still stalled, and the gateway stops cleanly.
    assert_eq!(readyz(&gw).0, 503);
    gw.stop();
}
