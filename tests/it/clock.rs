//! A wrong wall clock never becomes consumption: the gateway process runs under libfaketime
//! (its wall clock read from a file the test rewrites; the monotonic clock left alone) while it
//! polls a Modbus TCP counter on loopback and takes correctly dated MQTT messages from a real
//! Mosquitto. The clock goes real → 1970 → two years ahead → real, the way an edge box without
//! an RTC boots and NTP steps it. Nothing dated 1970 or two years ahead is stored as good, the
//! readings taken meanwhile are dated again by the monotonic clock, the counter's consumption
//! is exactly its real rise (no reset or rollover), every MQTT message is stored, and `/readyz`,
//! `/api/v1/status` and `/metrics` say "clock not trusted" while it is not.

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use energy_gateway::accounting::counters::{integrate, CounterSettings, Sample};
use energy_gateway::config::{Synchronous, ValueType, WordOrder};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};
use energy_gateway::readings::Quantity;
use energy_gateway::storage::Store;

fn real_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn set_offset(file: &Path, offset_s: i64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset_s:+}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn get(addr: &str, path: &str) -> (u16, String) {
    match common::http_get(addr, path) {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kWh of the simulated counter `t` after it started: 1 000 kWh plus 0.5 kWh a second.
fn counter_at(t: Duration) -> f64 {
    1000.0 + 0.5 * t.as_secs_f64()
}

#[test]
fn a_clock_jumping_1970_then_two_years_ahead_never_becomes_consumption() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let broker = common::Mosquitto::start();
    // The counter: holding registers 0-1 energy_import (f32 kWh), advanced by a thread.
    let mut bank = RegisterBank::default();
    RegisterBank::define(&mut bank.holding, 0, 4);
    let bank = Arc::new(Mutex::new(bank));
    let service = BusService::default();
    service.insert(1, bank.clone());
    let (addr, _server) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (addr, simulator::serve_tcp(l, service))
    });
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (bank, stop) = (bank.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                RegisterBank::put(
                    &mut bank.lock().unwrap().holding,
                    0,
                    counter_at(started.elapsed()),
                    ValueType::F32,
                    WordOrder::ABCD,
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let http_port = common::free_port();
    let http = format!("127.0.0.1:{http_port}");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[site]\nid = \"plant-c\"\ntimezone = \"Asia/Shanghai\"\n[log]\nlevel = \"info\"\n\
             [http]\nenabled = true\nbind = \"{http}\"\n\
             [mqtt]\nurl = \"{}\"\nclient_id = \"gw-clock\"\nmax_backoff = \"1s\"\n[mqtt.publish]\nenabled = false\n\
             [[mqtt.subscriptions]]\ntopic = \"plant/+/json\"\nformat = \"json\"\ndevice = \"{{1}}\"\ntimestamp = {{ pointer = \"/ts\" }}\n\
             [[mqtt.subscriptions.values]]\npointer = \"/p\"\nquantity = \"active_power\"\n\
             [[devices]]\nid = \"q\"\n\
             [[devices]]\nid = \"m\"\ncarrier = \"electricity\"\n[devices.modbus]\naddress = \"{addr}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n\
             [[devices.points]]\nquantity = \"energy_import\"\nregister = 0\ntype = \"f32\"\n",
            broker.url()
        ),
    )
    .unwrap();
    let time_file = dir.path().join("faketime.rc");
    set_offset(&time_file, 0);
    let log = dir.path().join("gateway.log");
    let mut child = common::gateway_cmd(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("LD_PRELOAD", crate::accounting_service::libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", &time_file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_DONT_RESET", "1")
        .env_remove("FAKETIME")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_until("ready at the real time", Duration::from_secs(30), || {
        get(&http, "/readyz").0 == 200
    });
    // MQTT messages dated by the publisher's (correct) clock, 5 a second throughout.
    let publishing = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(Mutex::new(Vec::<i64>::new()));
    let publisher = {
        let (publishing, sent, port) = (publishing.clone(), sent.clone(), broker.port);
        std::thread::spawn(move || {
            use rumqttc::{Client, Event, Packet, QoS};
            let mut o = rumqttc::MqttOptions::new("clock-pub", "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(5));
            let (client, mut conn) = Client::new(o, 100);
            let mut i = 0;
            let mut acked = 0;
            let mut next = Instant::now();
            while publishing.load(Ordering::Relaxed) || acked < i {
                if publishing.load(Ordering::Relaxed) && Instant::now() >= next {
                    let ts = real_ms();
                    client
                        .publish(
                            "plant/q/json",
                            QoS::AtLeastOnce,
                            false,
                            format!("{{\"p\":{i},\"ts\":{ts}}}"),
                        )
                        .unwrap();
                    sent.lock().unwrap().push(ts);
                    i += 1;
                    next += Duration::from_millis(200);
                }
                if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                    conn.recv_timeout(Duration::from_millis(20))
                {
                    acked += 1;
                }
            }
        })
    };

    std::thread::sleep(Duration::from_secs(3));

    // 1970 (a box without an RTC after a power cut).
    let now_s = real_ms() / 1000;
    set_offset(&time_file, -(now_s - 86_400 * 40));
    wait_until("503 for the clock in 1970", Duration::from_secs(15), || {
        let (s, body) = get(&http, "/readyz");
        s == 503 && body.contains("时钟不可信") && body.contains("before the build date")
    });
    let (_, status) = get(&http, "/api/v1/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["clock"]["trusted"], false, "{status}");
    assert_eq!(status["clock"]["label"], "时钟不可信", "{status}");
    std::thread::sleep(Duration::from_secs(4));

    // Two years ahead (a wrong NTP server, a mistyped date).
    set_offset(&time_file, 2 * 365 * 86_400);
    std::thread::sleep(Duration::from_secs(2));
    let (s, body) = get(&http, "/readyz");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("far from the last trusted time"), "{body}");
    std::thread::sleep(Duration::from_secs(4));
    let (_, metrics) = get(&http, "/metrics");
    assert!(
        metrics.contains("energy_gateway_clock_trusted 0"),
        "{metrics}"
    );
    let held: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("energy_gateway_clock_held_readings "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        held >= 20.0,
        "readings held while the clock is wrong: {held}"
    );

    // NTP steps the clock back to the real time.
    set_offset(&time_file, 0);
    wait_until("ready again", Duration::from_secs(15), || {
        get(&http, "/readyz").0 == 200
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = get(&http, "/metrics");
    let steps: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("energy_gateway_clock_steps_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(steps >= 3.0, "{metrics}");
    publishing.store(false, Ordering::Relaxed);
    publisher.join().unwrap();
    // Every message is stored before the gateway stops (or the comparison below shows which
    // are missing).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let n = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal)
            .and_then(|s| s.readings_after(0, 10_000_000))
            .map(|r| r.iter().filter(|r| r.reading.device == "q").count())
            .unwrap_or(0);
        if n >= sent.lock().unwrap().len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = common::sigterm_within(&mut child, Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", show_log());
    let end_value = counter_at(started.elapsed());
    stop.store(true, Ordering::Relaxed);
    ticker.join().unwrap();

    let rows = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal)
        .unwrap()
        .readings_after(0, 10_000_000)
        .unwrap();
    let (lo, hi) = (real_ms() - 86_400_000, real_ms() + 60_000);
    for r in &rows {
        if r.reading.quality.as_str() == "good" {
            assert!(
                (lo..hi).contains(&r.reading.ts_ms),
                "a good reading dated by the wrong clock: {r:?}"
            );
        }
    }
    // Every MQTT message, with its own time, good.
    let mut got: Vec<i64> = rows
        .iter()
        .filter(|r| r.reading.device == "q" && r.reading.quality.as_str() == "good")
        .map(|r| r.reading.ts_ms)
        .collect();
    got.sort();
    got.dedup();
    let mut want = sent.lock().unwrap().clone();
    want.dedup();
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.reading.device == "q" && r.reading.quality.as_str() != "good")
        .take(5)
        .collect();
    assert_eq!(
        got,
        want,
        "every correctly dated MQTT message stored as sent; bad ones: {bad:?}\n{}",
        show_log()
    );

    // The counter: readings throughout (dated again), consumption = the real rise.
    let mut samples: Vec<Sample> = rows
        .iter()
        .filter(|r| r.reading.device == "m" && r.reading.quantity == Quantity::EnergyImport)
        .filter_map(|r| {
            r.reading
                .good_value()
                .map(|v| Sample::new(r.reading.ts_ms, v))
        })
        .collect();
    samples.sort_by_key(|s| s.ts_ms);
    assert!(samples.len() > 50, "{} counter readings", samples.len());
    let widest = samples
        .windows(2)
        .map(|w| w[1].ts_ms - w[0].ts_ms)
        .max()
        .unwrap();
    assert!(
        widest < 3_000,
        "readings taken while the clock was wrong are kept, dated again: widest gap {widest} ms"
    );
    let mut total = 0.0;
    let events = integrate(
        samples.iter().copied(),
        &[],
        &CounterSettings {
            max: Some(999_999.0),
            rated_per_hour: None,
            gap_after_ms: 15 * 60_000,
        },
        |s| total += s.amount,
    );
    let first = samples.first().unwrap().value;
    let last = samples.last().unwrap().value;
    assert!(
        events.is_empty(),
        "no reset, rollover or spike from the clock steps: {events:?}"
    );
    assert!(
        (total - (last - first)).abs() < 1e-6,
        "{total} vs {}",
        last - first
    );
    // The last reading is the counter as it stood at the end (0.5 kWh/s, polled every 200 ms).
    assert!((end_value - last).abs() < 2.0, "{last} vs {end_value}");
    let log_text = show_log();
    assert!(log_text.contains("wall clock stepped"), "{log_text}");
}
