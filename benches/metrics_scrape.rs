//! Cost of a `/metrics` scrape with many devices: N simulated Modbus TCP meters (served in this
//! process) polled once a minute by the pipeline, the HTTP server in the same process, and S
//! scrapes of `/metrics` over loopback once every device is online. Reports the mean time of a
//! scrape (request to last byte), the CPU time of the process per scrape and the size of the
//! exposition. For allocations per scrape, run it under heaptrack with S and with 0 scrapes
//! and divide the difference of "calls to allocation functions" by S.
//!
//!   cargo bench --bench metrics_scrape                 # 500 devices, 300 scrapes
//!   cargo bench --bench metrics_scrape -- 500 0        # the same without scrapes

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../tests/it/common/mod.rs"]
mod common;

use energy_gateway::config::{ValueType, WordOrder};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let devices = args.first().copied().unwrap_or(500);
    let scrapes = args.get(1).copied().unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ports: Vec<u16> = rt.block_on(async {
        let mut ports = Vec::new();
        for d in 0..devices {
            let mut bank = RegisterBank::default();
            RegisterBank::put(
                &mut bank.holding,
                0,
                10.0 + d as f64,
                ValueType::F32,
                WordOrder::ABCD,
            );
            let service = BusService::default();
            service.insert(1, Arc::new(Mutex::new(bank)));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(l.local_addr().unwrap().port());
            simulator::serve_tcp(l, service);
        }
        ports
    });
    let dir = tempfile::tempdir().unwrap();
    let mut toml = format!(
        "[site]\nid = \"bench\"\n[log]\nlevel = \"warn\"\nstatus_every = \"0s\"\n[storage]\ndata_dir = \"{}\"\n",
        dir.path().display()
    );
    for (i, p) in ports.iter().enumerate() {
        toml.push_str(&format!(
            "[[devices]]\nid = \"m{i:03}\"\ncarrier = \"electricity\"\n[devices.modbus]\naddress = \"127.0.0.1:{p}\"\ninterval = \"60s\"\n\
             [[devices.points]]\nquantity = \"active_power\"\nregister = 0\ntype = \"f32\"\n"
        ));
    }
    let cfg = energy_gateway::config::load_str(&toml).unwrap();
    let (gw, http) = rt.block_on(async {
        let gw = energy_gateway::pipeline::start(cfg).await.unwrap();
        let http = energy_gateway::http::HttpServer::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        http.set_gateway(Some(&gw), "running");
        (gw, http)
    });
    let started = Instant::now();
    while gw.devices_online() < devices {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {devices} devices online",
            gw.devices_online()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = http.local_addr().to_string();
    // Warm up (the store's read connection opens at the first scrape).
    let first = common::http_get(&addr, "/metrics").unwrap();
    assert_eq!(first.status, 200);
    let bytes = first.body.len();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..scrapes {
        let r = common::http_get(&addr, "/metrics").unwrap();
        assert_eq!(r.status, 200);
    }
    let el = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    if scrapes > 0 {
        println!(
            "metrics scrape, {devices} devices: {:.2} ms per scrape, {:.2} ms CPU per scrape, {bytes} bytes ({scrapes} scrapes over loopback)",
            el * 1000.0 / scrapes as f64,
            cpu * 1000.0 / scrapes as f64,
        );
    }
    rt.block_on(async {
        http.shutdown().await;
        gw.shutdown().await.unwrap();
    });
}
