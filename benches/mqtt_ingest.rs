//! Sustained MQTT ingest into the durable store: a publisher floods a real Mosquitto with QoS 1
//! JSON messages (3 values each, own timestamps) and the gateway pipeline (persistent session,
//! manual acks after commit) stores them. Reports messages/s and readings/s from the first
//! message received to the last one committed.
//!
//!   cargo bench --bench mqtt_ingest              # 50 000 messages
//!   cargo bench --bench mqtt_ingest -- 200000

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Packet, QoS};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let broker = common::Mosquitto::start_with(common::MosquittoOptions {
        persistence: false,
        extra_config: "max_queued_messages 0\n".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[site]\nid = \"bench\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"gw-bench\"\n[mqtt.publish]\nenabled = false\n\
         [[mqtt.subscriptions]]\ntopic = \"plant/+/sensor\"\nformat = \"json\"\ndevice = \"{{1}}\"\ntimestamp = {{ pointer = \"/ts\" }}\n\
         [[mqtt.subscriptions.values]]\npointer = \"/p\"\nquantity = \"active_power\"\n\
         [[mqtt.subscriptions.values]]\npointer = \"/u\"\nquantity = \"voltage_l1\"\n\
         [[mqtt.subscriptions.values]]\npointer = \"/e\"\nquantity = \"energy_import\"\n\
         [[devices]]\nid = \"m1\"\n[[devices]]\nid = \"m2\"\n[[devices]]\nid = \"m3\"\n[[devices]]\nid = \"m4\"\n",
        dir.path().display(),
        broker.port
    );
    let cfg = energy_gateway::config::load_str(&toml).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt.block_on(energy_gateway::pipeline::start(cfg)).unwrap();
    let stats = gw.mqtt_in.clone().unwrap();
    while !stats.connected.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut o = rumqttc::MqttOptions::new("bench-pub", "127.0.0.1", broker.port);
    o.set_inflight(200);
    let (client, mut conn) = Client::new(o, 1000);
    let publisher = std::thread::spawn(move || {
        let t0 = 1_795_000_000_000i64;
        for i in 0..n {
            let payload = format!(
                "{{\"ts\":{},\"p\":{}.5,\"u\":230.{},\"e\":{}}}",
                t0 + (i / 4) as i64 * 10,
                i % 500,
                i % 10,
                100_000 + i
            );
            client
                .publish(
                    format!("plant/m{}/sensor", 1 + i % 4),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .unwrap();
        }
        client
    });
    let pump = std::thread::spawn(move || {
        let mut acked = 0;
        while acked < n {
            if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                conn.recv_timeout(Duration::from_secs(10))
            {
                acked += 1;
            }
        }
    });
    while stats.messages.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let want = 3 * n as i64;
    loop {
        let committed = *gw.committed.borrow();
        if committed >= want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stalled at {committed} of {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let el = started.elapsed().as_secs_f64();
    let _ = publisher.join();
    let _ = pump.join();
    rt.block_on(gw.shutdown()).unwrap();
    println!(
        "mqtt ingest: {n} messages ({} readings) in {el:.2} s: {:.0} messages/s, {:.0} readings/s durable (QoS 1, acked after commit; publisher and broker on the same 2 cores)",
        3 * n,
        n as f64 / el,
        3.0 * n as f64 / el
    );
}
