//! The demo end to end, as a user runs it: real binary, simulated Modbus TCP meters on loopback,
//! the real pipeline and store.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use energy_gateway::config::Synchronous;
use energy_gateway::demo::simulator::METERS;
use energy_gateway::storage::Store;

fn demo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    c.arg("demo");
    c
}

#[test]
fn demo_stores_readings_from_every_simulated_meter() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo()
        .args(["--duration", "6s", "--summary-every", "2s", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("devices online 5/5"), "{stdout}");
    assert!(stdout.contains("finished after"), "{stdout}");

    let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    let counts = store.count_by_device().unwrap();
    for m in METERS {
        assert!(
            counts.get(*m).copied().unwrap_or(0) > 0,
            "no readings from {m}: {counts:?}"
        );
    }
    // The main meter's power is plausible for the simulated plant (kiln + press + base load).
    let (_, kw) = store
        .latest_good("main", energy_gateway::readings::Quantity::ActivePower)
        .unwrap()
        .unwrap();
    assert!((230.0..=360.0).contains(&kw), "main active power {kw} kW");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    // Every simulated register answers: no bad reading anywhere.
    let bad: Vec<_> = store
        .readings_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.reading.good_value().is_none())
        .collect();
    assert!(
        bad.is_empty(),
        "bad readings: {:?}",
        &bad[..bad.len().min(5)]
    );
    drop(store);

    // The demo says how to report on its store, and that command works.
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report on it: energy-gateway "))
        .unwrap_or_else(|| panic!("no report hint:\n{stdout}"));
    let args: Vec<&str> = line.split_whitespace().collect();
    let html = dir.path().join("demo-report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_energy-gateway"))
        .args(args.iter().map(|a| {
            if *a == "demo-report.html" {
                html.to_str().unwrap()
            } else {
                a
            }
        }))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.contains("Demo ceramic tile plant") && report.contains("</html>"));
}

#[test]
fn sigterm_stops_the_demo_cleanly_within_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo()
        .args(["--duration", "10m", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store_path = dir.path().join("store.sqlite");
    // Wait until readings are being committed.
    let t0 = Instant::now();
    loop {
        let n = Store::open(&store_path, Synchronous::Normal)
            .and_then(|s| s.count_readings())
            .unwrap_or(0);
        if n > 50 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "demo stored nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = common::sigterm_within(&mut child, Duration::from_secs(5)).unwrap();
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("stopped by signal"), "{stdout}");

    let store = Store::open(&store_path, Synchronous::Normal).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert!(store.count_readings().unwrap() > 50);
}
