//! Outbox benchmark: ingest rate through the real store writer thread (group commit, durable on
//! return), disk bytes per point, and drain rate of the InfluxDB output to a local influxd 1.x
//! started by the test harness.
//!
//! ```sh
//! cargo bench --bench outbox                       # 1 000 000 points, synchronous = normal
//! cargo bench --bench outbox -- --points 2000000 --sync full
//! cargo bench --bench outbox -- --no-drain         # ingest only (no influxd needed)
//! ```
//!
//! It prints one line per measurement; numbers are for the machine it runs on.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use energy_gateway::config::{self, Synchronous};
use energy_gateway::outputs::influxdb::{InfluxOutput, OutputStatus};
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::storage::writer::{self, OutboxStatus, StoreCommand, WriterOptions};
use energy_gateway::storage::Store;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

struct Args {
    points: usize,
    sync: Synchronous,
    drain: bool,
    batch_size: usize,
    max_batch: usize,
    gzip: bool,
}

fn args() -> Args {
    let mut a = Args {
        points: 1_000_000,
        sync: Synchronous::Normal,
        drain: true,
        batch_size: 10_000,
        max_batch: 10_000,
        gzip: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--points" => a.points = it.next().and_then(|v| v.parse().ok()).expect("--points N"),
            "--sync" => {
                a.sync = match it.next().as_deref() {
                    Some("full") => Synchronous::Full,
                    Some("normal") => Synchronous::Normal,
                    other => panic!("--sync normal|full, not {other:?}"),
                }
            }
            "--batch-size" => {
                a.batch_size = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--batch-size N")
            }
            "--max-batch" => {
                a.max_batch = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--max-batch N")
            }
            "--no-gzip" => a.gzip = false,
            "--no-drain" => a.drain = false,
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// 200 devices × 5 quantities = 1000 series; one poll cycle of one device is one batch.
fn workload(points: usize) -> Vec<Vec<Reading>> {
    const QS: [Quantity; 5] = [
        Quantity::ActivePower,
        Quantity::EnergyImport,
        Quantity::Frequency,
        Quantity::VoltageL1,
        Quantity::CurrentL1,
    ];
    let t0 = energy_gateway::readings::now_ms() - 86_400_000;
    let mut batches = Vec::with_capacity(points / QS.len() + 1);
    let mut n = 0;
    let mut cycle = 0i64;
    while n < points {
        for d in 0..200 {
            if n >= points {
                break;
            }
            let device = format!("meter-{d:03}");
            let ts = t0 + cycle * 1000 + d as i64;
            let batch: Vec<Reading> = QS
                .iter()
                .take(points - n)
                .enumerate()
                .map(|(i, q)| {
                    Reading::new(&device, *q, 100.0 + (cycle as f64) * 0.25 + i as f64, ts)
                })
                .collect();
            n += batch.len();
            batches.push(batch);
        }
        cycle += 1;
    }
    batches
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    println!(
        "outbox bench: {} points, synchronous={:?}, storage.max_batch={}, store {}",
        a.points,
        a.sync,
        a.max_batch,
        path.display()
    );

    // ---- ingest ---------------------------------------------------------------------------
    let batches = workload(a.points);
    let store = Store::open(&path, a.sync).expect("open store");
    let (tx, rx) = mpsc::channel::<StoreCommand>(1024);
    let (ctx, crx) = watch::channel(0i64);
    let status = Arc::new(OutboxStatus::default());
    let dest = InfluxOutput::destination("bench");
    let opts = WriterOptions::new(a.max_batch, vec![dest.clone()]);
    let writer = writer::spawn_with_status(store, rx, ctx, opts, status.clone());
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        for b in batches {
            tx.blocking_send(StoreCommand::Readings {
                readings: b,
                ack: None,
            })
            .expect("writer gone");
        }
    });
    producer.join().expect("producer");
    let stats = writer.join().expect("writer");
    let ingest = started.elapsed();
    assert_eq!(*crx.borrow() as usize, a.points, "not everything committed");
    let rate = a.points as f64 / ingest.as_secs_f64();
    println!(
        "ingest: {} points in {:.3} s = {:.0} points/s ({} transactions, {:.0} points each)",
        a.points,
        ingest.as_secs_f64(),
        rate,
        stats.transactions,
        a.points as f64 / stats.transactions.max(1) as f64
    );

    // ---- disk -----------------------------------------------------------------------------
    let store = Store::open(&path, a.sync).expect("reopen");
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).expect("open for checkpoint");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "disk: {} bytes for {} points = {:.1} bytes/point (store file after checkpoint, index included)",
        bytes,
        a.points,
        bytes as f64 / a.points as f64
    );

    if !a.drain {
        return;
    }

    // ---- drain ----------------------------------------------------------------------------
    let influx = common::Influxd::start();
    influx.create_database("bench");
    let cfg = config::load_str(&format!(
        r#"
[site]
id = "bench"
[storage]
data_dir = "{dir}"
[outputs.influxdb.bench]
url = "{url}"
database = "bench"
batch_size = {batch}
flush_interval = "10ms"
timeout = "60s"
gzip = {gzip}
"#,
        dir = dir.path().display(),
        url = influx.url,
        batch = a.batch_size,
        gzip = a.gzip,
    ))
    .unwrap_or_else(|p| panic!("{p:?}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let out_status = Arc::new(OutputStatus::default());
    let out = InfluxOutput::new(
        "bench",
        cfg.outputs.influxdb["bench"].clone(),
        &cfg.site,
        &cfg.devices,
        path.clone(),
        out_status.clone(),
    )
    .expect("output");
    let stop = CancellationToken::new();
    let (_ctx, crx) = watch::channel(a.points as i64);
    let started = Instant::now();
    let task = rt.spawn(out.run(crx, stop.clone(), Duration::from_secs(1)));
    while out_status.cursor.load(Ordering::Relaxed) < a.points as i64 {
        if started.elapsed() > Duration::from_secs(600) {
            panic!("drain did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain = started.elapsed();
    stop.cancel();
    rt.block_on(task).expect("output task");
    let in_influx = influx.count_field("bench", "reading", "quality");
    println!(
        "drain: {} points in {:.3} s = {:.0} points/s ({} requests, batch_size {}, gzip {}) to influxd 1.x on loopback; InfluxDB holds {}",
        a.points,
        drain.as_secs_f64(),
        a.points as f64 / drain.as_secs_f64(),
        out_status.requests.load(Ordering::Relaxed),
        a.batch_size,
        a.gzip,
        in_influx
    );
    assert_eq!(
        in_influx as usize, a.points,
        "InfluxDB does not hold every point"
    );
}
