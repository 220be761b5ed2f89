//! `energy-gateway probe`: read one device once with a meter template and show what it yields,
//! in canonical quantities and units. What an installer runs on day one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::link::Link;
use super::scheduler::{requests_per_cycle, Poller, Target};
use super::templates::{self, MeterTemplate};
use crate::acquisition::config::DeviceConfig;
use crate::acquisition::DeviceStatus;

/// One quantity as probed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeValue {
    pub value: Option<f64>,
    pub unit: &'static str,
    pub quality: &'static str,
    pub reason: Option<String>,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    pub device: String,
    pub model: String,
    pub link: String,
    pub unit_id: u8,
    pub requests: usize,
    pub values: BTreeMap<String, ProbeValue>,
}

/// Reads every point of `model` once from the device at `link`/`unit`.
pub async fn probe(
    link: Link,
    unit: u8,
    model: &str,
    templates_dir: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<ProbeResult, String> {
    let all = templates::load(templates_dir).map_err(|e| e.join("; "))?;
    let template: &MeterTemplate = all.get(model).ok_or_else(|| {
        format!(
            "no meter template for model \"{model}\"; known models: {}",
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    // Built through serde so that every other device key keeps its documented default.
    let mut device: DeviceConfig = serde_json::from_value(serde_json::json!({
        "id": "probe",
        "model": model,
        "modbus": {
            "address": "probe:1",
            "unit": unit,
            "timeout": humantime::format_duration(timeout).to_string(),
            "degraded_after": 1,
        },
    }))
    .map_err(|e| format!("building the probe device: {e}"))?;
    templates::apply(&mut device, template);
    let modbus = device.modbus.clone().ok_or("no modbus settings")?;
    let (tx, _rx) = mpsc::channel(1);
    let description = link.describe();
    let mut poller = Poller::new(
        link,
        Duration::ZERO,
        vec![Target {
            device: Arc::new(device.clone()),
            modbus: modbus.clone(),
            status: Arc::new(DeviceStatus::default()),
        }],
        tx,
    );
    let requests = requests_per_cycle(&super::scheduler::plan_groups(&device, &modbus));
    let readings = poller.poll_once(0).await?;
    let values = readings
        .into_iter()
        .map(|r| {
            (
                r.quantity.as_str().to_string(),
                ProbeValue {
                    value: r.good_value(),
                    unit: r.quantity.unit(),
                    quality: r.quality.as_str(),
                    reason: r.quality.reason().map(String::from),
                },
            )
        })
        .collect();
    Ok(ProbeResult {
        device: description.clone(),
        model: template.model.clone(),
        link: description,
        unit_id: unit,
        requests,
        values,
    })
}

impl ProbeResult {
    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} unit {} model {} ({} requests per cycle)\n",
            self.link, self.unit_id, self.model, self.requests
        );
        for (q, v) in &self.values {
            match v.value {
                Some(x) => s.push_str(&format!("  {q:<24} {x:>16.4} {}\n", v.unit)),
                None => s.push_str(&format!(
                    "  {q:<24} {:>16} {}  ({})\n",
                    "-",
                    v.unit,
                    v.reason.as_deref().unwrap_or("bad")
                )),
            }
        }
        s
    }
}
