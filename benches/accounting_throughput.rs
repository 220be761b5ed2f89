//! Accounting throughput: readings per second through counter integrity → 15-minute intervals →
//! ledgers (energy, carbon, products, data quality).
//!
//! `cargo bench --bench accounting_throughput` prints two numbers:
//! 1. in memory: a month of 5-second readings of four counters (grid import and export, PV, gas)
//!    through the counter rules, the interval grid and the ledgers of the month;
//! 2. end to end: the same month at 15-second resolution imported into a SQLite store, then
//!    `report` (store → counters → intervals → ledgers → JSON).
//!
//! Not a test: nothing is asserted, the numbers are for the README.

use std::time::Instant;

use energy_gateway::accounting::calendar::{Month, Period};
use energy_gateway::accounting::carbon::carbon;
use energy_gateway::accounting::counters::Sample;
use energy_gateway::accounting::grades::products;
use energy_gateway::accounting::ledger::{ledger, quality, run_series, Inputs, Plan, RangeData};
use energy_gateway::config::{load_str, Synchronous};
use energy_gateway::readings::{Quantity, Reading};

const CONFIG: &str = r#"
[site]
id = "bench"
timezone = "Asia/Shanghai"
[storage]
data_dir = "DATA_DIR"

[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
[[devices.points]]
quantity = "energy_export"
register = 2

[[devices]]
id = "pv"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0

[[devices]]
id = "gas"
carrier = "natural_gas"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "gas_volume"
register = 0

[accounting.carbon]
province = "chongqing"

[[accounting.meters]]
device = "main"
rated_power = 5000
counter_max = { energy_import = 100000000 }
[[accounting.meters]]
device = "pv"
role = "generation"
rated_power = 2000
[[accounting.meters]]
device = "gas"
rated_power = 2000

[[accounting.products]]
id = "tile"
unit = "m2"
common_share = 1.0
limit = "gb21252-2023.tile_dry_pressed_e_le_0_2"
"#;

/// Counter readings of one series: `rate` per second with a daily swing, every `step_s`.
fn series(start_ms: i64, end_ms: i64, step_s: i64, rate: f64, start: f64) -> Vec<Sample> {
    let mut v = start;
    let mut out = Vec::with_capacity(((end_ms - start_ms) / 1000 / step_s + 1) as usize);
    let mut t = start_ms;
    while t <= end_ms {
        out.push(Sample::new(t, v));
        let phase = ((t / 1000) % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
        v += rate * step_s as f64 * (1.0 + 0.5 * phase.sin());
        t += step_s * 1000;
    }
    out
}

fn main() {
    let month = Month::new(2026, 10).expect("month");
    let dir = tempfile::tempdir().expect("temporary directory");
    let cfg = load_str(&CONFIG.replace("DATA_DIR", &dir.path().display().to_string()))
        .expect("bench configuration")
        .accounting_context();
    let plan = Plan::build(&cfg).expect("plan");
    let (from, to) = month.bounds(plan.tz);
    let inputs = Inputs::default();

    // 1. In memory, 5-second readings.
    let step = 5;
    let data: Vec<Vec<Sample>> = plan
        .series
        .iter()
        .map(|s| match (s.device.as_str(), s.quantity) {
            ("main", Quantity::EnergyImport) => series(from, to, step, 0.5, 99_000_000.0),
            ("main", _) => series(from, to, step, 0.01, 1_000.0),
            ("pv", _) => series(from, to, step, 0.1, 50_000.0),
            _ => series(from, to, step, 0.05, 10_000.0),
        })
        .collect();
    let n: usize = data.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    let mut gross = 0.0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut slots = Vec::new();
        let mut events = Vec::new();
        for (s, samples) in plan.series.iter().zip(&data) {
            let (sl, ev) = run_series(samples, &[], &s.settings, from, to);
            slots.push(sl);
            events.push(ev);
        }
        let range = RangeData {
            from_ms: from,
            to_ms: to,
            slots,
            events,
        };
        let l = ledger(&plan, &range, &inputs, &[month]);
        let c = carbon(&plan, &l, 2026);
        let p = products(&plan, &range, &inputs, &l, &c, &[month]);
        let q = quality(&plan, &range, from, to);
        std::hint::black_box((&p, &q));
        gross = l.gross_tce;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "accounting throughput, in memory: {} counters × {} readings ({step}-s readings, October 2026)",
        plan.series.len(),
        n / plan.series.len()
    );
    println!(
        "  counters → 15-min intervals → ledgers: {n} readings in {:.3} s = {:.1} M readings/s (best of 5; gross {gross:.3} tce)",
        best,
        n as f64 / best / 1e6
    );

    // 2. End to end through the store, 15-second readings.
    let step = 15;
    let mut store = energy_gateway::storage::Store::open(&cfg.store_path(), Synchronous::Normal)
        .expect("store");
    let mut total = 0;
    for s in &plan.series {
        let samples = series(from, to, step, 0.05, 1_000.0);
        let rs: Vec<Reading> = samples
            .iter()
            .map(|x| Reading::new(s.device.clone(), s.quantity, x.value, x.ts_ms))
            .collect();
        for chunk in rs.chunks(10_000) {
            store.insert_readings(chunk).expect("insert");
        }
        total += rs.len();
    }
    drop(store);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let r =
            energy_gateway::reporting::build(&cfg, Period::Month(month), false).expect("report");
        let text = energy_gateway::reporting::json::render(&r);
        std::hint::black_box(text);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "  end to end, store → report (JSON), {total} readings ({step}-s readings): {:.3} s = {:.2} M readings/s (best of 3)",
        best,
        total as f64 / best / 1e6
    );
}
