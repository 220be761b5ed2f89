//! The pipeline in-process against simulated Modbus TCP meters on loopback: dead devices do not
//! stall live ones, Modbus exceptions and NaN become bad readings, and shutdown commits all.

use std::time::Duration;

use energy_gateway::config::{self, Synchronous};
use energy_gateway::demo::simulator::{RegisterBank, SimulatedFactory};
use energy_gateway::pipeline;
use energy_gateway::readings::Quantity;
use energy_gateway::storage::Store;

fn cfg(data_dir: &std::path::Path, devices: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"t\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{devices}",
        data_dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:?}"))
}

fn device(id: &str, addr: &str, timeout: &str, points: &str) -> String {
    format!(
        "[[devices]]\nid = \"{id}\"\n[devices.modbus]\naddress = \"{addr}\"\ninterval = \"500ms\"\ntimeout = \"{timeout}\"\n{points}\n"
    )
}

const GAS_POINTS: &str = "[[devices.points]]\nquantity = \"gas_volume\"\nregister = 0\ntype = \"u32\"\norder = \"CDAB\"\nscale = 0.01\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_silent_devices_do_not_stall_live_ones() {
    let factory = SimulatedFactory::start().await.unwrap();
    // Refuses connections.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Accepts connections and never answers: every request times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let devices = [
        device(
            "gas",
            &factory.addr("gas").unwrap().to_string(),
            "300ms",
            GAS_POINTS,
        ),
        device("refused", &refused.to_string(), "300ms", GAS_POINTS),
        device("silent", &silent_addr.to_string(), "300ms", GAS_POINTS),
    ]
    .concat();
    let gw = pipeline::start(cfg(dir.path(), &devices)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let gas = gw.devices["gas"].snapshot();
    let silent = gw.devices["silent"].snapshot();
    let refused = gw.devices["refused"].snapshot();
    gw.shutdown().await.unwrap();
    hold.abort();

    // 500 ms interval over ~4.2 s: the live device keeps its cycle (8-9 polls) although the
    // silent device times out on every attempt.
    assert!(gas.online && gas.requests >= 7, "gas: {gas:?}");
    assert!(!silent.online && silent.failures >= 2, "silent: {silent:?}");
    assert!(
        !refused.online && refused.failures >= 2,
        "refused: {refused:?}"
    );
    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let counts = store.count_by_device().unwrap();
    assert!(counts["gas"] >= 7, "{counts:?}");
    assert!(
        !counts.contains_key("silent") && !counts.contains_key("refused"),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_nan_make_only_their_points_bad() {
    let factory = SimulatedFactory::start().await.unwrap();
    // 0x2040 is inside the main meter's measurement block but not simulated: make it NaN.
    let bank = factory.bank("main").unwrap();
    RegisterBank::put(
        &mut bank.lock().unwrap().holding,
        0x2040,
        f64::NAN,
        config::ValueType::F32,
        config::WordOrder::ABCD,
    );
    let points = "\
[[devices.points]]
quantity = \"frequency\"
register = 0x2044
type = \"f32\"
scale = 0.01
[[devices.points]]
quantity = \"temperature\"
register = 0x2040
type = \"f32\"
[[devices.points]]
quantity = \"pressure\"
register = 0x6000
";
    let dir = tempfile::tempdir().unwrap();
    let addr = factory.addr("main").unwrap().to_string();
    let gw = pipeline::start(cfg(dir.path(), &device("main", &addr, "500ms", points)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = gw.devices["main"].snapshot();
    gw.shutdown().await.unwrap();

    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let rows = store.readings_after(0, 1000).unwrap();
    let of = |q: Quantity| rows.iter().filter(move |r| r.reading.quantity == q);
    assert!(of(Quantity::Frequency).count() >= 2);
    for r in of(Quantity::Frequency) {
        let hz = r.reading.good_value().unwrap();
        assert!((49.9..50.1).contains(&hz), "{hz}");
    }
    assert!(of(Quantity::Temperature).count() >= 2);
    for r in of(Quantity::Temperature) {
        assert_eq!(r.reading.value, None);
        assert!(
            r.reading.quality.reason().unwrap().contains("non-finite"),
            "{r:?}"
        );
    }
    assert!(of(Quantity::Pressure).count() >= 2);
    for r in of(Quantity::Pressure) {
        assert_eq!(r.reading.value, None);
        assert!(
            r.reading.quality.reason().unwrap().contains("exception"),
            "{r:?}"
        );
    }
    // An exception is an answer: the device stays online and the connection is kept. The
    // register refused with exception 2 (illegal data address) is not asked for again: its
    // point stays bad every cycle without a request.
    assert!(status.online && status.exceptions == 1, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_everything_that_was_acquired() {
    let factory = SimulatedFactory::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = factory.addr("gas").unwrap().to_string();
    let gw = pipeline::start(cfg(dir.path(), &device("gas", &addr, "500ms", GAS_POINTS)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let processed = gw
        .processing
        .readings
        .load(std::sync::atomic::Ordering::Relaxed);
    let report = gw.shutdown().await.unwrap();
    assert!(processed >= 2);
    // Everything processed before shutdown (and during it) reached the store.
    assert!(report.writer.readings >= processed);
    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    assert_eq!(store.count_readings().unwrap(), report.writer.readings);
    assert_eq!(store.max_reading_id().unwrap(), report.last_committed_id);
}
