//! Outbox bounds (`[storage.outbox]`) through the real store writer thread: `stop` holds the
//! sources back until outputs deliver, `evict_oldest` deletes the oldest undelivered readings;
//! both are counted. Plus the pipeline wiring: a full outbox is visible in the running gateway's
//! status and does not keep it from shutting down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use energy_gateway::config::{self, OutboxConfig, OutboxFullPolicy, Synchronous};
use energy_gateway::demo::simulator::SimulatedFactory;
use energy_gateway::pipeline;
use energy_gateway::readings::{now_ms, Quantity, Reading};
use energy_gateway::storage::writer::{self, OutboxStatus, StoreCommand, WriterOptions};
use energy_gateway::storage::Store;
use tokio::sync::{mpsc, oneshot, watch};

const DEST: &str = "influxdb.central";

struct Writer {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    tx: mpsc::Sender<StoreCommand>,
    status: Arc<OutboxStatus>,
    handle: std::thread::JoinHandle<writer::WriterStats>,
    shutdown: tokio_util::sync::CancellationToken,
}

fn start(outbox: OutboxConfig, channel: usize) -> Writer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let store = Store::open(&path, Synchronous::Normal).unwrap();
    let (tx, rx) = mpsc::channel(channel);
    let (ctx, _crx) = watch::channel(0);
    let status = Arc::new(OutboxStatus::default());
    let opts = WriterOptions {
        outbox,
        full_recheck: Duration::from_millis(20),
        ..WriterOptions::new(10, vec![DEST.to_string()])
    };
    let shutdown = opts.shutdown.clone();
    let handle = writer::spawn_with_status(store, rx, ctx, opts, status.clone());
    Writer {
        _dir: dir,
        path,
        tx,
        status,
        handle,
        shutdown,
    }
}

fn bound(
    max_rows: u64,
    max_bytes: u64,
    max_age: Duration,
    when_full: OutboxFullPolicy,
) -> OutboxConfig {
    OutboxConfig {
        max_rows,
        max_bytes,
        max_age,
        when_full,
    }
}

fn batch(from: usize, n: usize, ts: i64) -> Vec<Reading> {
    (from..from + n)
        .map(|i| Reading::new("m", Quantity::ActivePower, i as f64, ts + i as i64))
        .collect()
}

/// Sends a batch and waits for its commit.
fn send_acked(w: &Writer, readings: Vec<Reading>) {
    let (ack, rx) = oneshot::channel();
    w.tx.blocking_send(StoreCommand::Readings {
        readings,
        ack: Some(ack),
    })
    .unwrap();
    rx.blocking_recv().unwrap();
}

#[test]
fn stop_holds_sources_back_until_outputs_deliver() {
    let w = start(bound(100, 0, Duration::ZERO, OutboxFullPolicy::Stop), 1);
    let t0 = now_ms();
    for i in 0..10 {
        send_acked(&w, batch(i * 10, 10, t0));
    }
    assert_eq!(w.status.snapshot().rows, 100);
    // One more batch does not fit: it is taken but neither committed nor acknowledged...
    let (ack, mut acked) = oneshot::channel();
    w.tx.blocking_send(StoreCommand::Readings {
        readings: batch(100, 10, t0),
        ack: Some(ack),
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(acked.try_recv().is_err(), "acknowledged beyond the bound");
    let s = w.status.snapshot();
    assert!(s.full && s.full_events == 1, "{s:?}");
    // ...and the queue behind it fills: the sources wait.
    w.tx.try_send(StoreCommand::Readings {
        readings: batch(110, 10, t0),
        ack: None,
    })
    .unwrap();
    assert!(
        w.tx.try_send(StoreCommand::Readings {
            readings: batch(120, 10, t0),
            ack: None
        })
        .is_err(),
        "the writer should not be taking more"
    );
    let reader = Store::open(&w.path, Synchronous::Normal).unwrap();
    assert_eq!(reader.count_readings().unwrap(), 100);

    // The output delivers half: the writer takes readings again.
    reader.advance_cursor(DEST, 50).unwrap();
    let t = Instant::now();
    while acked.try_recv().is_err() {
        assert!(t.elapsed() < Duration::from_secs(5), "still held back");
        std::thread::sleep(Duration::from_millis(10));
    }
    let Writer {
        tx, handle, status, ..
    } = w;
    drop(tx);
    handle.join().unwrap();
    let s = status.snapshot();
    assert!(!s.full && s.stalled_ms >= 250 && s.evicted == 0, "{s:?}");
    // Nothing was lost: all 120 readings that were taken are committed.
    assert_eq!(reader.count_readings().unwrap(), 120);
}

#[test]
fn stop_gives_way_to_shutdown_without_losing_what_was_taken() {
    let w = start(bound(20, 0, Duration::ZERO, OutboxFullPolicy::Stop), 4);
    let t0 = now_ms();
    send_acked(&w, batch(0, 10, t0));
    send_acked(&w, batch(10, 10, t0));
    w.tx.blocking_send(StoreCommand::Readings {
        readings: batch(20, 10, t0),
        ack: None,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(w.status.snapshot().full);
    w.shutdown.cancel();
    drop(w.tx);
    let stats = w.handle.join().unwrap();
    assert_eq!(stats.readings, 30);
    let reader = Store::open(&w.path, Synchronous::Normal).unwrap();
    assert_eq!(reader.count_readings().unwrap(), 30);
}

#[test]
fn evict_oldest_deletes_the_oldest_undelivered_readings_and_counts_them() {
    let w = start(
        bound(100, 0, Duration::ZERO, OutboxFullPolicy::EvictOldest),
        4,
    );
    let t0 = now_ms();
    for i in 0..15 {
        send_acked(&w, batch(i * 10, 10, t0));
    }
    let s = w.status.snapshot();
    assert_eq!((s.rows, s.evicted, s.full_events), (100, 50, 5), "{s:?}");
    let reader = Store::open(&w.path, Synchronous::Normal).unwrap();
    assert_eq!(reader.count_readings().unwrap(), 100);
    assert_eq!(reader.evicted_total().unwrap(), 50);
    // The destination skips what was evicted: the outbox starts at the oldest kept reading.
    let next = reader
        .outbox_after(reader.cursor(DEST).unwrap(), 1)
        .unwrap();
    assert_eq!(next[0].id, 51);
    let usage = reader.outbox_usage(&[DEST.to_string()]).unwrap();
    assert_eq!((usage.floor, usage.rows), (50, 100));
    drop(w.tx);
    w.handle.join().unwrap();
}

#[test]
fn max_age_evicts_readings_waiting_too_long() {
    let w = start(
        bound(
            0,
            0,
            Duration::from_secs(3600),
            OutboxFullPolicy::EvictOldest,
        ),
        4,
    );
    let two_hours_ago = now_ms() - 7_200_000;
    send_acked(&w, batch(0, 10, two_hours_ago));
    send_acked(&w, batch(10, 10, two_hours_ago));
    send_acked(&w, batch(20, 10, now_ms()));
    let s = w.status.snapshot();
    // The second batch found 10 too-old readings, the third 10 more.
    assert_eq!(s.evicted, 20, "{s:?}");
    let reader = Store::open(&w.path, Synchronous::Normal).unwrap();
    assert_eq!(reader.count_readings().unwrap(), 10);
    drop(w.tx);
    w.handle.join().unwrap();
}

#[test]
fn max_bytes_is_kept_with_the_measured_bytes_per_reading() {
    let max_bytes = 64 * 1024;
    let w = start(
        bound(0, max_bytes, Duration::ZERO, OutboxFullPolicy::EvictOldest),
        4,
    );
    let t0 = now_ms();
    for i in 0..300 {
        send_acked(&w, batch(i * 10, 10, t0));
    }
    let s = w.status.snapshot();
    assert!(s.evicted > 0, "{s:?}");
    assert!(s.bytes <= max_bytes + max_bytes / 10, "{s:?}");
    drop(w.tx);
    w.handle.join().unwrap();
}

#[test]
fn ids_are_never_reused_even_after_everything_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    {
        let mut s = Store::open(&path, Synchronous::Normal).unwrap();
        s.insert_readings(&batch(0, 10, 1000)).unwrap();
        // Retention deletes every (old) reading.
        assert_eq!(s.prune(now_ms(), &[]).unwrap(), 10);
        assert_eq!(s.count_readings().unwrap(), 0);
    }
    let mut s = Store::open(&path, Synchronous::Normal).unwrap();
    assert_eq!(s.insert_readings(&batch(10, 1, now_ms())).unwrap(), 11);
    // A quarantined point is recorded once, however often a replay finds it.
    s.quarantine_line(DEST, 11, Some(400), "bad", "m v=1 1")
        .unwrap();
    s.quarantine_line(DEST, 11, Some(400), "bad again", "m v=1 1")
        .unwrap();
    let q = s.quarantined(None).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].error, "bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_shows_in_the_gateway_status_and_does_not_block_shutdown() {
    let factory = SimulatedFactory::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The destination refuses connections, so nothing is ever delivered.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config::load_str(&format!(
        r#"
[site]
id = "t"
[log]
level = "warn"
[storage]
data_dir = "{data}"
max_batch = 5
[storage.outbox]
max_rows = 20
when_full = "stop"
[pipeline]
channel_capacity = 2
[[devices]]
id = "gas"
[devices.modbus]
address = "{gas}"
interval = "50ms"
[[devices.points]]
quantity = "gas_volume"
register = 0
type = "u32"
order = "CDAB"
scale = 0.01
[outputs.influxdb.central]
url = "http://{refused}"
database = "energy"
"#,
        data = dir.path().display(),
        gas = factory.addr("gas").unwrap(),
    ))
    .unwrap_or_else(|p| panic!("{p:?}"));
    let gw = pipeline::start(cfg).await.unwrap();
    let t = Instant::now();
    while !gw.outbox.full.load(Ordering::Relaxed) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            gw.outbox.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = gw.outbox.snapshot();
    assert!(s.full && s.full_events >= 1 && s.rows <= 20, "{s:?}");
    let stopped = tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("shutdown must not hang on a full outbox")
        .unwrap();
    // What the sources had handed over is committed, a little beyond the bound at most.
    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let n = store.count_readings().unwrap();
    assert_eq!(n, stopped.writer.readings);
    assert!((20..=40).contains(&n), "{n}");
}

#[test]
fn outbox_keys_are_checked_with_their_key_paths() {
    let problems = |storage: &str| -> Vec<String> {
        let toml = format!("[site]\nid = \"s\"\n[storage]\n{storage}\n");
        match config::load_str(&toml) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    };
    let ok = problems("[storage.outbox]\nmax_rows = 5000000\nmax_bytes = \"800MB\"\nmax_age = \"30d\"\nwhen_full = \"evict_oldest\"");
    assert_eq!(ok, Vec::<String>::new());
    let cfg =
        config::load_str("[site]\nid = \"s\"\n[storage.outbox]\nmax_bytes = \"1.5GiB\"\n").unwrap();
    assert_eq!(cfg.storage.outbox.max_bytes, 1_610_612_736);
    assert_eq!(cfg.storage.outbox.when_full, OutboxFullPolicy::Stop);
    let defaults = config::load_str("[site]\nid = \"s\"\n").unwrap();
    assert_eq!(defaults.storage.outbox.max_bytes, 4 << 30);

    let p = problems("[storage.outbox]\nwhen_full = \"drop\"");
    assert!(
        p.iter()
            .any(|m| m.starts_with("storage.outbox.when_full: unknown variant `drop`")),
        "{p:?}"
    );
    let p = problems("[storage.outbox]\nmax_bytes = \"4 parsecs\"");
    assert!(
        p.iter()
            .any(|m| m.starts_with("storage.outbox.max_bytes:") && m.contains("unknown unit")),
        "{p:?}"
    );
    let p = problems("[storage.outbox]\nmax_bytes = 1000");
    assert!(
        p.iter()
            .any(|m| m.starts_with("storage.outbox.max_bytes: 1000 bytes is too small")),
        "{p:?}"
    );
    let p = problems("max_batch = 500\n[storage.outbox]\nmax_rows = 100");
    assert!(
        p.iter().any(
            |m| m.starts_with("storage.outbox.max_rows: 100 is smaller than storage.max_batch")
        ),
        "{p:?}"
    );
    let p = problems("[storage.outbox]\nmax_age = \"10s\"");
    assert!(
        p.iter().any(|m| m.starts_with("storage.outbox.max_age:")),
        "{p:?}"
    );
    let p = problems("[storage.outbox]\nmax_rowz = 1");
    assert!(
        p.iter()
            .any(|m| m.starts_with("storage.outbox") && m.contains("max_rowz")),
        "{p:?}"
    );
}
