//! The accounting commands through the real binary: `import` then `report --format json` on the
//! data-driven cases in `tests/testcases/accounting_*` (inputs + `expected_report.json`), the
//! worked example's numbers asserted by hand, idempotent re-import, clear errors for bad input,
//! and `counter replace`.

use crate::common;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testcases")
        .join(name)
}

/// Imports the case's inputs (readings.csv, value_added.csv, production.csv, consumption.csv,
/// whichever exist) and returns the JSON report of `period`.
fn import_and_report(dir: &Path, data: &Path, period: &str) -> Value {
    let config = dir.join("config.toml");
    let config = config.to_str().unwrap();
    for (file, kind) in [
        ("readings.csv", "readings"),
        ("value_added.csv", "value-added"),
        ("production.csv", "production"),
        ("consumption.csv", "consumption"),
    ] {
        let f = dir.join(file);
        if f.exists() {
            common::expect_success(&common::run_gateway(
                data,
                &["import", kind, f.to_str().unwrap(), "--config", config],
            ));
        }
    }
    let out = common::expect_success(&common::run_gateway(
        data,
        &[
            "report", "--config", config, "--period", period, "--format", "json",
        ],
    ));
    serde_json::from_str(&out).expect("report is JSON")
}

/// Numbers equal to 1e-9 relative; everything else exactly; the same keys on both sides.
fn assert_json_close(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                (a - e).abs() <= 1e-9 * e.abs().max(1e-12),
                "{path}: {a} != {e}"
            );
        }
        (Value::Object(a), Value::Object(e)) => {
            let ak: Vec<&String> = a.keys().collect();
            let ek: Vec<&String> = e.keys().collect();
            assert_eq!(ak, ek, "{path}: keys differ");
            for (k, v) in e {
                assert_json_close(&a[k], v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: lengths differ");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_json_close(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[k],
        };
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

fn assert_close(v: &Value, path: &str, expected: f64) {
    let a = num(v, path);
    assert!(
        (a - expected).abs() <= 1e-9 * expected.abs().max(1e-12),
        "{path} = {a}, expected {expected}"
    );
}

#[test]
fn every_accounting_testcase_reproduces_its_expected_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases");
    let mut cases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("accounting_") {
            continue;
        }
        cases += 1;
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected_report.json")).unwrap(),
        )
        .unwrap();
        let period = expected["period"].as_str().unwrap().to_string();
        let data = tempfile::tempdir().unwrap();
        let actual = import_and_report(&dir, data.path(), &period);
        assert_json_close(&actual, &expected, &name);
    }
    assert!(cases >= 1, "no accounting_* case found");
}

/// The worked example of `tests/testcases/accounting_ceramic_month/README.md`, number by
/// number, computed by hand from the shipped factor tables.
#[test]
fn ceramic_tile_month_worked_example() {
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(
        &case_dir("accounting_ceramic_month"),
        data.path(),
        "2026-10",
    );

    // Electricity: purchased 31 × (36 × 500 + 28 × 400 + 28 × 450 + 4 × 450) + 250 = 1 351 850;
    // exported 31 × 12 × 25 = 9 300; PV 31 × 8 × 500 = 124 000;
    // consumed 1 351 850 + 124 000 − 9 300 = 1 466 550 kWh.
    assert_close(&r, "electricity.purchased_kwh", 1_351_850.0);
    assert_close(&r, "electricity.exported_kwh", 9_300.0);
    assert_close(&r, "electricity.generated_kwh", 124_000.0);
    assert_close(&r, "carriers.0.quantity", 1_466_550.0);
    // 1 466 550 kWh × 0.1229 kgce/kWh = 180.238995 tce
    assert_close(&r, "carriers.0.tce", 180.238995);
    // Natural gas 31 × 24 × 500 = 372 000 m³ × 1.2143 kgce/m³ = 451.7196 tce
    assert_close(&r, "carriers.1.quantity", 372_000.0);
    assert_close(&r, "carriers.1.tce", 451.7196);
    // Gross 180.238995 + 451.7196 = 631.958595 tce
    assert_close(&r, "comprehensive_energy_tce", 631.958595);
    // 等价值 0.300 kgce/kWh: 439.965 + 451.7196 = 891.6846 tce
    assert_close(&r, "comprehensive_energy_equal_value_tce", 891.6846);
    // Non-fossil: (124 000 − 9 300) + 100 000 + 50 × 1 000 = 264 700 kWh × 0.1229 = 32.53163 tce
    assert_close(&r, "non_fossil.total_kwh", 264_700.0);
    assert_close(&r, "non_fossil_tce", 32.53163);
    assert_close(&r, "feedstock_tce", 0.0);
    // Assessment 631.958595 − 0 − 32.53163 = 599.426965 tce
    assert_close(&r, "assessment_energy_tce", 599.426965);
    // Intensity 599.426965 / 2 000 = 0.2997134825 tce/10⁴ CNY; comparable / 1 900.
    assert_close(&r, "value_added_10k_cny", 2_000.0);
    assert_close(&r, "intensity_tce_per_10k_cny", 0.2997134825);
    assert_close(
        &r,
        "intensity_comparable_tce_per_10k_cny",
        599.426965 / 1_900.0,
    );
    // vs the configured base 0.40, declared gross (statistical returns, nothing deducted): like
    // with like, the gross energy: 631.958595 / 1 900 = 0.332609786842…;
    // (0.332609786842… / 0.40 − 1) × 100 = −16.847553289473…% (not −21.13 % after deductions).
    assert_eq!(r["baseline"]["basis"], "gross");
    assert_close(
        &r,
        "intensity_compared_tce_per_10k_cny",
        631.958595 / 1_900.0,
    );
    assert_close(
        &r,
        "change_vs_baseline_pct",
        (631.958595 / 1_900.0 / 0.40 - 1.0) * 100.0,
    );
    // Path 2026: (0.87^(4/5) − 1) × 100 = −10.5428 %; a month is not judged against it.
    assert_close(
        &r,
        "target.path_change_pct",
        (0.87f64.powf(0.8) - 1.0) * 100.0,
    );
    assert_eq!(r["on_track"], Value::Null);
    assert_eq!(
        r["progress"]["on_track"],
        Value::Null,
        "no value added for Jan-Sep"
    );
    assert_eq!(r["target"]["preset"], "chongqing-manufacturing-2023-2027");
    assert_eq!(r["target"]["source"], "S87");
    assert!(r["sources"]["S87"]
        .as_str()
        .unwrap()
        .contains("累计下降13%"));
    // Unit energy 631 958.595 kgce / 130 000 m² = 4.86122 kgce/m²: GB 21252-2023 E ≤ 0.2 %
    // grade 2 (4.5 < x ≤ 5.5).
    assert_close(&r, "products.0.unit_energy", 631_958.595 / 130_000.0);
    assert_eq!(r["products"][0]["grade"], "grade_2");
    assert_eq!(r["products"][0]["limit"]["standard"], "GB 21252-2023");
    // Scope 1: 372 000 m³ × 389.31/10⁴ × 15.3 × 0.99 × 44/12 / 1000 = 804.334236948 t
    assert_close(&r, "carbon.scope1_tco2", 804.334236948);
    // Scope 2: 重庆's own factor first, at its latest year up to 2026: 2022, 0.5227 t/MWh (not
    // 西南's 2023 0.2472). 1 351 850 kWh × 0.5227 = 706.611995 t
    assert_close(&r, "carbon.scope2_tco2", 706.611995);
    let g = &r["carbon"]["scope2"]["grid_factor"];
    assert_eq!(g["area"], "chongqing");
    assert_eq!(g["basis"], "province");
    assert_eq!(g["year"], 2022);
    assert_eq!(g["reason"], "province_latest_year");
    assert_close(&r, "carbon.total_tco2", 1_510.946231948);
    assert_close(
        &r,
        "products.0.co2_kg_per_unit",
        1_510_946.231948 / 130_000.0,
    );
    // Demand: 700 kWh in 15 min = 2 800 kW on 15 October at 10:00.
    assert_close(&r, "max_demand_kw", 2_800.0);
    assert_eq!(r["max_demand_at"], "2026-10-15T10:00:00+08:00");
    // TOU: valley 31 × 18 000, flat 31 × 11 200, peak 31 × 12 600 + 250, sharp 31 × 1 800.
    assert_close(&r, "tou_kwh.valley", 558_000.0);
    assert_close(&r, "tou_kwh.flat", 347_200.0);
    assert_close(&r, "tou_kwh.peak", 390_850.0);
    assert_close(&r, "tou_kwh.sharp", 55_800.0);
    // Data quality: 16 of 11 904 intervals estimated (the 4-hour gas gap).
    assert_close(
        &r,
        "data_quality.completeness_pct",
        11_888.0 / 11_904.0 * 100.0,
    );
    assert_close(&r, "data_quality.estimated_intervals", 16.0);
    let kinds: Vec<&str> = r["data_quality"]["counter_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["spike", "rollover", "gap"]);
}

/// A copy of the ceramic case with its config edited and, when given, another production.csv.
fn edited_case(edit: impl Fn(String) -> String, production: Option<&str>) -> tempfile::TempDir {
    let src = case_dir("accounting_ceramic_month");
    let dir = tempfile::tempdir().unwrap();
    for f in ["readings.csv", "value_added.csv", "production.csv"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    if let Some(p) = production {
        std::fs::write(dir.path().join("production.csv"), p).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("config.toml")).unwrap();
    let edited = edit(cfg.clone());
    assert_ne!(edited, cfg, "the edit changed nothing");
    std::fs::write(dir.path().join("config.toml"), edited).unwrap();
    dir
}

/// The same plant in 四川: the province's own 2023 factor, 0.1564 t/MWh (S84 表3, read in the
/// transcription S85), and only scope 2 moves.
#[test]
fn sichuan_plant_takes_sichuans_own_latest_factor() {
    let case = edited_case(
        |c| c.replace("province = \"chongqing\"", "province = \"sichuan\""),
        None,
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");
    let g = &r["carbon"]["scope2"]["grid_factor"];
    assert_eq!(g["area"], "sichuan");
    assert_eq!(g["basis"], "province");
    assert_eq!(g["year"], 2023);
    assert_eq!(g["reason"], "province_latest_year");
    assert_close(&r, "carbon.scope2.grid_factor.tco2_per_mwh", 0.1564);
    // 1 351 850 kWh × 0.1564 t/MWh = 211.42934 t; scope 1 unchanged 804.334236948 t.
    assert_close(&r, "carbon.scope2_tco2", 211.42934);
    assert_close(&r, "carbon.scope1_tco2", 804.334236948);
    assert_close(&r, "carbon.total_tco2", 1_015.763576948);
    // The energy accounts do not depend on the province.
    assert_close(&r, "assessment_energy_tce", 599.426965);
    let notes = r["data_quality"]["notes"].to_string();
    assert!(notes.contains("secondary transcription"), "{notes}");
    assert!(r["sources"]["S84"]
        .as_str()
        .unwrap()
        .contains("公告2025年第47号"));
    assert!(r["sources"]["S85"].as_str().unwrap().starts_with("[C]"));
    // Pinning the year still wins: 2022 gives 四川 2022, 0.1404.
    let pinned = edited_case(
        |c| {
            c.replace(
                "province = \"chongqing\"",
                "province = \"sichuan\"\nfactor_year = 2022",
            )
        },
        None,
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(pinned.path(), data.path(), "2026-10");
    assert_eq!(
        r["carbon"]["scope2"]["grid_factor"]["reason"],
        "configured_year"
    );
    // 1 351 850 × 0.1404 = 189.79974 t
    assert_close(&r, "carbon.scope2_tco2", 189.79974);
}

/// A cement plant in 四川 that is in the national ETS: the national average factor of the latest
/// year, 2023: 0.5306 t/MWh, whatever the province's own factor.
#[test]
fn cement_plant_in_the_national_ets_takes_the_national_factor() {
    let case = edited_case(
        |c| {
            c.replace(
                "province = \"chongqing\"",
                "province = \"sichuan\"\nnational_ets = true",
            )
            .replace(
                "id = \"tile\"\nname = \"Porcelain floor tile (E ≤ 0.2 %)\"\nunit = \"m2\"",
                "id = \"cement\"\nname = \"P.O 42.5 cement\"\nunit = \"t\"",
            )
            .replace(
                "limit = \"gb21252-2023.tile_dry_pressed_e_le_0_2\"",
                "limit = \"gb16780-2021.cement\"\nshare_pct = 80",
            )
        },
        Some("period,product,quantity\n2026-10,cement,7000\n"),
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");
    let g = &r["carbon"]["scope2"]["grid_factor"];
    assert_eq!(g["area"], "national");
    assert_eq!(g["basis"], "national");
    assert_eq!(g["year"], 2023);
    assert_eq!(g["reason"], "national_ets");
    // 1 351 850 kWh × 0.5306 t/MWh = 717.29161 t
    assert_close(&r, "carbon.scope2_tco2", 717.29161);
    assert_close(&r, "carbon.total_tco2", 804.334236948 + 717.29161);
    // 631 958.595 kgce / 7 000 t = 90.279799… kgce/t. GB 16780-2021's grades 80/87/94 are for
    // 75 % clinker; at 80 % they move additively by 5 × 1.10/1.15/1.20: 85.5/92.75/100 → grade 2
    // (it would be grade 3 against the uncorrected 87).
    assert_close(&r, "products.0.unit_energy", 631_958.595 / 7_000.0);
    assert_close(&r, "products.0.limit.grade1", 85.5);
    assert_close(&r, "products.0.limit.grade2", 92.75);
    assert_close(&r, "products.0.limit.grade3", 100.0);
    assert_close(&r, "products.0.limit.share_pct", 80.0);
    assert_eq!(r["products"][0]["grade"], "grade_2");
    assert_close(
        &r,
        "products.0.co2_kg_per_unit",
        (804_334.236948 + 717_291.61) / 7_000.0,
    );
}

/// 113号: certificates bundled with the October green-power purchase, and the non-tradable
/// certificates of the plant's own PV, would deduct the same electricity a second time. They are
/// listed, refused and warned about; the deduction stays that of the worked example.
#[test]
fn bundled_and_own_pv_certificates_are_not_deducted_twice() {
    let case = edited_case(
        |c| {
            c + r#"source = "unbundled certificates, October 2026 (example)"

[[accounting.green_certificates]]
id = "GP-2026-10"
period = "2026-10"
production_period = "2026-10"
certificates = 100
kind = "bundled"
origin_province = "chongqing"
source = "certificates of the October green-power trade (example)"

[[accounting.green_certificates]]
id = "PV-2026-10"
period = "2026-10"
production_period = "2026-09"
certificates = 114
kind = "own_pv"
origin_province = "chongqing"

[[accounting.green_certificates]]
id = "SC-2026-10"
period = "2026-10"
certificates = 10
origin_province = "sichuan"
"#
        },
        None,
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");
    let nf = &r["non_fossil"];
    // Deducted: own PV 114 700 (metered) + green power 100 000 + unbundled (50 + 10) × 1 000
    // = 274 700 kWh; the bundled 100 and own-PV 114 certificates add nothing.
    assert_close(&r, "non_fossil.green_certificates", 60.0);
    assert_close(&r, "non_fossil.certificates_refused", 214.0);
    assert_close(&r, "non_fossil.green_certificate_kwh", 60_000.0);
    assert_close(&r, "non_fossil.total_kwh", 274_700.0);
    assert_close(&r, "non_fossil.deducted_kwh", 274_700.0);
    // 274 700 × 0.1229 / 1000 = 33.76063 tce; assessment 631.958595 − 33.76063 = 598.197965.
    assert_close(&r, "non_fossil_tce", 33.76063);
    assert_close(&r, "assessment_energy_tce", 598.197965);
    let status: Vec<(&str, &str)> = nf["certificate_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap_or("-"),
                b["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        status,
        vec![
            ("-", "deducted"),
            ("GP-2026-10", "refused_bundled"),
            ("PV-2026-10", "refused_own_pv"),
            ("SC-2026-10", "deducted"),
        ]
    );
    let warnings: Vec<&str> = nf["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0]
        .starts_with("green certificates GP-2026-10 (2026-10): 100 certificates bundled"));
    assert!(warnings[1].starts_with("green certificates PV-2026-10 (2026-10): 114 non-tradable"));
    assert!(warnings[2].contains("another province (sichuan)"));
    // The warnings are in the report's notes too.
    let notes = r["data_quality"]["notes"].to_string();
    assert!(notes.contains("not deducted again"), "{notes}");

    // Without the green-power purchase the bundled batch is still refused, and the report says
    // the purchase is missing.
    let case = edited_case(
        |c| {
            c.replace("kwh = 100000", "kwh = 0")
                + r#"
[[accounting.green_certificates]]
id = "GP-2026-10"
period = "2026-10"
certificates = 100
kind = "bundled"
"#
        },
        None,
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");
    // 114 700 + 0 + 50 000 = 164 700 kWh
    assert_close(&r, "non_fossil.total_kwh", 164_700.0);
    let warnings = r["non_fossil"]["warnings"].to_string();
    assert!(
        warnings.contains("only 0 kWh of green power is configured for 2026-10"),
        "{warnings}"
    );
}

/// 803号 / 113号: deductions "同步从基年和目标年度". The base year 2022 is computed from its own
/// meter data, PV, green power and certificates in the store, on the same basis as 2026-10.
#[test]
fn base_year_with_pv_and_certificates_is_compared_like_with_like() {
    let case = edited_case(
        |c| {
            c.replace("base_intensity_tce_per_10k_cny = 0.40\n", "")
                .replace("base_basis = \"gross\"\n", "")
                + r#"source = "unbundled certificates, October 2026 (example)"

[[accounting.green_power]]
period = "2022-06"
kwh = 200000
source = "green power trade 2022 (example)"

[[accounting.green_certificates]]
id = "GP-2022-06"
period = "2022-06"
certificates = 200
kind = "bundled"

[[accounting.green_certificates]]
id = "U-2022-06"
period = "2022-06"
certificates = 100
"#
        },
        None,
    );
    // 2022: one measured quarter hour on 1 January, then the year's step to 2023-01-01.
    let mut readings = std::fs::read_to_string(case.path().join("readings.csv")).unwrap();
    for (device, quantity, start, end) in [
        ("main", "energy_import", "100000", "4100000"),
        ("main", "energy_export", "0", "10000"),
        ("pv", "energy_import", "10000", "260000"),
        ("gas", "gas_volume", "1000000.00", "5000000.00"),
    ] {
        for (time, v) in [
            ("2022-01-01T00:00:00+08:00", start),
            ("2022-01-01T00:15:00+08:00", start),
            ("2023-01-01T00:00:00+08:00", end),
        ] {
            readings.push_str(&format!("{time},{device},{quantity},{v}\n"));
        }
    }
    std::fs::write(case.path().join("readings.csv"), readings).unwrap();
    let mut va = std::fs::read_to_string(case.path().join("value_added.csv")).unwrap();
    for m in 1..=12 {
        va.push_str(&format!("2022-{m:02},1200,1200\n"));
    }
    std::fs::write(case.path().join("value_added.csv"), va).unwrap();
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");

    // Base 2022 by hand: electricity 4 000 000 + 250 000 − 10 000 = 4 240 000 kWh × 0.1229
    // = 521.096 tce; gas 4 000 000 m³ × 1.2143 = 4 857.2 tce; gross 5 378.296 tce.
    // Non-fossil: own PV 250 000 − 10 000 = 240 000 + green power 200 000 + 100 unbundled
    // certificates 100 000 (the 200 bundled ones refused) = 540 000 kWh × 0.1229 = 66.366 tce.
    // Assessment 5 378.296 − 66.366 = 5 311.93 tce ÷ 14 400 (12 × 1 200) = 0.368884027…
    let base = (5_378.296 - 66.366) / 14_400.0;
    assert_eq!(r["baseline"]["origin"], "computed");
    assert_eq!(r["baseline"]["basis"], "after_deductions");
    assert!(
        (num(&r, "baseline.intensity_tce_per_10k_cny") - base).abs() < 1e-9,
        "{}",
        r["baseline"]
    );
    // 2026-10 on the same basis: 599.426965 / 1 900 (comparable) = 0.315487876…
    let current = 599.426965 / 1_900.0;
    assert_close(&r, "intensity_compared_tce_per_10k_cny", current);
    // (0.315487876… / 0.368884027… − 1) × 100 = −14.4750…%
    assert_close(&r, "change_vs_baseline_pct", (current / base - 1.0) * 100.0);
    assert!((num(&r, "change_vs_baseline_pct") + 14.475).abs() < 1e-3);
    // The month is not judged; the year to date lacks value added for January-September.
    assert_eq!(r["on_track"], Value::Null);
    assert_eq!(r["progress"]["cumulative_change_pct"], Value::Null);

    // The base year's own report: the same deductions, the bundled batch refused.
    let out = common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "report",
            "--config",
            case.path().join("config.toml").to_str().unwrap(),
            "--period",
            "2022",
            "--format",
            "json",
        ],
    ));
    let y: Value = serde_json::from_str(&out).unwrap();
    assert_close(&y, "non_fossil.total_kwh", 540_000.0);
    assert_close(&y, "assessment_energy_tce", 5_311.93);
    assert_close(&y, "non_fossil.certificates_refused", 200.0);
    // A year is judged: the base year against itself is 0 % change, on the 0 % path, and its
    // year to date is the year: 完成进度 0 %.
    assert_close(&y, "change_vs_baseline_pct", 0.0);
    assert_eq!(y["on_track"], Value::Bool(true));
    assert_close(&y, "progress.cumulative_change_pct", 0.0);
    assert_close(&y, "progress.completion_pct", 0.0);
}

/// GB/T 36132: two graded products make one 单位产品综合能耗 indicator, each weighted by its
/// energy (tce), not 8 points each.
#[test]
fn two_products_share_one_unit_energy_indicator_by_tce() {
    let case = edited_case(
        |c| {
            c.replace("common_share = 1.0", "common_share = 0.75")
                + r#"
[[accounting.products]]
id = "wall"
name = "Wall tile (E 0.5-10 %)"
unit = "m2"
common_share = 0.25
limit = "gb21252-2023.tile_dry_pressed_e_0_5_to_10"
"#
        },
        Some("period,product,quantity\n2026-10,tile,100000\n2026-10,wall,50000\n"),
    );
    let data = tempfile::tempdir().unwrap();
    let r = import_and_report(case.path(), data.path(), "2026-10");
    let g = r["indicators"]["green_factory"].as_array().unwrap();
    // tile: 0.75 × 631.958595 = 473.96894625 tce / 100 000 m² = 4.7396894625 kgce/m²:
    // score (5.5 − 4.7396894625) / (5.5 − 4.5) = 0.7603105375; weight 8 × 0.75 = 6.
    assert_eq!(g[0]["id"], "unit_product_energy.tile");
    assert_close(&r, "indicators.green_factory.0.score", 0.7603105375);
    assert_close(&r, "indicators.green_factory.0.weight", 6.0);
    assert_close(&r, "indicators.green_factory.0.points", 6.0 * 0.7603105375);
    // wall: 0.25 × 631.958595 = 157.98964875 tce / 50 000 = 3.159792975 ≤ 引领值 3.4: score 1;
    // weight 8 × 0.25 = 2.
    assert_eq!(g[1]["id"], "unit_product_energy.wall");
    assert_close(&r, "indicators.green_factory.1.score", 1.0);
    assert_close(&r, "indicators.green_factory.1.weight", 2.0);
    // Together the indicator counts 8 points at most.
    assert_close(
        &r,
        "indicators.green_factory.0.weight",
        8.0 - num(&r, "indicators.green_factory.1.weight"),
    );
}

#[test]
fn reimporting_readings_writes_nothing_twice() {
    let data = tempfile::tempdir().unwrap();
    let dir = case_dir("accounting_ceramic_month");
    let config = dir.join("config.toml");
    let readings = dir.join("readings.csv");
    let args = [
        "import",
        "readings",
        readings.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let first = common::expect_success(&common::run_gateway(data.path(), &args));
    assert!(
        first.contains("7443 rows, 7443 written, 0 already in the store"),
        "{first}"
    );
    let second = common::expect_success(&common::run_gateway(data.path(), &args));
    assert!(
        second.contains("7443 rows, 0 written, 7443 already in the store"),
        "{second}"
    );
}

#[test]
fn bad_rows_are_reported_with_their_line_and_nothing_is_imported() {
    let data = tempfile::tempdir().unwrap();
    let config = case_dir("accounting_ceramic_month").join("config.toml");
    let config = config.to_str().unwrap();
    let f = data.path().join("bad.csv");
    std::fs::write(
        &f,
        "time,device,quantity,value\n\
         2026-10-01T00:00:00+08:00,main,energy_import,100\n\
         2026-10-01 00:15,main,energy_import,110\n\
         2026-10-01T00:30:00+08:00,ghost,energy_import,120\n\
         2026-10-01T00:45:00+08:00,main,energy_imprt,130\n\
         2026-10-01T01:00:00+08:00,main,energy_import,abc\n\
         2026-10-01T01:15:00+08:00,main,energy_import\n",
    )
    .unwrap();
    let out = common::run_gateway(
        data.path(),
        &[
            "import",
            "readings",
            f.to_str().unwrap(),
            "--config",
            config,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "5 bad rows, nothing imported",
        "line 3: time \"2026-10-01 00:15\" is not RFC 3339",
        "line 4: unknown device \"ghost\"",
        "line 5: unknown quantity `energy_imprt`",
        "line 6: value \"abc\" is not a number",
        "line 7: 3 fields, expected 4",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    // Nothing was written: the report sees no electricity.
    let out = common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "report",
            "--config",
            config,
            "--period",
            "2026-10",
            "--no-store",
        ],
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["carriers"].as_array().unwrap().len(), 2);
    assert_close(&r, "electricity.purchased_kwh", 0.0);

    // Value added and production files.
    let f = data.path().join("va.csv");
    std::fs::write(
        &f,
        "period,value_added_10k_cny\n2026-13,5\n2026-10,-1\n2026-10,x\n",
    )
    .unwrap();
    let out = common::run_gateway(
        data.path(),
        &[
            "import",
            "value-added",
            f.to_str().unwrap(),
            "--config",
            config,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: month in \"2026-13\" must be 01 to 12"),
        "{err}"
    );
    assert!(
        err.contains("line 3: value_added_10k_cny -1 is negative"),
        "{err}"
    );
    assert!(
        err.contains("line 4: value_added_10k_cny \"x\" is not a number"),
        "{err}"
    );
    let f = data.path().join("p.csv");
    std::fs::write(&f, "period,product\n").unwrap();
    let out = common::run_gateway(
        data.path(),
        &[
            "import",
            "production",
            f.to_str().unwrap(),
            "--config",
            config,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: expected the header `period,product,quantity`"),
        "{err}"
    );
    std::fs::write(&f, "period,product,quantity\n2026-10,brick,5\n").unwrap();
    let out = common::run_gateway(
        data.path(),
        &[
            "import",
            "production",
            f.to_str().unwrap(),
            "--config",
            config,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: unknown product \"brick\" (configured: tile)"),
        "{err}"
    );
    let out = common::run_gateway(
        data.path(),
        &[
            "import",
            "production",
            "/nonexistent/p.csv",
            "--config",
            config,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/p.csv"), "{err}");
}

#[test]
fn report_arguments_are_checked() {
    let data = tempfile::tempdir().unwrap();
    let config = case_dir("accounting_ceramic_month").join("config.toml");
    let config = config.to_str().unwrap();
    let out = common::run_gateway(
        data.path(),
        &["report", "--config", config, "--period", "2026-13"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("month in \"2026-13\" must be 01 to 12"));
    let out = common::run_gateway(
        data.path(),
        &[
            "report", "--config", config, "--period", "2026", "--format", "xml",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown format \"xml\"; available: json")
    );
    let help = common::expect_success(&common::run_gateway(data.path(), &["--help"]));
    for cmd in ["import", "report", "counter"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn counter_replace_command_recovers_the_energy_of_a_meter_swap() {
    let data = tempfile::tempdir().unwrap();
    let config = case_dir("accounting_ceramic_month").join("config.toml");
    let config = config.to_str().unwrap();
    let f = data.path().join("r.csv");
    // The gas meter is replaced at 02:30: old meter 1 000 → 1 500 → 2 000, removed reading
    // 2 250; the new one starts at 0: 250, 750. Consumption 500 + 500 + 250 + 250 + 500 = 2 000 m³.
    std::fs::write(
        &f,
        "time,device,quantity,value\n\
         2026-10-01T00:00:00+08:00,gas,gas_volume,1000\n\
         2026-10-01T01:00:00+08:00,gas,gas_volume,1500\n\
         2026-10-01T02:00:00+08:00,gas,gas_volume,2000\n\
         2026-10-01T03:00:00+08:00,gas,gas_volume,250\n\
         2026-10-01T04:00:00+08:00,gas,gas_volume,750\n",
    )
    .unwrap();
    common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "import",
            "readings",
            f.to_str().unwrap(),
            "--config",
            config,
        ],
    ));
    let out = common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "counter",
            "replace",
            "--config",
            config,
            "--device",
            "gas",
            "--quantity",
            "gas_volume",
            "--time",
            "2026-10-01T02:30:00+08:00",
            "--old-final",
            "2250",
            "--new-initial",
            "0",
            "--note",
            "flow computer swap",
        ],
    ));
    assert!(
        out.contains("gas gas_volume replaced at 2026-10-01T02:30:00+08:00"),
        "{out}"
    );
    let r: Value = serde_json::from_str(&common::expect_success(&common::run_gateway(
        data.path(),
        &[
            "report",
            "--config",
            config,
            "--period",
            "2026-10",
            "--no-store",
        ],
    )))
    .unwrap();
    let gas = r["carriers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["carrier"] == "natural_gas")
        .unwrap();
    assert!(
        (gas["quantity"].as_f64().unwrap() - 2_000.0).abs() < 1e-9,
        "{gas}"
    );
    let ev = &r["data_quality"]["counter_events"][0];
    assert_eq!(ev["kind"], "replacement");
    // Bad arguments are errors, not panics.
    let out = common::run_gateway(
        data.path(),
        &[
            "counter",
            "replace",
            "--config",
            config,
            "--device",
            "gas",
            "--quantity",
            "gas_flow",
            "--time",
            "2026-10-01T02:30:00+08:00",
            "--old-final",
            "1",
            "--new-initial",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gas_flow is not a cumulative counter"));
}
