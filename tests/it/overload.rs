//! Overload that shows: a device slower than its poll interval has its missed slots counted and
//! is flagged behind (device status, /metrics, /readyz), while a device that keeps up is not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use energy_gateway::acquisition::modbus::templates;
use energy_gateway::config;
use energy_gateway::demo::simulator::{self, BusService};
use energy_gateway::pipeline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Modbus TCP server (the simulator) behind a proxy that holds every answer for `delay`.
async fn slow_meter(delay: Duration) -> std::net::SocketAddr {
    let all = templates::load(None).unwrap();
    let (bank, _) = simulator::template_meter(&all["eastron-sdm120"], 1);
    let service = BusService::default();
    service.insert(1, Arc::new(Mutex::new(bank)));
    let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = inner.local_addr().unwrap();
    drop(simulator::serve_tcp(inner, service));
    let outer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = outer.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = outer.accept().await {
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let mut buf = [0u8; 512];
                loop {
                    let Ok(n) = client.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 || up.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let Ok(m) = up.read(&mut buf).await else {
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    if m == 0 || client.write_all(&buf[..m]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_slower_than_its_interval_is_counted_and_flagged() {
    let slow = slow_meter(Duration::from_millis(250)).await;
    let fast = slow_meter(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let point = "[[devices.points]]\nquantity = \"active_power\"\nregister = 0x0C\nkind = \"input\"\ntype = \"f32\"\n";
    let toml = format!(
        "[site]\nid = \"t\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n\
         [[devices]]\nid = \"slow\"\n[devices.modbus]\naddress = \"{slow}\"\ninterval = \"100ms\"\ntimeout = \"2s\"\n{point}\
         [[devices]]\nid = \"fast\"\n[devices.modbus]\naddress = \"{fast}\"\ninterval = \"500ms\"\ntimeout = \"2s\"\n{point}",
        dir.path().display()
    );
    let cfg = config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"));
    let gw = pipeline::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let slow = gw.devices["slow"].snapshot();
    let fast = gw.devices["fast"].snapshot();
    gw.shutdown().await.unwrap();
    // About 25 slots in 2.5 s, about 10 polls of 250 ms: the rest were missed.
    assert!(slow.online, "{slow:?}");
    assert!(slow.behind, "{slow:?}");
    assert!(
        (8..=20).contains(&slow.missed_slots),
        "missed {} slots: {slow:?}",
        slow.missed_slots
    );
    assert!(!fast.behind, "{fast:?}");
    assert_eq!(fast.missed_slots, 0, "{fast:?}");
}
