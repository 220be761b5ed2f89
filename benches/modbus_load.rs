//! Load run: N simulated Modbus TCP meters × R registers polled every second by the real
//! `energy-gateway run` (release build), the reference scenario Neuron publishes (500 × 30 at
//! 1 s), every reading stored and forwarded to a local `influxd` 1.x (started on loopback by
//! the test harness, `apt-get install influxdb`). The meters are served by a
//! separate process (this bench re-executed), so the numbers are the gateway's alone, sampled
//! from /proc: CPU % of one core (overall and a curve per sample period), resident memory,
//! bytes the gateway wrote to disk (`write_bytes` of /proc/PID/io) per stored reading, bytes
//! on disk per stored reading, the largest WAL seen, and the share of readings forwarded; and
//! curves of CPU, RSS and WAL size per sample period (`EGW_BENCH_SAMPLE` seconds).
//!
//!   cargo bench --bench modbus_load                    # 500 devices, 30 registers, 60 s
//!   cargo bench --bench modbus_load -- 100 30 20       # devices, registers, seconds
//!   EGW_BENCH_SAMPLE=60 cargo bench --bench modbus_load -- 500 30 3600   # the hour-long run
//!
//! Every device is an electricity meter whose `energy_import` counter the accounts use, so the
//! accounting service of `run` keeps the books of 500 counters: the gateway's clock is shifted
//! (libfaketime, when installed; runs of 20 minutes or more use the real clock) so that a
//! 15-minute interval closes 15 s into the measurement and the service computes and stores the
//! month, quarter and year then. The service runs with its default settings (the period in
//! progress recomputed every 5 minutes; `EGW_BENCH_REPUBLISH=5s` for more). `EGW_BENCH_NO_SERVICE=1`
//! runs the same load with `[accounting.service] enabled = false`, for comparison. After the run
//! the bench times one close of the service (the month computed and stored) on the store the
//! run filled, and prints its rate in readings per second. `EGW_BENCH_GATEWAY=PATH` runs another
//! build of the gateway (e.g. a copy kept from before a change) under the same load; the bench
//! opens the store with its own build (ids, counts), which upgrades the schema, so run an older
//! gateway with a copy of the bench built with it when the schema changed in between. The
//! gateway runs with `MALLOC_ARENA_MAX=2`, as the systemd unit and the container image set it
//! (`EGW_BENCH_ARENAS` for another value). `EGW_BENCH_STORAGE="cache_mib = 2"` adds `[storage]`
//! settings (several separated by `;`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../tests/it/common/mod.rs"]
mod common;

use energy_gateway::config::{ValueType, WordOrder};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};

fn serve(devices: usize, registers: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut ports = Vec::new();
        let mut tasks = Vec::new();
        for d in 0..devices {
            let mut bank = RegisterBank::default();
            for r in (0..registers).step_by(2) {
                RegisterBank::put(
                    &mut bank.holding,
                    r,
                    230.0 + d as f64 + f64::from(r),
                    ValueType::F32,
                    WordOrder::ABCD,
                );
            }
            let service = BusService::default();
            service.insert(1, Arc::new(Mutex::new(bank)));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(l.local_addr().unwrap().port());
            tasks.push(simulator::serve_tcp(l, service));
        }
        let mut out = std::io::stdout();
        writeln!(
            out,
            "{}",
            ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
        .unwrap();
        out.flush().unwrap();
        std::future::pending::<()>().await;
    });
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Bytes this process caused to be written to storage (`write_bytes` of /proc/PID/io).
fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn max_id(store: &std::path::Path) -> i64 {
    energy_gateway::storage::Store::open(store, energy_gateway::config::Synchronous::Normal)
        .and_then(|s| s.max_reading_id())
        .unwrap_or(0)
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let devices: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let registers: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    if let Ok(n) = std::env::var("EGW_BENCH_SERVE") {
        serve(n.parse().unwrap(), registers);
        return;
    }
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args([
            devices.to_string(),
            registers.to_string(),
            seconds.to_string(),
        ])
        .env("EGW_BENCH_SERVE", devices.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line.trim().split(',').map(|p| p.parse().unwrap()).collect();

    let service = std::env::var_os("EGW_BENCH_NO_SERVICE").is_none();
    // How often the service recomputes the period in progress: the default (5 min) unless
    // EGW_BENCH_REPUBLISH says otherwise.
    let republish = std::env::var("EGW_BENCH_REPUBLISH").unwrap_or_else(|_| "5m".into());
    // More `[storage]` settings, one `key = value` a line (e.g. `cache_mib = 2`).
    let storage_extra = std::env::var("EGW_BENCH_STORAGE")
        .map(|v| v.replace(';', "\n") + "\n")
        .unwrap_or_default();
    // The store lives under target/ (a real disk, as on a gateway; /tmp may be tmpfs, whose
    // writes /proc/PID/io does not count).
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = tempfile::tempdir_in(&base).unwrap();
    let influx = common::Influxd::start();
    influx.create_database("energy");
    let mut cfg = format!(
        "[site]\nid = \"bench\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n{storage_extra}\
         [accounting.service]\nenabled = {service}\ninterval_grace = \"2s\"\nrepublish_every = \"{republish}\"\n",
        dir.path().display()
    );
    cfg += &format!(
        "[outputs.influxdb.local]\nurl = \"{}\"\ndatabase = \"energy\"\n",
        influx.url
    );
    let quantities = [
        "voltage_l1",
        "voltage_l2",
        "voltage_l3",
        "current_l1",
        "current_l2",
        "current_l3",
        "active_power",
        "active_power_l1",
        "active_power_l2",
        "active_power_l3",
        "reactive_power",
        "apparent_power",
        "power_factor",
        "frequency",
        "energy_import",
        "energy_export",
        "reactive_energy_import",
        "reactive_energy_export",
        "current_n",
        "voltage_l1_l2",
        "voltage_l2_l3",
        "voltage_l3_l1",
    ];
    for (i, port) in ports.iter().enumerate() {
        cfg += &format!("[[devices]]\nid = \"m{i}\"\ncarrier = \"electricity\"\n[devices.modbus]\naddress = \"127.0.0.1:{port}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n");
        for (k, r) in (0..registers).step_by(2).enumerate() {
            cfg += &format!(
                "[[devices.points]]\nquantity = \"{}\"\nregister = {r}\ntype = \"f32\"\n",
                quantities[k % quantities.len()]
            );
        }
    }
    let cfg_path = dir.path().join("bench.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    // An interval boundary 20 s after the start (5 s warm-up + 15 s into the measurement).
    const SLOT_MS: i64 = 15 * 60 * 1000;
    let now = chrono::Utc::now().timestamp_millis();
    let boundary = ((now + 20_000) / SLOT_MS + 1) * SLOT_MS;
    let offset_s = (boundary - 20_000 - now) / 1000;
    // EGW_BENCH_GATEWAY: another build of the gateway (a copy kept from before a change), to
    // compare two builds with the same bench.
    let mut gw = Command::new(
        std::env::var_os("EGW_BENCH_GATEWAY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_energy-gateway").into()),
    );
    gw.args(["run", "--config"]).arg(&cfg_path);
    // As the systemd unit and the container image run it (EGW_BENCH_ARENAS to change).
    gw.env(
        "MALLOC_ARENA_MAX",
        std::env::var("EGW_BENCH_ARENAS").unwrap_or_else(|_| "2".into()),
    );
    // A run of 20 minutes or more sees intervals close on the real clock; shorter ones shift
    // the gateway's clock (libfaketime, which costs the gateway some CPU of its own).
    match libfaketime().filter(|_| seconds < 1200) {
        Some(lib) => {
            gw.env("LD_PRELOAD", lib)
                .env("FAKETIME", format!("{offset_s:+}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        None if seconds < 1200 => {
            eprintln!("libfaketime not installed: no interval closes during the run")
        }
        None => {}
    }
    let mut gw = gw.spawn().unwrap();
    let pid = gw.id();
    let store_path = dir.path().join("store.sqlite");
    let wal_path = dir.path().join("store.sqlite-wal");
    // Warm up (connections, first commits), then measure.
    std::thread::sleep(Duration::from_secs(5));
    let sample: u64 = std::env::var("EGW_BENCH_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((seconds / 10).max(1));
    let hz = 100.0; // USER_HZ
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let w0 = write_bytes(pid);
    let id0 = max_id(&store_path);
    let mut rss_max = 0;
    let mut wal_max = 0;
    let (mut last_t, mut last_c) = (Instant::now(), c0);
    let mut curve = Vec::new();
    // The largest RSS and WAL within each sample period, for the curves.
    let (mut rss_period, mut wal_period) = (0, 0);
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let rss = status_kb(pid, "VmRSS:");
        let wal = file_len(&wal_path);
        rss_max = rss_max.max(rss);
        wal_max = wal_max.max(wal);
        rss_period = rss_period.max(rss);
        wal_period = wal_period.max(wal);
        if last_t.elapsed() >= Duration::from_secs(sample) {
            let c = cpu_ticks(pid);
            let pct = (c - last_c) as f64 / hz / last_t.elapsed().as_secs_f64() * 100.0;
            curve.push(format!(
                "{:.0}s {pct:.2}% {:.1}MB wal {:.1}MB",
                t0.elapsed().as_secs_f64(),
                rss_period as f64 / 1024.0,
                wal_period as f64 / 1e6
            ));
            (last_t, last_c) = (Instant::now(), c);
            (rss_period, wal_period) = (0, 0);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let c1 = cpu_ticks(pid);
    let cpu = (c1 - c0) as f64 / hz / elapsed * 100.0;
    let written = write_bytes(pid).saturating_sub(w0);
    let hwm = status_kb(pid, "VmHWM:");
    // What the resident memory is at the end: heap and stacks, or pages of the binary and
    // libraries.
    let (anon, file) = (status_kb(pid, "RssAnon:"), status_kb(pid, "RssFile:"));
    // Readings committed during the measured window (ids are dense and ordered by commit).
    let stored_window = max_id(&store_path) - id0;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = gw.wait();
    let _ = server.kill();
    let _ = server.wait();
    let store = energy_gateway::storage::Store::open(
        &store_path,
        energy_gateway::config::Synchronous::Normal,
    )
    .unwrap();
    let rows = store.count_readings().unwrap();
    let delivered = store.cursor("influxdb.local").unwrap();
    let (pages, free, page_size): (i64, i64, i64) = store.page_stats().unwrap();
    drop(store);
    // One close of the service over the store the run filled (month, stored), timed here.
    let close = service.then(|| {
        let cfg = energy_gateway::config::load(&cfg_path).unwrap();
        let tz: chrono_tz::Tz = cfg.site.timezone.parse().unwrap();
        let as_of = boundary + SLOT_MS;
        let month = energy_gateway::accounting::calendar::month_of(tz, boundary);
        let accounts = cfg.accounting_context();
        let t = Instant::now();
        let r = energy_gateway::accounting::service::compute(
            &accounts,
            energy_gateway::accounting::calendar::Period::Month(month),
            true,
            as_of,
        )
        .unwrap();
        let spent = t.elapsed();
        // One point of each device is its energy_import counter.
        let counted = rows as i64 / i64::from((registers / 2).max(1));
        (spent, r.data_quality.series.len(), counted)
    });
    let db_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("store.sqlite"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let per_s = rows as f64 / (elapsed + 5.0);
    let expected = devices as f64 * f64::from(registers / 2);
    println!(
        "modbus load: {devices} devices x {registers} registers at 1 s for {elapsed:.0} s forwarding to influxd: gateway CPU {cpu:.2} % of one core, RSS max {:.1} MB (high-water {:.1} MB; at the end {:.1} MB anonymous, {:.1} MB file pages); {rows} readings stored ({per_s:.0}/s over the whole run, {:.1} % of {expected:.0}/s), {:.1} % forwarded",
        rss_max as f64 / 1024.0,
        hwm as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        per_s / expected * 100.0,
        if rows > 0 { delivered as f64 / rows as f64 * 100.0 } else { 0.0 },
    );
    println!(
        "  disk: {:.1} bytes written per reading (write_bytes {:.1} MB over the window, {stored_window} readings committed by the end), store files {:.1} MB = {:.2} bytes per reading on disk ({:.2} in used pages), WAL max {:.1} MB",
        written as f64 / stored_window.max(1) as f64,
        written as f64 / 1e6,
        db_bytes as f64 / 1e6,
        db_bytes as f64 / rows.max(1) as f64,
        ((pages - free) * page_size) as f64 / rows.max(1) as f64,
        wal_max as f64 / 1e6,
    );
    // CPU time per reading: comparable across runs on a machine shared with other work, where
    // a share of a core over wall-clock time is not.
    println!(
        "  CPU: {:.2} s of the gateway (utime + stime) over the window = {:.2} µs per reading committed",
        (c1 - c0) as f64 / hz,
        (c1 - c0) as f64 / hz * 1e6 / stored_window.max(1) as f64,
    );
    println!(
        "  curves per {sample} s (CPU % of one core, largest RSS, largest WAL): {}",
        curve.join(", ")
    );
    drop(influx);
    match close {
        Some((d, series, counted)) => println!(
            "accounting service on: one close (month computed and stored, {series} counters, {counted} counter readings) over this store took {:.0} ms, {:.0} counter readings/s",
            d.as_secs_f64() * 1000.0,
            counted as f64 / d.as_secs_f64()
        ),
        None => println!("accounting service off"),
    }
}

/// libfaketime (Debian package `faketime`), when installed.
fn libfaketime() -> Option<std::path::PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
}
