//! Readings northbound over MQTT (`[outputs.mqtt_readings.NAME]`) against a real Mosquitto: every
//! reading the store holds reaches a subscriber across two broker restarts, as JSON and as
//! Sparkplug B; the Sparkplug run is decoded by an independent decoder (Google's Python protobuf
//! runtime with the Sparkplug B message schema declared in `tests/it/sparkplug_decode.py`) and
//! shows births, aliases, sequence numbers and bdSeq as Sparkplug 3.0 wants them.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Packet, QoS};

use energy_gateway::acquisition::modbus::templates;
use energy_gateway::config::{self, Synchronous};
use energy_gateway::demo::simulator::{self, BusService};
use energy_gateway::pipeline;
use energy_gateway::storage::Store;

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A subscriber with a persistent session (QoS 1) recording every message on `filter`.
fn collector(broker: &common::Mosquitto, id: &str, filter: &str) -> (Client, Seen) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(false);
    let (client, mut conn) = Client::new(o, 10);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => seen2
                    .lock()
                    .unwrap()
                    .push((p.topic.clone(), p.payload.to_vec())),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    (client, seen)
}

/// A simulated SDM120 on Modbus TCP (unit 1), returns its address and the server task.
async fn meter() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let all = templates::load(None).unwrap();
    let (bank, _) = simulator::template_meter(&all["eastron-sdm120"], 3);
    let service = BusService::default();
    service.insert(1, Arc::new(Mutex::new(bank)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, simulator::serve_tcp(listener, service))
}

fn gateway_config(
    dir: &std::path::Path,
    meter: std::net::SocketAddr,
    output: &str,
) -> config::Config {
    let toml = format!(
        "[site]\nid = \"plant\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n\
         [[devices]]\nid = \"m1\"\nmodel = \"eastron-sdm120\"\n[devices.modbus]\naddress = \"{meter}\"\ninterval = \"100ms\"\n\
         {output}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

/// Every reading in the store: (device, quantity, acquisition ms).
fn stored(dir: &std::path::Path) -> BTreeSet<(String, String, i64)> {
    let store = Store::open(&dir.join("store.sqlite"), Synchronous::Normal).unwrap();
    store
        .readings_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.reading.device,
                r.reading.quantity.to_string(),
                r.reading.ts_ms,
            )
        })
        .collect()
}

/// Waits until `f` holds, for at most `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A running gateway with one SDM120 meter polled every 100 ms and the output table `output`
/// (`{port}` is the broker's port).
struct Running {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    gw: pipeline::RunningGateway,
    meter: tokio::task::JoinHandle<()>,
}

fn start(broker: &common::Mosquitto, output: &str) -> Running {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, meter_task) = rt.block_on(meter());
    let output = output.replace("{port}", &broker.port.to_string());
    let cfg = gateway_config(dir.path(), addr, &output);
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    Running {
        rt,
        dir,
        gw,
        meter: meter_task,
    }
}

#[test]
fn json_readings_survive_two_broker_restarts() {
    let mut broker = common::Mosquitto::start_with_persistence();
    let (_sub, seen) = collector(&broker, "park-platform", "factory/#");
    let Running { rt, dir, gw, meter: server } = start(
        &broker,
        "[outputs.mqtt_readings.park]\n[outputs.mqtt_readings.park.broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nmax_backoff = \"500ms\"\n",
    );
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    std::thread::sleep(Duration::from_millis(1500));
    broker.restart();
    std::thread::sleep(Duration::from_millis(1500));
    // The meter stops: the store holds N readings, the subscriber must see all N.
    server.abort();
    let status = gw.outputs["mqtt_readings.park"].clone();
    let n = stored(dir.path()).len();
    let received = || {
        let mut got = BTreeSet::new();
        for (topic, payload) in seen.lock().unwrap().iter() {
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(
                topic,
                &format!("factory/plant/{}", v["device"].as_str().unwrap())
            );
            for (q, r) in v["values"].as_object().unwrap() {
                got.insert((
                    v["device"].as_str().unwrap().to_string(),
                    q.clone(),
                    r["ts_ms"].as_i64().unwrap(),
                ));
            }
        }
        got
    };
    wait_until(Duration::from_secs(20), || {
        received().len() >= stored(dir.path()).len()
    });
    rt.block_on(gw.shutdown()).unwrap();
    let all = stored(dir.path());
    let got = received();
    assert!(n > 50, "only {n} readings produced");
    let missing: Vec<_> = all.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} readings never arrived, e.g. {missing:?}",
        all.len() - got.len().min(all.len()),
        all.len()
    );
    assert_eq!(got.len(), all.len(), "nothing invented");
    // One message per poll, with units and quality.
    let first = seen.lock().unwrap()[0].1.clone();
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(v["site"], "plant");
    let p = &v["values"]["active_power"];
    assert_eq!(p["unit"], "kW");
    assert_eq!(p["quality"], "good");
    assert!(p["value"].is_f64(), "{v}");
    assert!(
        status
            .points_sent
            .load(std::sync::atomic::Ordering::Relaxed) as usize
            >= all.len(),
        "delivered counter"
    );
    println!(
        "{} readings in {} messages, all delivered across two broker restarts",
        all.len(),
        seen.lock().unwrap().len()
    );
}

/// Decodes Sparkplug payloads with the independent decoder: one JSON object per message.
fn decode(messages: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    let input: Vec<serde_json::Value> = messages
        .iter()
        .map(|(t, p)| {
            serde_json::json!({"topic": t, "hex": p.iter().map(|b| format!("{b:02x}")).collect::<String>()})
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sparkplug_decode.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "decoder failed (python3 -m pip install protobuf): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sparkplug_b_births_aliases_and_sequence_numbers() {
    let mut broker = common::Mosquitto::start_with_persistence();
    let (host, seen) = collector(&broker, "scada-host", "spBv1.0/#");
    let Running { rt, dir, gw, meter: server } = start(
        &broker,
        "[outputs.mqtt_readings.scada]\nformat = \"sparkplug_b\"\ngroup_id = \"energy\"\n\
         [outputs.mqtt_readings.scada.broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nmax_backoff = \"500ms\"\n",
    );
    std::thread::sleep(Duration::from_millis(1200));
    broker.restart();
    std::thread::sleep(Duration::from_millis(1500));
    // A host asks for a rebirth: NCMD with Node Control/Rebirth = true (encoded by the decoder's
    // schema, not by the gateway's encoder).
    let ncmd = decode_helper_encode_rebirth();
    host.publish("spBv1.0/energy/NCMD/plant", QoS::AtLeastOnce, false, ncmd)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    std::thread::sleep(Duration::from_millis(1500));
    server.abort();
    wait_until(Duration::from_secs(20), || {
        gw.outputs["mqtt_readings.scada"]
            .cursor
            .load(std::sync::atomic::Ordering::Relaxed)
            >= *gw.committed.borrow()
    });
    let committed_at_wait = *gw.committed.borrow();
    rt.block_on(gw.shutdown()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .iter()
        .any(|(t, _)| t.contains("/NDEATH/"))));
    // What the destination's cursor passed was acknowledged by the broker; a poll committed
    // during shutdown may wait in the outbox for the next start (not lost, not yet sent).
    let cursor = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal)
        .unwrap()
        .cursor("mqtt_readings.scada")
        .unwrap();
    assert!(
        cursor >= committed_at_wait,
        "{cursor} < {committed_at_wait}"
    );
    // A message the broker delivered again (QoS 1 after a restart) is the same bytes: once.
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for m in seen.lock().unwrap().iter() {
        if !messages.contains(m) {
            messages.push(m.clone());
        }
    }
    let decoded = decode(&messages);

    // Sessions: each starts with an NBIRTH (seq 0); seq counts up by one per message after it.
    let mut births = Vec::new(); // (bdSeq, index)
    let mut aliases: BTreeMap<u64, String> = BTreeMap::new();
    let mut expected_seq: Option<u64> = None;
    let mut values = BTreeSet::new();
    let mut ndeath_bd = None;
    for (i, m) in decoded.iter().enumerate() {
        let topic = m["topic"].as_str().unwrap();
        let kind = topic.split('/').nth(2).unwrap();
        let metrics = m["metrics"].as_array().unwrap();
        match kind {
            "NBIRTH" => {
                assert_eq!(m["seq"], 0, "{m}");
                let bd = metrics
                    .iter()
                    .find(|x| x["name"] == "bdSeq")
                    .expect("bdSeq")["long_value"]
                    .as_u64()
                    .unwrap();
                assert!(metrics
                    .iter()
                    .any(|x| x["name"] == "Node Control/Rebirth" && x["datatype"] == 11));
                births.push((bd, i));
                aliases.clear();
                expected_seq = Some(1);
                continue;
            }
            "NDEATH" => {
                ndeath_bd = Some(
                    metrics.iter().find(|x| x["name"] == "bdSeq").unwrap()["long_value"]
                        .as_u64()
                        .unwrap(),
                );
                continue;
            }
            "NCMD" => continue,
            _ => {}
        }
        let want = expected_seq.expect("a device message before any NBIRTH");
        assert_eq!(
            m["seq"].as_u64().unwrap(),
            want % 256,
            "seq continuity at message {i}: {m}"
        );
        expected_seq = Some(want + 1);
        assert_eq!(topic.split('/').nth(4), Some("m1"));
        match kind {
            "DBIRTH" => {
                for x in metrics {
                    assert_eq!(x["datatype"], 10, "Double: {x}");
                    assert!(x["properties"]["engUnit"].is_string(), "{x}");
                    aliases.insert(
                        x["alias"].as_u64().unwrap(),
                        x["name"].as_str().unwrap().to_string(),
                    );
                }
            }
            "DDATA" => {
                for x in metrics {
                    assert!(x.get("name").is_none(), "DDATA carries aliases only: {x}");
                    let alias = x["alias"].as_u64().unwrap();
                    let name = aliases
                        .get(&alias)
                        .unwrap_or_else(|| panic!("alias {alias} not born: {m}"));
                    assert!(x["double_value"].is_f64() || x["is_null"] == true, "{x}");
                    values.insert((name.clone(), x["timestamp"].as_i64().unwrap()));
                }
            }
            other => panic!("unexpected message kind {other}"),
        }
    }
    // Three connections (bdSeq 0, then one more per connection attempt: two broker restarts)
    // and a rebirth in the second (same bdSeq); the NDEATH of the clean stop names the last
    // session's bdSeq.
    let bds: Vec<u64> = births.iter().map(|b| b.0).collect();
    assert_eq!(bds.len(), 4, "{bds:?}");
    assert!(
        bds[0] == 0 && bds[1] > 0 && bds[2] == bds[1] && bds[3] > bds[2],
        "{bds:?}"
    );
    assert_eq!(ndeath_bd, Some(bds[3]), "NDEATH names the session's bdSeq");
    let all: BTreeSet<(String, i64)> =
        Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal)
            .unwrap()
            .readings_after(0, 1_000_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.id <= cursor)
            .map(|r| (r.reading.quantity.to_string(), r.reading.ts_ms))
            .collect();
    let missing: Vec<_> = all.difference(&values).take(5).collect();
    assert!(missing.is_empty(), "{missing:?} of {}", all.len());
    println!(
        "{} messages, {} readings decoded, births at bdSeq {bds:?}",
        decoded.len(),
        values.len()
    );
}

/// An NCMD payload asking for a rebirth, encoded by the independent (Python) side.
fn decode_helper_encode_rebirth() -> Vec<u8> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sparkplug_decode.py");
    let out = std::process::Command::new("python3")
        .args([script, "--rebirth"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8(out.stdout).unwrap();
    (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
