//! Accounting through the store, case by case: each counter case (rollover, reset, recorded
//! replacement, spike, gap) with its exact expected consumption; month, quarter and year
//! boundaries in Asia/Shanghai; sub-meter balance; feedstock and manual consumption; products
//! from counters; market-based scope 2; measured calorific value; the output tables.
//!
//! Every expected number is computed by hand in the comment above its assertion, from the
//! shipped factor tables (the project's standards reference).

use energy_gateway::accounting::calendar::Period;
use energy_gateway::accounting::counters::Replacement;
use energy_gateway::accounting::import::{ConsumptionRow, ImportRow, ProductionRow};
use energy_gateway::accounting::store::AccountingStore;
use energy_gateway::accounting::AccountingContext;
use energy_gateway::config::{load_str, Synchronous};
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::reporting::{build_as_of, Report};

/// Reports are built as of 2030-01-01: the worked examples run to January 2027, and the real
/// clock (a period in progress or not started yet) must not change them.
const AS_OF: i64 = 1_893_427_200_000; // 2030-01-01T00:00:00+08:00

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-9)
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b): (f64, f64) = ($a, $b);
        assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

struct Site {
    _dir: tempfile::TempDir,
    cfg: AccountingContext,
}

/// A site with the given devices and accounting sections, its store in a temporary directory.
fn site(body: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[site]\nid = \"t\"\ntimezone = \"Asia/Shanghai\"\n[storage]\ndata_dir = \"{}\"\n{body}",
        dir.path().display()
    );
    let cfg = load_str(&toml)
        .unwrap_or_else(|p| panic!("{p:#?}"))
        .accounting_context();
    Site { _dir: dir, cfg }
}

fn device(id: &str, carrier: &str, quantities: &[&str], extra: &str) -> String {
    let mut s = format!(
        "[[devices]]\nid = \"{id}\"\ncarrier = \"{carrier}\"\n{extra}\n[devices.modbus]\naddress = \"127.0.0.1:1502\"\n"
    );
    for (i, q) in quantities.iter().enumerate() {
        s.push_str(&format!(
            "[[devices.points]]\nquantity = \"{q}\"\nregister = {}\ntype = \"f32\"\n",
            i * 2
        ));
    }
    s
}

impl Site {
    fn put(&self, device: &str, q: Quantity, rows: &[(&str, f64)]) {
        let mut st =
            energy_gateway::storage::Store::open(&self.cfg.store_path(), Synchronous::Normal)
                .unwrap();
        let rs: Vec<Reading> = rows
            .iter()
            .map(|(t, v)| Reading::new(device, q, *v, ms(t)))
            .collect();
        st.insert_readings(&rs).unwrap();
    }

    /// The report as of 2030-01-01: the worked examples run to January 2027, and the real
    /// clock (a period in progress or not started yet) must not change them.
    fn report(&self, period: &str) -> Report {
        build_as_of(&self.cfg, period.parse::<Period>().unwrap(), false, AS_OF).unwrap()
    }

    fn store(&self) -> AccountingStore {
        AccountingStore::open(&self.cfg.store_path()).unwrap()
    }
}

fn kinds(r: &Report) -> Vec<&'static str> {
    r.data_quality
        .counter_events
        .iter()
        .map(|e| e.kind)
        .collect()
}

/// One grid meter, hourly readings on 2026-10-01, rated 5 000 kW, gap after 1 h.
fn grid(extra_meter: &str) -> Site {
    site(&format!(
        "{}\n[accounting]\ngap_after = \"1h\"\n[[accounting.meters]]\ndevice = \"main\"\nrated_power = 5000\n{extra_meter}\n",
        device("main", "electricity", &["energy_import"], "")
    ))
}

#[test]
fn rollover_counts_across_the_wrap() {
    let s = grid("counter_max = { energy_import = 100000 }");
    // 99 000 → 99 800 → (wrap at 100 000) 600 → 1 400:
    // 800 + (100 000 − 99 800 + 600 = 800) + 800 = 2 400 kWh.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 99_000.0),
            ("2026-10-01T01:00:00+08:00", 99_800.0),
            ("2026-10-01T02:00:00+08:00", 600.0),
            ("2026-10-01T03:00:00+08:00", 1_400.0),
        ],
    );
    let r = s.report("2026-10");
    assert_close!(r.electricity.purchased_kwh, 2_400.0);
    assert_eq!(kinds(&r), vec!["rollover"]);
    assert_close!(r.data_quality.counter_events[0].counted, 800.0);
    // 2 400 kWh × 0.1229 kgce/kWh = 294.96 kgce = 0.29496 tce
    assert_close!(r.comprehensive_energy_tce, 0.29496);
}

#[test]
fn reset_counts_from_zero_and_marks_the_step_estimated() {
    let s = grid("");
    // 5 000 → 5 600 → (reset) 200 → 900: 600 + 200 (since zero) + 700 = 1 500 kWh.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 5_000.0),
            ("2026-10-01T01:00:00+08:00", 5_600.0),
            ("2026-10-01T02:00:00+08:00", 200.0),
            ("2026-10-01T03:00:00+08:00", 900.0),
        ],
    );
    let r = s.report("2026-10");
    assert_close!(r.electricity.purchased_kwh, 1_500.0);
    assert_eq!(kinds(&r), vec!["reset"]);
    // The step 01:00 → 02:00 (four intervals) is estimated.
    assert_eq!(r.data_quality.estimated_intervals, 4);
}

#[test]
fn recorded_replacement_keeps_every_kwh() {
    let s = grid("");
    // Old meter 12 000 → 12 500, removed at 01:30 reading 12 800; new meter installed at 10,
    // then 310, 910: 500 + (12 800 − 12 500) + (310 − 10) + 600 = 1 700 kWh.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 12_000.0),
            ("2026-10-01T01:00:00+08:00", 12_500.0),
            ("2026-10-01T02:00:00+08:00", 310.0),
            ("2026-10-01T03:00:00+08:00", 910.0),
        ],
    );
    // Without the record the fall 12 500 → 310 looks like a reset to zero: 500 + 310 + 600.
    assert_close!(s.report("2026-10").electricity.purchased_kwh, 1_410.0);
    s.store()
        .record_replacement(
            "main",
            Quantity::EnergyImport,
            &Replacement {
                ts_ms: ms("2026-10-01T01:30:00+08:00"),
                old_final: 12_800.0,
                new_initial: 10.0,
            },
            Some("meter swap"),
        )
        .unwrap();
    let r = s.report("2026-10");
    assert_close!(r.electricity.purchased_kwh, 1_700.0);
    assert_eq!(kinds(&r), vec!["replacement"]);
    assert_eq!(r.data_quality.estimated_intervals, 0);
}

#[test]
fn spike_is_rejected() {
    let s = grid("");
    // 1 000 → 2 000 → 9 999 999 (a rise far beyond 5 000 kWh/h) → 4 000:
    // 1 000 + (4 000 − 2 000) = 3 000 kWh.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 1_000.0),
            ("2026-10-01T01:00:00+08:00", 2_000.0),
            ("2026-10-01T02:00:00+08:00", 9_999_999.0),
            ("2026-10-01T03:00:00+08:00", 4_000.0),
        ],
    );
    let r = s.report("2026-10");
    assert_close!(r.electricity.purchased_kwh, 3_000.0);
    // The bridged step 01:00 → 03:00 is longer than gap_after (1 h): a gap as well.
    assert_eq!(kinds(&r), vec!["spike", "gap"]);
    assert_eq!(r.data_quality.counter_events[0].to_value, Some(9_999_999.0));
}

#[test]
fn gap_is_bridged_from_the_counters() {
    let s = grid("");
    // 1 000 → 2 000, then nothing until 05:00: 6 000. Total 5 000 kWh; the 4 000 kWh of the gap
    // are spread over its 16 intervals (250 each), marked estimated.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 1_000.0),
            ("2026-10-01T01:00:00+08:00", 2_000.0),
            ("2026-10-01T05:00:00+08:00", 6_000.0),
        ],
    );
    let r = s.report("2026-10");
    assert_close!(r.electricity.purchased_kwh, 5_000.0);
    assert_eq!(kinds(&r), vec!["gap"]);
    assert_eq!(r.data_quality.estimated_intervals, 16);
    assert_eq!(r.data_quality.measured_intervals, 4);
    // 2 976 intervals in October, 4 measured: 4 / 2 976 × 100.
    assert_close!(r.data_quality.completeness_pct, 4.0 / 2976.0 * 100.0);
    // Estimated intervals never count for maximum demand: 1 000 kWh/h = 1 000 kW.
    assert_close!(r.max_demand_kw.unwrap(), 1_000.0);
}

#[test]
fn month_quarter_and_year_boundaries_in_shanghai() {
    let s = site(&format!(
        "{}{}",
        device("main", "electricity", &["energy_import"], ""),
        device("main2", "electricity", &["energy_import"], "")
    ));
    // Local 23:45 → 23:59:59 → 00:00:00 → 00:15 across 30 Sep/1 Oct (a month and quarter
    // boundary) on `main`, and 31 Dec/1 Jan (month, quarter and year) on `main2`.
    // A step 23:59:59 → 00:00:00 ends at midnight and belongs to the day that ends.
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-09-30T23:45:00+08:00", 900.0),
            ("2026-09-30T23:59:59+08:00", 1_000.0),
            ("2026-10-01T00:00:00+08:00", 1_003.0),
            ("2026-10-01T00:15:00+08:00", 1_100.0),
        ],
    );
    s.put(
        "main2",
        Quantity::EnergyImport,
        &[
            ("2026-12-31T23:45:00+08:00", 2_000.0),
            ("2026-12-31T23:59:59+08:00", 2_050.0),
            ("2027-01-01T00:00:00+08:00", 2_052.0),
            ("2027-01-01T00:15:00+08:00", 2_100.0),
        ],
    );
    let kwh = |p: &str| s.report(p).electricity.purchased_kwh;
    // September: (1 000 − 900) + (1 003 − 1 000) = 103; October: 1 100 − 1 003 = 97.
    assert_close!(kwh("2026-09"), 103.0);
    assert_close!(kwh("2026-10"), 97.0);
    // Q3 ends with September, Q4 begins with October and ends with December's
    // (2 050 − 2 000) + (2 052 − 2 050) = 52: 97 + 52 = 149.
    assert_close!(kwh("2026-Q3"), 103.0);
    assert_close!(kwh("2026-Q4"), 149.0);
    assert_close!(kwh("2026-12"), 52.0);
    // Year 2026: 103 + 97 + 52 = 252; 2027 begins with 2 100 − 2 052 = 48.
    assert_close!(kwh("2026"), 252.0);
    assert_close!(kwh("2027"), 48.0);
    assert_close!(kwh("2027-01"), 48.0);
    assert_close!(kwh("2027-Q1"), 48.0);
    // The local hour and day buckets written to the store split at midnight the same way.
    build_as_of(&s.cfg, "2026-Q3".parse().unwrap(), true, AS_OF).unwrap();
    build_as_of(&s.cfg, "2026-Q4".parse().unwrap(), true, AS_OF).unwrap();
    let st = s.store();
    let at = |res: &str, t: &str| {
        st.interval("main", Quantity::EnergyImport, res, ms(t))
            .unwrap()
            .unwrap()
            .0
    };
    assert_close!(at("1d", "2026-09-30T00:00:00+08:00"), 103.0);
    assert_close!(at("1h", "2026-09-30T23:00:00+08:00"), 103.0);
    assert_close!(at("15m", "2026-09-30T23:45:00+08:00"), 103.0);
    assert_close!(at("1d", "2026-10-01T00:00:00+08:00"), 97.0);
    assert_close!(at("1h", "2026-10-01T00:00:00+08:00"), 97.0);
}

#[test]
fn sub_meter_balance_flags_a_wrong_ct_ratio() {
    let body = format!(
        "{}{}{}",
        device("main", "electricity", &["energy_import"], ""),
        device(
            "kiln",
            "electricity",
            &["energy_import"],
            "parent = \"main\""
        ),
        device(
            "press",
            "electricity",
            &["energy_import"],
            "parent = \"main\""
        ),
    );
    let s = site(&body);
    let t = ["2026-10-01T00:00:00+08:00", "2026-10-01T00:15:00+08:00"];
    s.put(
        "main",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 1_000.0)],
    );
    s.put(
        "kiln",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 600.0)],
    );
    // The press meter's CT ratio is set to half: it shows 300 instead of 400.
    s.put(
        "press",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 300.0)],
    );
    let r = s.report("2026-10");
    // Sub-meters are inside the incomer: the site used 1 000 kWh, not 1 900.
    assert_close!(r.electricity.consumed_kwh, 1_000.0);
    assert_eq!(r.balance.len(), 1);
    let b = &r.balance[0];
    assert_eq!(b.parent, "main");
    // 1 000 − (600 + 300) = 100 kWh = 10 % of the parent, beyond the default 5 %.
    assert_close!(b.difference, 100.0);
    assert_close!(b.difference_pct.unwrap(), 10.0);
    assert!(b.flagged);
    assert!(r
        .data_quality
        .notes
        .iter()
        .any(|n| n.to_string().starts_with("sub-meter balance: main differs")));
    // Corrected: 400 → balanced.
    s.put(
        "press",
        Quantity::EnergyImport,
        &[("2026-10-01T00:30:00+08:00", 400.0)],
    );
    s.put(
        "main",
        Quantity::EnergyImport,
        &[("2026-10-01T00:30:00+08:00", 1_000.0)],
    );
    s.put(
        "kiln",
        Quantity::EnergyImport,
        &[("2026-10-01T00:30:00+08:00", 600.0)],
    );
    let r = s.report("2026-10");
    // main 1 000, kiln 600, press 400: difference 0.
    assert_close!(r.balance[0].children_consumption, 1_000.0);
    assert!(!r.balance[0].flagged);
}

#[test]
fn feedstock_and_manual_consumption_are_separate_ledgers() {
    let body = format!(
        "{}{}\n[[accounting.meters]]\ndevice = \"reformer\"\nuse = \"feedstock\"\n",
        device("gas", "natural_gas", &["gas_volume"], ""),
        device(
            "reformer",
            "natural_gas",
            &["gas_volume"],
            "parent = \"gas\""
        ),
    );
    let s = site(&body);
    let t = ["2026-10-01T00:00:00+08:00", "2026-10-01T00:15:00+08:00"];
    s.put("gas", Quantity::GasVolume, &[(t[0], 0.0), (t[1], 10_000.0)]);
    s.put(
        "reformer",
        Quantity::GasVolume,
        &[(t[0], 0.0), (t[1], 4_000.0)],
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(
        &csv,
        "period,carrier,quantity,unit,use\n2026-10,coal,2,t,energy\n",
    )
    .unwrap();
    let rows = ConsumptionRow::from_csv(&std::fs::read_to_string(&csv).unwrap()).unwrap();
    energy_gateway::accounting::import::import_consumption(&s.cfg, rows).unwrap();
    let r = s.report("2026-10");
    // gas 10 000 m³ × 1.2143 = 12.143 tce; coal 2 t = 2 000 kg × 0.7143 = 1.4286 tce.
    assert_close!(r.comprehensive_energy_tce, 12.143 + 1.4286);
    // feedstock 4 000 m³ × 1.2143 = 4.8572 tce, kept in the gross and deducted for assessment.
    assert_close!(r.feedstock_tce, 4.8572);
    assert_close!(r.assessment_energy_tce, 12.143 + 1.4286 - 4.8572);
    // Scope 1: gas 10 000 × 389.31/10⁴ × 15.3 × 0.99 × 44/12 / 1000 = 21.62188809 t;
    // coal (烟煤 row) 2 × 19.57 × 26.1 × 0.93 × 44/12 / 1000 = 3.48342… t.
    let coal = 2.0 * 19.57 * 26.1 * 0.93 * 44.0 / 12.0 / 1000.0;
    assert_close!(r.carbon.scope1_tco2, 21.62188809 + coal);
    let coal_line = r.carriers.iter().find(|c| c.carrier == "coal").unwrap();
    assert_close!(coal_line.quantity, 2.0);
    assert_eq!(coal_line.unit, "t");
    assert_close!(coal_line.factor_kgce_per_unit, 714.3);
}

#[test]
fn products_get_their_meters_and_a_share_of_common_energy() {
    let body = format!(
        "{}{}{}{}{}",
        device("main", "electricity", &["energy_import"], ""),
        device(
            "kiln",
            "electricity",
            &["energy_import"],
            "parent = \"main\""
        ),
        device(
            "press",
            "electricity",
            &["energy_import"],
            "parent = \"main\""
        ),
        device("count", "production", &["production_count"], ""),
        r#"
[[accounting.products]]
id = "tile"
unit = "m2"
meters = ["kiln"]
common_share = 0.75
production_device = "count"
limit = "gb21252-2023.tile_dry_pressed_e_0_5_to_10"

[[accounting.products]]
id = "panel"
unit = "m2"
meters = ["press"]
common_share = 0.25
limit = "gb21252-2023.ceramic_panel"
"#
    );
    let s = site(&body);
    let t = ["2026-10-01T00:00:00+08:00", "2026-10-01T00:15:00+08:00"];
    s.put(
        "main",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 100_000.0)],
    );
    s.put(
        "kiln",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 60_000.0)],
    );
    s.put(
        "press",
        Quantity::EnergyImport,
        &[(t[0], 0.0), (t[1], 20_000.0)],
    );
    s.put(
        "count",
        Quantity::ProductionCount,
        &[(t[0], 500.0), (t[1], 3_000.5)],
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("p.csv");
    std::fs::write(&csv, "period,product,quantity\n2026-10,panel,1000\n").unwrap();
    let rows = ProductionRow::from_csv(&std::fs::read_to_string(&csv).unwrap()).unwrap();
    energy_gateway::accounting::import::import_production(&s.cfg, rows).unwrap();
    let r = s.report("2026-10");
    // Site 100 000 kWh = 12.29 tce; kiln 60 000 = 7.374; press 20 000 = 2.458;
    // common = 12.29 − 7.374 − 2.458 = 2.458 tce.
    let tile = &r.products[0];
    let panel = &r.products[1];
    // tile: 7.374 + 0.75 × 2.458 = 9.2175 tce; output from the counter 3 000.5 − 500 = 2 500.5 m².
    assert_close!(tile.energy_tce, 9.2175);
    assert_close!(tile.output.unwrap(), 2_500.5);
    assert_eq!(tile.output_origin, "counter");
    // 9 217.5 kgce / 2 500.5 m² = 3.686262747… kgce/m²: 0.5 < E ≤ 10 % grades 3.4 / 3.7 / 4.6.
    assert_close!(tile.unit_energy.unwrap(), 9_217.5 / 2_500.5);
    assert_eq!(tile.grade, Some("grade_2"));
    // panel: 2.458 + 0.25 × 2.458 = 3.0725 tce over 1 000 m² (imported) = 3.0725 kgce/m²:
    // 陶瓷板 grade 1 is 6.0.
    assert_close!(panel.energy_tce, 3.0725);
    assert_eq!(panel.output_origin, "imported");
    assert_close!(panel.unit_energy.unwrap(), 3.0725);
    assert_eq!(panel.grade, Some("grade_1"));
    // The two products together carry the whole site.
    assert_close!(
        tile.energy_tce + panel.energy_tce,
        r.comprehensive_energy_tce
    );
}

#[test]
fn market_based_scope2_counts_green_power_at_zero() {
    let body = format!(
        "{}\n[accounting.carbon]\nprovince = \"sichuan\"\nscope2_method = \"market\"\n[[accounting.green_power]]\nperiod = \"2026-10\"\nkwh = 30000\n",
        device("main", "electricity", &["energy_import"], "")
    );
    let s = site(&body);
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 0.0),
            ("2026-10-01T00:15:00+08:00", 100_000.0),
        ],
    );
    let r = s.report("2026-10");
    // (100 000 − 30 000) kWh × 0.6096 tCO₂/MWh (2023, national excluding market-traded
    // non-fossil electricity, S44) = 42.672 t.
    assert_close!(r.carbon.scope2_tco2, 42.672);
    let g = r.carbon.scope2.grid_factor.as_ref().unwrap();
    assert_eq!((g.year, g.area.as_str()), (2023, "national"));
}

#[test]
fn location_based_scope2_by_province_and_year() {
    let body = format!(
        "{}\n[accounting.carbon]\nprovince = \"sichuan\"\n",
        device("main", "electricity", &["energy_import"], "")
    );
    let s = site(&body);
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2022-10-01T00:00:00+08:00", 0.0),
            ("2022-10-01T00:15:00+08:00", 10_000.0),
        ],
    );
    let r = s.report("2022-10");
    // 2022, 四川: 0.1404 tCO₂/MWh (S41, S45) × 10 MWh = 1.404 t.
    assert_close!(r.carbon.scope2_tco2, 1.404);
    let g = r.carbon.scope2.grid_factor.as_ref().unwrap();
    assert_eq!((g.basis, g.area.as_str()), ("province", "sichuan"));
}

#[test]
fn measured_calorific_value_replaces_the_table_factor() {
    let body = format!(
        "{}\n[[accounting.factors]]\ncarrier = \"natural_gas\"\nncv_kj_per_unit = 36000\nsource = \"supplier certificate 2026-10\"\n",
        device("gas", "natural_gas", &["gas_volume"], "")
    );
    let s = site(&body);
    s.put(
        "gas",
        Quantity::GasVolume,
        &[
            ("2026-10-01T00:00:00+08:00", 0.0),
            ("2026-10-01T00:15:00+08:00", 29_307.0),
        ],
    );
    let r = s.report("2026-10");
    // 36 000 kJ/m³ ÷ 29 307 kJ/kgce; × 29 307 m³ = 36 000 kgce = 36 tce.
    assert_close!(r.comprehensive_energy_tce, 36.0);
    assert_eq!(r.carriers[0].factor_row, "site");
    assert_eq!(
        r.carriers[0].factor_site_source.as_deref(),
        Some("supplier certificate 2026-10")
    );
    assert_eq!(r.carriers[0].factor_sources, vec!["S2".to_string()]);
}

#[test]
fn accounts_are_written_to_the_store_and_revised_only_when_they_change() {
    let s = grid("");
    s.put(
        "main",
        Quantity::EnergyImport,
        &[
            ("2026-10-01T00:00:00+08:00", 0.0),
            ("2026-10-01T01:00:00+08:00", 1_000.0),
        ],
    );
    build_as_of(&s.cfg, "2026-10".parse().unwrap(), true, AS_OF).unwrap();
    let st = s.store();
    // 1 000 kWh × 0.1229 = 122.9 kgce
    let (v, rev1) = st
        .account("2026-10", "comprehensive_energy_tce")
        .unwrap()
        .unwrap();
    assert_close!(v, 0.1229);
    // Four 15-minute intervals, one hour, one day.
    assert_eq!(st.count("energy_intervals").unwrap(), 6);
    build_as_of(&s.cfg, "2026-10".parse().unwrap(), true, AS_OF).unwrap();
    let (_, rev2) = st
        .account("2026-10", "comprehensive_energy_tce")
        .unwrap()
        .unwrap();
    assert_eq!(rev1, rev2, "unchanged values keep their revision");
    s.put(
        "main",
        Quantity::EnergyImport,
        &[("2026-10-01T02:00:00+08:00", 1_500.0)],
    );
    build_as_of(&s.cfg, "2026-Q4".parse().unwrap(), true, AS_OF).unwrap();
    let (v, rev3) = st
        .account("2026-10", "comprehensive_energy_tce")
        .unwrap()
        .unwrap();
    assert_close!(v, 0.18435);
    assert!(rev3 > rev2);
    assert!(st
        .account("2026-Q4", "comprehensive_energy_tce")
        .unwrap()
        .is_some());
    // Eight 15-minute intervals, two hours, one day.
    assert_eq!(st.count("energy_intervals").unwrap(), 11);
}
