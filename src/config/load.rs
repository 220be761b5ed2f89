//! Loading: TOML file, then `EGW__SECTION__KEY` environment overrides, then typed decoding
//! section by section (so one bad device does not hide the problems of the next), then the
//! semantic checks of [`super::validate`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Config, DeviceConfig};
use crate::settings::{parse_toml, toml_to_json, ConfigProblem};

/// Environment variables starting with this prefix override file keys: `EGW__SITE__ID=plant-7`
/// sets `site.id`, `EGW__OUTPUTS__INFLUXDB__LOCAL__TOKEN=…` sets `outputs.influxdb.local.token`.
/// Sections and keys are separated by a double underscore; names are lower-cased.
pub const ENV_PREFIX: &str = "EGW";

/// Loads, decodes and checks the file at `path` with environment overrides applied.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigProblem::new(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )]
    })?;
    let tree = parse_toml(&text)
        .map_err(|e| vec![ConfigProblem::new("", format!("{}: {e}", path.display()))])?;
    decode_with_env(tree, env_overrides())
}

/// Like [`load`], for a TOML document held in memory (the embedded demo config, tests).
/// Environment overrides are applied here too.
pub fn load_str(toml: &str) -> Result<Config, Vec<ConfigProblem>> {
    let tree = parse_toml(toml).map_err(|e| vec![ConfigProblem::new("", e)])?;
    decode_with_env(tree, env_overrides())
}

/// One `EGW__…` environment override: the key path (lower-cased) and the text as written.
#[derive(Debug, Clone)]
struct EnvOverride {
    path: Vec<String>,
    value: String,
}

fn env_overrides() -> Vec<EnvOverride> {
    let prefix = format!("{ENV_PREFIX}__");
    let mut out: Vec<EnvOverride> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&prefix)?;
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            (!path.iter().any(String::is_empty)).then_some(EnvOverride { path, value: v })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Applies the overrides and decodes. An override is a string first, so secrets, ids and
/// passwords stay exactly as written (`0012345` is not the number 12345); only where the
/// decoder then asks for another type (a number, a boolean) is the text read as a TOML value.
fn decode_with_env(tree: Value, overrides: Vec<EnvOverride>) -> Result<Config, Vec<ConfigProblem>> {
    if overrides.is_empty() {
        return decode(tree);
    }
    let mut as_string = tree.clone();
    for o in &overrides {
        set_path(&mut as_string, &o.path, Value::String(o.value.clone()));
    }
    let problems = match decode(as_string) {
        Ok(cfg) => return Ok(cfg),
        Err(p) => p,
    };
    let retyped: Vec<&EnvOverride> = overrides
        .iter()
        .filter(|o| {
            let dotted = o.path.join(".");
            problems.iter().any(|p| {
                p.path.eq_ignore_ascii_case(&dotted)
                    && p.message.starts_with("invalid type: string")
            })
        })
        .collect();
    if retyped.is_empty() {
        return Err(problems);
    }
    let mut tree = tree;
    for o in &overrides {
        let value = if retyped.iter().any(|r| r.path == o.path) {
            scalar_from_text(&o.value)
        } else {
            Value::String(o.value.clone())
        };
        set_path(&mut tree, &o.path, value);
    }
    decode(tree)
}

/// Reads an override's text as a TOML scalar or array (`8080`, `true`, `2.5`, `["a", "b"]`);
/// text that is none of these stays a string.
fn scalar_from_text(text: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .map(toml_to_json)
        .unwrap_or_else(|| Value::String(text.to_string()))
}

/// Sets `path` in the tree, creating tables on the way; a key matches an existing one whatever
/// its case (environment names are upper case, file keys usually lower).
fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        let Value::Object(map) = node else {
            return;
        };
        let k = existing_key(map, key);
        let child = map.entry(k).or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    if let Value::Object(map) = node {
        let k = existing_key(map, last);
        map.insert(k, value);
    }
}

fn existing_key(map: &Map<String, Value>, key: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

const SECTIONS: &[&str] = &[
    "site",
    "log",
    "storage",
    "pipeline",
    "modbus",
    "buses",
    "mqtt",
    "devices",
    "alerts",
    "notifiers",
    "outputs",
    "accounting",
    "http",
    "health",
];

/// Decodes the generic tree into [`Config`], collecting every type error and unknown key. When
/// parts fail to decode, the rest is still checked semantically so that one run reports as much
/// as it can; references to a device that exists but failed to decode are not reported again.
fn decode(tree: Value) -> Result<Config, Vec<ConfigProblem>> {
    let Value::Object(mut root) = tree else {
        return Err(vec![ConfigProblem::new("", "the file is not a TOML table")]);
    };
    let mut problems = Vec::new();
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            problems.push(ConfigProblem::new(
                key.clone(),
                format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
            ));
        }
    }

    let site = match root.remove("site") {
        Some(v) => typed(v, "site", &mut problems),
        None => {
            problems.push(ConfigProblem::new(
                "site",
                "missing section [site] (at least `id` is required)",
            ));
            None
        }
    };
    let site_ok = site.is_some();
    let mut undecoded_devices = HashSet::new();
    if let Some(Value::Array(items)) = root.get("devices") {
        let mut first_use: HashMap<&str, usize> = HashMap::new();
        for (i, v) in items.iter().enumerate() {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                undecoded_devices.insert(id.to_string());
                if let Some(first) = first_use.insert(id, i) {
                    problems.push(ConfigProblem::new(
                        format!("devices[{i}].id"),
                        format!("duplicate device id \"{id}\" (first used by devices[{first}])"),
                    ));
                }
            }
        }
    }
    let log = optional(&mut root, "log", &mut problems);
    let storage = optional(&mut root, "storage", &mut problems);
    let pipeline = optional(&mut root, "pipeline", &mut problems);
    let modbus: Option<super::ModbusGlobalConfig> = optional(&mut root, "modbus", &mut problems);
    let buses: Vec<super::BusConfig> = list(&mut root, "buses", &mut problems)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let mqtt: Option<super::MqttConfig> = match root.remove("mqtt") {
        None => None,
        Some(v) => typed(v, "mqtt", &mut problems),
    };
    let (device_index, mut devices): (Vec<usize>, Vec<DeviceConfig>) =
        list(&mut root, "devices", &mut problems)
            .into_iter()
            .unzip();
    let modbus = modbus.unwrap_or_default();
    match crate::acquisition::modbus::templates::load(modbus.templates_dir.as_deref()) {
        Ok(templates) => problems.extend(crate::acquisition::modbus::templates::resolve(
            &mut devices,
            &device_index,
            &templates,
        )),
        Err(errors) => problems.extend(
            errors
                .into_iter()
                .map(|e| ConfigProblem::new("modbus.templates_dir", e)),
        ),
    }
    let (alert_index, alerts) = list_of(&mut root, "alerts", &mut problems, alert_rule)
        .into_iter()
        .unzip();
    let notifiers = list(&mut root, "notifiers", &mut problems)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let outputs = optional(&mut root, "outputs", &mut problems);
    let accounting = optional(&mut root, "accounting", &mut problems);
    let http = optional(&mut root, "http", &mut problems);
    let health = optional(&mut root, "health", &mut problems);
    for d in &devices {
        undecoded_devices.remove(d.id.as_str());
    }

    let cfg = Config {
        site: site.unwrap_or_else(|| super::SiteConfig {
            id: "unknown".into(),
            name: None,
            park: None,
            timezone: "UTC".into(),
            main_meters: Vec::new(),
            language: super::Language::default(),
        }),
        log: log.unwrap_or_default(),
        storage: storage.unwrap_or_default(),
        pipeline: pipeline.unwrap_or_default(),
        modbus,
        buses,
        mqtt,
        devices,
        alerts,
        notifiers,
        outputs: outputs.unwrap_or_default(),
        accounting: accounting.unwrap_or_default(),
        http: http.unwrap_or_default(),
        health: health.unwrap_or_default(),
    };
    let origin = super::validate::Origin {
        devices: device_index,
        alerts: alert_index,
        undecoded_devices,
    };
    let semantic = super::validate::validate(&cfg, &origin);
    problems.extend(
        semantic
            .into_iter()
            .filter(|p| site_ok || !p.path.starts_with("site")),
    );
    if problems.is_empty() {
        Ok(cfg)
    } else {
        problems.sort_by_key(|p| path_order(&p.path));
        Err(problems)
    }
}

/// Sorts problems in the order sections appear in the documentation, then by element index.
fn path_order(path: &str) -> (usize, usize, String) {
    let section = path.split(['.', '[']).next().unwrap_or("");
    let rank = SECTIONS
        .iter()
        .position(|s| *s == section)
        .unwrap_or(SECTIONS.len());
    let index = path
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    (rank, index, path.to_string())
}

fn typed<T: DeserializeOwned>(
    v: Value,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let full = join_path(path, &e.path().to_string());
            problems.push(ConfigProblem::new(full, clean_serde_message(e.inner())));
            None
        }
    }
}

/// `path` followed by a key path inside it (`.`, or empty: `path` itself).
fn join_path(path: &str, inner: &str) -> String {
    if inner == "." || inner.is_empty() {
        path.to_string()
    } else if inner.starts_with('[') {
        format!("{path}{inner}")
    } else {
        format!("{path}.{inner}")
    }
}

/// One `[[alerts]]` table, decoded by the rule's kind (`alerting::config`).
fn alert_rule(
    v: Value,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<crate::alerting::AlertRule> {
    match crate::alerting::AlertRule::from_value(v) {
        Ok(r) => Some(r),
        Err(e) => {
            let full = join_path(path, &e.key);
            problems.push(ConfigProblem::new(full, clean_message(&e.message)));
            None
        }
    }
}

/// A section that may be absent (then its defaults apply).
fn optional<T: DeserializeOwned + Default>(
    root: &mut Map<String, Value>,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match root.remove(key) {
        None => Some(T::default()),
        Some(v) => typed(v, key, problems),
    }
}

/// An array of tables, decoded element by element so every bad element is reported. Returns
/// the elements that decoded, each with its index in the file.
fn list<T: DeserializeOwned>(
    root: &mut Map<String, Value>,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(usize, T)> {
    list_of(root, key, problems, typed)
}

/// [`list`] with the elements decoded by `decode`.
fn list_of<T>(
    root: &mut Map<String, Value>,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
    decode: impl Fn(Value, &str, &mut Vec<ConfigProblem>) -> Option<T>,
) -> Vec<(usize, T)> {
    match root.remove(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| decode(v, &format!("{key}[{i}]"), problems).map(|t| (i, t)))
            .collect(),
        Some(other) => {
            problems.push(ConfigProblem::new(
                key,
                format!(
                    "invalid type: {}, expected an array of tables ([[{key}]])",
                    super::duration::describe(&other)
                ),
            ));
            Vec::new()
        }
    }
}

/// serde's messages are good but talk about "field"; configuration users think in keys.
fn clean_serde_message(e: &serde_json::Error) -> String {
    clean_message(&e.to_string())
}

/// [`clean_serde_message`] of a message already in text.
fn clean_message(msg: &str) -> String {
    let msg = msg
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key");
    // serde_json appends " at line X column Y" which refers to the internal JSON, not the file.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    plain_types(&msg)
}

/// Rust type names in serde's messages, in the words of the configuration's readers.
const PLAIN_TYPES: &[(&str, &str)] = &[
    ("expected u8", "expected a whole number from 0 to 255"),
    ("expected u16", "expected a whole number from 0 to 65535"),
    (
        "expected u32",
        "expected a whole number from 0 to 4294967295",
    ),
    ("expected u64", "expected a whole number, 0 or more"),
    ("expected usize", "expected a whole number, 0 or more"),
    ("expected i32", "expected a whole number"),
    ("expected i64", "expected a whole number"),
    ("expected f32", "expected a number"),
    ("expected f64", "expected a number"),
    ("expected a boolean", "expected true or false"),
];

fn plain_types(msg: &str) -> String {
    for (rust, plain) in PLAIN_TYPES {
        if let Some(head) = msg.strip_suffix(rust) {
            // "invalid value: integer `300`, " → "300 is out of range: "
            if let Some(n) = head
                .strip_prefix("invalid value: integer `")
                .and_then(|r| r.strip_suffix("`, "))
            {
                return format!("{n} is out of range: {plain}");
            }
            return format!("{head}{plain}");
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[site]
id = "plant-1"

[[devices]]
id = "main"
[devices.modbus]
address = "127.0.0.1:5020"
[[devices.points]]
quantity = "active_power"
register = 0
"#;

    fn problems(toml: &str) -> Vec<String> {
        load_str(toml)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let cfg = load_str(MINIMAL).unwrap();
        assert_eq!(cfg.site.timezone, "Asia/Shanghai");
        let m = cfg.devices[0].modbus.as_ref().unwrap();
        assert_eq!(m.unit, 1);
        assert_eq!(m.interval, std::time::Duration::from_secs(1));
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let p = problems(&MINIMAL.replace("register = 0", "register = 0\nregistr = 3"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("devices[0].points[0]"), "{p:?}");
        assert!(p[0].contains("unknown key `registr`"), "{p:?}");
    }

    #[test]
    fn unknown_top_level_section() {
        let p = problems(&format!("{MINIMAL}\n[influx]\nurl = \"x\"\n"));
        assert!(
            p.iter().any(|m| m.starts_with("influx: unknown key")),
            "{p:?}"
        );
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let p = problems(&MINIMAL.replace("register = 0", "register = \"zero\""));
        assert!(p[0].starts_with("devices[0].points[0].register"), "{p:?}");
        assert!(p[0].contains("invalid type"), "{p:?}");
    }

    #[test]
    fn every_bad_device_is_reported() {
        let two_bad = format!(
            "{}\n[[devices]]\nid = \"b\"\nbogus = 1\n",
            MINIMAL.replace("unit", "x").replace(
                "address = \"127.0.0.1:5020\"",
                "address = \"127.0.0.1:5020\"\ninterval = 5"
            )
        );
        let p = problems(&two_bad);
        assert!(
            p.iter()
                .any(|m| m.starts_with("devices[0].modbus.interval")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("devices[1]") && m.contains("bogus")),
            "{p:?}"
        );
    }

    #[test]
    fn negative_duration_says_negative() {
        let p = problems(&MINIMAL.replace(
            "address = \"127.0.0.1:5020\"",
            "address = \"127.0.0.1:5020\"\ninterval = \"-1s\"",
        ));
        assert!(p[0].starts_with("devices[0].modbus.interval"), "{p:?}");
        assert!(p[0].contains("negative"), "{p:?}");
    }

    fn decode_env(toml: &str, env: &[(&str, &str)]) -> Result<Config, Vec<ConfigProblem>> {
        let overrides = env
            .iter()
            .map(|(k, v)| EnvOverride {
                path: k.split("__").map(str::to_ascii_lowercase).collect(),
                value: v.to_string(),
            })
            .collect();
        decode_with_env(parse_toml(toml).unwrap(), overrides)
    }

    #[test]
    fn env_override_keeps_strings_as_written() {
        let toml =
            format!("{MINIMAL}\n[outputs.influxdb.local]\nurl = \"http://127.0.0.1:8086\"\n");
        let cfg = decode_env(
            &toml,
            &[
                ("SITE__ID", "0012345"),
                ("OUTPUTS__INFLUXDB__LOCAL__TOKEN", "12345678901234567890123"),
                ("OUTPUTS__INFLUXDB__LOCAL__DATABASE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.site.id, "0012345");
        let o = &cfg.outputs.influxdb["local"];
        assert_eq!(o.database.as_deref(), Some("true"));
        match &o.token {
            Some(crate::config::Secret::Literal(s)) => assert_eq!(s, "12345678901234567890123"),
            other => panic!("token: {other:?}"),
        }
    }

    #[test]
    fn env_override_becomes_a_number_where_one_is_expected() {
        let cfg = decode_env(
            MINIMAL,
            &[("STORAGE__CACHE_MIB", "2"), ("HTTP__ENABLED", "false")],
        )
        .unwrap();
        assert_eq!(cfg.storage.cache_mib, 2);
        let p = decode_env(MINIMAL, &[("STORAGE__CACHE_MIB", "two")]).unwrap_err();
        assert!(p[0].to_string().starts_with("storage.cache_mib"), "{p:?}");
    }

    #[test]
    fn misspelt_env_override_is_an_unknown_key() {
        let p = decode_env(MINIMAL, &[("STORAGE__CACHE_MBI", "2")]).unwrap_err();
        assert!(
            p[0].to_string().contains("unknown key `cache_mbi`"),
            "{p:?}"
        );
    }

    #[test]
    fn toml_syntax_error_is_reported() {
        let p = problems("[site\nid = 1");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_lowercase().contains("toml") || p[0].contains("line"),
            "{p:?}"
        );
    }
}
