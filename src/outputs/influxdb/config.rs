//! `[outputs.influxdb.NAME]`: one InfluxDB destination, and the checks it needs on its own.
//! Composed into the configuration by `config`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::readings::{valid_id, ID_RULE};
use crate::secret::Secret;
use crate::storage::config::MAX_BATCH;
use crate::units::duration;

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

fn default_true() -> bool {
    true
}

impl InfluxConfig {
    /// What is wrong with the destination named `name` on its own: (key below
    /// `outputs.influxdb.NAME`, empty for the table itself; message).
    pub fn check(&self, name: &str) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, m: String| p.push((k.to_string(), m));
        if !valid_id(name) {
            push("", format!("output name {ID_RULE}"));
        }
        if let Some(why) = super::super::http_url_problem(&self.url) {
            push("url", why);
        }
        match self.api {
            InfluxApi::V1 => {
                if self.database.as_deref().unwrap_or("").is_empty() {
                    push("database", "required for api = \"v1\"".into());
                }
            }
            InfluxApi::V2 => {
                for (k, v) in [("org", &self.org), ("bucket", &self.bucket)] {
                    if v.as_deref().unwrap_or("").is_empty() {
                        push(k, "required for api = \"v2\"".into());
                    }
                }
                if self.token.is_none() {
                    push("token", "required for api = \"v2\"".into());
                }
            }
        }
        if self.password.is_some() && self.username.is_none() {
            push("username", "required when a password is set".into());
        }
        // Secrets of a disabled output are not needed, so not required to be readable.
        for (k, s) in [("password", &self.password), ("token", &self.token)] {
            if let Some(s) = s.as_ref().filter(|_| self.enabled) {
                if let Err(e) = s.resolve() {
                    push(k, e);
                }
            }
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            push(
                "batch_size",
                format!("{} is out of range 1..={MAX_BATCH}", self.batch_size),
            );
        }
        if self.timeout.is_zero() {
            push("timeout", "must be greater than 0".into());
        }
        if self.measurement.is_empty() {
            push("measurement", "must not be empty".into());
        }
        p.extend(super::schema::check_output(self));
        p
    }
}
