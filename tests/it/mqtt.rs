//! MQTT in and out against a real Mosquitto started by the harness: wildcard mapping, payload
//! formats, bad messages, broker restarts, gateway crashes, TLS, and what the gateway publishes.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use energy_gateway::config::{self, Synchronous};
use energy_gateway::pipeline;
use energy_gateway::readings::Quantity;
use energy_gateway::storage::Store;
use rumqttc::{Client, Event, Packet, QoS};

fn gateway_config(dir: &Path, body: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"plant-m\"\ntimezone = \"Asia/Shanghai\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{body}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn rows(dir: &Path) -> Vec<energy_gateway::storage::StoredReading> {
    Store::open(&dir.join("store.sqlite"), Synchronous::Normal)
        .and_then(|s| s.readings_after(0, 10_000_000))
        .unwrap_or_default()
}

/// Publishes every message at QoS 1 and returns once each has its PUBACK. A message whose
/// PUBACK did not come (broker restarting) is sent again on a new connection.
fn publish_reliably(broker_port: u16, client_id: &str, msgs: &[(String, String)], pace: Duration) {
    let mut i = 0;
    while i < msgs.len() {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker_port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = Client::new(o, 10);
        let mut connected = false;
        'conn: loop {
            if connected {
                if i >= msgs.len() {
                    break;
                }
                let (t, p) = &msgs[i];
                if client
                    .try_publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
                    .is_err()
                {
                    break;
                }
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match conn.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if !connected => {
                        connected = true;
                        continue 'conn;
                    }
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                        i += 1;
                        std::thread::sleep(pace);
                        continue 'conn;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => {
                        std::thread::sleep(Duration::from_millis(200));
                        break 'conn; // reconnect and resend message i
                    }
                }
            }
        }
    }
}

/// Publishes a flood at QoS 1 with up to 100 in flight; returns when all are acknowledged.
fn publish_flood(broker_port: u16, msgs: Vec<(String, String)>) {
    let mut o = rumqttc::MqttOptions::new("flood", "127.0.0.1", broker_port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_inflight(100);
    let (client, mut conn) = Client::new(o, 200);
    let n = msgs.len();
    let publisher = std::thread::spawn(move || {
        for (t, p) in msgs {
            client.publish(t, QoS::AtLeastOnce, false, p).unwrap();
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < n {
        assert!(
            Instant::now() < deadline,
            "only {acked} of {n} acknowledged"
        );
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            conn.recv_timeout(Duration::from_secs(5))
        {
            acked += 1;
        }
    }
    let _ = publisher.join();
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The subscriptions of a shipped example file, re-pointed at the test broker.
fn example_subscriptions(file: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/mqtt")
            .join(file),
    )
    .unwrap();
    let start = text.find("[[mqtt.subscriptions]]").unwrap();
    let end = text.find("[[devices]]").unwrap_or(text.len());
    text[start..end].to_string()
}

#[test]
fn wildcard_mapping_and_every_payload_format() {
    let broker = common::Mosquitto::start();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"gw-formats\"\n[mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/+\"\ndevice = \"{{1}}\"\nquantity = \"{{2}}\"\n\
         {tasmota}\n{shelly}\n\
         [[devices]]\nid = \"m1\"\n[[devices]]\nid = \"plug-7\"\n[[devices]]\nid = \"shellypro3em-line2\"\n",
        port = broker.port,
        tasmota = example_subscriptions("tasmota-energy.toml"),
        shelly = example_subscriptions("shelly-3em.toml"),
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let msgs: Vec<(String, String)> = vec![
        ("meters/m1/active_power".into(), "12.5".into()),
        ("meters/m1/frequency".into(), " 49.98\n".into()),
        ("meters/ghost/frequency".into(), "50".into()), // unknown device
        ("meters/m1/watts".into(), "3".into()),         // unknown quantity
        (
            "tele/plug-7/SENSOR".into(),
            r#"{"Time":"2026-11-19T10:30:00","ENERGY":{"Total":123.456,"Power":1500,"ReactivePower":300,"Factor":0.97,"Voltage":229,"Current":6.7}}"#.into(),
        ),
        (
            "shellypro3em-line2/status/em:0".into(),
            r#"{"id":0,"a_current":4.03,"a_voltage":229.9,"a_act_power":882.3,"b_current":3.1,"b_voltage":230.4,"c_current":2.2,"c_voltage":231.0,"total_act_power":1973.2,"total_aprt_power":2101.0}"#.into(),
        ),
        ("shellypro3em-line2/status/emdata:0".into(), r#"{"id":0,"total_act":4521.5,"total_act_ret":12.0}"#.into()),
    ];
    publish_reliably(broker.port, "formats-pub", &msgs, Duration::ZERO);
    let stats = gw.mqtt_in.clone().unwrap();
    wait_until("7 messages", Duration::from_secs(10), || {
        stats.messages.load(Ordering::Relaxed) >= 7
    });
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(gw.shutdown()).unwrap();

    let got = rows(dir.path());
    let value = |d: &str, q: Quantity| {
        got.iter()
            .find(|r| r.reading.device == d && r.reading.quantity == q)
            .and_then(|r| r.reading.good_value())
    };
    assert_eq!(value("m1", Quantity::ActivePower), Some(12.5));
    assert_eq!(value("m1", Quantity::Frequency), Some(49.98));
    assert_eq!(value("plug-7", Quantity::ActivePower), Some(1.5));
    assert_eq!(value("plug-7", Quantity::EnergyImport), Some(123.456));
    assert_eq!(value("plug-7", Quantity::PowerFactor), Some(0.97));
    // Tasmota's local time 10:30 in Shanghai is 02:30 UTC.
    let plug = got.iter().find(|r| r.reading.device == "plug-7").unwrap();
    assert_eq!(plug.reading.ts_ms, 1_795_055_400_000, "{:?}", plug.reading);
    assert!(value("shellypro3em-line2", Quantity::ActivePower)
        .is_some_and(|v| (v - 1.9732).abs() < 1e-12));
    assert_eq!(
        value("shellypro3em-line2", Quantity::VoltageL3),
        Some(231.0)
    );
    let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-12);
    assert!(close(
        value("shellypro3em-line2", Quantity::EnergyImport),
        4.5215
    ));
    assert!(close(
        value("shellypro3em-line2", Quantity::EnergyExport),
        0.012
    ));
    assert!(got.iter().all(|r| r.reading.device != "ghost"));
    assert_eq!(
        stats.bad_messages.load(Ordering::Relaxed),
        2,
        "ghost and watts"
    );
    let by_topic = stats.bad_by_topic.lock().unwrap().clone();
    assert_eq!(by_topic.get("meters/ghost/frequency"), Some(&1));
    assert_eq!(by_topic.get("meters/m1/watts"), Some(&1));
}

#[test]
fn ten_thousand_malformed_messages_mixed_with_good_ones() {
    // Mosquitto drops QoS 1 messages beyond 1000 queued per client by default; a broker in front
    // of a lossless gateway must be allowed to queue.
    let broker = common::Mosquitto::start_with(common::MosquittoOptions {
        persistence: false,
        extra_config: "max_queued_messages 0\n".into(),
    });
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-flood\"\n[mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"plant/+/json\"\nformat = \"json\"\ndevice = \"{{1}}\"\ntimestamp = {{ pointer = \"/ts\" }}\n\
         [[mqtt.subscriptions.values]]\npointer = \"/p\"\nquantity = \"active_power\"\n\
         [[mqtt.subscriptions]]\ntopic = \"plant/+/num\"\ndevice = \"{{1}}\"\nquantity = \"frequency\"\n\
         [[devices]]\nid = \"m\"\n",
        broker.port
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let base_ts = 1_795_000_000_000i64;
    let garbage = [
        "",
        "nan",
        "NaN",
        "inf",
        "abc",
        "{",
        "{\"ts\":1795000000000}",
        "{\"p\":\"x\",\"ts\":1795000000000}",
        "{\"p\":1,\"ts\":12}",
        "{\"p\":1,\"ts\":\"yesterday\"}",
        "[1,2,3]",
        "\u{0}\u{1}\u{2}",
        "1e999",
    ];
    let mut msgs = Vec::new();
    let mut good = 0;
    for i in 0..10_500usize {
        if i % 21 == 0 {
            msgs.push((
                "plant/m/json".to_string(),
                format!("{{\"p\":{},\"ts\":{}}}", i, base_ts + i as i64),
            ));
            good += 1;
        } else if i % 2 == 0 {
            msgs.push((
                "plant/m/num".to_string(),
                garbage[i % garbage.len()].to_string(),
            ));
        } else {
            msgs.push((
                "plant/m/json".to_string(),
                garbage[i % garbage.len()].to_string(),
            ));
        }
    }
    let bad = msgs.len() - good;
    // `""` on the number topic and the JSON ones all fail; the count below is exact.
    publish_flood(broker.port, msgs);
    let stats = gw.mqtt_in.clone().unwrap();
    let t0 = Instant::now();
    while stats.messages.load(Ordering::Relaxed) < 10_500 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {} of 10500 messages arrived ({} bad)",
            stats.messages.load(Ordering::Relaxed),
            stats.bad_messages.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(gw.shutdown()).unwrap();
    assert_eq!(stats.bad_messages.load(Ordering::Relaxed) as usize, bad);
    let got = rows(dir.path());
    let ts: BTreeSet<i64> = got
        .iter()
        .filter(|r| r.reading.quantity == Quantity::ActivePower)
        .map(|r| r.reading.ts_ms)
        .collect();
    assert_eq!(ts.len(), good, "every good message stored");
    assert_eq!(got.len(), good, "nothing but the good ones stored");
}

/// Messages with their own timestamps, so a redelivery overwrites rather than adds.
fn numbered(n: std::ops::Range<usize>) -> Vec<(String, String)> {
    n.map(|i| {
        (
            "plant/m/json".to_string(),
            format!(
                "{{\"p\":{i},\"ts\":{}}}",
                1_795_000_000_000i64 + i as i64 * 1000
            ),
        )
    })
    .collect()
}

const JSON_SUB: &str = "[[mqtt.subscriptions]]\ntopic = \"plant/+/json\"\nformat = \"json\"\ndevice = \"{1}\"\ntimestamp = { pointer = \"/ts\" }\n[[mqtt.subscriptions.values]]\npointer = \"/p\"\nquantity = \"active_power\"\n[[devices]]\nid = \"m\"\n";

fn distinct_ts(dir: &Path) -> BTreeSet<i64> {
    rows(dir).iter().map(|r| r.reading.ts_ms).collect()
}

#[test]
fn broker_restarted_while_a_publisher_keeps_sending_loses_nothing() {
    let mut broker = common::Mosquitto::start_with_persistence();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-restart\"\nkeep_alive = \"5s\"\nmax_backoff = \"1s\"\n[mqtt.publish]\nenabled = false\n{JSON_SUB}",
        broker.port
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        publish_reliably(
            port,
            "restart-pub",
            &numbered(0..300),
            Duration::from_millis(10),
        )
    });
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    std::thread::sleep(Duration::from_millis(700));
    broker.restart();
    publisher.join().unwrap();
    wait_until("300 distinct readings", Duration::from_secs(30), || {
        distinct_ts(dir.path()).len() >= 300
    });
    let connects = gw
        .mqtt_in
        .as_ref()
        .unwrap()
        .connects
        .load(Ordering::Relaxed);
    rt.block_on(gw.shutdown()).unwrap();
    assert_eq!(distinct_ts(dir.path()).len(), 300);
    assert!(
        connects >= 2,
        "the gateway reconnected after the restarts ({connects} connects)"
    );
}

#[test]
fn messages_sent_while_the_gateway_was_killed_arrive_after_restart() {
    let broker = common::Mosquitto::start_with_persistence();
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[site]\nid = \"plant-k\"\n[storage]\ndata_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-kill\"\n[mqtt.publish]\nenabled = false\n{JSON_SUB}",
            dir.path().join("data").display(),
            broker.port
        ),
    )
    .unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let data = dir.path().join("data");
    let mut gw = start();
    std::thread::sleep(Duration::from_millis(800));
    publish_reliably(broker.port, "kill-pub", &numbered(0..100), Duration::ZERO);
    wait_until("first 100", Duration::from_secs(20), || {
        distinct_ts(&data).len() >= 100
    });
    gw.kill().unwrap(); // SIGKILL
    gw.wait().unwrap();
    publish_reliably(broker.port, "kill-pub", &numbered(100..250), Duration::ZERO);
    let mut gw = start();
    wait_until("all 250 after restart", Duration::from_secs(20), || {
        distinct_ts(&data).len() >= 250
    });
    let status = common::sigterm_within(&mut gw, Duration::from_secs(10)).unwrap();
    assert!(status.success());
    assert_eq!(distinct_ts(&data).len(), 250);
}

fn test_ca(dir: &Path) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            st.map(|s| s.success()).unwrap_or(false),
            "openssl {args:?} failed (apt-get install openssl)"
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=egw-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    for f in ["ca.crt", "server.crt", "server.key"] {
        // mosquitto drops privileges: its key must be readable by its user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn tls_connection_with_a_test_ca() {
    let certs = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    test_ca(certs.path());
    let tls_port = common::free_port();
    let c = certs.path();
    let broker = common::Mosquitto::start_with(common::MosquittoOptions {
        persistence: false,
        extra_config: format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            c.join("ca.crt").display(),
            c.join("server.crt").display(),
            c.join("server.key").display()
        ),
    });
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtts://localhost:{tls_port}\"\nclient_id = \"gw-tls\"\nca_file = \"{}\"\n[mqtt.publish]\nenabled = false\n{JSON_SUB}",
        c.join("ca.crt").display()
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    let stats = gw.mqtt_in.clone().unwrap();
    wait_until("a TLS connection", Duration::from_secs(10), || {
        stats.connected.load(Ordering::Relaxed)
    });
    publish_reliably(broker.port, "tls-pub", &numbered(0..20), Duration::ZERO);
    wait_until("20 readings over TLS", Duration::from_secs(10), || {
        distinct_ts(dir.path()).len() >= 20
    });
    rt.block_on(gw.shutdown()).unwrap();

    // A CA that did not sign the broker's certificate is refused.
    let other = tempfile::tempdir().unwrap();
    test_ca(other.path());
    let dir2 = tempfile::tempdir().unwrap();
    let body = body.replace(
        &c.join("ca.crt").display().to_string(),
        &other.path().join("ca.crt").display().to_string(),
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir2.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stats = gw.mqtt_in.clone().unwrap();
    assert!(!stats.connected.load(Ordering::Relaxed));
    assert_eq!(stats.connects.load(Ordering::Relaxed), 0);
    rt.block_on(gw.shutdown()).unwrap();
}

#[test]
fn status_alerts_and_indicators_are_published() {
    let mut broker = common::Mosquitto::start_with_persistence();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    // A watcher with a persistent session records everything the gateway publishes.
    let mut o = rumqttc::MqttOptions::new("watcher", "127.0.0.1", broker.port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(false);
    let (watcher, mut conn) = Client::new(o, 10);
    watcher
        .subscribe("energy-gateway/#", QoS::AtLeastOnce)
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String, bool)>::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => seen2.lock().unwrap().push((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).to_string(),
                    p.retain,
                )),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-pub\"\nmax_backoff = \"1s\"\n[mqtt.publish]\nindicators_every = \"500ms\"\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/+\"\ndevice = \"{{1}}\"\nquantity = \"{{2}}\"\n\
         [[devices]]\nid = \"press\"\n\
         [[alerts]]\nid = \"press-peak\"\ndevice = \"press\"\nquantity = \"active_power\"\nabove = 100.0\nseverity = \"critical\"\n",
        broker.port
    );
    let mut cfg = gateway_config(dir.path(), &body);
    cfg.site.main_meters = vec!["press".into()];
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    publish_reliably(
        broker.port,
        "alert-pub",
        &[("meters/press/active_power".into(), "150".into())],
        Duration::ZERO,
    );
    let has = |topic: &str, needle: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, p, _)| t == topic && p.contains(needle))
    };
    wait_until("firing alert", Duration::from_secs(10), || {
        has("energy-gateway/plant-m/alerts", "\"state\":\"firing\"")
    });
    // The broker goes down while the resolution happens: it is delivered once it is back.
    broker.restart();
    publish_reliably(
        broker.port,
        "alert-pub",
        &[("meters/press/active_power".into(), "50".into())],
        Duration::ZERO,
    );
    wait_until("resolved alert", Duration::from_secs(15), || {
        has("energy-gateway/plant-m/alerts", "\"state\":\"resolved\"")
    });
    wait_until("indicators", Duration::from_secs(10), || {
        has("energy-gateway/plant-m/indicators", "\"site_power_kw\":50")
    });
    assert!(has("energy-gateway/plant-m/status", "online"));
    rt.block_on(gw.shutdown()).unwrap();
    wait_until("offline status", Duration::from_secs(5), || {
        seen.lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _, _)| t == "energy-gateway/plant-m/status")
            .is_some_and(|(_, p, _)| p == "offline")
    });
    let alerts: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t.ends_with("/alerts"))
        .map(|(_, p, _)| serde_json::from_str(p).unwrap())
        .collect();
    let firing = alerts.iter().find(|a| a["state"] == "firing").unwrap();
    assert_eq!(firing["rule"], "press-peak");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["value"], 150.0);
    assert_eq!(firing["unit"], "kW");
    assert_eq!(firing["site"], "plant-m");
}

#[test]
fn an_oversized_message_is_skipped_and_the_session_lives_on() {
    // Before: a QoS 1 message over the client's packet limit broke the connection, the broker
    // redelivered it at every reconnect, and no MQTT reading was stored again.
    let broker = common::Mosquitto::start_with_persistence();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"gw-big\"\n[mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/+\"\ndevice = \"{{1}}\"\nquantity = \"{{2}}\"\n\
         [[devices]]\nid = \"m1\"\n",
        port = broker.port,
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // 300 KiB, over the default max_message_size of 256 KiB.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "1".repeat(300 * 1024)).unwrap();
    let out = Command::new(common::find_binary("mosquitto_pub"))
        .args(["-p", &broker.port.to_string(), "-q", "1", "-i", "big-pub"])
        .args(["-t", "meters/m1/active_power", "-f"])
        .arg(&big)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let msgs: Vec<(String, String)> = (0..100)
        .map(|i| ("meters/m1/active_power".to_string(), format!("{i}.5")))
        .collect();
    publish_reliably(broker.port, "good-pub", &msgs, Duration::ZERO);
    let stats = gw.mqtt_in.clone().unwrap();
    wait_until("101 messages", Duration::from_secs(20), || {
        stats.messages.load(Ordering::Relaxed) >= 101
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stats.bad_messages.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.connects.load(Ordering::Relaxed),
        1,
        "the session broke"
    );
    rt.block_on(gw.shutdown()).unwrap();
    let got = rows(dir.path());
    assert_eq!(got.len(), 100, "every good message stored");
    assert!(got.iter().all(|r| r.reading.good_value().is_some()));
}

#[test]
fn unknown_devices_beyond_the_limit_are_refused_and_counted() {
    // 1 102 messages at once: more than Mosquitto queues per client by default (1 000), so a
    // gateway slowed by a busy machine would otherwise lose the tail at the broker.
    let broker = common::Mosquitto::start_with(common::MosquittoOptions {
        persistence: false,
        extra_config: "max_queued_messages 0\n".into(),
    });
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-many\"\n[mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"meters/+/p\"\nformat = \"number\"\ndevice = \"{{1}}\"\nquantity = \"active_power\"\naccept_unknown_devices = true\n\
         [[devices]]\nid = \"known\"\n",
        broker.port
    );
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir.path(), &body)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let limit = energy_gateway::acquisition::mqtt::MAX_UNKNOWN_DEVICES;
    let mut msgs: Vec<(String, String)> = (0..limit + 100)
        .map(|i| (format!("meters/d{i}/p"), "1.5".to_string()))
        .collect();
    // A configured device and an id already seen are still taken.
    msgs.push(("meters/known/p".into(), "2".into()));
    msgs.push(("meters/d0/p".into(), "3".into()));
    publish_flood(broker.port, msgs);
    let stats = gw.mqtt_in.clone().unwrap();
    wait_until("every message handled", Duration::from_secs(60), || {
        stats.messages.load(Ordering::Relaxed) >= (limit + 102) as u64
    });
    rt.block_on(gw.shutdown()).unwrap();
    let devices: BTreeSet<String> = rows(dir.path())
        .into_iter()
        .map(|r| r.reading.device)
        .collect();
    assert_eq!(
        devices.len(),
        limit + 1,
        "the limit plus the configured one"
    );
    assert!(devices.contains("known"));
    assert_eq!(stats.new_devices_refused.load(Ordering::Relaxed), 100);
    assert_eq!(rows(dir.path()).len(), limit + 2);
}
