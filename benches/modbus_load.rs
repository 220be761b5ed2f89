//! Load run: N simulated Modbus TCP meters × R registers polled every second by the real
//! `energy-gateway run` (release build), the reference scenario Neuron publishes (500 × 30 at
//! 1 s). The meters are served by a separate process (this bench re-executed), so the numbers
//! are the gateway's alone: CPU % of one core and resident memory, sampled from /proc.
//!
//!   cargo bench --bench modbus_load                 # 500 devices, 30 registers, 60 s
//!   cargo bench --bench modbus_load -- 100 30 20    # devices, registers, seconds
//!
//! Every device is an electricity meter whose `energy_import` counter the accounts use, so the
//! accounting service of `run` keeps the books of 500 counters: the gateway's clock is shifted
//! (libfaketime, when installed) so that a 15-minute interval closes 15 s into the measurement
//! and the service computes and stores the month, quarter and year then. `EGW_BENCH_NO_SERVICE=1`
//! runs the same load with `[accounting.service] enabled = false`, for comparison. After the run
//! the bench times one close of the service (the month computed and stored) on the store the
//! run filled, and prints its rate in readings per second.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    let dir = tempfile::tempdir().unwrap();
    let service = std::env::var_os("EGW_BENCH_NO_SERVICE").is_none();
    let mut cfg = format!(
        "[site]\nid = \"bench\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n\
         [accounting.service]\nenabled = {service}\ninterval_grace = \"2s\"\nrepublish_every = \"5s\"\n",
        dir.path().display()
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
    let mut gw = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    gw.args(["run", "--config"]).arg(&cfg_path);
    match libfaketime() {
        Some(lib) => {
            gw.env("LD_PRELOAD", lib)
                .env("FAKETIME", format!("{offset_s:+}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        None => eprintln!("libfaketime not installed: no interval closes during the run"),
    }
    let mut gw = gw.spawn().unwrap();
    let pid = gw.id();
    // Warm up (connections, first commits), then measure.
    std::thread::sleep(Duration::from_secs(5));
    let hz = 100.0; // USER_HZ
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(status_kb(pid, "VmRSS:"));
    }
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let hwm = status_kb(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = gw.wait();
    let _ = server.kill();
    let _ = server.wait();
    let store = energy_gateway::storage::Store::open(
        &dir.path().join("store.sqlite"),
        energy_gateway::config::Synchronous::Normal,
    )
    .unwrap();
    let rows = store.count_readings().unwrap();
    drop(store);
    // One close of the service over the store the run filled (month, stored), timed here.
    let close = service.then(|| {
        let cfg = energy_gateway::config::load(&cfg_path).unwrap();
        let tz: chrono_tz::Tz = cfg.site.timezone.parse().unwrap();
        let as_of = boundary + SLOT_MS;
        let month = energy_gateway::accounting::calendar::month_of(tz, boundary);
        let t = Instant::now();
        let r = energy_gateway::accounting::service::compute(
            &cfg,
            energy_gateway::accounting::calendar::Period::Month(month),
            true,
            as_of,
        )
        .unwrap();
        let spent = t.elapsed();
        let counted: i64 = rusqlite::Connection::open(dir.path().join("store.sqlite"))
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id
                     WHERE s.quantity = 'energy_import'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0);
        (spent, r.data_quality.series.len(), counted)
    });
    let db_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("store.sqlite"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "modbus load: {devices} devices x {registers} registers at 1 s for {:.0} s: gateway CPU {cpu:.2} % of one core, RSS max {:.1} MB (high-water {:.1} MB); {rows} readings stored ({:.0}/s over the whole run), store {:.1} MB",
        t0.elapsed().as_secs_f64(),
        rss_max as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rows as f64 / (t0.elapsed().as_secs_f64() + 5.0),
        db_bytes as f64 / 1e6
    );
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
