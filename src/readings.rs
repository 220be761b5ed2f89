//! The core data model: one measured value of one quantity of one device at one instant.
//!
//! Everything downstream (alerting, storage, outputs, accounting) speaks in [`Reading`]s.
//! Quantities form a closed vocabulary with one canonical unit each, so that a value means the
//! same thing whichever meter or protocol produced it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Readings are stamped at acquisition so that a replay of
/// the same reading to a time-series database overwrites the earlier write instead of duplicating it.
pub type TimestampMs = i64;

/// The latest good value of every series seen, by device and quantity: looked up and updated
/// for every reading (processing, alerting), so neither allocates nor hashes more than the
/// device id once.
#[derive(Debug, Default, Clone)]
pub struct LatestValues {
    devices: std::collections::HashMap<Box<str>, Vec<(Quantity, TimestampMs, f64)>, FastHash>,
}

/// A fast hasher for keys that come from the configuration and the store, not from an attacker
/// able to pick colliding ids (ids from MQTT topics are checked and bounded before they get here).
type FastHash = foldhash::fast::RandomState;

impl LatestValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest (time, value) of a series.
    pub fn get(&self, device: &str, quantity: Quantity) -> Option<(TimestampMs, f64)> {
        self.devices
            .get(device)?
            .iter()
            .find(|(q, _, _)| *q == quantity)
            .map(|&(_, ts, v)| (ts, v))
    }

    /// Records a series' latest value (the device id is copied the first time only).
    pub fn insert(&mut self, device: &str, quantity: Quantity, ts_ms: TimestampMs, value: f64) {
        let series = match self.devices.get_mut(device) {
            Some(s) => s,
            None => self.devices.entry(device.into()).or_default(),
        };
        match series.iter_mut().find(|(q, _, _)| *q == quantity) {
            Some(e) => *e = (quantity, ts_ms, value),
            None => series.push((quantity, ts_ms, value)),
        }
    }

    /// Every series: (device, quantity, time, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Quantity, TimestampMs, f64)> + '_ {
        self.devices
            .iter()
            .flat_map(|(d, s)| s.iter().map(move |&(q, ts, v)| (&**d, q, ts, v)))
    }
}

/// Whether `s` is a valid device (or site) id: 1-64 characters of A-Z, a-z, 0-9, '-', '_' or
/// '.', so that ids from the outside (MQTT topics) cannot collide in outputs (`m1 ` and `m1\`
/// would be the same InfluxDB series as `m1`) or grow without bound.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What [`valid_id`] requires, as `check` says it.
pub const ID_RULE: &str = "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'";

/// A device id that passed [`valid_id`]: made only by [`DeviceId::new`] (or by reading a
/// configuration, which refuses a bad id with [`ID_RULE`]), so code holding one never checks it
/// again. Cloning is cheap (a shared string).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(std::sync::Arc<str>);

/// A string that is not a valid device id; displays as [`ID_RULE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId;

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ID_RULE)
    }
}

impl std::error::Error for InvalidId {}

impl DeviceId {
    /// `s` as a device id, or [`InvalidId`] when it breaks [`valid_id`]'s rule.
    pub fn new(s: impl AsRef<str>) -> Result<Self, InvalidId> {
        let s = s.as_ref();
        if valid_id(s) {
            Ok(DeviceId(s.into()))
        } else {
            Err(InvalidId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        DeviceId::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0.as_ref().to_owned()
    }
}

impl From<&DeviceId> for String {
    fn from(id: &DeviceId) -> String {
        id.as_str().to_owned()
    }
}

impl FromStr for DeviceId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        DeviceId::new(s)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for DeviceId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for DeviceId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DeviceId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for DeviceId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for DeviceId {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<DeviceId> for String {
    fn eq(&self, other: &DeviceId) -> bool {
        **self == *other.0
    }
}

impl PartialEq<DeviceId> for str {
    fn eq(&self, other: &DeviceId) -> bool {
        *self == *other.0
    }
}

impl PartialEq<DeviceId> for &str {
    fn eq(&self, other: &DeviceId) -> bool {
        **self == *other.0
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    chrono::Utc::now().timestamp_millis()
}

/// A timestamp for people and logs: RFC 3339 in UTC to the second, or `never` when there is
/// none (and the raw number when it is out of chrono's range).
pub fn rfc3339_utc(ts: Option<TimestampMs>) -> String {
    match ts {
        None => "never".into(),
        Some(ms) => chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| ms.to_string()),
    }
}

macro_rules! quantities {
    ($( $variant:ident => $name:literal, $unit:literal, $cumulative:literal, $doc:literal; )*) => {
        /// The controlled vocabulary of measured quantities. Each has exactly one canonical unit.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Quantity {
            $( #[doc = $doc] $variant, )*
        }

        impl Quantity {
            /// Every quantity, in declaration order.
            pub const ALL: &'static [Quantity] = &[ $( Quantity::$variant, )* ];

            /// The name used in configuration files, the store and outputs.
            pub fn as_str(self) -> &'static str {
                match self { $( Quantity::$variant => $name, )* }
            }

            /// The canonical unit every value of this quantity is expressed in.
            pub fn unit(self) -> &'static str {
                match self { $( Quantity::$variant => $unit, )* }
            }

            /// True for counters that only grow (energy and volume totals, production counts).
            pub fn is_cumulative(self) -> bool {
                match self { $( Quantity::$variant => $cumulative, )* }
            }

            /// A one-line description, used in `--help`-style listings and docs.
            pub fn description(self) -> &'static str {
                match self { $( Quantity::$variant => $doc, )* }
            }
        }

        impl FromStr for Quantity {
            type Err = UnknownQuantity;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(Quantity::$variant), )*
                    _ => Err(UnknownQuantity(s.to_string())),
                }
            }
        }
    };
}

quantities! {
    VoltageL1 => "voltage_l1", "V", false, "Phase L1 to neutral voltage";
    VoltageL2 => "voltage_l2", "V", false, "Phase L2 to neutral voltage";
    VoltageL3 => "voltage_l3", "V", false, "Phase L3 to neutral voltage";
    VoltageL1L2 => "voltage_l1_l2", "V", false, "Line voltage L1-L2";
    VoltageL2L3 => "voltage_l2_l3", "V", false, "Line voltage L2-L3";
    VoltageL3L1 => "voltage_l3_l1", "V", false, "Line voltage L3-L1";
    CurrentL1 => "current_l1", "A", false, "Phase L1 current";
    CurrentL2 => "current_l2", "A", false, "Phase L2 current";
    CurrentL3 => "current_l3", "A", false, "Phase L3 current";
    CurrentN => "current_n", "A", false, "Neutral current";
    ActivePower => "active_power", "kW", false, "Total active power (positive = import)";
    ActivePowerL1 => "active_power_l1", "kW", false, "Phase L1 active power";
    ActivePowerL2 => "active_power_l2", "kW", false, "Phase L2 active power";
    ActivePowerL3 => "active_power_l3", "kW", false, "Phase L3 active power";
    ReactivePower => "reactive_power", "kvar", false, "Total reactive power";
    ApparentPower => "apparent_power", "kVA", false, "Total apparent power";
    PowerFactor => "power_factor", "1", false, "Total power factor (signed: negative = capacitive)";
    Frequency => "frequency", "Hz", false, "Grid frequency";
    EnergyImport => "energy_import", "kWh", true, "Imported active energy counter";
    EnergyExport => "energy_export", "kWh", true, "Exported active energy counter";
    ReactiveEnergyImport => "reactive_energy_import", "kvarh", true, "Imported reactive energy counter";
    ReactiveEnergyExport => "reactive_energy_export", "kvarh", true, "Exported reactive energy counter";
    GasVolume => "gas_volume", "m3", true, "Gas volume counter (standard cubic metres)";
    GasFlow => "gas_flow", "m3/h", false, "Gas flow rate";
    SteamMass => "steam_mass", "t", true, "Steam mass counter";
    SteamFlow => "steam_flow", "t/h", false, "Steam flow rate";
    HeatEnergy => "heat_energy", "GJ", true, "Heat energy counter";
    HeatPower => "heat_power", "kW", false, "Heat power";
    WaterVolume => "water_volume", "t", true, "Water counter (1 t = 1 m3)";
    WaterFlow => "water_flow", "t/h", false, "Water flow rate";
    CompressedAirVolume => "compressed_air_volume", "m3", true, "Compressed air counter (free air delivery)";
    ProductionCount => "production_count", "unit", true, "Production counter in the line's product unit (t, m2, pieces)";
    Temperature => "temperature", "degC", false, "Temperature";
    Pressure => "pressure", "kPa", false, "Pressure";
    EnergyImportT1 => "energy_import_t1", "kWh", true, "Imported active energy, tariff 1 (State Grid meters: sharp 尖)";
    EnergyImportT2 => "energy_import_t2", "kWh", true, "Imported active energy, tariff 2 (peak 峰)";
    EnergyImportT3 => "energy_import_t3", "kWh", true, "Imported active energy, tariff 3 (flat 平)";
    EnergyImportT4 => "energy_import_t4", "kWh", true, "Imported active energy, tariff 4 (valley 谷)";
    EnergyExportT1 => "energy_export_t1", "kWh", true, "Exported active energy, tariff 1";
    EnergyExportT2 => "energy_export_t2", "kWh", true, "Exported active energy, tariff 2";
    EnergyExportT3 => "energy_export_t3", "kWh", true, "Exported active energy, tariff 3";
    EnergyExportT4 => "energy_export_t4", "kWh", true, "Exported active energy, tariff 4";
    ReactiveEnergyQ1 => "reactive_energy_q1", "kvarh", true, "Reactive energy counter, quadrant I";
    ReactiveEnergyQ2 => "reactive_energy_q2", "kvarh", true, "Reactive energy counter, quadrant II";
    ReactiveEnergyQ3 => "reactive_energy_q3", "kvarh", true, "Reactive energy counter, quadrant III";
    ReactiveEnergyQ4 => "reactive_energy_q4", "kvarh", true, "Reactive energy counter, quadrant IV";
    ReactivePowerL1 => "reactive_power_l1", "kvar", false, "Phase L1 reactive power";
    ReactivePowerL2 => "reactive_power_l2", "kvar", false, "Phase L2 reactive power";
    ReactivePowerL3 => "reactive_power_l3", "kvar", false, "Phase L3 reactive power";
    PowerFactorL1 => "power_factor_l1", "1", false, "Phase L1 power factor";
    PowerFactorL2 => "power_factor_l2", "1", false, "Phase L2 power factor";
    PowerFactorL3 => "power_factor_l3", "1", false, "Phase L3 power factor";
    MaxDemandImport => "max_demand_import", "kW", false, "Maximum demand of imported active power in the meter's current billing period";
    MaxDemandImportTime => "max_demand_import_time", "s", false, "When the maximum demand occurred, Unix seconds (UTC)";
    MeterClockOffset => "meter_clock_offset", "s", false, "Meter clock minus gateway clock, seconds (positive: the meter is ahead)";
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A quantity name outside the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quantity `{0}` (known: {known})", known = known_quantities())]
pub struct UnknownQuantity(pub String);

fn known_quantities() -> String {
    Quantity::ALL
        .iter()
        .map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far a value can be trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "quality", content = "reason", rename_all = "lowercase")]
pub enum Quality {
    /// Measured and plausible.
    Good,
    /// Not usable; the value is absent. The reason says why (exception, NaN, sentinel…).
    Bad(String),
    /// Derived rather than measured (for example a gap bridged from counters).
    Estimated(String),
}

impl Quality {
    /// Short name stored and exported (`good`, `bad`, `estimated`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Bad(_) => "bad",
            Quality::Estimated(_) => "estimated",
        }
    }

    /// The reason for a non-good quality.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Quality::Good => None,
            Quality::Bad(r) | Quality::Estimated(r) => Some(r),
        }
    }

    /// Small integer code used in the store.
    pub fn code(&self) -> i64 {
        match self {
            Quality::Good => 0,
            Quality::Bad(_) => 1,
            Quality::Estimated(_) => 2,
        }
    }

    /// Rebuilds a quality from its store code and reason.
    pub fn from_code(code: i64, reason: Option<String>) -> Quality {
        match code {
            0 => Quality::Good,
            2 => Quality::Estimated(reason.unwrap_or_default()),
            _ => Quality::Bad(reason.unwrap_or_else(|| "unknown".into())),
        }
    }
}

/// One value of one quantity of one device, stamped at acquisition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Device id as configured (`[[devices]] id`).
    pub device: String,
    /// What was measured.
    pub quantity: Quantity,
    /// The value in the quantity's canonical unit; `None` when the quality is bad.
    pub value: Option<f64>,
    /// Acquisition time, UTC milliseconds.
    pub ts_ms: TimestampMs,
    /// Whether the value can be used.
    #[serde(flatten)]
    pub quality: Quality,
}

impl Reading {
    /// A good reading. Non-finite values are turned into bad readings: a NaN is never a number here.
    pub fn new(
        device: impl Into<String>,
        quantity: Quantity,
        value: f64,
        ts_ms: TimestampMs,
    ) -> Self {
        let mut r = Reading {
            device: device.into(),
            quantity,
            value: Some(value),
            ts_ms,
            quality: Quality::Good,
        };
        r.normalize();
        r
    }

    /// A bad reading without a value.
    pub fn bad(
        device: impl Into<String>,
        quantity: Quantity,
        ts_ms: TimestampMs,
        reason: impl Into<String>,
    ) -> Self {
        Reading {
            device: device.into(),
            quantity,
            value: None,
            ts_ms,
            quality: Quality::Bad(reason.into()),
        }
    }

    /// Enforces the model's invariants: a non-finite value becomes a bad reading, and a bad
    /// reading carries no value. Returns true when the reading was changed.
    pub fn normalize(&mut self) -> bool {
        match (&self.quality, self.value) {
            (Quality::Bad(_), Some(_)) => {
                self.value = None;
                true
            }
            (_, Some(v)) if !v.is_finite() => {
                self.quality = Quality::Bad(format!("non-finite value {v}"));
                self.value = None;
                true
            }
            (Quality::Good | Quality::Estimated(_), None) => {
                self.quality = Quality::Bad("missing value".into());
                true
            }
            _ => false,
        }
    }

    /// The value when it is usable.
    pub fn good_value(&self) -> Option<f64> {
        match self.quality {
            Quality::Bad(_) => None,
            _ => self.value,
        }
    }
}

/// Descriptive labels attached to every point a device produces.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tags {
    pub site: String,
    pub park: Option<String>,
    pub line: Option<String>,
    pub carrier: Option<crate::carrier::Carrier>,
    pub model: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quantity_round_trips_through_its_name() {
        for q in Quantity::ALL {
            assert_eq!(q.as_str().parse::<Quantity>().unwrap(), *q);
            assert!(!q.unit().is_empty());
        }
    }

    #[test]
    fn unknown_quantity_lists_the_vocabulary() {
        let err = "active_powr".parse::<Quantity>().unwrap_err().to_string();
        assert!(err.contains("active_powr"), "{err}");
        assert!(err.contains("active_power"), "{err}");
    }

    #[test]
    fn canonical_units_match_the_vocabulary() {
        assert_eq!(Quantity::ActivePower.unit(), "kW");
        assert_eq!(Quantity::EnergyImport.unit(), "kWh");
        assert_eq!(Quantity::ReactiveEnergyImport.unit(), "kvarh");
        assert_eq!(Quantity::GasVolume.unit(), "m3");
        assert_eq!(Quantity::SteamMass.unit(), "t");
        assert_eq!(Quantity::HeatEnergy.unit(), "GJ");
        assert!(Quantity::EnergyImport.is_cumulative());
        assert!(!Quantity::ActivePower.is_cumulative());
    }

    #[test]
    fn nan_and_infinity_become_bad_readings() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let r = Reading::new("m1", Quantity::ActivePower, v, 0);
            assert_eq!(r.value, None);
            assert_eq!(r.quality.as_str(), "bad");
            assert!(r.quality.reason().unwrap().contains("non-finite"));
        }
        let r = Reading::new("m1", Quantity::ActivePower, 1.5, 0);
        assert_eq!(r.good_value(), Some(1.5));
    }

    #[test]
    fn quality_codes_round_trip() {
        for q in [
            Quality::Good,
            Quality::Bad("x".into()),
            Quality::Estimated("gap".into()),
        ] {
            assert_eq!(
                Quality::from_code(q.code(), q.reason().map(String::from)),
                q
            );
        }
    }

    #[test]
    fn latest_values_keep_one_value_per_device_and_quantity() {
        let mut l = LatestValues::new();
        l.insert("m1", Quantity::ActivePower, 1, 10.0);
        l.insert("m1", Quantity::ActivePower, 2, 11.0);
        l.insert("m1", Quantity::Frequency, 2, 50.0);
        l.insert("m2", Quantity::ActivePower, 3, 20.0);
        assert_eq!(l.get("m1", Quantity::ActivePower), Some((2, 11.0)));
        assert_eq!(l.get("m2", Quantity::ActivePower), Some((3, 20.0)));
        assert_eq!(l.get("m2", Quantity::Frequency), None);
        assert_eq!(l.get("m3", Quantity::ActivePower), None);
        let mut all: Vec<_> = l.iter().collect();
        all.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        assert_eq!(
            all,
            [
                ("m1", Quantity::ActivePower, 2, 11.0),
                ("m1", Quantity::Frequency, 2, 50.0),
                ("m2", Quantity::ActivePower, 3, 20.0)
            ]
        );
    }

    #[test]
    fn device_ids_are_checked_once_and_work_as_str() {
        use std::collections::{BTreeMap, HashSet};
        for bad in ["", "m 1", "m1\\", "m/1", "\u{e9}", &"x".repeat(65)] {
            assert_eq!(DeviceId::new(bad), Err(InvalidId), "{bad:?}");
        }
        assert_eq!(InvalidId.to_string(), ID_RULE);
        let id = DeviceId::new("meter-1.a_B").unwrap();
        assert_eq!(id.to_string(), "meter-1.a_B");
        assert_eq!(id, "meter-1.a_B");
        assert_eq!(DeviceId::new("x".repeat(64)).unwrap().len(), 64);
        let set: HashSet<DeviceId> = [id.clone()].into();
        assert!(set.contains("meter-1.a_B"));
        let map: BTreeMap<DeviceId, u8> = [(id.clone(), 1)].into();
        assert_eq!(map.get("meter-1.a_B"), Some(&1));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"meter-1.a_B\"");
        assert_eq!(
            serde_json::from_str::<DeviceId>("\"meter-1.a_B\"").unwrap(),
            id
        );
        let e = serde_json::from_str::<DeviceId>("\"m 1\"").unwrap_err();
        assert!(e.to_string().starts_with(ID_RULE), "{e}");
    }
}
