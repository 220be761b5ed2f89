//! DL/T 645 (2007, 1997) electricity meters and CJ/T 188 water, heat and gas meters on serial
//! lines (RS-485, or through a serial device server). Uses the frame codecs
//! ([`crate::acquisition::dlt645`], [`crate::acquisition::cjt188`]) and the Modbus link for
//! opening lines; one task per `[[buses]]` entry whose `protocol` is not Modbus.
//!
//! - [`config`]: the device and line settings.
//! - [`templates`]: meter families as data (`config/meters/dlt645-*.toml`, `cjt188-*.toml`).
//! - [`poller`]: the line task.
//! - [`probe`]: discovery by broadcast and a one-off read (`energy-gateway probe --dlt645`).

pub mod config;
pub mod poller;
pub mod probe;
pub mod templates;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::modbus::link::Link;
use super::modbus::Started;
use super::{cjt188, dlt645, DeviceRegistry, DeviceStatus, SourceBatch};
use crate::acquisition::config::{BusConfig, DeviceConfig};
use config::{LineProtocol, MeterBusDeviceConfig};
use poller::{BusDevice, BusPoller, Line, Target};

/// The `[devices.dlt645]` or `[devices.cjt188]` section of a device, with its key.
pub fn section(d: &DeviceConfig) -> Option<(&'static str, &MeterBusDeviceConfig)> {
    match (&d.dlt645, &d.cjt188) {
        (Some(m), _) => Some(("dlt645", m)),
        (None, Some(m)) => Some(("cjt188", m)),
        (None, None) => None,
    }
}

/// Builds the poll target of a device on a line of `protocol`.
pub fn target(
    protocol: LineProtocol,
    m: &MeterBusDeviceConfig,
    template_type: Option<u8>,
) -> Result<Target, (String, String)> {
    match (protocol.dlt645(), protocol) {
        (Some(version), _) => Ok(Target::Dlt645 {
            version,
            address: dlt645::Address::parse(&m.address).map_err(|e| ("address".into(), e))?,
        }),
        (None, LineProtocol::Cjt188) => Ok(Target::Cjt188 {
            meter_type: m.meter_type.or(template_type).unwrap_or(0x10),
            address: cjt188::Address::parse(&m.address).map_err(|e| ("address".into(), e))?,
        }),
        _ => Err((
            "bus".into(),
            format!("bus \"{}\" speaks Modbus; a DL/T 645 or CJ/T 188 meter needs a line with protocol = \"dlt645-2007\", \"dlt645-1997\" or \"cjt188\"", m.bus),
        )),
    }
}

/// Problems of one device's DL/T 645 / CJ/T 188 settings as (key path below the device, message),
/// given the lines (`[[buses]]`) and the templates directory (`[modbus] templates_dir`).
pub fn check_device(
    buses: &[BusConfig],
    templates_dir: Option<&Path>,
    d: &DeviceConfig,
) -> Vec<(String, String)> {
    let Some((key, m)) = section(d) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let at = |k: &str| {
        if k.is_empty() {
            key.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    macro_rules! push {
        ($k:expr, $msg:expr $(,)?) => {
            out.push((at($k), $msg))
        };
    }
    if d.dlt645.is_some() && d.cjt188.is_some() || d.modbus.is_some() {
        push!(
            "",
            "a device has one source: [devices.modbus], [devices.dlt645] or [devices.cjt188]"
                .into(),
        );
    }
    if !d.points.is_empty() {
        out.push((
            "points".into(),
            "a DL/T 645 or CJ/T 188 meter reads the points of its model's family; [[devices.points]] are Modbus registers".into(),
        ));
    }
    let address = if key == "dlt645" {
        dlt645::Address::parse(&m.address).err()
    } else {
        cjt188::Address::parse(&m.address).err()
    };
    if let Some(e) = address {
        push!("address", e);
    }
    let Some(bus) = buses.iter().find(|b| b.id == m.bus) else {
        push!("bus", format!("refers to unknown bus \"{}\"", m.bus));
        return out;
    };
    let wanted = if key == "dlt645" {
        bus.protocol.dlt645().is_some()
    } else {
        bus.protocol == LineProtocol::Cjt188
    };
    if !wanted {
        push!(
            "bus",
            format!(
                "bus \"{}\" has protocol = \"{}\"; a [devices.{key}] meter needs {}",
                bus.id,
                bus.protocol.as_str(),
                if key == "dlt645" {
                    "\"dlt645-2007\" or \"dlt645-1997\""
                } else {
                    "\"cjt188\""
                }
            ),
        );
    }
    if m.interval < crate::acquisition::config::MIN_POLL_INTERVAL {
        push!(
            "interval",
            crate::acquisition::config::min_interval_message()
        );
    }
    if m.timeout.is_zero() {
        push!("timeout", "must be greater than 0".into());
    }
    if m.degraded_after == 0 {
        push!("degraded_after", "must be at least 1".into());
    }
    let templates = templates::load(templates_dir);
    match (&d.model, &templates) {
        (None, _) => {
            out.push(("model".into(), "needs `model`: a DL/T 645 or CJ/T 188 meter family (e.g. \"dlt645-2007-three-phase\", \"cjt188-water\")".into()));
        }
        (Some(model), Ok(all)) => match all.get(model) {
            None => {
                let known: Vec<&str> = all.keys().map(String::as_str).collect();
                out.push((
                    "model".into(),
                    format!(
                        "no DL/T 645 / CJ/T 188 meter family \"{model}\"; known: {}",
                        known.join(", ")
                    ),
                ));
            }
            Some((t, _)) => {
                if wanted && t.protocol != bus.protocol {
                    out.push((
                        "model".into(),
                        format!(
                            "family \"{model}\" is for {} lines, bus \"{}\" speaks {}",
                            t.protocol.as_str(),
                            bus.id,
                            bus.protocol.as_str()
                        ),
                    ));
                }
            }
        },
        (Some(_), Err(e)) => {
            out.push(("model".into(), e.join("; ")));
        }
    }
    out
}

/// Starts one task per DL/T 645 / CJ/T 188 line of `buses` with every enabled meter of `devices`
/// on it, reading the meters' clock times in the site's `timezone`. Devices that the configuration
/// check would refuse are skipped.
pub fn spawn_pollers(
    devices: &[DeviceConfig],
    buses: &[BusConfig],
    templates_dir: Option<&Path>,
    timezone: &str,
    tx: &mpsc::Sender<SourceBatch>,
    cancel: &CancellationToken,
) -> Started {
    let mut registry = DeviceRegistry::new();
    let mut requests_per_cycle = BTreeMap::new();
    let mut tasks = Vec::new();
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let templates = match templates::load(templates_dir) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("meter families: {}", e.join("; "));
            BTreeMap::new()
        }
    };
    for bus in buses.iter().filter(|b| b.protocol != LineProtocol::Modbus) {
        let mut on_bus = Vec::new();
        for d in devices.iter().filter(|d| d.enabled) {
            let Some((_, m)) = section(d).filter(|(_, m)| m.bus == bus.id) else {
                continue;
            };
            let Some((t, points)) = d.model.as_ref().and_then(|m| templates.get(m)) else {
                continue;
            };
            let Ok(target) = target(bus.protocol, m, t.meter_type) else {
                continue;
            };
            let status = Arc::new(DeviceStatus::default());
            registry.insert(d.id.clone(), status.clone());
            on_bus.push(BusDevice {
                id: d.id.clone(),
                target,
                points: points.clone(),
                interval: m.interval,
                timeout: m.timeout,
                degraded_after: m.degraded_after.max(1),
                max_backoff: m.max_backoff,
                status,
            });
        }
        if on_bus.is_empty() {
            continue;
        }
        let poller = BusPoller::new(
            Line::new(Link::from_bus(bus), bus.pause),
            on_bus,
            tz,
            tx.clone(),
        );
        requests_per_cycle.extend(poller.requests_per_cycle());
        tasks.push(tokio::spawn(poller.run(cancel.clone())));
    }
    Started {
        devices: registry,
        tasks,
        requests_per_cycle,
    }
}
