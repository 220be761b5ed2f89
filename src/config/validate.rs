//! Semantic checks run after the file decoded: ranges, references between sections, secrets.

use std::collections::HashSet;

use super::{Config, ConfigProblem};
use crate::outputs::http_url_problem;
use crate::readings::{valid_id, ID_RULE};
use crate::storage::config::MAX_BATCH;

/// Most batches waiting between two stages (tokio's channels refuse absurd capacities by
/// panicking; `check` refuses them first).
const MAX_CHANNEL_CAPACITY: usize = 1_000_000;

/// Where the decoded elements came from in the file, when some failed to decode.
#[derive(Debug, Default)]
pub struct Origin {
    /// File index of each decoded device (empty: the same as its position).
    pub devices: Vec<usize>,
    /// File index of each decoded alert rule.
    pub alerts: Vec<usize>,
    /// Ids of devices that are in the file but failed to decode (already reported); references
    /// to them are not reported as unknown.
    pub undecoded_devices: HashSet<String>,
}

/// Why the store could not live in `dir` (an absolute path): it, or the nearest existing
/// directory it would be created in, is not a directory this user may write to. `check` runs
/// as whoever calls it: the service's own user is what counts in production.
fn data_dir_problem(dir: &std::path::Path) -> Option<String> {
    if !dir.is_absolute() {
        return None;
    }
    let mut at = dir;
    while !at.exists() {
        at = at.parent()?;
    }
    if !at.is_dir() {
        return Some(format!(
            "{} is not a directory, so {} cannot be created",
            at.display(),
            dir.display()
        ));
    }
    if rustix::fs::access(at, rustix::fs::Access::WRITE_OK).is_err() {
        return Some(if at == dir {
            format!("{} is not writable by this user", dir.display())
        } else {
            format!(
                "{} cannot be created: {} is not writable by this user",
                dir.display(),
                at.display()
            )
        });
    }
    None
}

/// Every problem found, in file order.
pub fn validate(cfg: &Config, origin: &Origin) -> Vec<ConfigProblem> {
    let undecoded_devices = &origin.undecoded_devices;
    let exists = |id: &str| cfg.device(id).is_some() || undecoded_devices.contains(id);
    let mut p = Vec::new();
    let mut push = |path: String, msg: String| p.push(ConfigProblem::new(path, msg));

    // [site]
    if !valid_id(&cfg.site.id) {
        push("site.id".into(), ID_RULE.into());
    }
    if cfg.site.timezone.parse::<chrono_tz::Tz>().is_err() {
        push(
            "site.timezone".into(),
            format!(
                "unknown time zone \"{}\"; use an IANA name such as \"Asia/Shanghai\"",
                cfg.site.timezone
            ),
        );
    }

    // [log]
    if tracing_subscriber::EnvFilter::try_new(&cfg.log.level).is_err() {
        push(
            "log.level".into(),
            format!(
                "\"{}\" is not a log filter; use e.g. \"info\" or \"info,energy_gateway=debug\"",
                cfg.log.level
            ),
        );
    }

    // [http]
    if cfg.http.header_timeout < std::time::Duration::from_millis(100) {
        push(
            "http.header_timeout".into(),
            "must be at least \"100ms\"".into(),
        );
    }
    if !(1..=65_536).contains(&cfg.http.max_connections) {
        push(
            "http.max_connections".into(),
            format!("{} is out of range 1..=65536", cfg.http.max_connections),
        );
    }

    // [health]
    for (k, msg) in cfg.health.problems() {
        push(format!("health.{k}"), msg);
    }

    // [storage], [pipeline]
    if let Some(why) = data_dir_problem(&cfg.storage.data_dir) {
        push("storage.data_dir".into(), why);
    }
    if !(1..=1024).contains(&cfg.storage.cache_mib) {
        push(
            "storage.cache_mib".into(),
            format!("{} is out of range 1..=1024", cfg.storage.cache_mib),
        );
    }
    if !(1..=MAX_BATCH).contains(&cfg.storage.max_batch) {
        push(
            "storage.max_batch".into(),
            format!("{} is out of range 1..={MAX_BATCH}", cfg.storage.max_batch),
        );
    }
    if cfg.storage.retention.is_zero() {
        push("storage.retention".into(), "must be greater than 0".into());
    }
    if cfg.storage.minute_retention < cfg.storage.retention {
        push(
            "storage.minute_retention".into(),
            "must be at least storage.retention (minutes outlive the raw readings)".into(),
        );
    }
    if cfg.storage.max_disk != 0 && cfg.storage.max_disk < 16 << 20 {
        push(
            "storage.max_disk".into(),
            format!(
                "{} bytes is too small; use 0 (derived from the free disk space) or at least \"16MiB\"",
                cfg.storage.max_disk
            ),
        );
    }
    let outbox = &cfg.storage.outbox;
    if outbox.max_bytes != 0 && outbox.max_bytes < 1 << 20 {
        push(
            "storage.outbox.max_bytes".into(),
            format!(
                "{} bytes is too small; use 0 (no limit) or at least \"1MiB\"",
                outbox.max_bytes
            ),
        );
    }
    if outbox.max_rows != 0 && outbox.max_rows < cfg.storage.max_batch as u64 {
        push(
            "storage.outbox.max_rows".into(),
            format!(
                "{} is smaller than storage.max_batch ({}); use 0 (no limit) or at least max_batch",
                outbox.max_rows, cfg.storage.max_batch
            ),
        );
    }
    if !outbox.max_age.is_zero() && outbox.max_age < std::time::Duration::from_secs(60) {
        push(
            "storage.outbox.max_age".into(),
            "must be \"0s\" (no limit) or at least \"1m\"".into(),
        );
    }
    if !(1..=MAX_CHANNEL_CAPACITY).contains(&cfg.pipeline.channel_capacity) {
        push(
            "pipeline.channel_capacity".into(),
            format!(
                "{} is out of range 1..={MAX_CHANNEL_CAPACITY}",
                cfg.pipeline.channel_capacity
            ),
        );
    }

    // [[devices]]
    for (i, d) in cfg.devices.iter().enumerate() {
        let at = format!("devices[{}]", origin.devices.get(i).copied().unwrap_or(i));
        // A bad id is refused while decoding (`DeviceId`), and so are duplicates, where every
        // element's id is still known.
        let fed_by_mqtt = cfg.mqtt.as_ref().is_some_and(|m| {
            m.subscriptions
                .iter()
                .any(|s| s.device == d.id || s.device.contains('{'))
        });
        for (k, msg) in crate::acquisition::meter_bus::check_device(
            &cfg.buses,
            cfg.modbus.templates_dir.as_deref(),
            d,
        ) {
            push(format!("{at}.{k}"), msg);
        }
        let on_meter_bus = d.dlt645.is_some() || d.cjt188.is_some();
        if let Some(o) = &d.opcua {
            if d.modbus.is_some() || on_meter_bus {
                push(
                    format!("{at}.opcua"),
                    "give one source: [devices.modbus], [devices.dlt645], [devices.cjt188] or [devices.opcua], not several".into(),
                );
            }
            for (k, m) in o.check(d.enabled) {
                push(format!("{at}.opcua.{k}"), m);
            }
        }
        match &d.modbus {
            None if fed_by_mqtt || on_meter_bus || d.opcua.is_some() => {}
            None => push(
                format!("{at}.modbus"),
                "missing: a device needs a source ([devices.modbus], [devices.opcua] or an [[mqtt.subscriptions]] entry naming it)".into(),
            ),
            Some(m) => {
                if let (None, Some(b)) = (&m.address, &m.bus) {
                    match cfg.buses.iter().find(|x| &x.id == b) {
                        None => push(
                            format!("{at}.modbus.bus"),
                            format!("refers to unknown bus \"{b}\""),
                        ),
                        Some(x) if x.protocol != super::LineProtocol::Modbus => push(
                            format!("{at}.modbus.bus"),
                            format!(
                                "bus \"{b}\" speaks {}, not Modbus",
                                x.protocol.as_str()
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                for (k, e) in m.check(&d.points) {
                    push(format!("{at}.{k}"), e);
                }
            }
        }
        if d.points.is_empty() && d.modbus.is_some() {
            push(
                format!("{at}.points"),
                "a device needs at least one point".into(),
            );
        }
        let mut quantities = HashSet::new();
        for (j, pt) in d.points.iter().enumerate() {
            let pat = format!("{at}.points[{j}]");
            if !quantities.insert(pt.quantity) {
                push(
                    format!("{pat}.quantity"),
                    format!("quantity {} is read twice on this device", pt.quantity),
                );
            }
            for (k, e) in pt.check(&d.ratios) {
                push(format!("{pat}.{k}"), e);
            }
        }
    }

    // [mqtt]
    if let Some(m) = &cfg.mqtt {
        check_mqtt(cfg, m, &mut push);
    }

    // [[buses]]
    let mut bus_ids = HashSet::new();
    for (i, b) in cfg.buses.iter().enumerate() {
        let at = format!("buses[{i}]");
        if valid_id(&b.id) && !bus_ids.insert(b.id.as_str()) {
            push(format!("{at}.id"), format!("duplicate bus id \"{}\"", b.id));
        }
        for (k, e) in b.check() {
            push(format!("{at}.{k}"), e);
        }
    }

    for (i, m) in cfg.site.main_meters.iter().enumerate() {
        if !exists(m) {
            push(
                format!("site.main_meters[{i}]"),
                format!("refers to unknown device \"{m}\""),
            );
        }
    }

    // [[alerts]]
    let mut alert_ids = HashSet::new();
    for (i, a) in cfg.alerts.iter().enumerate() {
        let at = format!("alerts[{}]", origin.alerts.get(i).copied().unwrap_or(i));
        if valid_id(&a.id) && !alert_ids.insert(a.id.as_str()) {
            push(
                format!("{at}.id"),
                format!("duplicate alert id \"{}\"", a.id),
            );
        }
        check_alert(cfg, a, &at, undecoded_devices, &mut push);
    }
    let notifier_ids: HashSet<&str> = cfg.notifiers.iter().map(|n| n.id.as_str()).collect();
    for (i, a) in cfg.alerts.iter().enumerate() {
        let at = format!("alerts[{}]", origin.alerts.get(i).copied().unwrap_or(i));
        for n in &a.notify {
            if !notifier_ids.contains(n.as_str()) {
                push(
                    format!("{at}.notify"),
                    format!("refers to unknown notifier \"{n}\""),
                );
            }
        }
    }

    // [[notifiers]]
    let mut seen_notifiers = HashSet::new();
    for (i, n) in cfg.notifiers.iter().enumerate() {
        let at = format!("notifiers[{i}]");
        if valid_id(&n.id) && !seen_notifiers.insert(n.id.as_str()) {
            push(
                format!("{at}.id"),
                format!("duplicate notifier id \"{}\"", n.id),
            );
        }
        for (k, e) in n.check() {
            push(format!("{at}.{k}"), e);
        }
        let url = n
            .url
            .as_deref()
            .filter(|_| n.kind != super::NotifierKind::Log);
        if let Some(why) = url.and_then(http_url_problem) {
            push(format!("{at}.url"), why);
        }
    }

    // [outputs.influxdb.NAME]
    for (name, o) in &cfg.outputs.influxdb {
        let at = format!("outputs.influxdb.{name}");
        for (k, e) in o.check(name) {
            push(key(&at, &k), e);
        }
    }
    // [outputs.mqtt_readings.NAME]
    for (name, o) in &cfg.outputs.mqtt_readings {
        let at = format!("outputs.mqtt_readings.{name}");
        if !valid_id(name) {
            push(at.clone(), format!("output name {ID_RULE}"));
        }
        for (k, e) in o.check() {
            push(format!("{at}.{k}"), e);
        }
    }

    // [accounting] and devices[].parent
    crate::accounting::config::validate(
        &cfg.accounting_context(),
        &origin.devices,
        undecoded_devices,
        &mut push,
    );

    // [http]
    for (k, e) in check_http(&cfg.http) {
        push(format!("http.{k}"), e);
    }

    p
}

/// Shortest bearer token `[http] token` may be.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks `[http]`; returns (key below `http`, message). A disabled server is not checked
/// beyond its address, so a half-prepared section does not stop the gateway.
fn check_http(h: &super::HttpConfig) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    let addr = match h.bind.trim().parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            p.push(("bind", format!("\"{}\": port must be 1-65535", h.bind)));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            p.push((
                "bind",
                format!(
                    "\"{}\" is not IP:port; write e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\"",
                    h.bind
                ),
            ));
            None
        }
    };
    if !h.enabled {
        return p;
    }
    match &h.token {
        None => {
            if let Some(a) = addr.filter(|a| !a.ip().is_loopback()) {
                p.push((
                    "token",
                    format!(
                        "required when http.bind ({a}) is not a loopback address: the API and metrics would be open to the network"
                    ),
                ));
            }
        }
        Some(t) => match t.resolve() {
            Err(e) => p.push(("token", e)),
            Ok(v) if v.chars().count() < MIN_TOKEN_LEN => p.push((
                "token",
                format!(
                    "must be at least {MIN_TOKEN_LEN} characters (it is {})",
                    v.chars().count()
                ),
            )),
            Ok(v) if v.chars().any(|c| c.is_whitespace() || c.is_control()) => p.push((
                "token",
                "must not contain white space or control characters".into(),
            )),
            Ok(_) => {}
        },
    }
    p
}

/// The key path `k` below `at` (empty: `at` itself).
fn key(at: &str, k: &str) -> String {
    if k.is_empty() {
        at.to_string()
    } else {
        format!("{at}.{k}")
    }
}

/// Checks one alert rule: the rule on its own (its kind's limits), then what it refers to.
fn check_alert(
    cfg: &Config,
    a: &super::AlertRule,
    at: &str,
    undecoded_devices: &HashSet<String>,
    push: &mut impl FnMut(String, String),
) {
    use super::Condition as C;
    for (k, m) in a.check() {
        push(key(at, k), m);
    }
    if let Some(dev) = a.device() {
        match cfg.device(dev) {
            None if undecoded_devices.contains(dev) => {}
            None => push(
                format!("{at}.device"),
                format!("refers to unknown device \"{dev}\""),
            ),
            Some(d) => {
                // The points of a Modbus device are known; an MQTT-fed device may send anything.
                let deadman = matches!(a.condition, C::Deadman(_));
                if let (Some(q), Some(_), false) = (a.quantity(), &d.modbus, deadman) {
                    if !d.points.iter().any(|p| p.quantity == q) {
                        push(
                            format!("{at}.quantity"),
                            format!("device \"{dev}\" has no point for {q}"),
                        );
                    }
                }
                if let (C::Deadman(c), Some(m)) = (&a.condition, &d.modbus) {
                    let (t, i) = (c.timeout, m.interval);
                    if !t.is_zero() && t < i {
                        push(format!("{at}.timeout"), format!("{t:?} is shorter than the device's poll interval {i:?}: the alert would fire between polls"));
                    }
                }
            }
        }
    }
    if let C::Imbalance(c) = &a.condition {
        for child in &c.children {
            if cfg.device(child).is_none() && !undecoded_devices.contains(child) {
                push(
                    format!("{at}.children"),
                    format!("refers to unknown device \"{child}\""),
                );
            }
        }
    }
}

/// `[mqtt]`: its own checks, and that a subscription's literal device is known.
fn check_mqtt(cfg: &Config, m: &super::MqttConfig, push: &mut impl FnMut(String, String)) {
    for (k, e) in m.check() {
        push(format!("mqtt.{k}"), e);
    }
    for (i, s) in m.subscriptions.iter().enumerate() {
        if !s.device.contains('{') && cfg.device(&s.device).is_none() && !s.accept_unknown_devices {
            push(
                format!("mqtt.subscriptions[{i}].device"),
                format!(
                    "refers to unknown device \"{}\" (or set accept_unknown_devices = true)",
                    s.device
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const BASE: &str = r#"
[site]
id = "plant-1"
main_meters = ["main"]

[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:5020"
[[devices.points]]
quantity = "active_power"
register = 0
type = "f32"
"#;

    fn problems(toml: &str) -> Vec<String> {
        match load_str(toml) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn base_is_valid() {
        assert_eq!(problems(BASE), Vec::<String>::new());
    }

    #[test]
    fn bad_device_id_is_refused_with_the_rule() {
        let bad = BASE.replace("id = \"main\"", "id = \"main meter\"");
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|m| m
                    == "devices[0].id: must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'"),
            "{p:?}"
        );
        let p = problems(&BASE.replace("id = \"main\"", "id = 7"));
        assert!(
            p.iter()
                .any(|m| m == "devices[0].id: invalid type: integer `7`, expected a string"),
            "{p:?}"
        );
    }

    #[test]
    fn duplicate_device_id() {
        let dup = BASE.replace("[[devices]]", "[[devices]]\nid = \"main\"\n[devices.modbus]\naddress = \"h:1\"\n[[devices.points]]\nquantity = \"frequency\"\nregister = 1\n\n[[devices]]");
        let p = problems(&dup);
        assert!(
            p.iter()
                .any(|m| m.starts_with("devices[1].id: duplicate device id \"main\"")),
            "{p:?}"
        );
    }

    #[test]
    fn zero_interval_and_bad_address() {
        let p = problems(&BASE.replace(
            "address = \"127.0.0.1:5020\"",
            "address = \"127.0.0.1\"\ninterval = \"0s\"",
        ));
        assert!(
            p.iter().any(|m| m.starts_with("devices[0].modbus.address")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("devices[0].modbus.interval: must be at least 10 ms (a shorter interval would poll without pause)")),
            "{p:?}"
        );
    }

    #[test]
    fn alert_on_unknown_device_and_missing_quantity() {
        let p = problems(&format!(
            "{BASE}\n[[alerts]]\nid = \"a\"\ndevice = \"ghost\"\nquantity = \"active_power\"\nabove = 1.0\n\
             [[alerts]]\nid = \"b\"\ndevice = \"main\"\nquantity = \"frequency\"\nbelow = 49.5\n"
        ));
        assert!(
            p.contains(&"alerts[0].device: refers to unknown device \"ghost\"".to_string()),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m
                    .starts_with("alerts[1].quantity: device \"main\" has no point for frequency")),
            "{p:?}"
        );
    }

    #[test]
    fn main_meter_must_exist() {
        let p = problems(&BASE.replace("main_meters = [\"main\"]", "main_meters = [\"mian\"]"));
        assert_eq!(
            p,
            vec!["site.main_meters[0]: refers to unknown device \"mian\"".to_string()]
        );
    }

    #[test]
    fn unreadable_secret_file() {
        let p = problems(&format!(
            "{BASE}\n[outputs.influxdb.central]\nurl = \"http://127.0.0.1:8086\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken = {{ file = \"/nonexistent/egw-token\" }}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "outputs.influxdb.central.token: cannot read secret file /nonexistent/egw-token"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_timezone_and_carrier() {
        let p = problems(
            &BASE
                .replace("main_meters", "timezone = \"Mars/Olympus\"\nmain_meters")
                .replace("\"electricity\"", "\"plutonium\""),
        );
        assert!(p.iter().any(|m| m.starts_with("site.timezone")), "{p:?}");
        assert!(
            p.iter().any(|m| m.starts_with("devices[0].carrier")),
            "{p:?}"
        );
    }
}
