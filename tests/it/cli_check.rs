//! `energy-gateway check` against the data-driven cases in `tests/testcases/check_*`, the shipped
//! example configurations, and environment overrides.

use std::path::Path;
use std::process::Command;

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    // Make sure no override from the developer's shell leaks into the cases.
    for (k, _) in std::env::vars() {
        if k.starts_with("EGW__") {
            c.env_remove(k);
        }
    }
    c
}

/// Warning lines start with this (zh) or "warning: " (en).
const WARNING_ZH: &str = "警告：";

fn check(config: &Path, env: &[(&str, &str)]) -> (i32, Vec<String>) {
    let (code, problems, _) = check_all(config, env);
    (code, problems)
}

/// Exit code, problem lines and warning lines of `check`.
fn check_all(config: &Path, env: &[(&str, &str)]) -> (i32, Vec<String>, Vec<String>) {
    let out = gateway()
        .args(["check", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("running energy-gateway check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (warnings, problems): (Vec<String>, Vec<String>) = stdout
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .partition(|l| l.starts_with(WARNING_ZH) || l.starts_with("warning: "));
    (out.status.code().unwrap_or(-1), problems, warnings)
}

#[test]
fn every_check_testcase_prints_exactly_its_expected_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases");
    let mut cases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("check_") {
            continue;
        }
        cases += 1;
        let expected: Vec<String> = std::fs::read_to_string(dir.join("expected_errors.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        // Warnings (optional file): printed, never a failure.
        let expected_warnings: Vec<String> =
            std::fs::read_to_string(dir.join("expected_warnings.txt"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect();
        let (code, problems, warnings) = check_all(&dir.join("config.toml"), &[]);
        assert_eq!(problems, expected, "case {name}");
        assert_eq!(warnings, expected_warnings, "warnings of case {name}");
        assert_eq!(
            code,
            if expected.is_empty() { 0 } else { 1 },
            "exit code of case {name}"
        );
    }
    assert!(cases >= 8, "only {cases} check cases found");
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "config/example.toml",
        "config/demo.toml",
        "config/mqtt/tasmota-energy.toml",
        "config/mqtt/shelly-em.toml",
        "config/mqtt/shelly-3em.toml",
    ] {
        let (code, problems) = check(&root.join(f), &[]);
        assert_eq!((code, problems), (0, vec![]), "{f}");
    }
    // The compose config reads its token from the environment.
    let (code, problems) = check(&root.join("deploy/docker/gateway.toml"), &[]);
    assert_eq!(code, 1);
    assert!(
        problems[0].contains("EGW__OUTPUTS__INFLUXDB__CENTRAL__TOKEN"),
        "{problems:?}"
    );
    // ... and its HTTP token from a compose secret file (overridden here).
    let (code, _) = check(
        &root.join("deploy/docker/gateway.toml"),
        &[
            ("EGW__OUTPUTS__INFLUXDB__CENTRAL__TOKEN", "t0ken"),
            ("EGW__HTTP__TOKEN", "0123456789abcdef-test"),
        ],
    );
    assert_eq!(code, 0);
}

#[test]
fn environment_overrides_reach_nested_keys_and_are_checked() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let (code, problems) = check(&demo, &[("EGW__SITE__TIMEZONE", "Mars/Olympus_Mons")]);
    assert_eq!(code, 1);
    assert_eq!(
        problems,
        vec!["site.timezone: unknown time zone \"Mars/Olympus_Mons\"; use an IANA name such as \"Asia/Shanghai\""]
    );
    // A misspelt override is an unknown key, not silently ignored.
    let (code, problems) = check(&demo, &[("EGW__LOGG__LEVEL", "debug")]);
    assert_eq!(code, 1);
    assert!(problems[0].starts_with("logg: unknown key"), "{problems:?}");
    let (code, _) = check(&demo, &[("EGW__LOG__LEVEL", "debug")]);
    assert_eq!(code, 0);
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, problems) = check(Path::new("/nonexistent/energy-gateway.toml"), &[]);
    assert_eq!(code, 1);
    assert!(
        problems[0].contains("cannot read config file /nonexistent/energy-gateway.toml"),
        "{problems:?}"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = gateway().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "demo", "version"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = gateway().arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("energy-gateway "));
}
