//! Settings of DL/T 645 and CJ/T 188 meters (`[devices.dlt645]`, `[devices.cjt188]`) and the
//! protocol of a line (`[[buses]] protocol`). The configuration root composes them.

use std::time::Duration;

use serde::Deserialize;

use crate::units::duration;

/// What a `[[buses]]` line speaks. One task owns a line, so one protocol per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum LineProtocol {
    #[default]
    #[serde(rename = "modbus")]
    Modbus,
    #[serde(rename = "dlt645-2007")]
    Dlt645V2007,
    #[serde(rename = "dlt645-1997")]
    Dlt645V1997,
    #[serde(rename = "cjt188")]
    Cjt188,
}

impl LineProtocol {
    /// The name written in the configuration and in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            LineProtocol::Modbus => "modbus",
            LineProtocol::Dlt645V2007 => "dlt645-2007",
            LineProtocol::Dlt645V1997 => "dlt645-1997",
            LineProtocol::Cjt188 => "cjt188",
        }
    }

    /// The DL/T 645 edition, for DL/T 645 lines.
    pub fn dlt645(self) -> Option<crate::acquisition::dlt645::Version> {
        use crate::acquisition::dlt645::Version;
        match self {
            LineProtocol::Dlt645V2007 => Some(Version::V2007),
            LineProtocol::Dlt645V1997 => Some(Version::V1997),
            _ => None,
        }
    }
}

/// `[devices.dlt645]` / `[devices.cjt188]`: a meter on a DL/T 645 or CJ/T 188 line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterBusDeviceConfig {
    /// Id of the `[[buses]]` line the meter hangs on.
    pub bus: String,
    /// The meter's address as on its nameplate: 12 digits (DL/T 645) or 14 (CJ/T 188).
    pub address: String,
    /// CJ/T 188 meter type (0x10 cold water, 0x20 heat, 0x30 gas…); default: the template's.
    #[serde(default)]
    pub meter_type: Option<u8>,
    /// Poll interval of points without an interval of their own.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Time allowed for each answer.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// After this many failed polls in a row the meter is retried with backoff.
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// Longest wait between retries of a degraded meter.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_degraded_after() -> u32 {
    3
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
