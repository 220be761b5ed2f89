//! `[[alerts]]` and `[[notifiers]]`: the alert rules and the channels their transitions go to,
//! with the checks that need nothing but the rule itself. References to devices and notifiers are
//! checked by `config`, which sees every section.
//!
//! A rule is the keys every rule has ([`AlertRule`]) and the condition its `kind` selects
//! ([`Condition`]): one struct per kind, holding exactly the keys that kind reads, so a key the
//! kind needs is required and a key it does not use is refused when the file is decoded.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::lang::Language;
use crate::readings::{valid_id, Quantity, ID_RULE};
use crate::secret::Secret;
use crate::units::{duration, opt_duration};

/// `[[alerts]]`: one alert rule. `kind` selects what it watches; see config/example.toml.
#[derive(Debug, Clone)]
pub struct AlertRule {
    pub id: String,
    /// What the rule watches, with the settings of its kind.
    pub condition: Condition,
    /// The condition must hold this long before the alert fires.
    pub for_duration: Duration,
    /// The value must come back this far inside the threshold before the alert resolves.
    pub hysteresis: f64,
    pub severity: Severity,
    /// Extra labels carried in notifications (site, park and device are always there).
    pub labels: BTreeMap<String, String>,
    /// Notifier ids to send this rule's alerts to; empty: every notifier.
    pub notify: Vec<String>,
}

/// The keys of [`AlertRule`] every kind has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    id: String,
    #[serde(default, rename = "for", with = "duration")]
    for_duration: Duration,
    #[serde(default)]
    hysteresis: f64,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    notify: Vec<String>,
}

const COMMON_KEYS: &[&str] = &["id", "for", "hysteresis", "severity", "labels", "notify"];

/// What a rule watches: `kind` and the keys of that kind.
#[derive(Debug, Clone)]
pub enum Condition {
    Threshold(Threshold),
    RateOfChange(RateOfChange),
    Deadman(Deadman),
    Demand(Demand),
    PowerFactor(PowerFactor),
    Imbalance(Imbalance),
    Counter(Counter),
    Outbox(Outbox),
    Intensity(Intensity),
}

/// `threshold` (the default kind): a quantity above / below / outside a band, optionally its
/// mean over `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub device: String,
    pub quantity: Quantity,
    /// Fires when the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Fires when the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Judge the mean over this trailing window.
    #[serde(default, with = "opt_duration")]
    pub window: Option<Duration>,
}

/// `rate_of_change`: a quantity changing faster than `max_rate_per_min`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOfChange {
    pub device: String,
    pub quantity: Quantity,
    /// Largest plausible change per minute.
    pub max_rate_per_min: f64,
}

/// `deadman`: no good reading from the device (of `quantity`, when given) for `timeout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadman {
    pub device: String,
    #[serde(default)]
    pub quantity: Option<Quantity>,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

/// `demand`: the 15-minute demand of the current window, projected to its end, above
/// `contracted_kw`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    pub device: String,
    /// The contracted (declared) maximum demand, kW.
    pub contracted_kw: f64,
}

/// `power_factor`: the mean |power factor| over `window` below `below`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFactor {
    pub device: String,
    #[serde(default = "default_pf_below")]
    pub below: f64,
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

/// `imbalance`: the parent meter (`device`) and the sum of its `children` differ by more than
/// `tolerance_pct` percent of the parent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imbalance {
    pub device: String,
    /// The sub-meters whose sum should match the parent.
    #[serde(default)]
    pub children: Vec<String>,
    #[serde(default = "default_active_power")]
    pub quantity: Quantity,
    #[serde(default = "default_imbalance_tolerance")]
    pub tolerance_pct: f64,
    /// A child's value older than this (before the parent's reading) is not used.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

/// `counter`: a cumulative counter going backwards (reset, replacement) or rising faster than
/// `max_rate_per_min`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    pub device: String,
    pub quantity: Quantity,
    #[serde(default)]
    pub max_rate_per_min: Option<f64>,
}

/// `outbox`: the store's outbox fuller than `fill_pct` of its bound (destinations not
/// confirming). Watches the site, not a device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbox {
    #[serde(default = "default_fill_pct")]
    pub fill_pct: f64,
}

/// `intensity`: the year-to-date energy intensity (tce per 10⁴ CNY of value added, from the
/// accounts, on the baseline's basis) above the target path for the year by more than
/// `tolerance_pct`; checked whenever the accounting service updates the month. Watches the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intensity {
    #[serde(default)]
    pub tolerance_pct: f64,
}

fn default_pf_below() -> f64 {
    0.90
}
fn default_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_active_power() -> Quantity {
    Quantity::ActivePower
}
fn default_imbalance_tolerance() -> f64 {
    10.0
}
fn default_fill_pct() -> f64 {
    80.0
}

/// The name of a rule's kind (config `kind`, the `kind` of notifications).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    #[default]
    Threshold,
    RateOfChange,
    Deadman,
    Demand,
    PowerFactor,
    Imbalance,
    Counter,
    Outbox,
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

/// Why one `[[alerts]]` table did not decode: the key inside the table (empty: the table as a
/// whole) and serde's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub key: String,
    pub message: String,
}

impl DecodeError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Decodes `v` as `T`, the error naming the key it concerns.
fn decode<T: DeserializeOwned>(v: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        DecodeError::new(key, e.inner().to_string())
    })
}

impl AlertRule {
    /// Decodes one `[[alerts]]` table: the keys every rule has, then the condition of its `kind`
    /// (default `threshold`). serde's internally tagged enums (`#[serde(tag = "kind")]`) buffer
    /// the table and so lose the key of an error; the kind is therefore read first and its own
    /// struct decoded, which names the key.
    pub fn from_value(v: Value) -> Result<AlertRule, DecodeError> {
        let table: Map<String, Value> = decode(v)?;
        let (common, mut rest): (Map<String, Value>, Map<String, Value>) = table
            .into_iter()
            .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
        let kind: AlertKind = match rest.remove("kind") {
            None => AlertKind::Threshold,
            Some(k) => decode(k).map_err(|e| DecodeError::new("kind", e.message))?,
        };
        let common: Common = decode(Value::Object(common))?;
        let condition = Condition::decode(kind, Value::Object(rest))?;
        Ok(AlertRule {
            id: common.id,
            condition,
            for_duration: common.for_duration,
            hysteresis: common.hysteresis,
            severity: common.severity,
            labels: common.labels,
            notify: common.notify,
        })
    }

    pub fn kind(&self) -> AlertKind {
        self.condition.kind()
    }

    /// The device watched (for `imbalance`: the parent meter); `None` for the site-wide kinds
    /// (outbox, intensity).
    pub fn device(&self) -> Option<&str> {
        match &self.condition {
            Condition::Threshold(c) => Some(&c.device),
            Condition::RateOfChange(c) => Some(&c.device),
            Condition::Deadman(c) => Some(&c.device),
            Condition::Demand(c) => Some(&c.device),
            Condition::PowerFactor(c) => Some(&c.device),
            Condition::Imbalance(c) => Some(&c.device),
            Condition::Counter(c) => Some(&c.device),
            Condition::Outbox(_) | Condition::Intensity(_) => None,
        }
    }

    /// The quantity the rule watches: its own, or the one its kind implies.
    pub fn quantity(&self) -> Option<Quantity> {
        match &self.condition {
            Condition::Threshold(c) => Some(c.quantity),
            Condition::RateOfChange(c) => Some(c.quantity),
            Condition::Deadman(c) => c.quantity,
            Condition::Demand(_) => Some(Quantity::ActivePower),
            Condition::PowerFactor(_) => Some(Quantity::PowerFactor),
            Condition::Imbalance(c) => Some(c.quantity),
            Condition::Counter(c) => Some(c.quantity),
            Condition::Outbox(_) | Condition::Intensity(_) => None,
        }
    }

    /// What is wrong with the rule on its own: (key inside the table, empty for the table;
    /// message). Limits that cannot work are refused here; references are `config`'s.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = Vec::new();
        if !valid_id(&self.id) {
            p.push(("id", ID_RULE.into()));
        }
        if !self.hysteresis.is_finite() || self.hysteresis < 0.0 {
            p.push(("hysteresis", "must be zero or a positive number".into()));
        }
        let numbers = match &self.condition {
            Condition::Threshold(c) => vec![("above", c.above), ("below", c.below)],
            Condition::RateOfChange(c) => vec![("max_rate_per_min", Some(c.max_rate_per_min))],
            Condition::Demand(c) => vec![("contracted_kw", Some(c.contracted_kw))],
            Condition::PowerFactor(c) => vec![("below", Some(c.below))],
            Condition::Imbalance(c) => vec![("tolerance_pct", Some(c.tolerance_pct))],
            Condition::Counter(c) => vec![("max_rate_per_min", c.max_rate_per_min)],
            Condition::Outbox(c) => vec![("fill_pct", Some(c.fill_pct))],
            Condition::Intensity(c) => vec![("tolerance_pct", Some(c.tolerance_pct))],
            Condition::Deadman(_) => vec![],
        };
        for (k, v) in numbers {
            if v.is_some_and(|v| !v.is_finite()) {
                p.push((k, "must be a finite number".into()));
            }
        }
        let finite = |v: f64| v.is_finite();
        match &self.condition {
            Condition::Threshold(t) => {
                let ok = t.above.is_none_or(finite) && t.below.is_none_or(finite);
                match (t.above, t.below) {
                    (None, None) => p.push(("", "needs `above`, `below` or both".into())),
                    (Some(hi), Some(lo)) if ok && lo >= hi => p.push((
                        "below",
                        format!(
                            "below ({lo}) must be less than above ({hi}) for an outside-band rule"
                        ),
                    )),
                    (Some(hi), Some(lo)) if ok && self.hysteresis >= (hi - lo) / 2.0 => p.push((
                        "hysteresis",
                        format!(
                            "{} is at least half the band {lo}..{hi}: the alert could never resolve",
                            self.hysteresis
                        ),
                    )),
                    _ => {}
                }
                if t.quantity == Quantity::PowerFactor {
                    for (k, v) in [("above", t.above), ("below", t.below)] {
                        if v.is_some_and(|v| v.abs() > 1.0) {
                            p.push((
                                k,
                                "a power factor is never beyond ±1: the rule could never fire"
                                    .into(),
                            ));
                        }
                    }
                }
            }
            Condition::RateOfChange(c) => {
                if finite(c.max_rate_per_min) && c.max_rate_per_min <= 0.0 {
                    p.push(("max_rate_per_min", "must be greater than 0".into()));
                }
            }
            Condition::Deadman(c) => {
                if c.timeout.is_zero() {
                    p.push(("timeout", "must be greater than 0".into()));
                }
            }
            Condition::Demand(c) => {
                if finite(c.contracted_kw) && c.contracted_kw <= 0.0 {
                    p.push(("contracted_kw", "must be greater than 0".into()));
                }
            }
            Condition::PowerFactor(c) => {
                if finite(c.below) && !(0.0..=1.0).contains(&c.below) {
                    p.push((
                        "below",
                        format!("a power factor limit of {} is impossible (0 to 1)", c.below),
                    ));
                }
            }
            Condition::Imbalance(c) => {
                if c.children.is_empty() {
                    p.push((
                        "children",
                        "required for kind = \"imbalance\" (the sub-meters)".into(),
                    ));
                }
                if finite(c.tolerance_pct) && c.tolerance_pct <= 0.0 {
                    p.push(("tolerance_pct", "must be greater than 0".into()));
                }
            }
            Condition::Counter(c) => {
                if !c.quantity.is_cumulative() {
                    p.push((
                        "quantity",
                        format!("{} is not a cumulative counter", c.quantity),
                    ));
                }
            }
            Condition::Outbox(c) => {
                if finite(c.fill_pct) && !(0.0..=100.0).contains(&c.fill_pct) {
                    p.push(("fill_pct", "must be between 0 and 100".into()));
                }
            }
            Condition::Intensity(c) => {
                if finite(c.tolerance_pct) && c.tolerance_pct < 0.0 {
                    p.push(("tolerance_pct", "must be zero or more".into()));
                }
            }
        }
        p
    }
}

impl Condition {
    /// Decodes the keys of a rule that are not common to all kinds as the struct of `kind`.
    fn decode(kind: AlertKind, v: Value) -> Result<Condition, DecodeError> {
        let c = match kind {
            AlertKind::Threshold => decode(v).map(Condition::Threshold),
            AlertKind::RateOfChange => decode(v).map(Condition::RateOfChange),
            AlertKind::Deadman => decode(v).map(Condition::Deadman),
            AlertKind::Demand => decode(v).map(Condition::Demand),
            AlertKind::PowerFactor => decode(v).map(Condition::PowerFactor),
            AlertKind::Imbalance => decode(v).map(Condition::Imbalance),
            AlertKind::Counter => decode(v).map(Condition::Counter),
            AlertKind::Outbox => decode(v).map(Condition::Outbox),
            AlertKind::Intensity => decode(v).map(Condition::Intensity),
        };
        c.map_err(|e| in_words(kind, e))
    }

    pub fn kind(&self) -> AlertKind {
        match self {
            Condition::Threshold(_) => AlertKind::Threshold,
            Condition::RateOfChange(_) => AlertKind::RateOfChange,
            Condition::Deadman(_) => AlertKind::Deadman,
            Condition::Demand(_) => AlertKind::Demand,
            Condition::PowerFactor(_) => AlertKind::PowerFactor,
            Condition::Imbalance(_) => AlertKind::Imbalance,
            Condition::Counter(_) => AlertKind::Counter,
            Condition::Outbox(_) => AlertKind::Outbox,
            Condition::Intensity(_) => AlertKind::Intensity,
        }
    }
}

/// serde's "missing field" and "unknown field" of a kind's struct, said for the rule: which key
/// the kind needs, or that it does not use a key (and which keys it does).
fn in_words(kind: AlertKind, e: DecodeError) -> DecodeError {
    let k = kind.as_str();
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
    if let Some(key) = e.message.strip_prefix("missing field ").and_then(quoted) {
        let hint = if key == "timeout" {
            " (e.g. \"60s\")"
        } else {
            ""
        };
        return DecodeError::new(key, format!("required for kind = \"{k}\"{hint}"));
    }
    if let Some(rest) = e.message.strip_prefix("unknown field ") {
        let Some(key) = quoted(rest) else {
            return e;
        };
        if key == "device" {
            return DecodeError::new(
                key,
                format!("kind = \"{k}\" watches the site, not a device"),
            );
        }
        let own: Vec<&str> = rest
            .split_once("expected ")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let keys: Vec<&str> = own.iter().chain(COMMON_KEYS).copied().collect();
        return DecodeError::new(
            key,
            format!("not a key of kind = \"{k}\"; its keys: {}", keys.join(", ")),
        );
    }
    e
}

impl<'de> Deserialize<'de> for AlertRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        AlertRule::from_value(Value::deserialize(d)?).map_err(|e| {
            D::Error::custom(if e.key.is_empty() {
                e.message
            } else {
                format!("{}: {}", e.key, e.message)
            })
        })
    }
}

/// What notifications need from the rest of the configuration: who the site is, the rules and
/// the devices' display names. Built by `config`.
#[derive(Debug, Clone, Default)]
pub struct NotifyContext {
    pub site: SiteInfo,
    pub alerts: Vec<AlertRule>,
    /// Display name by device id, for the devices that have one.
    pub device_names: HashMap<String, String>,
}

/// The site as notifications name it (`[site]`).
#[derive(Debug, Clone, Default)]
pub struct SiteInfo {
    pub id: String,
    pub name: Option<String>,
    pub park: Option<String>,
    /// IANA zone of the local times in messages.
    pub timezone: String,
    pub language: Language,
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
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Longest wait between retries while the receiver is down.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl NotifierConfig {
    /// What is wrong with the notifier on its own: (key, message). The URL is checked by
    /// `config` with the other URLs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if !valid_id(&self.id) {
            p.push(("id", ID_RULE.into()));
        }
        if self.kind != NotifierKind::Log && self.url.is_none() {
            p.push(("url", "required for this kind".into()));
        }
        if let Some(s) = self.secret.as_ref().filter(|_| self.enabled) {
            if let Err(e) = s.resolve() {
                p.push(("secret", e));
            }
        }
        if self.rate_max == 0 {
            p.push(("rate_max", "must be at least 1".into()));
        }
        if self.rate_period.is_zero() {
            p.push(("rate_period", "must be greater than 0".into()));
        }
        if self.timeout.is_zero() {
            p.push(("timeout", "must be greater than 0".into()));
        }
        p
    }
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
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> Result<AlertRule, DecodeError> {
        let t: toml::Table = toml::from_str(toml).unwrap();
        AlertRule::from_value(serde_json::to_value(t).unwrap())
    }

    #[test]
    fn kind_defaults_to_threshold_and_common_keys_decode() {
        let r = rule(
            "id = \"a\"\ndevice = \"m\"\nquantity = \"active_power\"\nabove = 1.0\nfor = \"5s\"\nseverity = \"critical\"\n",
        )
        .unwrap();
        assert_eq!(r.kind(), AlertKind::Threshold);
        assert_eq!(r.device(), Some("m"));
        assert_eq!(r.for_duration, Duration::from_secs(5));
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.check().is_empty());
    }

    #[test]
    fn a_key_the_kind_needs_is_required_by_name() {
        let e = rule("id = \"a\"\nkind = \"demand\"\ndevice = \"m\"\n").unwrap_err();
        assert_eq!(
            e,
            DecodeError::new("contracted_kw", "required for kind = \"demand\"")
        );
    }

    #[test]
    fn a_key_the_kind_does_not_use_is_refused_by_name() {
        let e =
            rule("id = \"a\"\nkind = \"deadman\"\ndevice = \"m\"\ntimeout = \"5s\"\nabove = 1.0\n")
                .unwrap_err();
        assert_eq!(e.key, "above");
        assert!(
            e.message.starts_with(
                "not a key of kind = \"deadman\"; its keys: device, quantity, timeout, id"
            ),
            "{e:?}"
        );
        let e = rule("id = \"a\"\nkind = \"outbox\"\ndevice = \"m\"\n").unwrap_err();
        assert_eq!(
            e,
            DecodeError::new("device", "kind = \"outbox\" watches the site, not a device")
        );
    }

    #[test]
    fn a_wrong_type_inside_a_kind_names_its_key() {
        let e = rule("id = \"a\"\nkind = \"demand\"\ndevice = \"m\"\ncontracted_kw = \"lots\"\n")
            .unwrap_err();
        assert_eq!(e.key, "contracted_kw");
        assert!(e.message.starts_with("invalid type: string"), "{e:?}");
        let e = rule("id = \"a\"\nkind = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.key, "kind");
        assert!(e.message.contains("unknown variant `sometimes`"), "{e:?}");
    }
}
