//! Report generation time for a year of 15-minute data from 50 meters (a grid incomer and 49
//! sub-meters under it): 35 040 readings per meter, 1.75 million in the store.
//!
//! `cargo bench --bench report_year` prints the time of `reporting::build` (store → counters →
//! intervals → ledgers, months, balance, quality, indicators) and of each rendering (JSON, CSV,
//! HTML, Markdown). Not a test: nothing is asserted, the numbers are for the README.

use std::fmt::Write as _;
use std::time::Instant;

use energy_gateway::accounting::calendar::Period;
use energy_gateway::config::{load_str, Synchronous};
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::reporting::{self, labels::Lang};

const METERS: usize = 50;

fn config(dir: &str) -> String {
    let mut c = format!(
        r#"
[site]
id = "bench-year"
timezone = "Asia/Shanghai"
main_meters = ["main"]
[storage]
data_dir = "{dir}"

[accounting.target]
base_year = 2022
base_intensity_tce_per_10k_cny = 0.40

[accounting.carbon]
province = "chongqing"

[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
"#
    );
    for i in 1..METERS {
        write!(
            c,
            r#"
[[devices]]
id = "m{i:02}"
carrier = "electricity"
parent = "main"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
"#
        )
        .unwrap();
    }
    c
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cfg = load_str(&config(&dir.path().display().to_string())).expect("bench configuration");
    let period = Period::Year(2026);
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let (from, to) = period.bounds(tz);

    let t0 = Instant::now();
    let mut store = energy_gateway::storage::Store::open(&cfg.store_path(), Synchronous::Normal)
        .expect("store");
    let step_ms = 15 * 60 * 1000;
    let mut total = 0usize;
    for m in 0..METERS {
        let device = if m == 0 {
            "main".to_string()
        } else {
            format!("m{m:02}")
        };
        // Sub-meters 10 kWh per 15 min each; the incomer their sum plus 2 % losses.
        let per = if m == 0 {
            (METERS - 1) as f64 * 10.0 * 1.02
        } else {
            10.0
        };
        let mut v = 1000.0;
        let mut rs = Vec::with_capacity(35_041);
        let mut t = from;
        while t <= to {
            rs.push(Reading::new(device.clone(), Quantity::EnergyImport, v, t));
            v += per;
            t += step_ms;
        }
        for chunk in rs.chunks(10_000) {
            store.insert_readings(chunk).expect("insert");
        }
        total += rs.len();
    }
    drop(store);
    println!(
        "report of a year (2026) of 15-min data, {METERS} meters: {total} readings in the store (filled in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );

    let accounts = cfg.accounting_context();
    let mut best = f64::MAX;
    let mut report = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = reporting::build(&accounts, period, false).expect("report");
        best = best.min(t.elapsed().as_secs_f64());
        report = Some(r);
    }
    let r = report.expect("report");
    println!(
        "  build (store → counters → intervals → ledgers, 12 months, balance, quality): {best:.3} s (best of 3; {:.1} tce)",
        r.comprehensive_energy_tce
    );
    for (name, f) in [
        (
            "json",
            &(|r: &reporting::Report| reporting::json::render(r))
                as &dyn Fn(&reporting::Report) -> String,
        ),
        ("csv", &|r: &reporting::Report| {
            reporting::csv::render(r, Lang::Zh)
        }),
        ("html", &|r: &reporting::Report| {
            reporting::html::render(r, Lang::Zh)
        }),
        ("md", &|r: &reporting::Report| {
            reporting::markdown::render(r, Lang::Zh)
        }),
    ] {
        let mut best = f64::MAX;
        let mut len = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let s = f(&r);
            best = best.min(t.elapsed().as_secs_f64());
            len = s.len();
        }
        println!("  render {name}: {:.2} ms ({len} bytes)", best * 1000.0);
    }
}
