//! `/metrics` of the real binary (`energy-gateway run`) polling the in-process simulated
//! factory, with every component that has metrics (Modbus devices, an MQTT source, output and
//! readings destination on a real Mosquitto, an InfluxDB output that is down, a firing alert
//! rule, a notifier, the accounting service): every
//! name of the table in `src/http/metrics.rs` is scraped, and after a reload that removes a
//! device its series are gone while the process's counters go on.

use crate::common;
use crate::http_support;

use std::time::Duration;

use http_support::{wait_for, write_config, ConfigSpec, Factory, Gateway};

/// The metric names of the table at the top of `src/http/metrics.rs` (the Grafana dashboards
/// and alert rules use them).
fn table_names() -> Vec<String> {
    let src = include_str!("../../src/http/metrics.rs");
    let mut names = Vec::new();
    for line in src.lines() {
        let Some(row) = line.strip_prefix("//! | `") else {
            continue;
        };
        let first = row.split(" | ").next().unwrap_or("");
        names.extend(
            first
                .split('`')
                .map(str::trim)
                .filter(|n| !n.is_empty() && *n != ","),
        );
    }
    names.into_iter().map(|n| n.to_string()).collect()
}

/// Whether `text` has the metric `name` (as the table writes it: counters with `_total`, the
/// build info with `_info`): its `# TYPE` line and at least one sample.
fn has_metric(text: &str, name: &str) -> bool {
    let full = format!("energy_gateway_{name}");
    let family = full
        .strip_suffix("_total")
        .or_else(|| full.strip_suffix("_info"))
        .unwrap_or(&full);
    text.contains(&format!("# TYPE {family} "))
        && text.lines().any(|l| {
            l.strip_prefix(&full)
                .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
        })
}

fn config_extra(closed_port: u16, broker: &str) -> String {
    format!(
        r#"
[[alerts]]
id = "main-high"
device = "main"
quantity = "active_power"
above = 1.0
severity = "critical"

[outputs.influxdb.down]
url = "http://127.0.0.1:{closed_port}"
database = "energy"
timeout = "1s"
backoff_initial = "200ms"
backoff_max = "1s"

[[notifiers]]
id = "ops-log"
kind = "log"

[mqtt]
url = "{broker}"
client_id = "gw-metrics"
max_backoff = "1s"

[[mqtt.subscriptions]]
topic = "meters/+/+"
device = "{{1}}"
quantity = "{{2}}"

[outputs.mqtt_readings.park]
topic = "factory/{{site}}/{{device}}"
[outputs.mqtt_readings.park.broker]
url = "{broker}"
"#
    )
}

#[test]
fn every_metric_of_the_table_is_scraped_and_a_reload_drops_removed_devices() {
    let names = table_names();
    assert!(names.len() > 60, "the table was not read: {names:?}");
    let factory = Factory::start();
    let broker = common::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let closed = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.extra = config_extra(closed, &broker.url());
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(2, Duration::from_secs(30));

    // Everything has happened once: the rule fires, both MQTT connections are up, a commit
    // latency was sampled, the readings rate is known.
    let text = wait_for("every metric of the table", Duration::from_secs(30), || {
        let text = gw.get("/metrics").text();
        let ready = text.contains("energy_gateway_mqtt_source_connected 1.0")
            && text.contains("energy_gateway_mqtt_output_connected 1.0")
            && text.contains("energy_gateway_alert_firing{")
            && text.contains(
                "energy_gateway_output_connected{destination=\"mqtt_readings.park\"} 1.0",
            )
            && !text.contains("energy_gateway_accounting_cycle_seconds_count 0")
            && !text.contains("energy_gateway_readings_per_second 0.0")
            && !text.contains("energy_gateway_store_commit_latency_seconds_count 0");
        ready.then_some(text)
    });
    let missing: Vec<&String> = names.iter().filter(|n| !has_metric(&text, n)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in\n{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(
        text.contains("energy_gateway_device_online{device=\"gas\"} 1.0"),
        "{text}"
    );
    assert!(
        text.contains("energy_gateway_notifier_sent_total{notifier=\"ops-log\"}"),
        "{text}"
    );
    // Each family once: no name registered twice.
    let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let all = types.len();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), all, "{text}");

    // A reload without the gas meter: its series are gone, the main meter's go on, and the
    // process counts the reload.
    spec.devices = &["main"];
    write_config(dir.path(), &factory, &spec);
    gw.signal("HUP");
    let text = wait_for("the reload in /metrics", Duration::from_secs(30), || {
        let text = gw.get("/metrics").text();
        (text.contains("energy_gateway_config_reloads_total 1\n")
            && text.contains("energy_gateway_pipeline_running 1.0")
            && text.contains("energy_gateway_device_online{device=\"main\"} 1.0"))
        .then_some(text)
    });
    assert!(!text.contains("device=\"gas\""), "{text}");
    assert!(
        text.contains("energy_gateway_config_reload_failures_total 0\n"),
        "{text}"
    );
    assert!(text.contains("energy_gateway_build_info{"), "{text}");
    let log = gw.stop();
    assert!(!log.contains("panicked"), "{log}");
}
