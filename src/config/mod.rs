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

pub use crate::acquisition::meter_bus::config::{LineProtocol, MeterBusDeviceConfig};
pub use crate::acquisition::opcua::config::{OpcUaConfig, OpcUaMode};
pub use crate::health::HealthConfig;
pub use crate::outputs::mqtt_readings::config::{MqttReadingsConfig, ReadingsFormat};
pub use crate::storage::config::{OutboxConfig, OutboxFullPolicy, Synchronous};
pub use crate::telemetry::{LogConfig, LogFormat};
pub use crate::units::{byte_size, duration, opt_duration};
pub use load::{load, load_str, parse_toml, ConfigProblem, ENV_PREFIX};
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
    /// `[modbus]`: settings shared by all Modbus devices.
    #[serde(default)]
    pub modbus: ModbusGlobalConfig,
    /// `[[buses]]`: serial lines and RTU-over-TCP links shared by several devices.
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    /// `[mqtt]`: broker connection, subscriptions (readings in) and publications (status,
    /// alerts, indicators out).
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    #[serde(default)]
    pub alerts: Vec<AlertRule>,
    /// `[[notifiers]]`: alert channels.
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// `[accounting]`: energy and carbon accounts (see `crate::accounting`).
    #[serde(default)]
    pub accounting: crate::accounting::AccountingConfig,
    /// `[http]`: live page, JSON API, Prometheus metrics and health checks (see `crate::http`).
    #[serde(default)]
    pub http: HttpConfig,
    /// `[health]`: how long a source or a sink may be down before `/readyz` says 503.
    #[serde(default)]
    pub health: HealthConfig,
}

/// `[http]`: the HTTP server of `run` (the live page, `/api/v1/`, `/metrics`, `/healthz`,
/// `/readyz`). `demo --http ADDR` serves the same without this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve HTTP at all.
    #[serde(default)]
    pub enabled: bool,
    /// `IP:port` to listen on. Anything but a loopback address needs `token`.
    #[serde(default = "default_http_bind")]
    pub bind: String,
    /// Bearer token required on every endpoint except `/healthz` and the page's static files.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A client must send a request's headers within this; it is also how long an idle
    /// keep-alive connection stays open. Slow or silent clients cannot hold connections.
    #[serde(default = "default_http_header_timeout", with = "duration")]
    pub header_timeout: Duration,
    /// Most open connections; further clients wait in the listen queue until one closes.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            bind: default_http_bind(),
            token: None,
            header_timeout: default_http_header_timeout(),
            max_connections: default_http_max_connections(),
        }
    }
}

fn default_http_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_http_max_connections() -> usize {
    256
}

impl HttpConfig {
    /// The listen address, when `bind` is a valid `IP:port`.
    pub fn bind_addr(&self) -> Option<std::net::SocketAddr> {
        self.bind.trim().parse().ok()
    }
}

fn default_http_bind() -> String {
    "127.0.0.1:8080".into()
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
    /// Language of the live page and of notifications: `zh` (default) or `en`.
    #[serde(default)]
    pub language: Language,
}

/// The language people read at this site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Zh,
    En,
}

impl Language {
    /// `zh` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

/// `[storage]`: the embedded SQLite store (reading history and outbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding `store.sqlite` and its WAL.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SQLite `synchronous` level: `full` (default) also survives power loss at the cost of one
    /// fsync per group commit; `normal` survives a process crash only.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Raw readings older than this are deleted once every output has delivered them (their
    /// minute aggregates stay, see `minute_retention`).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Minute aggregates older than this are deleted, except the interval boundaries of
    /// counters (`storage::tiers`).
    #[serde(default = "default_minute_retention", with = "duration")]
    pub minute_retention: Duration,
    /// The most readings committed in one transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// SQLite page cache of the store writer, MiB. Larger keeps more index pages in memory and
    /// sustains higher ingest rates; smaller keeps the resident memory down on small boxes.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
    /// Longest time the store writer gathers readings before committing them (0 = commit
    /// whatever is queued at once). Readings a source waits on are committed at once.
    #[serde(default = "default_commit_delay", with = "duration")]
    pub commit_delay: Duration,
    /// Most bytes the store may use (`max_disk`); 0 = derived at the first start (half of the
    /// free space of its filesystem then). Past it the oldest delivered readings are dropped.
    #[serde(default, with = "byte_size")]
    pub max_disk: u64,
    /// `[storage.outbox]`: bounds of the undelivered part of the store.
    #[serde(default)]
    pub outbox: OutboxConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            synchronous: Synchronous::default(),
            retention: default_retention(),
            minute_retention: default_minute_retention(),
            max_batch: default_max_batch(),
            cache_mib: default_cache_mib(),
            max_disk: 0,
            commit_delay: default_commit_delay(),
            outbox: OutboxConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/energy-gateway")
}
fn default_commit_delay() -> Duration {
    Duration::from_millis(500)
}

fn default_retention() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn default_minute_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}
fn default_cache_mib() -> u32 {
    8
}
fn default_max_batch() -> usize {
    10_000
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
    /// Parent meter in the metering hierarchy (site → workshop → line): this device's
    /// consumption is part of the parent's. Used by the accounts (products, sub-meter balance).
    #[serde(default)]
    pub parent: Option<String>,
    /// Meter model (tag `model`).
    #[serde(default)]
    pub model: Option<String>,
    /// A disabled device is kept in the file but not polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Modbus TCP connection.
    #[serde(default)]
    pub modbus: Option<ModbusConfig>,
    /// A DL/T 645 meter on a `[[buses]]` line with `protocol = "dlt645-2007"` or `"dlt645-1997"`.
    #[serde(default)]
    pub dlt645: Option<MeterBusDeviceConfig>,
    /// A CJ/T 188 water, heat or gas meter on a line with `protocol = "cjt188"`.
    #[serde(default)]
    pub cjt188: Option<MeterBusDeviceConfig>,
    /// OPC UA server and the nodes read from it (`[devices.opcua]`).
    #[serde(default)]
    pub opcua: Option<OpcUaConfig>,
    /// What to read. With a `model` that names a meter template, the template's points are used
    /// and points given here replace the template's point of the same quantity or add to them.
    #[serde(default)]
    pub points: Vec<PointConfig>,
    /// Ratios (CT, PT) read from the meter and multiplied into points that name them.
    #[serde(default)]
    pub ratios: Vec<RatioConfig>,
}

fn default_true() -> bool {
    true
}

impl DeviceConfig {
    /// Whether the device yields readings of `q` from its configuration (Modbus points or OPC UA
    /// nodes; an MQTT-fed device may send anything and is not counted here).
    pub fn measures(&self, q: Quantity) -> bool {
        self.points.iter().any(|p| p.quantity == q)
            || self
                .opcua
                .as_ref()
                .is_some_and(|o| o.quantities().any(|x| x == q))
    }
}

/// `[devices.modbus]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// `host:port` of a Modbus TCP meter (or of a serial device server in Modbus TCP mode).
    #[serde(default)]
    pub address: Option<String>,
    /// Id of a `[[buses]]` entry (RTU serial line or RTU-over-TCP link) the device hangs on.
    #[serde(default)]
    pub bus: Option<String>,
    /// Modbus unit (slave) id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Poll interval of points without an interval of their own.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Time allowed for connecting and for each request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Largest number of registers in one request (default: the template's, else 125).
    #[serde(default)]
    pub max_registers_per_request: Option<u16>,
    /// Largest run of unconfigured registers a request may read across to save a request
    /// (default: the template's, else 0).
    #[serde(default)]
    pub max_gap: Option<u16>,
    /// Round every request up to an even number of registers (default: the template's, else false).
    #[serde(default)]
    pub even_reads: Option<bool>,
    /// After this many failed polls in a row the device is degraded: retried with exponential
    /// backoff instead of every interval, so it costs the bus nothing meanwhile.
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// Longest wait between retries of a degraded device.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

impl ModbusConfig {
    pub fn max_registers(&self) -> u16 {
        self.max_registers_per_request.unwrap_or(125)
    }
    pub fn gap(&self) -> u16 {
        self.max_gap.unwrap_or(0)
    }
    pub fn even(&self) -> bool {
        self.even_reads.unwrap_or(false)
    }
}

fn default_degraded_after() -> u32 {
    3
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Stable client id (the broker keeps the session under it). Default `energy-gateway-<site>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// mqtts: PEM file of the CA that signed the broker's certificate (default: none, which
    /// means the connection cannot be verified and is refused).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// mqtts: PEM client certificate and key, for brokers that require client authentication.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    /// Longest wait between reconnect attempts (exponential backoff with jitter from 1 s).
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    /// Largest message payload taken as readings. A larger one is counted as bad, logged and
    /// acknowledged (so the broker does not deliver it again and again); the connection reads
    /// packets up to the MQTT maximum so that one large message never breaks the session.
    #[serde(default = "default_max_message_size", with = "byte_size")]
    pub max_message_size: u64,
    #[serde(default)]
    pub subscriptions: Vec<MqttSubscription>,
    #[serde(default)]
    pub publish: MqttPublishConfig,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_max_message_size() -> u64 {
    256 * 1024
}

/// The largest packet MQTT can carry (3.1.1 §2.2.3: remaining length up to 268 435 455 bytes).
pub const MQTT_MAX_PACKET: u64 = 268_435_455;

/// `[[mqtt.subscriptions]]`: a topic filter and how its messages become readings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscription {
    /// Topic filter; `+` and `#` wildcards allowed.
    pub topic: String,
    /// `number` (the payload is one number) or `json` (values picked by JSON pointer).
    #[serde(default)]
    pub format: PayloadFormat,
    /// Device id, literal or from topic segments: `"{1}"` is the second segment (0-based).
    pub device: String,
    /// number format: the quantity, literal or from a topic segment (`"{3}"`).
    #[serde(default)]
    pub quantity: Option<String>,
    /// number format: canonical value = payload × scale + offset.
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// json format: the values to take from each message.
    #[serde(default)]
    pub values: Vec<JsonValueMapping>,
    /// json format: where the acquisition time is; without it, the receive time is used.
    #[serde(default)]
    pub timestamp: Option<TimestampField>,
    /// Readings for device ids that are not in `[[devices]]`: rejected and counted (default),
    /// or accepted with only the site's tags.
    #[serde(default)]
    pub accept_unknown_devices: bool,
}

/// How an MQTT payload is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    #[default]
    Number,
    Json,
}

/// `[[mqtt.subscriptions.values]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonValueMapping {
    /// RFC 6901 JSON pointer, e.g. `/ENERGY/Power`.
    pub pointer: String,
    pub quantity: Quantity,
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

/// Where a JSON message carries its acquisition time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampField {
    pub pointer: String,
    /// `auto` (numbers: epoch seconds or milliseconds by size; strings: RFC 3339, or local
    /// time in the site's zone when the string has no offset, as Tasmota sends), `epoch_s`,
    /// `epoch_ms`, `rfc3339`, `local`.
    #[serde(default)]
    pub format: TimestampFormat,
}

/// Timestamp encodings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    #[default]
    Auto,
    EpochS,
    EpochMs,
    Rfc3339,
    Local,
}

/// `[mqtt.publish]`: what the gateway publishes. `{site}` in a topic is the site id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttPublishConfig {
    /// Retained `online`/`offline` status; the broker publishes `offline` (the last will) when
    /// the gateway disappears.
    #[serde(default = "default_status_topic")]
    pub status_topic: String,
    /// Alert transitions as JSON (QoS 1, from the durable alert history).
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Site indicators as JSON (QoS 1, through the durable outbox), every `indicators_every`.
    #[serde(default = "default_indicators_topic")]
    pub indicators_topic: String,
    #[serde(default = "default_indicators_every", with = "duration")]
    pub indicators_every: Duration,
    /// false: subscribe only, publish nothing (not even the status).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for MqttPublishConfig {
    fn default() -> Self {
        MqttPublishConfig {
            status_topic: default_status_topic(),
            alerts_topic: default_alerts_topic(),
            indicators_topic: default_indicators_topic(),
            indicators_every: default_indicators_every(),
            enabled: true,
        }
    }
}

fn default_status_topic() -> String {
    "energy-gateway/{site}/status".into()
}
fn default_alerts_topic() -> String {
    "energy-gateway/{site}/alerts".into()
}
fn default_indicators_topic() -> String {
    "energy-gateway/{site}/indicators".into()
}
fn default_indicators_every() -> Duration {
    Duration::from_secs(60)
}

/// `[modbus]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusGlobalConfig {
    /// Directory of user meter templates (`*.toml`, one per model). A user template replaces the
    /// built-in template of the same model.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
}

/// `[[buses]]`: a line several devices share; one task owns it and polls its devices in turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub id: String,
    pub transport: BusTransport,
    /// What the line speaks: `modbus` (default), `dlt645-2007`, `dlt645-1997` or `cjt188`.
    #[serde(default)]
    pub protocol: LineProtocol,
    /// rtu: serial device, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub port: Option<String>,
    /// rtu: baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// rtu: `none`, `even` or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// rtu: 7 or 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// rtu: 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// rtu_over_tcp: `host:port` of the serial device server / DTU.
    #[serde(default)]
    pub address: Option<String>,
    /// Extra silence between two requests on the line, on top of the RTU inter-frame gap.
    #[serde(default, with = "duration")]
    pub pause: Duration,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

/// How a bus is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusTransport {
    /// Modbus RTU on a local serial port.
    Rtu,
    /// Modbus RTU frames through a TCP connection (serial device server, 4G DTU).
    RtuOverTcp,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
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
    /// Poll interval of this point (default: the device's).
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
    /// Take only this bit (0 = least significant) of an integer value: the reading is 0 or 1.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Raw register contents (as one unsigned number, e.g. 0xFFFFFFFF) the meter uses for
    /// "not available": such a value becomes a bad reading. Values past TOML's integer range are
    /// written as strings ("0xFFFFFFFFFFFFFFFF").
    #[serde(default, deserialize_with = "sentinels")]
    pub not_available: Vec<u64>,
    /// Names of ratios (see `[[devices.ratios]]`) to multiply the value by, e.g. `["pt", "ct"]`.
    #[serde(default)]
    pub multiply_by: Vec<String>,
}

/// `[[devices.ratios]]`: a CT or PT ratio read from the meter itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioConfig {
    /// Name points refer to in `multiply_by`.
    pub name: String,
    pub register: u16,
    #[serde(default)]
    pub kind: RegisterKind,
    #[serde(default, rename = "type")]
    pub value_type: ValueType,
    #[serde(default)]
    pub order: WordOrder,
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// How often to read the ratio again (it is also read before the first poll).
    #[serde(default = "default_ratio_interval", with = "duration")]
    pub interval: Duration,
}

fn default_ratio_interval() -> Duration {
    Duration::from_secs(3600)
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
    /// A signed 32-bit integer part followed by a float32 fraction (TUF-2000 totalisers):
    /// value = integer + fraction. Both halves use the point's word order.
    #[serde(rename = "i32_f32")]
    I32F32,
}

impl ValueType {
    /// Number of 16-bit registers the value occupies.
    pub fn registers(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::I32F32 => 4,
        }
    }

    /// True for integer types (the only ones a `bit` can be taken from).
    pub fn is_integer(self) -> bool {
        !matches!(self, ValueType::F32 | ValueType::F64 | ValueType::I32F32)
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

/// `[[alerts]]`: one alert rule. `kind` selects what it watches; see config/example.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub id: String,
    #[serde(default)]
    pub kind: AlertKind,
    /// The device watched (for `imbalance`: the parent meter). Not used by `outbox`.
    #[serde(default)]
    pub device: Option<String>,
    /// The quantity watched (threshold, rate_of_change, counter; optional for deadman).
    #[serde(default)]
    pub quantity: Option<Quantity>,
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
    /// threshold / power_factor / imbalance: judge the mean over this trailing window.
    #[serde(default, with = "opt_duration")]
    pub window: Option<Duration>,
    /// deadman: no good reading for this long means the meter is offline.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// rate_of_change: largest plausible change per minute; counter: largest increase per minute.
    #[serde(default)]
    pub max_rate_per_min: Option<f64>,
    /// demand: the contracted (declared) maximum demand, kW.
    #[serde(default)]
    pub contracted_kw: Option<f64>,
    /// imbalance: the sub-meters whose sum should match the parent (`device`).
    #[serde(default)]
    pub children: Vec<String>,
    /// imbalance: largest tolerated difference, percent of the parent. Default 10.
    #[serde(default)]
    pub tolerance_pct: Option<f64>,
    /// outbox: fires when the outbox is fuller than this percentage of its bound. Default 80.
    #[serde(default)]
    pub fill_pct: Option<f64>,
    #[serde(default)]
    pub severity: Severity,
    /// Extra labels carried in notifications (site, park and device are always there).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Notifier ids to send this rule's alerts to; empty: every notifier.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A quantity above / below / outside a band (optionally its mean over `window`).
    #[default]
    Threshold,
    /// A quantity changing faster than `max_rate_per_min`.
    RateOfChange,
    /// No good reading from the device for `timeout`: meter offline.
    Deadman,
    /// The 15-minute demand of the current window, projected to its end, above `contracted_kw`.
    Demand,
    /// Power factor (absolute) below `below` (default 0.90) over `window` (default 15 min).
    PowerFactor,
    /// Parent meter and the sum of its `children` differ by more than `tolerance_pct`.
    Imbalance,
    /// A cumulative counter going backwards (reset, replacement) or jumping faster than
    /// `max_rate_per_min`.
    Counter,
    /// The store's outbox fuller than `fill_pct` of its bound (destinations not confirming).
    Outbox,
    /// The year-to-date energy intensity (tce per 10⁴ CNY of value added, from the accounts, on
    /// the baseline's basis) above the target path for the year by more than `tolerance_pct`
    /// (default 0); checked whenever the accounting service updates the month.
    Intensity,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Threshold => "threshold",
            AlertKind::RateOfChange => "rate_of_change",
            AlertKind::Deadman => "deadman",
            AlertKind::Demand => "demand",
            AlertKind::PowerFactor => "power_factor",
            AlertKind::Imbalance => "imbalance",
            AlertKind::Counter => "counter",
            AlertKind::Outbox => "outbox",
            AlertKind::Intensity => "intensity",
        }
    }
}

/// `[[notifiers]]`: where alert transitions (firing, resolved) are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub id: String,
    pub kind: NotifierKind,
    /// webhook / wecom / dingtalk / feishu: the URL to POST to.
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: HMAC-SHA256 key (signature in `X-Energy-Gateway-Signature: sha256=<hex>`);
    /// dingtalk / feishu: the robot's signing secret.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Only alerts at least this severe. Default info (all).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// At most this many notifications per rule within `rate_period`; the rest are counted and
    /// recorded as suppressed, so a flapping signal cannot flood the channel. Default 10.
    #[serde(default = "default_rate_max")]
    pub rate_max: u32,
    #[serde(default = "default_rate_period", with = "duration")]
    pub rate_period: Duration,
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    /// Longest wait between retries while the receiver is down.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_min_severity() -> Severity {
    Severity::Info
}
fn default_rate_max() -> u32 {
    10
}
fn default_rate_period() -> Duration {
    Duration::from_secs(3600)
}

/// Notification channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// JSON POST of the alert, optionally HMAC-signed.
    Webhook,
    /// WeCom (企业微信) group robot text message.
    Wecom,
    /// DingTalk (钉钉) group robot text message, optionally signed.
    Dingtalk,
    /// Feishu (飞书) group robot text message, optionally signed.
    Feishu,
    /// A log line per alert.
    Log,
}

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
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
    /// `[outputs.mqtt_readings.NAME]`: one table per broker the readings are delivered to.
    #[serde(default)]
    pub mqtt_readings: BTreeMap<String, MqttReadingsConfig>,
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
    /// Timestamp precision of the written points.
    #[serde(default)]
    pub precision: Precision,
    /// Compress request bodies with gzip.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Static tags added to every point of this destination.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Standard tags written under another name (`{ device = "meter" }`).
    #[serde(default)]
    pub rename_tags: BTreeMap<String, String>,
    /// Standard tags left out.
    #[serde(default)]
    pub drop_tags: Vec<String>,
    /// First retry delay after a failed write; doubles up to `backoff_max` (with jitter).
    #[serde(default = "default_backoff_initial", with = "duration")]
    pub backoff_initial: Duration,
    /// Longest retry delay after failed writes.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Retry delay while the destination refuses the gateway (401/403/404).
    #[serde(default = "default_setup_retry_interval", with = "duration")]
    pub setup_retry_interval: Duration,
}

fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_setup_retry_interval() -> Duration {
    Duration::from_secs(30)
}

/// Timestamp precision of written points (readings carry milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    S,
    #[default]
    Ms,
    Us,
    Ns,
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

fn sentinels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    use serde::de::Error;
    let v = Vec::<serde_json::Value>::deserialize(d)?;
    v.iter()
        .map(|x| match x {
            serde_json::Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| D::Error::custom(format!("{n} is not an unsigned register value"))),
            serde_json::Value::String(s) => {
                let t = s.trim();
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse(),
                };
                parsed.map_err(|_| {
                    D::Error::custom(format!(
                        "\"{s}\" is not a register value such as \"0xFFFFFFFF\""
                    ))
                })
            }
            other => Err(D::Error::custom(format!(
                "invalid type: {}, expected a register value",
                duration::describe(other)
            ))),
        })
        .collect()
}
