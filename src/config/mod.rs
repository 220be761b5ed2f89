//! Configuration: the typed model of the TOML file, how it is loaded (file + `EGW__` environment
//! overrides) and how it is checked.
//!
//! Every key is documented in `config/example.toml`. Loading never stops at the first problem:
//! [`load`] returns every problem it finds, each with the key path it concerns, so that
//! `energy-gateway check` can print them all at once.

mod load;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::readings::Quantity;

pub use load::{load, load_str, ConfigProblem, ENV_PREFIX};
pub use secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub site: SiteConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    #[serde(default)]
    pub alerts: Vec<AlertRule>,
    #[serde(default)]
    pub outputs: OutputsConfig,
}

/// `[site]`: who this gateway measures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Stable site id, written as tag `site` on every point.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Industrial park the site belongs to (tag `park`).
    #[serde(default)]
    pub park: Option<String>,
    /// IANA time zone for calendar buckets ("energy today").
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Devices whose power and energy make up the site totals.
    #[serde(default)]
    pub main_meters: Vec<String>,
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, or `info,energy_gateway::acquisition=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// Human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `[storage]`: the embedded SQLite store (reading history and outbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding `store.sqlite` and its WAL.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SQLite `synchronous` level: `normal` survives a process crash; `full` also survives power loss
    /// at the cost of one fsync per commit.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Readings older than this are deleted once every output has delivered them.
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// The most readings committed in one transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            synchronous: Synchronous::default(),
            retention: default_retention(),
            max_batch: default_max_batch(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/energy-gateway")
}
fn default_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}
fn default_max_batch() -> usize {
    10_000
}

/// SQLite durability level for commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Capacity, in batches, of each bounded channel between stages. A full channel makes the
    /// sources wait (back-pressure) instead of growing memory.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: default_channel_capacity(),
        }
    }
}

fn default_channel_capacity() -> usize {
    1024
}

/// `[[devices]]`: one meter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique id; tag `device` on every point.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Energy carrier measured (tag `carrier`).
    #[serde(default)]
    pub carrier: Option<String>,
    /// Production line or workshop (tag `line`).
    #[serde(default)]
    pub line: Option<String>,
    /// Meter model (tag `model`).
    #[serde(default)]
    pub model: Option<String>,
    /// A disabled device is kept in the file but not polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Modbus TCP connection.
    #[serde(default)]
    pub modbus: Option<ModbusConfig>,
    /// What to read.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

fn default_true() -> bool {
    true
}

/// `[devices.modbus]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// `host:port` of the meter or serial device server.
    pub address: String,
    /// Modbus unit (slave) id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Poll interval.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Time allowed for connecting and for each request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Largest number of registers in one request (the protocol allows 125).
    #[serde(default = "default_max_registers")]
    pub max_registers_per_request: u16,
    /// Largest run of unconfigured registers a request may read across to save a request.
    /// Keep 0 for meters that answer exception 2 on undefined registers.
    #[serde(default)]
    pub max_gap: u16,
}

fn default_unit() -> u8 {
    1
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_max_registers() -> u16 {
    125
}

/// `[[devices.points]]`: one quantity read from registers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    pub quantity: Quantity,
    /// 0-based wire (PDU) address of the first register.
    pub register: u16,
    #[serde(default)]
    pub kind: RegisterKind,
    #[serde(default, rename = "type")]
    pub value_type: ValueType,
    #[serde(default)]
    pub order: WordOrder,
    /// canonical value = raw × scale + offset
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn default_scale() -> f64 {
    1.0
}

/// Which register table a point lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterKind {
    /// Function code 03.
    #[default]
    Holding,
    /// Function code 04.
    Input,
}

/// The binary type of a register value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    #[default]
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl ValueType {
    /// Number of 16-bit registers the value occupies.
    pub fn registers(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 4,
        }
    }
}

/// Byte order of a multi-register value, named by where bytes A (most significant) to D land.
/// `ABCD`: big-endian, high word first. `CDAB`: low word first. `BADC`: bytes swapped in each word.
/// `DCBA`: little-endian. For 64-bit values the same pattern extends over four words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum WordOrder {
    #[default]
    ABCD,
    CDAB,
    BADC,
    DCBA,
}

/// `[[alerts]]`: a threshold rule on one quantity of one device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub id: String,
    pub device: String,
    pub quantity: Quantity,
    /// Fires when the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Fires when the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// The condition must hold this long before the alert fires.
    #[serde(default, rename = "for", with = "duration")]
    pub for_duration: Duration,
    /// The value must come back this far inside the threshold before the alert resolves.
    #[serde(default)]
    pub hysteresis: f64,
    #[serde(default)]
    pub severity: Severity,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// `[outputs]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// `[outputs.influxdb.NAME]`: one table per InfluxDB destination.
    #[serde(default)]
    pub influxdb: BTreeMap<String, InfluxConfig>,
}

/// `[outputs.influxdb.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    #[serde(default)]
    pub api: InfluxApi,
    /// v1: database name.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: retention policy (optional).
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: user name for basic auth.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password for basic auth.
    #[serde(default)]
    pub password: Option<Secret>,
    /// v2: organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2 (or v1 with token auth): API token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Measurement name for readings.
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// The most points per write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long to wait for more points before sending a partial batch.
    #[serde(default = "default_flush_interval", with = "duration")]
    pub flush_interval: Duration,
    /// HTTP request timeout.
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_measurement() -> String {
    "reading".into()
}
fn default_batch_size() -> usize {
    5000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// `POST /write?db=` (InfluxDB 1.x, and 2.x/3.x through their compatibility API).
    #[default]
    V1,
    /// `POST /api/v2/write?org=&bucket=` (InfluxDB 1.8+, 2.x, 3.x).
    V2,
}

impl Config {
    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Path of the SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.storage.data_dir.join("store.sqlite")
    }
}

/// Durations written as strings such as `"1s"`, `"250ms"`, `"15m"`, `"400d"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_value(&v).map_err(serde::de::Error::custom)
    }

    /// Parses a duration from a configuration value.
    pub fn parse_value(v: &serde_json::Value) -> Result<Duration, String> {
        match v {
            serde_json::Value::String(s) => parse(s),
            other => Err(format!(
                "invalid type: {}, expected a duration string such as \"1s\", \"250ms\" or \"15m\"",
                describe(other)
            )),
        }
    }

    /// Parses `"1s"`-style durations; negative values get a message of their own.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(format!(
                "duration \"{s}\" is negative; it must be zero or more"
            ));
        }
        humantime::parse_duration(t).map_err(|e| {
            format!("\"{s}\" is not a duration ({e}); write it like \"1s\", \"250ms\" or \"15m\"")
        })
    }

    pub(crate) fn describe(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Null => "null".into(),
            serde_json::Value::Bool(b) => format!("boolean `{b}`"),
            serde_json::Value::Number(n) => format!("number `{n}`"),
            serde_json::Value::String(s) => format!("string \"{s}\""),
            serde_json::Value::Array(_) => "array".into(),
            serde_json::Value::Object(_) => "table".into(),
        }
    }
}
