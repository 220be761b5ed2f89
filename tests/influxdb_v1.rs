//! The real binary (`energy-gateway run`) against simulated Modbus meters and a real InfluxDB 1.6
//! started by the harness, including an InfluxDB outage in the middle of the run.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use energy_gateway::config::Synchronous;
use energy_gateway::demo::simulator::SimulatedFactory;
use energy_gateway::storage::Store;

#[test]
fn every_stored_reading_reaches_influxdb_across_an_outage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let factory = rt.block_on(SimulatedFactory::start()).unwrap();
    let mut influx = common::Influxd::start();
    influx.create_database("energy");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[site]
id = "plant-a"
park = "park-1"
main_meters = ["main"]
[log]
level = "info"
format = "json"
[storage]
data_dir = "{data}"

[[devices]]
id = "main"
carrier = "electricity"
model = "chint-dtsu666"
[devices.modbus]
address = "{main}"
interval = "250ms"
max_gap = 32
[[devices.points]]
quantity = "active_power"
register = 0x2012
type = "f32"
scale = 0.0001
[[devices.points]]
quantity = "frequency"
register = 0x2044
type = "f32"
scale = 0.01

[[devices]]
id = "gas"
carrier = "natural_gas"
[devices.modbus]
address = "{gas}"
interval = "250ms"
[[devices.points]]
quantity = "gas_volume"
register = 0
type = "u32"
order = "CDAB"
scale = 0.01

[outputs.influxdb.local]
url = "{url}"
database = "energy"
batch_size = 50
flush_interval = "200ms"
timeout = "2s"
"#,
            data = dir.path().join("data").display(),
            main = factory.addr("main").unwrap(),
            gas = factory.addr("gas").unwrap(),
            url = influx.url,
        ),
    )
    .unwrap();

    let mut gw = Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_secs(3));
    let before_outage = influx.count_field("energy", "reading", "quality");
    assert!(
        before_outage > 0,
        "nothing reached InfluxDB before the outage"
    );
    influx.stop();
    std::thread::sleep(Duration::from_secs(3));
    influx.start_again();
    // Backoff after the outage is at most a few seconds; give delivery time to catch up.
    std::thread::sleep(Duration::from_secs(6));
    let status = common::sigterm_within(&mut gw, Duration::from_secs(10)).unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(gw.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    // JSON logs: every line is one JSON object.
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(
        log.contains("write failed"),
        "the outage was not noticed:\n{log}"
    );

    let store = Store::open(&dir.path().join("data/store.sqlite"), Synchronous::Normal).unwrap();
    let stored = store.count_readings().unwrap();
    let cursor = store.cursor("influxdb.local").unwrap();
    let in_influx = influx.count_field("energy", "reading", "quality");
    assert!(stored > before_outage + 20, "stored {stored}");
    assert_eq!(
        cursor,
        store.max_reading_id().unwrap(),
        "not everything was confirmed"
    );
    assert_eq!(
        in_influx, stored,
        "InfluxDB holds {in_influx} points, the store {stored}"
    );

    // Tags follow the documented schema.
    let r = influx.query(
        "energy",
        "SELECT last(\"value\") FROM \"reading\" WHERE \"device\"='main' AND \"quantity\"='active_power' AND \"unit\"='kW' AND \"site\"='plant-a' AND \"park\"='park-1' AND \"carrier\"='electricity' AND \"model\"='chint-dtsu666'",
    );
    let kw = r["results"][0]["series"][0]["values"][0][1]
        .as_f64()
        .unwrap_or(0.0);
    assert!((230.0..=360.0).contains(&kw), "{r}");
    drop(factory);
}
