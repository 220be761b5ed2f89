//! The park report over a real InfluxDB 1.6 (the harness's influxd): three gateways with
//! different site tags each build their October account from their own store and send it as
//! line protocol (`report --format lp`, measurement `energy_account`) to the park's database;
//! `report --park --source influxdb` then ranks them, finds the one off the target path and
//! computes the capacity shares at 标杆 (grade 1) and below the baseline (over grade 3).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn worked_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases/accounting_ceramic_month")
}

/// One gateway: its config (the worked example under another site id, in park "cq-park"), its
/// store with the example's readings, its own value added and production; returns the line
/// protocol of its October account.
fn gateway_account(dir: &Path, site: &str, va: (f64, f64), output_m2: f64) -> String {
    let data = dir.join(site);
    std::fs::create_dir_all(&data).unwrap();
    let config = std::fs::read_to_string(worked_example().join("config.toml"))
        .unwrap()
        .replace(
            "id = \"cq-ceramics-01\"",
            &format!("id = \"{site}\"\npark = \"cq-park\""),
        );
    let cfg = data.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let cfg = cfg.to_str().unwrap();
    let va_csv = data.join("va.csv");
    std::fs::write(
        &va_csv,
        format!(
            "period,value_added_10k_cny,value_added_comparable_10k_cny\n2026-10,{},{}\n",
            va.0, va.1
        ),
    )
    .unwrap();
    let prod = data.join("production.csv");
    std::fs::write(
        &prod,
        format!("period,product,quantity\n2026-10,tile,{output_m2}\n"),
    )
    .unwrap();
    let readings = worked_example().join("readings.csv");
    for (kind, file) in [
        ("readings", readings.as_path()),
        ("value-added", va_csv.as_path()),
        ("production", prod.as_path()),
    ] {
        common::expect_success(
            &common::gateway_cmd(&data)
                .args(["import", kind, file.to_str().unwrap(), "--config", cfg])
                .output()
                .unwrap(),
        );
    }
    common::expect_success(
        &common::gateway_cmd(&data)
            .args([
                "report", "--config", cfg, "--period", "2026-10", "--format", "lp",
            ])
            .output()
            .unwrap(),
    )
}

fn park(influx: &common::Influxd, extra: &[&str]) -> Output {
    let url = format!("http://{}", influx.addr());
    let mut args = vec![
        "report", "--park", "--source", "influxdb", "--url", &url, "--db", "park", "--period",
        "2026-10",
    ];
    args.extend_from_slice(extra);
    let dir = tempfile::tempdir().unwrap();
    common::gateway_cmd(dir.path())
        .args(&args)
        .output()
        .unwrap()
}

fn close(v: &Value, e: f64) {
    let a = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((a - e).abs() <= 1e-9 * e.abs().max(1e-12), "{a} != {e}");
}

#[test]
fn park_report_ranks_three_gateways_from_influxdb() {
    let influx = common::Influxd::start();
    influx.create_database("park");
    let dir = tempfile::tempdir().unwrap();
    // Same meters (the worked example: assessment energy 599.426965 tce), different value added
    // and output: A comparable 1 900 → 0.3155 tce/10⁴ CNY, grade 2; B 1 400 → 0.4282, off the
    // path (+7.04 % vs the 0.40 baseline), 80 000 m² → 7.90 kgce/m², over grade 3; C 2 900 →
    // 0.2067, 150 000 m² → 4.21 kgce/m², grade 1.
    for (site, va, out) in [
        ("plant-a", (2000.0, 1900.0), 130000.0),
        ("plant-b", (1500.0, 1400.0), 80000.0),
        ("plant-c", (3000.0, 2900.0), 150000.0),
    ] {
        let lp = gateway_account(dir.path(), site, va, out);
        assert!(lp.starts_with(&format!(
            "energy_account,site={site},park=cq-park,period=2026-10,kind=month "
        )));
        let (status, body) = influx.write("park", "ns", &lp);
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!(
        influx.count_field("park", "energy_account", "comprehensive_energy_tce"),
        3
    );
    assert_eq!(
        influx.count_field("park", "energy_account", "unit_energy"),
        3
    );

    let r: Value = serde_json::from_str(&common::expect_success(&park(
        &influx,
        &["--format", "json"],
    )))
    .unwrap();
    let f = r["factories"].as_array().unwrap();
    let sites: Vec<&str> = f.iter().map(|x| x["site"].as_str().unwrap()).collect();
    assert_eq!(sites, ["plant-c", "plant-a", "plant-b"], "ranking");
    assert_eq!(f[0]["rank"], 1);
    close(&f[0]["intensity_tce_per_10k_cny"], 599.426965 / 2900.0);
    close(&f[2]["intensity_tce_per_10k_cny"], 599.426965 / 1400.0);
    // The worked example's base 0.40 is gross (nothing deducted): compared with the gross energy.
    close(
        &f[2]["change_vs_baseline_pct"],
        (631.958595 / 1400.0 / 0.4 - 1.0) * 100.0,
    );
    assert_eq!(f[2]["on_track"], false);
    assert_eq!(f[0]["on_track"], true);
    assert_eq!(r["off_path"], serde_json::json!(["plant-b"]));
    close(&r["total_energy_tce"], 3.0 * 631.958595);
    close(&r["total_value_added_10k_cny"], 6500.0);
    close(&r["intensity_tce_per_10k_cny"], 3.0 * 599.426965 / 6500.0);
    // Capacity: 150 000 of 360 000 m² at grade 1 (41.67 % ≥ 30 %), 80 000 over grade 3.
    close(&r["benchmark_share_pct"], 150000.0 / 360000.0 * 100.0);
    assert_eq!(r["benchmark_target_met"], true);
    close(&r["below_baseline_share_pct"], 80000.0 / 360000.0 * 100.0);
    assert_eq!(r["below_baseline_sites"], serde_json::json!(["plant-b"]));

    // The human formats carry the same ranking.
    let md = common::expect_success(&park(&influx, &["--format", "md", "--lang", "en"]));
    assert!(md.contains("| 1 | plant-c |"), "{md}");
    assert!(md.contains("| 3 | plant-b |"), "{md}");
    let html = common::expect_success(&park(&influx, &["--format", "html"]));
    assert!(html.contains("园区能源报告 Park energy report") && html.contains("<svg"));
    // Its notes in the report's language; the JSON keeps them in English.
    let zh = common::expect_success(&park(&influx, &["--format", "md", "--lang", "zh"]));
    assert!(zh.contains("标杆≈1级的对应关系为推断"), "{zh}");
    assert!(!zh.contains("mapping is inferred"), "{zh}");
    assert!(md.contains("mapping is inferred"), "{md}");
    let csv = common::expect_success(&park(&influx, &["--format", "csv"]));
    assert!(csv.contains("factories,3,site,plant-b\n"), "{csv}");

    // Filters and errors.
    let none = park(&influx, &["--park-tag", "other-park"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no energy_account points"));
    let bad_db = {
        let url = format!("http://{}", influx.addr());
        let d = tempfile::tempdir().unwrap();
        common::gateway_cmd(d.path())
            .args([
                "report", "--park", "--url", &url, "--db", "nope", "--period", "2026-10",
            ])
            .output()
            .unwrap()
    };
    assert_eq!(bad_db.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_db.stderr);
    assert!(err.contains("database not found"), "{err}");
    assert!(!err.contains("panicked"));
}
