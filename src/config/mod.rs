//! Configuration: the typed model of the TOML file, how it is loaded (file + `EGW__` environment
//! overrides) and how it is checked.
//!
//! Every key is documented in `config/example.toml`. Loading never stops at the first problem:
//! [`load`] returns every problem it finds, each with the key path it concerns, so that
//! `energy-gateway check` can print them all at once.

mod load;
mod validate;
pub mod warnings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::acquisition::config::{
    BusConfig, BusTransport, DeviceConfig, JsonValueMapping, ModbusConfig, ModbusGlobalConfig,
    MqttConfig, MqttPublishConfig, MqttSubscription, Parity, PayloadFormat, PointConfig,
    RatioConfig, RegisterKind, TimestampField, TimestampFormat, ValueType, WordOrder,
    MQTT_MAX_PACKET,
};
pub use crate::acquisition::meter_bus::config::{LineProtocol, MeterBusDeviceConfig};
pub use crate::acquisition::opcua::config::{OpcUaConfig, OpcUaMode};
pub use crate::alerting::config::{
    AlertKind, AlertRule, Condition, NotifierConfig, NotifierKind, NotifyContext, Severity,
    SiteInfo,
};
pub use crate::health::HealthConfig;
pub use crate::lang::Language;
pub use crate::outputs::influxdb::config::{InfluxApi, InfluxConfig, Precision};
pub use crate::outputs::mqtt_readings::config::{MqttReadingsConfig, ReadingsFormat};
pub use crate::secret::Secret;
pub use crate::settings::{parse_toml, ConfigProblem, SiteConfig};
pub use crate::storage::config::{OutboxConfig, OutboxFullPolicy, StorageConfig, Synchronous};
pub use crate::telemetry::{LogConfig, LogFormat};
pub use crate::units::{byte_size, duration, opt_duration};
pub use load::{load, load_str, ENV_PREFIX};

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

impl Config {
    /// What the notifiers need: the site, the alert rules and the devices' display names.
    pub fn notify_context(&self) -> NotifyContext {
        NotifyContext {
            site: SiteInfo {
                id: self.site.id.clone(),
                name: self.site.name.clone(),
                park: self.site.park.clone(),
                timezone: self.site.timezone.clone(),
                language: self.site.language,
            },
            alerts: self.alerts.clone(),
            device_names: self
                .devices
                .iter()
                .filter_map(|d| Some((d.id.to_string(), d.name.clone()?)))
                .collect(),
        }
    }

    /// What the accounts are computed from: the site, the devices, `[accounting]` and
    /// `[storage]`.
    pub fn accounting_context(&self) -> crate::accounting::AccountingContext {
        crate::accounting::AccountingContext {
            site: self.site.clone(),
            devices: self.devices.clone(),
            accounting: self.accounting.clone(),
            storage: self.storage.clone(),
        }
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Path of the SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.storage.store_path()
    }
}
