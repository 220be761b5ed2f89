//! Data-driven meter template cases, Telegraf-style (`tests/testcases/meter_<model>/`): a
//! register dump (`registers.toml`), the device's configuration (`config.toml`, the Modbus
//! address written as `{address}`) and the readings the gateway must store
//! (`expected_readings.csv`: quantity, value in the gateway's unit, unit, quality). Every dump is
//! served by a real Modbus TCP server on loopback, the gateway polls all of them in one running
//! pipeline, and what it stored is compared with the expected readings: every one there, good
//! ones equal (float32 dumps to 1e-6 relative, integer ones exactly within rounding), "not
//! available" ones bad without a value, nothing else stored. Every built-in Modbus template has a
//! case; `tests/testcases/generate_meter_dumps.py` says where each dump comes from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use energy_gateway::acquisition::modbus::templates::BUILTIN;
use energy_gateway::config::{self, Synchronous};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};
use energy_gateway::pipeline;
use energy_gateway::readings::Quantity;
use energy_gateway::storage::Store;

/// One case folder.
struct Case {
    name: String,
    dir: PathBuf,
    /// quantity -> (value, unit); `None`: a bad reading.
    expected: BTreeMap<Quantity, Option<f64>>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("meter_") || !dir.is_dir() {
            continue;
        }
        let csv = std::fs::read_to_string(dir.join("expected_readings.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("quantity,value,unit,quality"), "{name}");
        let mut expected = BTreeMap::new();
        for l in lines.filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{name}: {l}");
            let q: Quantity = f[0].parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(f[2], q.unit(), "{name}: {l}: the unit is not the gateway's");
            let v = match f[3] {
                "good" => Some(
                    f[1].parse::<f64>()
                        .unwrap_or_else(|e| panic!("{name}: {l}: {e}")),
                ),
                "bad" => {
                    assert!(f[1].is_empty(), "{name}: {l}: a bad reading has no value");
                    None
                }
                other => panic!("{name}: {l}: quality {other}"),
            };
            assert!(expected.insert(q, v).is_none(), "{name}: {q} twice");
        }
        out.push(Case {
            name,
            dir,
            expected,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The dump as register tables.
fn bank(dir: &Path) -> RegisterBank {
    let text = std::fs::read_to_string(dir.join("registers.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut bank = RegisterBank::default();
    for (table, regs) in [("holding", &mut bank.holding), ("input", &mut bank.input)] {
        for block in v
            .get(table)
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            let start = block["start"].as_integer().unwrap();
            for (i, w) in block["words"].as_array().unwrap().iter().enumerate() {
                let addr = u16::try_from(start + i as i64).unwrap();
                let word = u16::try_from(w.as_integer().unwrap()).unwrap();
                assert!(regs.insert(addr, word).is_none(), "{table} {addr} twice");
            }
        }
    }
    bank
}

#[test]
fn every_meter_case_stores_the_readings_its_dump_holds() {
    let cases = cases();
    // One case per built-in Modbus template.
    for (file, _) in BUILTIN {
        let model = file.trim_end_matches(".toml");
        assert!(
            cases.iter().any(|c| c.name == format!("meter_{model}")),
            "no tests/testcases/meter_{model}"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut servers = Vec::new();
    let mut body = String::new();
    for c in &cases {
        let service = BusService::default();
        service.insert(1, Arc::new(Mutex::new(bank(&c.dir))));
        let (addr, server) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap().to_string();
            (a, simulator::serve_tcp(l, service))
        });
        servers.push(server);
        let device = std::fs::read_to_string(c.dir.join("config.toml")).unwrap();
        assert!(device.contains("id = \"meter\""), "{}", c.name);
        body += &device
            .replace("{address}", &addr)
            .replace("id = \"meter\"", &format!("id = \"{}\"", c.name));
    }
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[site]\nid = \"t\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{body}",
        dir.path().display()
    );
    let cfg = config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"));
    let gw = rt.block_on(pipeline::start(cfg)).unwrap();

    // Latest reading of every (device, quantity): value (None when bad).
    let wanted: usize = cases.iter().map(|c| c.expected.len()).sum();
    let store_path = dir.path().join("store.sqlite");
    let stored = || -> BTreeMap<(String, Quantity), Option<f64>> {
        let Ok(store) = Store::open(&store_path, Synchronous::Normal) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for r in store.readings_after(0, 1_000_000).unwrap_or_default() {
            out.insert(
                (r.reading.device.clone(), r.reading.quantity),
                r.reading.good_value(),
            );
        }
        out
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = stored();
    while got.len() < wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        got = stored();
    }
    rt.block_on(gw.shutdown()).unwrap();
    for s in servers {
        s.abort();
    }

    let mut problems = Vec::new();
    for c in &cases {
        for (q, want) in &c.expected {
            let key = (c.name.clone(), *q);
            match (got.get(&key), want) {
                (None, _) => problems.push(format!("{} {q}: nothing stored", c.name)),
                (Some(Some(v)), Some(w)) => {
                    if (v - w).abs() > 1e-6 * w.abs().max(1e-3) {
                        problems.push(format!("{} {q}: stored {v}, expected {w}", c.name));
                    }
                }
                (Some(None), None) => {}
                (Some(v), w) => {
                    problems.push(format!("{} {q}: stored {v:?}, expected {w:?}", c.name))
                }
            }
        }
    }
    for (device, q) in got.keys() {
        let known = cases
            .iter()
            .any(|c| &c.name == device && c.expected.contains_key(q));
        if !known {
            problems.push(format!("{device} {q}: stored, not expected"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
