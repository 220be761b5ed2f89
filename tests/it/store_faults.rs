//! A store that cannot commit, for real: the gateway process runs with a file size limit
//! (RLIMIT_FSIZE, SIGXFSZ ignored, so a write past the limit fails with EFBIG as on a full disk)
//! that the test lowers and raises on the running process with `prlimit`. While commits fail,
//! `/readyz` says 503 and why; once space returns every MQTT message sent meanwhile is stored;
//! SIGTERM with a failing store ends the process in time, and what it could not commit was never
//! acknowledged, so the broker delivers it after the restart: nothing is lost.

use crate::common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use energy_gateway::config::Synchronous;
use energy_gateway::storage::Store;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn readyz(http: &str) -> (u16, String) {
    match common::http_get(http, "/readyz") {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

fn stored(dir: &Path) -> usize {
    Store::open(&dir.join("store.sqlite"), Synchronous::Normal)
        .and_then(|s| s.readings_after(0, 10_000_000))
        .map(|r| {
            let mut ts: Vec<i64> = r.iter().map(|r| r.reading.ts_ms).collect();
            ts.sort();
            ts.dedup();
            ts.len()
        })
        .unwrap_or(0)
}

fn set_fsize(child: &Child, limit: &str) {
    let ok = Command::new("prlimit")
        .args([
            "--pid",
            &child.id().to_string(),
            &format!("--fsize={limit}:unlimited"),
        ])
        .status()
        .expect("prlimit (util-linux)")
        .success();
    assert!(ok, "prlimit --fsize={limit}");
}

/// The gateway with SIGXFSZ ignored (inherited through exec), its log in `dir`.
fn start(dir: &Path, cfg: &Path) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_energy-gateway"),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("gateway.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

fn publish(port: u16, range: std::ops::Range<i64>) {
    use rumqttc::{Client, Event, Packet, QoS};
    let mut o = rumqttc::MqttOptions::new("faults-pub", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(o, 100);
    let n = (range.end - range.start) as usize;
    for i in range {
        client
            .publish(
                "plant/m/json",
                QoS::AtLeastOnce,
                false,
                format!("{{\"p\":{i},\"ts\":{}}}", 1_795_000_000_000i64 + i * 1000),
            )
            .unwrap();
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < n && Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            conn.recv_timeout(Duration::from_millis(200))
        {
            acked += 1;
        }
    }
    assert_eq!(acked, n, "the broker took every message");
}

#[test]
fn a_store_that_cannot_commit_is_not_ready_stops_in_time_and_loses_nothing() {
    let broker = common::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[site]\nid = \"plant-f\"\n[log]\nlevel = \"info\"\n[storage]\ndata_dir = \"{}\"\n\
             [http]\nenabled = true\nbind = \"{http}\"\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"gw-faults\"\nmax_backoff = \"1s\"\n[mqtt.publish]\nenabled = false\n\
             [[mqtt.subscriptions]]\ntopic = \"plant/+/json\"\nformat = \"json\"\ndevice = \"{{1}}\"\ntimestamp = {{ pointer = \"/ts\" }}\n\
             [[mqtt.subscriptions.values]]\npointer = \"/p\"\nquantity = \"active_power\"\n\
             [[devices]]\nid = \"m\"\n",
            dir.path().display(),
            broker.url()
        ),
    )
    .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let mut child = start(dir.path(), &cfg);
    wait_until("ready", Duration::from_secs(30), || readyz(&http).0 == 200);
    publish(broker.port, 0..20);
    wait_until("20 stored", Duration::from_secs(20), || {
        stored(dir.path()) >= 20
    });

    // The disk is full: no file of the process may grow.
    // (Writes inside the files' present size still succeed: the WAL is written from its
    // beginning again after a checkpoint. Messages go on until the store has to grow.)
    set_fsize(&child, "1");
    let mut sent: i64 = 20;
    let full = loop {
        publish(broker.port, sent..sent + 50);
        sent += 50;
        let t0 = Instant::now();
        let mut full = false;
        while t0.elapsed() < Duration::from_secs(2) && !full {
            let (s, body) = readyz(&http);
            full = s == 503 && body.contains("commits are failing");
            std::thread::sleep(Duration::from_millis(100));
        }
        if full || sent > 5_000 {
            break full;
        }
    };
    assert!(full, "503 while commits fail\n{}", log());
    let before = stored(dir.path());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        stored(dir.path()),
        before,
        "nothing committed on a full disk"
    );
    assert!(before < sent as usize);

    // Space returns: everything sent meanwhile is stored, the gateway is ready again.
    set_fsize(&child, "unlimited");
    let mut last = String::new();
    let t0 = Instant::now();
    while readyz(&http).0 != 200 {
        last = readyz(&http).1;
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for ready again: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = last;
    wait_until("all stored", Duration::from_secs(30), || {
        stored(dir.path()) >= sent as usize
    });

    // Full again, then SIGTERM: the gateway stops in time although it cannot commit.
    set_fsize(&child, "1");
    let mut more = sent;
    while readyz(&http).0 != 503 {
        assert!(more < sent + 5_000, "503 again\n{}", log());
        publish(broker.port, more..more + 50);
        more += 50;
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = stored(dir.path());
    let t0 = Instant::now();
    let status = common::sigterm_within(&mut child, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    let took = t0.elapsed();
    assert!(status.code().is_some(), "{status:?}");
    assert_eq!(stored(dir.path()), before);
    assert!(before < more as usize);

    // Restarted with space: the broker delivers what was never acknowledged.
    let mut child = start(dir.path(), &cfg);
    wait_until(
        "all stored after the restart",
        Duration::from_secs(30),
        || stored(dir.path()) >= more as usize,
    );
    common::sigterm_within(&mut child, Duration::from_secs(15)).unwrap();
    assert_eq!(stored(dir.path()), more as usize, "{}", log());
    eprintln!("SIGTERM with a failing store: exited in {took:?}");
}

#[test]
fn run_refuses_a_store_file_that_exists_but_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite");
    std::fs::write(&store, b"").unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[site]\nid = \"plant-e\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = common::gateway_cmd(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(
        err.contains("empty (0 bytes)") && err.contains("move it away"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "left as it was"
    );
}
