//! What the settings of every component share, depending on nothing else of ours: the problem
//! with a key path ([`ConfigProblem`]) that `check` prints, the TOML reader ([`parse_toml`]) of
//! the configuration file and of the meter templates, and `[site]` ([`SiteConfig`]), whose id,
//! park and time zone the sources, outputs and accounts use. `config` composes them with the
//! components' own settings into the whole file.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::lang::Language;

/// One thing wrong with a configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path such as `devices[2].modbus.interval`; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parses a TOML document into the generic tree the typed decoders read. Keys keep their case;
/// TOML date-times become their RFC 3339 text.
pub fn parse_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

/// A TOML value as the generic tree ([`parse_toml`]).
pub fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            // NaN and infinities have no JSON number; keep the text so decoding names the key.
            .unwrap_or_else(|| Value::String(f.to_string())),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
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

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}
