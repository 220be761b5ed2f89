//! `[outputs.mqtt_readings.NAME]`: a broker the readings are delivered to, and their format.
//! Composed into the configuration by `config`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{MqttConfig, MqttPublishConfig, Secret};
use crate::units::duration;

/// How readings are put on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingsFormat {
    /// One JSON message per device poll on `topic`.
    #[default]
    Json,
    /// Sparkplug B (Eclipse Sparkplug 3.0): NBIRTH/DBIRTH/DDATA/NDEATH, protobuf.
    SparkplugB,
}

/// `[outputs.mqtt_readings.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttReadingsConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Default `energy-gateway-<site>-readings-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub format: ReadingsFormat,
    /// json: topic of each message; `{site}` and `{device}` are replaced.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// sparkplug_b: the Sparkplug group id.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// sparkplug_b: the edge node id (`{site}` is replaced).
    #[serde(default = "default_edge_node")]
    pub edge_node: String,
    /// Most messages waiting for their PUBACK at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_topic() -> String {
    "factory/{site}/{device}".into()
}
fn default_group_id() -> String {
    "energy".into()
}
fn default_edge_node() -> String {
    "{site}".into()
}
fn default_max_in_flight() -> usize {
    64
}
fn default_true() -> bool {
    true
}

impl MqttReadingsConfig {
    /// The connection settings in the form the MQTT connection code takes.
    pub fn connection(&self, site: &str, name: &str) -> MqttConfig {
        MqttConfig {
            url: self.url.clone(),
            client_id: Some(
                self.client_id
                    .clone()
                    .unwrap_or_else(|| format!("energy-gateway-{site}-readings-{name}")),
            ),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
            client_cert_file: self.client_cert_file.clone(),
            client_key_file: self.client_key_file.clone(),
            keep_alive: self.keep_alive,
            max_backoff: self.max_backoff,
            max_message_size: 256 * 1024,
            subscriptions: Vec::new(),
            publish: MqttPublishConfig::default(),
        }
    }

    /// Problems of one destination, as (key below `outputs.mqtt_readings.NAME`, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") => {}
            Ok(u) => out.push((
                "url".into(),
                format!("scheme {} is not mqtt or mqtts", u.scheme()),
            )),
            Err(e) => out.push(("url".into(), format!("not a URL: {e}"))),
        }
        if self.format == ReadingsFormat::Json && !self.topic.contains("{device}") {
            out.push((
                "topic".into(),
                "must contain {device} (one message per device poll)".into(),
            ));
        }
        for (key, v) in [("group_id", &self.group_id), ("edge_node", &self.edge_node)] {
            if self.format == ReadingsFormat::SparkplugB
                && (v.is_empty() || v.contains(['/', '+', '#']))
            {
                out.push((
                    key.into(),
                    "must be non-empty without / + # (a Sparkplug topic level)".into(),
                ));
            }
        }
        if self.max_in_flight == 0 {
            out.push(("max_in_flight".into(), "must be at least 1".into()));
        }
        out
    }
}
