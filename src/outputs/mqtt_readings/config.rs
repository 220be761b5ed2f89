//! `[outputs.mqtt_readings.NAME]`: a broker the readings are delivered to, and their format.
//! Composed into the configuration by `config`.

use serde::Deserialize;

use crate::acquisition::config::MqttConfig;

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
    /// The broker: the keys of `[mqtt]` (url, client_id, username, password, ca_file,
    /// client_cert_file, client_key_file, keep_alive, max_backoff); its `subscriptions` and
    /// `publish` are not used here. The client id defaults to
    /// `energy-gateway-<site>-readings-<name>`.
    pub broker: MqttConfig,
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
    /// The connection settings, with the default client id.
    pub fn connection(&self, site: &str, name: &str) -> MqttConfig {
        let mut c = self.broker.clone();
        c.client_id
            .get_or_insert_with(|| format!("energy-gateway-{site}-readings-{name}"));
        c
    }

    /// Problems of one destination, as (key below `outputs.mqtt_readings.NAME`, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match reqwest::Url::parse(&self.broker.url) {
            Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") => {}
            Ok(u) => out.push((
                "broker.url".into(),
                format!("scheme {} is not mqtt or mqtts", u.scheme()),
            )),
            Err(e) => out.push(("broker.url".into(), format!("not a URL: {e}"))),
        }
        if !self.broker.subscriptions.is_empty() {
            out.push((
                "broker.subscriptions".into(),
                "not used by a readings destination (subscriptions belong in [mqtt])".into(),
            ));
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
