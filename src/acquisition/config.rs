//! The settings of what is read: `[[devices]]` (with their Modbus connection, points and
//! ratios), `[modbus]`, `[[buses]]` and `[mqtt]`. Composed into the configuration by `config`,
//! which checks them and the references between them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::meter_bus::config::{LineProtocol, MeterBusDeviceConfig};
use super::opcua::config::OpcUaConfig;
use crate::carrier::Carrier;
use crate::readings::{valid_id, DeviceId, Quantity, ID_RULE};
use crate::secret::Secret;
use crate::units::{byte_size, duration, opt_duration};

/// The shortest poll interval `check` accepts: shorter would poll without pause.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What `check` says of a shorter interval.
pub fn min_interval_message() -> String {
    format!(
        "must be at least {} ms (a shorter interval would poll without pause)",
        MIN_POLL_INTERVAL.as_millis()
    )
}

/// `[[devices]]`: one meter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique id; tag `device` on every point.
    pub id: DeviceId,
    #[serde(default)]
    pub name: Option<String>,
    /// Energy carrier measured (tag `carrier`).
    #[serde(default)]
    pub carrier: Option<Carrier>,
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

impl BusConfig {
    /// What is wrong with the line on its own: (key, message). Duplicate ids are `config`'s.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut push = |k: String, msg: String| p.push((k, msg));
        let b = self;
        if !valid_id(&b.id) {
            push("id".into(), ID_RULE.into());
        }
        match b.transport {
            BusTransport::Rtu => {
                if b.port.as_deref().unwrap_or("").is_empty() {
                    push(
                        "port".into(),
                        "required for transport = \"rtu\" (e.g. \"/dev/ttyUSB0\")".into(),
                    );
                }
                if b.baud == 0 {
                    push("baud".into(), "must be greater than 0".into());
                }
                if !matches!(b.data_bits, 7 | 8) {
                    push("data_bits".into(), "must be 7 or 8".into());
                }
                if !matches!(b.stop_bits, 1 | 2) {
                    push("stop_bits".into(), "must be 1 or 2".into());
                }
            }
            BusTransport::RtuOverTcp => match &b.address {
                None => push(
                    "address".into(),
                    "required for transport = \"rtu_over_tcp\" (host:port)".into(),
                ),
                Some(a) => {
                    if let Err(e) = check_host_port(a) {
                        push("address".into(), e);
                    }
                }
            },
        }
        p
    }
}

impl ModbusConfig {
    /// What is wrong with a device's `[devices.modbus]` on its own, given the device's points:
    /// (key below the device, message). Whether its `bus` exists is `config`'s to check.
    pub fn check(&self, points: &[PointConfig]) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut push = |k: String, msg: String| p.push((k, msg));
        let m = self;
        match (&m.address, &m.bus) {
            (Some(_), Some(_)) => push(
                "modbus".into(),
                "give either `address` (Modbus TCP) or `bus` (a [[buses]] id), not both".into(),
            ),
            (None, None) => push(
                "modbus".into(),
                "missing `address` (Modbus TCP host:port) or `bus` (a [[buses]] id)".into(),
            ),
            (Some(a), None) => {
                if let Err(e) = check_host_port(a) {
                    push("modbus.address".into(), e);
                }
            }
            (None, Some(_)) => {}
        }
        if m.degraded_after == 0 {
            push("modbus.degraded_after".into(), "must be at least 1".into());
        }
        if m.interval < MIN_POLL_INTERVAL {
            push("modbus.interval".into(), min_interval_message());
        }
        if m.timeout.is_zero() {
            push("modbus.timeout".into(), "must be greater than 0".into());
        }
        if !(1..=125).contains(&m.max_registers()) {
            push(
                "modbus.max_registers_per_request".into(),
                format!(
                    "{} is out of range 1..=125 (Modbus allows at most 125 registers per read)",
                    m.max_registers()
                ),
            );
        }
        for (j, pt) in points.iter().enumerate() {
            if pt.value_type.registers() > m.max_registers() {
                push(
                    format!("points[{j}].type"),
                    "needs more registers than max_registers_per_request allows".into(),
                );
            }
        }
        p
    }
}

impl PointConfig {
    /// What is wrong with the point on its own, given its device's ratios: (key, message).
    pub fn check(&self, ratios: &[RatioConfig]) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let pt = self;
        if u32::from(pt.register) + u32::from(pt.value_type.registers()) > 65_536 {
            p.push(("register", "the value runs past register 65535".into()));
        }
        if !pt.scale.is_finite() || pt.scale == 0.0 {
            p.push(("scale", "must be a finite, non-zero number".into()));
        }
        if !pt.offset.is_finite() {
            p.push(("offset", "must be a finite number".into()));
        }
        if pt.interval.is_some_and(|i| i < MIN_POLL_INTERVAL) {
            p.push(("interval", min_interval_message()));
        }
        if let Some(b) = pt.bit {
            let width = u32::from(pt.value_type.registers()) * 16;
            if !pt.value_type.is_integer() {
                p.push(("bit", "bits can only be taken from integer types".into()));
            } else if u32::from(b) >= width {
                p.push(("bit", format!("bit {b} is outside a {width}-bit value")));
            }
        }
        for name in &pt.multiply_by {
            if !ratios.iter().any(|r| &r.name == name) {
                p.push((
                    "multiply_by",
                    format!("refers to unknown ratio \"{name}\" (define it in [[devices.ratios]])"),
                ));
            }
        }
        p
    }
}

/// Why `s` is not `host:port`.
pub fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("\"{s}\" is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("\"{s}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("\"{s}\": port must be 1-65535")),
        Ok(_) => Ok(()),
    }
}
impl MqttConfig {
    /// What is wrong with `[mqtt]` on its own: (key below `mqtt`, message). Whether a
    /// subscription's literal device exists is `config`'s to check.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut push = |k: String, msg: String| p.push((k, msg));
        let m = self;
        let tls = match reqwest::Url::parse(&m.url) {
            Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") && u.host_str().is_some() => {
                u.scheme() == "mqtts"
            }
            Ok(u) => {
                push(
                    "url".into(),
                    format!("\"{}\": use mqtt://host:port or mqtts://host:port", u),
                );
                false
            }
            Err(_) if !m.url.contains("://") => {
                push(
                    "url".into(),
                    format!(
                        "\"{}\" has no scheme: write mqtt://{0} (or mqtts://)",
                        m.url
                    ),
                );
                false
            }
            Err(e) => {
                push("url".into(), format!("not a URL: {e}"));
                false
            }
        };
        if let Some(p) = &m.password {
            if let Err(e) = p.resolve() {
                push("password".into(), e);
            }
            if m.username.is_none() {
                push("username".into(), "required when a password is set".into());
            }
        }
        if m.keep_alive < std::time::Duration::from_secs(5) {
            push("keep_alive".into(), "must be at least 5s".into());
        }
        if m.max_message_size == 0 || m.max_message_size > MQTT_MAX_PACKET {
            push(
                "max_message_size".into(),
                format!(
                    "must be between 1 B and {} B (the MQTT maximum)",
                    MQTT_MAX_PACKET
                ),
            );
        }
        let files = [
            ("ca_file", &m.ca_file),
            ("client_cert_file", &m.client_cert_file),
            ("client_key_file", &m.client_key_file),
        ];
        for (k, f) in files {
            if let Some(f) = f {
                if !tls {
                    push(k.to_string(), "only used with an mqtts:// url".into());
                } else if let Err(e) = std::fs::read(f) {
                    push(k.to_string(), format!("cannot read {}: {e}", f.display()));
                }
            }
        }
        if tls && m.ca_file.is_none() {
            push(
                "ca_file".into(),
                "required with mqtts:// (the CA that signed the broker's certificate)".into(),
            );
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            push(
                "client_key_file".into(),
                "client_cert_file and client_key_file go together".into(),
            );
        }
        for (i, s) in m.subscriptions.iter().enumerate() {
            let at = format!("subscriptions[{i}]");
            let segments: Vec<&str> = s.topic.split('/').collect();
            let bad_filter = s.topic.is_empty()
                || segments.iter().enumerate().any(|(j, seg)| {
                    (seg.contains('#') && (*seg != "#" || j + 1 != segments.len()))
                        || (seg.contains('+') && *seg != "+")
                });
            if bad_filter {
                push(
                    format!("{at}.topic"),
                    format!(
                    "\"{}\" is not a topic filter ('+' must fill a whole level, '#' must be last)",
                    s.topic
                ),
                );
            }
            let check_template = |key: &str, t: &str, push: &mut dyn FnMut(String, String)| {
                for n in placeholders(t) {
                    if n >= segments.len() || segments[n] == "#" {
                        push(
                            format!("{at}.{key}"),
                            format!(
                                "{{{n}}} names topic level {n}, which `{}` does not have",
                                s.topic
                            ),
                        );
                    }
                }
            };
            check_template("device", &s.device, &mut push);
            match s.format {
                PayloadFormat::Number => match &s.quantity {
                    None => push(
                        format!("{at}.quantity"),
                        "required for format = \"number\"".into(),
                    ),
                    Some(q) if q.contains('{') => check_template("quantity", q, &mut push),
                    Some(q) => {
                        if let Err(e) = q.parse::<crate::readings::Quantity>() {
                            push(format!("{at}.quantity"), e.to_string());
                        }
                    }
                },
                PayloadFormat::Json => {
                    if s.values.is_empty() {
                        push(
                            format!("{at}.values"),
                            "format = \"json\" needs at least one value".into(),
                        );
                    }
                    for (j, v) in s.values.iter().enumerate() {
                        if !v.pointer.is_empty() && !v.pointer.starts_with('/') {
                            push(
                                format!("{at}.values[{j}].pointer"),
                                format!(
                                    "\"{}\" is not a JSON pointer (it starts with '/')",
                                    v.pointer
                                ),
                            );
                        }
                        if !v.scale.is_finite() || v.scale == 0.0 {
                            push(
                                format!("{at}.values[{j}].scale"),
                                "must be a finite, non-zero number".into(),
                            );
                        }
                    }
                }
            }
            if !s.scale.is_finite() || s.scale == 0.0 {
                push(
                    format!("{at}.scale"),
                    "must be a finite, non-zero number".into(),
                );
            }
        }
        p
    }
}

/// The topic levels `{N}` placeholders refer to.
pub fn placeholders(t: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                if let Ok(n) = after[..j].parse() {
                    out.push(n);
                }
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
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
