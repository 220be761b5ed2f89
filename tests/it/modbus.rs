//! Modbus acquisition against real Modbus servers: Modbus TCP on loopback, Modbus RTU on a
//! socat pty pair, RTU over TCP. Every built-in meter template is read over TCP (through
//! `probe`) and over a shared RTU line (through the running pipeline), and every decoded quantity
//! is compared with the value the simulated meter holds, in canonical units.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use energy_gateway::acquisition::modbus::link::Link;
use energy_gateway::acquisition::modbus::probe::probe;
use energy_gateway::acquisition::modbus::templates::{self, BUILTIN};
use energy_gateway::config::{self, Synchronous};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};
use energy_gateway::pipeline;
use energy_gateway::readings::Quantity;
use energy_gateway::storage::Store;

fn models() -> Vec<&'static str> {
    BUILTIN
        .iter()
        .map(|(f, _)| f.trim_end_matches(".toml"))
        .collect()
}

fn gateway_config(dir: &std::path::Path, body: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"t\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{body}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

/// Latest good value of every (device, quantity) in the store.
fn latest(dir: &std::path::Path) -> BTreeMap<(String, Quantity), f64> {
    let store = Store::open(&dir.join("store.sqlite"), Synchronous::Normal).unwrap();
    let mut out = BTreeMap::new();
    for r in store.readings_after(0, 1_000_000).unwrap() {
        if let Some(v) = r.reading.good_value() {
            out.insert((r.reading.device.clone(), r.reading.quantity), v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_over_tcp_decodes_what_the_meter_holds() {
    let all = templates::load(None).unwrap();
    let mut requests = Vec::new();
    for (seed, model) in models().into_iter().enumerate() {
        let t = &all[model];
        let (bank, expected) = simulator::template_meter(t, seed as u32);
        let service = BusService::default();
        service.insert(7, Arc::new(Mutex::new(bank)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = simulator::serve_tcp(listener, service);

        let got = probe(Link::Tcp(addr), 7, model, None, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        server.abort();
        assert_eq!(
            got.values.len(),
            expected.len(),
            "{model}: {:?}",
            got.values
        );
        for (q, want) in &expected {
            let v = &got.values[q.as_str()];
            assert_eq!(v.quality, "good", "{model} {q}: {v:?}");
            assert_eq!(v.unit, q.unit());
            assert_eq!(v.value, Some(*want), "{model} {q}");
        }
        requests.push((model, got.requests));
    }
    println!("requests per full cycle: {requests:?}");
}

#[test]
fn probe_command_prints_the_documented_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let all = templates::load(None).unwrap();
    let (mut bank, _) = simulator::template_meter(&all["chint-dtsu666"], 0);
    // The manual's scaled units: 2301.0 (0.1 V) is 230.1 V; 123456.5 (0.1 W) is 12.34565 kW.
    RegisterBank::put(
        &mut bank.holding,
        0x2006,
        2301.0,
        config::ValueType::F32,
        config::WordOrder::ABCD,
    );
    RegisterBank::put(
        &mut bank.holding,
        0x2012,
        123456.5,
        config::ValueType::F32,
        config::WordOrder::ABCD,
    );
    // The frequency register answers NaN: a bad reading, never a number.
    RegisterBank::put(
        &mut bank.holding,
        0x2044,
        f64::NAN,
        config::ValueType::F32,
        config::WordOrder::ABCD,
    );
    let service = BusService::default();
    service.insert(1, Arc::new(Mutex::new(bank)));
    let (addr, server) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (a, simulator::serve_tcp(l, service))
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args([
            "probe",
            "--tcp",
            &addr,
            "--unit",
            "1",
            "--model",
            "chint-dtsu666",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    // The wrong model: every register is refused (exception 2). The values say why, and the
    // exit status says that nothing could be read.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["probe", "--tcp", &addr, "--model", "eastron-sdm120"])
        .output()
        .unwrap();
    server.abort();
    assert!(!wrong.status.success(), "{wrong:?}");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("no value could be read"), "{err}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "chint-dtsu666");
    assert!(v["device"].as_str().unwrap().contains(&addr));
    let vl1 = &v["values"]["voltage_l1"];
    assert!(
        (vl1["value"].as_f64().unwrap() - 230.1).abs() < 1e-9,
        "{vl1}"
    );
    assert_eq!(vl1["unit"], "V");
    assert_eq!(vl1["quality"], "good");
    assert!((v["values"]["active_power"]["value"].as_f64().unwrap() - 12.34565).abs() < 1e-9);
    assert_eq!(v["values"]["active_power"]["unit"], "kW");
    let f = &v["values"]["frequency"];
    assert_eq!(f["value"], serde_json::Value::Null);
    assert_eq!(f["quality"], "bad");
    assert!(f["reason"].as_str().unwrap().contains("non-finite"), "{f}");

    // An unknown model is a clear error naming the known ones.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["probe", "--tcp", &addr, "--model", "acme-9000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme-9000") && err.contains("eastron-sdm630"),
        "{err}"
    );
}

/// What each unit on the test line is: its model and the values it holds.
type LineUnits = BTreeMap<u8, (&'static str, BTreeMap<Quantity, f64>)>;

/// Starts an RTU line on a pty pair with one simulated meter per template (units 1..), returns
/// the service (to silence units), the expected values by unit, and the server task.
fn rtu_line(
    rt: &tokio::runtime::Runtime,
    pty: &common::PtyPair,
) -> (BusService, LineUnits, tokio::task::JoinHandle<()>) {
    let all = templates::load(None).unwrap();
    let service = BusService::default();
    let mut expected = BTreeMap::new();
    for (i, model) in models().into_iter().enumerate() {
        let unit = i as u8 + 1;
        let (bank, values) = simulator::template_meter(&all[model], 100 + i as u32);
        service.insert(unit, Arc::new(Mutex::new(bank)));
        expected.insert(unit, (model, values));
    }
    let server = rt
        .block_on(async { simulator::serve_rtu(&pty.a.to_string_lossy(), 19200, service.clone()) })
        .unwrap();
    (service, expected, server)
}

#[test]
fn every_template_on_one_shared_rtu_line() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pty = common::PtyPair::start();
    let (_service, expected, server) = rtu_line(&rt, &pty);
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[[buses]]\nid = \"line1\"\ntransport = \"rtu\"\nport = \"{}\"\nbaud = 19200\n",
        pty.b.display()
    );
    for (unit, (model, _)) in &expected {
        body += &format!(
            "[[devices]]\nid = \"u{unit}\"\nmodel = \"{model}\"\n[devices.modbus]\nbus = \"line1\"\nunit = {unit}\ninterval = \"1s\"\ntimeout = \"300ms\"\n"
        );
    }
    let cfg = gateway_config(dir.path(), &body);
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let snapshots: BTreeMap<String, _> = gw
        .devices
        .iter()
        .map(|(k, v)| (k.to_string(), v.snapshot()))
        .collect();
    rt.block_on(gw.shutdown()).unwrap();
    server.abort();

    let got = latest(dir.path());
    for (unit, (model, values)) in &expected {
        let id = format!("u{unit}");
        assert!(
            snapshots[&id].online,
            "{model} on unit {unit}: {:?}",
            snapshots[&id]
        );
        assert_eq!(snapshots[&id].failures, 0, "{model}: {:?}", snapshots[&id]);
        for (q, want) in values {
            assert_eq!(
                got.get(&(id.clone(), *q)),
                Some(want),
                "{model} (unit {unit}) {q}"
            );
        }
    }
}

#[test]
fn a_silent_slave_on_a_shared_rtu_line_does_not_shift_the_others() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pty = common::PtyPair::start();
    let (service, _expected, server) = rtu_line(&rt, &pty);
    // Unit 2 stops answering; unit 20 was never there.
    service.set_silent(2, true);
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[[buses]]\nid = \"line1\"\ntransport = \"rtu\"\nport = \"{}\"\nbaud = 19200\npause = \"5ms\"\n",
        pty.b.display()
    );
    for (unit, model) in [
        (1, "abb-b23"),
        (2, "acrel-dtsd1352"),
        (5, "eastron-sdm120"),
        (20, "eastron-sdm120"),
    ] {
        body += &format!(
            "[[devices]]\nid = \"u{unit}\"\nmodel = \"{model}\"\n[devices.modbus]\nbus = \"line1\"\nunit = {unit}\ninterval = \"500ms\"\ntimeout = \"200ms\"\ndegraded_after = 2\nmax_backoff = \"2s\"\n"
        );
    }
    let cfg = gateway_config(dir.path(), &body);
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();
    std::thread::sleep(Duration::from_millis(6000));
    let snap: BTreeMap<String, _> = gw
        .devices
        .iter()
        .map(|(k, v)| (k.to_string(), v.snapshot()))
        .collect();
    rt.block_on(gw.shutdown()).unwrap();
    server.abort();

    // The live meters were polled on their 500 ms cycle: the longest gap between two polls of
    // the same point stays within one interval plus the two dead slaves' timeouts.
    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let rows = store.readings_after(0, 1_000_000).unwrap();
    for id in ["u1", "u5"] {
        let ts: Vec<i64> = rows
            .iter()
            .filter(|r| r.reading.device == id && r.reading.quantity == Quantity::ActivePower)
            .map(|r| r.reading.ts_ms)
            .collect();
        assert!(
            ts.len() >= 10,
            "{id}: only {} polls in 6 s: {:?}",
            ts.len(),
            snap[id]
        );
        let max_gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            max_gap <= 500 + 2 * 200 + 150,
            "{id}: a poll came {max_gap} ms after the previous one"
        );
        assert_eq!(snap[id].failures, 0, "{id}: {:?}", snap[id]);
    }
    // The dead ones were degraded: far fewer attempts than the 12 cycles of the run.
    for id in ["u2", "u20"] {
        assert!(!snap[id].online, "{id}: {:?}", snap[id]);
        assert!((2..=6).contains(&snap[id].failures), "{id}: {:?}", snap[id]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_serial_server_with_two_meters() {
    let all = templates::load(None).unwrap();
    let service = BusService::default();
    let (b1, e1) = simulator::template_meter(&all["carlo-gavazzi-em340"], 3);
    let (b2, e2) = simulator::template_meter(&all["tuf-2000"], 4);
    service.insert(1, Arc::new(Mutex::new(b1)));
    service.insert(2, Arc::new(Mutex::new(b2)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = simulator::serve_rtu_over_tcp(listener, service);
    let dir = tempfile::tempdir().unwrap();
    let cfg = gateway_config(
        dir.path(),
        &format!(
            "[[buses]]\nid = \"dtu\"\ntransport = \"rtu_over_tcp\"\naddress = \"{addr}\"\n\
             [[devices]]\nid = \"em\"\nmodel = \"carlo-gavazzi-em340\"\n[devices.modbus]\nbus = \"dtu\"\nunit = 1\n\
             [[devices]]\nid = \"flow\"\nmodel = \"tuf-2000\"\ncarrier = \"water\"\n[devices.modbus]\nbus = \"dtu\"\nunit = 2\n"
        ),
    );
    let gw = pipeline::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.shutdown().await.unwrap();
    server.abort();
    let got = latest(dir.path());
    for (id, expected) in [("em", e1), ("flow", e2)] {
        for (q, want) in expected {
            assert_eq!(got.get(&(id.to_string(), q)), Some(&want), "{id} {q}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_and_garbage_answers_are_survived() {
    let all = templates::load(None).unwrap();
    let (bank, expected) = simulator::template_meter(&all["eastron-sdm630"], 9);
    let service = BusService::default();
    service.insert(1, Arc::new(Mutex::new(bank)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = simulator::serve_tcp(listener, service.clone());
    let dir = tempfile::tempdir().unwrap();
    let cfg = gateway_config(
        dir.path(),
        &format!(
            "[[devices]]\nid = \"m\"\nmodel = \"eastron-sdm630\"\n[devices.modbus]\naddress = \"{addr}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\ndegraded_after = 100\n"
        ),
    );
    let gw = pipeline::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(gw.devices["m"].snapshot().online);

    // The meter goes away: connections are refused.
    server.abort();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let down = gw.devices["m"].snapshot();
    assert!(!down.online && down.failures >= 2, "{down:?}");

    // Something answers garbage on the same port: short and malformed frames, never a panic.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let garbage = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut n = 0u8;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 260];
            let _ = s.read(&mut buf).await;
            n = n.wrapping_add(1);
            let reply: &[u8] = match n % 3 {
                0 => &[0x00, 0x01],                                           // short frame
                1 => &[0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x01, 0x04, 0xFF], // wrong byte count
                _ => &[0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x02, 0x01, 0x83],       // wrong transaction
            };
            let _ = s.write_all(reply).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = gw.devices["m"].snapshot();
    assert!(
        !during.online && during.failures > down.failures,
        "{during:?}"
    );
    garbage.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The meter comes back on the same port: the gateway reconnects by itself.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = simulator::serve_tcp(listener, service);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = gw.devices["m"].snapshot();
    gw.shutdown().await.unwrap();
    server.abort();
    assert!(back.online, "{back:?}");
    let got = latest(dir.path());
    assert_eq!(
        got.get(&("m".to_string(), Quantity::Frequency)),
        expected.get(&Quantity::Frequency)
    );
}

/// Serves `bank` as unit 1 over Modbus TCP on a free loopback port.
async fn serve_unit_1(bank: RegisterBank) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let service = BusService::default();
    service.insert(1, Arc::new(Mutex::new(bank)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, simulator::serve_tcp(listener, service))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_point_group_keeps_its_own_interval() {
    let all = templates::load(None).unwrap();
    let (bank, _) = simulator::template_meter(&all["eastron-sdm120"], 1);
    let (addr, server) = serve_unit_1(bank).await;
    let dir = tempfile::tempdir().unwrap();
    // Power every 200 ms, voltage at the device's 1 s, energy every 60 s (read once at start).
    let cfg = gateway_config(
        dir.path(),
        &format!(
            "[[devices]]\nid = \"m\"\n[devices.modbus]\naddress = \"{addr}\"\ninterval = \"1s\"\n\
             [[devices.points]]\nquantity = \"active_power\"\nregister = 0x0C\nkind = \"input\"\ntype = \"f32\"\ninterval = \"200ms\"\n\
             [[devices.points]]\nquantity = \"voltage_l1\"\nregister = 0\nkind = \"input\"\ntype = \"f32\"\n\
             [[devices.points]]\nquantity = \"energy_import\"\nregister = 0x48\nkind = \"input\"\ntype = \"f32\"\ninterval = \"60s\"\n"
        ),
    );
    let gw = pipeline::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    gw.shutdown().await.unwrap();
    server.abort();
    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let rows = store.readings_after(0, 10_000).unwrap();
    let count = |q: Quantity| rows.iter().filter(|r| r.reading.quantity == q).count();
    assert!(
        (10..=12).contains(&count(Quantity::ActivePower)),
        "power polled {} times",
        count(Quantity::ActivePower)
    );
    assert!(
        (2..=3).contains(&count(Quantity::VoltageL1)),
        "voltage polled {} times",
        count(Quantity::VoltageL1)
    );
    assert_eq!(count(Quantity::EnergyImport), 1);
}

/// A meter variant lacking one register of its family's map: 30 values in one block read, the
/// meter answers exception 2 (illegal data address) for register 17. The block is read in halves
/// down to single values: 29 good readings, 1 bad; the next cycle plans around the register and
/// sends two requests, none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_2_splits_the_block_and_the_next_cycle_plans_around_it() {
    let quantities: Vec<Quantity> = Quantity::ALL.iter().copied().take(30).collect();
    let mut bank = RegisterBank::default();
    RegisterBank::define(&mut bank.holding, 0, 30);
    for r in 0..30u16 {
        bank.holding.insert(r, 100 + r);
    }
    bank.holding.remove(&17);
    let (addr, server) = serve_unit_1(bank).await;
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[[devices]]\nid = \"m\"\n[devices.modbus]\naddress = \"{addr}\"\ninterval = \"1s\"\ndegraded_after = 100\n"
    );
    for (i, q) in quantities.iter().enumerate() {
        body.push_str(&format!(
            "[[devices.points]]\nquantity = \"{q}\"\nregister = {i}\ntype = \"u16\"\n"
        ));
    }
    let cfg = gateway_config(dir.path(), &body);
    let gw = pipeline::start(cfg).await.unwrap();
    assert_eq!(gw.requests_per_cycle["m"], 1, "one block of 30 registers");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = gw.devices["m"].snapshot();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = gw.devices["m"].snapshot();
    gw.shutdown().await.unwrap();
    server.abort();

    // First cycle: the block and the halves holding register 17 are refused, the rest is read.
    let refused_first = first.exception_codes.get(&2).copied().unwrap_or(0);
    assert!(refused_first >= 2, "{first:?}");
    assert!(first.online, "exceptions are answers: {first:?}");
    // Second cycle: two requests around register 17, not one refused.
    assert_eq!(
        second.exception_codes.get(&2).copied().unwrap_or(0),
        refused_first,
        "{second:?}"
    );
    assert_eq!(second.requests - first.requests, 2, "{first:?} {second:?}");
    println!(
        "cycle 1: {} requests, {refused_first} refused; cycle 2: {} requests, 0 refused",
        first.requests,
        second.requests - first.requests
    );

    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let rows = store.readings_after(0, 10_000).unwrap();
    for (i, q) in quantities.iter().enumerate() {
        let of_q: Vec<_> = rows.iter().filter(|r| r.reading.quantity == *q).collect();
        assert_eq!(of_q.len(), 2, "{q}: one reading per cycle");
        for r in of_q {
            if i == 17 {
                assert_eq!(r.reading.good_value(), None, "{q}: {:?}", r.reading);
                let why = format!("{:?}", r.reading.quality);
                assert!(why.contains("illegal data address"), "{why}");
            } else {
                assert_eq!(r.reading.good_value(), Some(100.0 + i as f64), "{q}");
            }
        }
    }
}
