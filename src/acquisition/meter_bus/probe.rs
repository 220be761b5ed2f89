//! `energy-gateway probe --dlt645 <port or host:port>` (and `--cjt188`): find the meter's
//! address by broadcast when none is given, read every point of its family once and show the
//! values in canonical quantities and units.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::config::LineProtocol;
use super::poller::{BusDevice, BusPoller, Line, Target};
use super::templates;
use crate::acquisition::modbus::link::Link;
use crate::acquisition::modbus::probe::ProbeValue;
use crate::acquisition::{cjt188, dlt645, DeviceStatus};
use crate::readings::Quantity;

/// What a probe of a DL/T 645 or CJ/T 188 meter found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusProbeResult {
    pub link: String,
    pub protocol: &'static str,
    pub address: String,
    /// True when the address was found by broadcast.
    pub discovered: bool,
    pub model: String,
    pub values: BTreeMap<String, ProbeValue>,
    /// Frames on the line that were not a valid answer (noise, bad checksums).
    pub garbage: u64,
}

/// Finds the one DL/T 645 meter on `line`: 2007 "read address" to the wildcard address, then,
/// for 1997 meters, a read of 9010 (forward active energy) to the wildcard address.
pub async fn discover_dlt645(
    line: &mut Line,
    limit: Duration,
) -> Result<(LineProtocol, dlt645::Address), String> {
    let req = dlt645::read_address_request();
    let wire = req.encode()?;
    let first = line
        .exchange(&wire, limit, dlt645::scan, |f: &dlt645::Frame| {
            dlt645::answers(f, dlt645::READ_ADDRESS)
        })
        .await;
    match first {
        Ok(f) => return Ok((LineProtocol::Dlt645V2007, f.address)),
        Err(e) => tracing::debug!("no DL/T 645-2007 address answer: {e}"),
    }
    let req = dlt645::read_request(dlt645::Version::V1997, dlt645::Address::WILDCARD, 0x9010);
    let control = req.control;
    let wire = req.encode()?;
    line.exchange(&wire, limit, dlt645::scan, |f: &dlt645::Frame| {
        dlt645::answers(f, control)
    })
    .await
    .map(|f| (LineProtocol::Dlt645V1997, f.address))
    .map_err(|e| {
        format!(
            "no DL/T 645 meter answered the broadcast address read (2007: C=13H) nor a 1997 read of 9010 to AAAAAAAAAAAA ({e}); check wiring, baud rate (often 2400 8E1) and that one meter is on the line{}",
            if line.garbage > 0 {
                format!("; {} garbled frames were seen", line.garbage)
            } else {
                String::new()
            }
        )
    })
}

/// Finds the one CJ/T 188 meter on `line` ("read address" to type AA, address AA..AA).
pub async fn discover_cjt188(
    line: &mut Line,
    limit: Duration,
) -> Result<(u8, cjt188::Address), String> {
    let wire = cjt188::read_address_request(0).encode()?;
    line.exchange(&wire, limit, cjt188::scan, |f: &cjt188::Frame| {
        f.control & 0x80 != 0 && f.control & 0x1F == cjt188::READ_ADDRESS
    })
    .await
    .map(|f| (f.meter_type, f.address))
    .map_err(|e| {
        format!(
            "no CJ/T 188 meter answered the broadcast address read ({e}); check wiring, baud rate and that one meter is on the line"
        )
    })
}

/// Options of one probe.
#[derive(Debug, Clone)]
pub struct BusProbe {
    pub link: Link,
    /// `Dlt645V2007` for `--dlt645` (the edition is found by discovery or given by the model),
    /// `Cjt188` for `--cjt188`.
    pub protocol: LineProtocol,
    pub address: Option<String>,
    pub model: Option<String>,
    pub meter_type: Option<u8>,
    pub templates_dir: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub timezone: chrono_tz::Tz,
}

/// Runs a probe.
pub async fn probe(p: BusProbe) -> Result<BusProbeResult, String> {
    let all = templates::load(p.templates_dir.as_deref()).map_err(|e| e.join("; "))?;
    let mut line = Line::new(p.link.clone(), Duration::ZERO);
    let mut protocol = p.protocol;
    if let Some(m) = p.model.as_ref().and_then(|m| all.get(m)) {
        protocol = m.0.protocol;
    }
    let discovered = p.address.is_none();
    let (target, address) = match (protocol, &p.address) {
        (LineProtocol::Cjt188, None) => {
            let (t, a) = discover_cjt188(&mut line, p.timeout).await?;
            (
                Target::Cjt188 {
                    meter_type: p.meter_type.unwrap_or(t),
                    address: a,
                },
                a.to_string(),
            )
        }
        (LineProtocol::Cjt188, Some(a)) => {
            let address = cjt188::Address::parse(a)?;
            let family_type = p
                .model
                .as_ref()
                .and_then(|m| all.get(m))
                .and_then(|t| t.0.meter_type);
            (
                Target::Cjt188 {
                    meter_type: p.meter_type.or(family_type).unwrap_or(0x10),
                    address,
                },
                address.to_string(),
            )
        }
        (_, None) => {
            let (v, a) = discover_dlt645(&mut line, p.timeout).await?;
            protocol = v;
            (
                Target::Dlt645 {
                    version: v.dlt645().unwrap_or(dlt645::Version::V2007),
                    address: a,
                },
                a.to_string(),
            )
        }
        (_, Some(a)) => {
            let address = dlt645::Address::parse(a)?;
            (
                Target::Dlt645 {
                    version: protocol.dlt645().unwrap_or(dlt645::Version::V2007),
                    address,
                },
                address.to_string(),
            )
        }
    };
    let model = match (&p.model, protocol, target) {
        (Some(m), _, _) => m.clone(),
        (None, LineProtocol::Dlt645V1997, _) => "dlt645-1997-three-phase".into(),
        (None, LineProtocol::Cjt188, Target::Cjt188 { meter_type, .. }) => match meter_type {
            0x10..=0x19 => "cjt188-water".into(),
            0x20..=0x29 => "cjt188-heat".into(),
            0x30..=0x39 => "cjt188-gas".into(),
            t => {
                return Err(format!(
                    "the meter {address} is of CJ/T 188 type {t:02X}H, which has no built-in family (water 10H-19H, heat 20H-29H, gas 30H-39H): name your own with --model (a family in --templates-dir)"
                ))
            }
        },
        (None, _, _) => "dlt645-2007-three-phase".into(),
    };
    let (template, points) = all.get(&model).ok_or_else(|| {
        format!(
            "no DL/T 645 / CJ/T 188 meter family \"{model}\"; known: {}",
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    if template.protocol != protocol {
        return Err(format!(
            "family \"{model}\" is for {} meters, the meter speaks {}",
            template.protocol.as_str(),
            protocol.as_str()
        ));
    }
    let (tx, _rx) = mpsc::channel(1);
    let description = line.describe();
    let mut poller = BusPoller::new(
        line,
        vec![BusDevice {
            id: crate::readings::DeviceId::new("probe").map_err(|e| e.to_string())?,
            target,
            points: points.clone(),
            interval: Duration::from_secs(1),
            timeout: p.timeout,
            degraded_after: 1,
            max_backoff: Duration::from_secs(1),
            status: Arc::new(DeviceStatus::default()),
        }],
        p.timezone,
        tx,
    );
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
    Ok(BusProbeResult {
        link: description,
        protocol: protocol.as_str(),
        address,
        discovered,
        model: template.model.clone(),
        values,
        garbage: poller.garbage(),
    })
}

impl BusProbeResult {
    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} {} address {}{} model {}\n",
            self.link,
            self.protocol,
            self.address,
            if self.discovered {
                " (found by broadcast)"
            } else {
                ""
            },
            self.model
        );
        for (q, v) in &self.values {
            match v.value {
                // A moment (the maximum demand's time) also as a date.
                Some(x) if q == Quantity::MaxDemandImportTime.as_str() => s.push_str(&format!(
                    "  {q:<24} {x:>16.4} {}  ({})\n",
                    v.unit,
                    crate::readings::rfc3339_utc(Some((x * 1000.0) as i64))
                )),
                Some(x) => s.push_str(&format!("  {q:<24} {x:>16.4} {}\n", v.unit)),
                None => s.push_str(&format!(
                    "  {q:<24} {:>16} {}  ({})\n",
                    "-",
                    v.unit,
                    v.reason.as_deref().unwrap_or("bad")
                )),
            }
        }
        if self.garbage > 0 {
            s.push_str(&format!(
                "  ({} garbled frames skipped on the line)\n",
                self.garbage
            ));
        }
        s
    }
}
