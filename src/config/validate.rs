//! Semantic checks run after the file decoded: ranges, references between sections, secrets.

use std::collections::HashSet;

use super::{Config, ConfigProblem, InfluxApi};

/// Most readings in one commit or one output request: far above what helps throughput, and low
/// enough that a batch always fits in memory.
const MAX_BATCH: usize = 1_000_000;
/// Most batches waiting between two stages (tokio's channels refuse absurd capacities by
/// panicking; `check` refuses them first).
const MAX_CHANNEL_CAPACITY: usize = 1_000_000;

/// Energy carriers a device may be tagged with.
pub const CARRIERS: &[&str] = &[
    "electricity",
    "natural_gas",
    "steam",
    "heat",
    "water",
    "compressed_air",
    "coal",
    "coke",
    "diesel",
    "gasoline",
    "lpg",
    "fuel_oil",
    "production",
    "other",
];

fn valid_id(s: &str) -> bool {
    crate::readings::valid_id(s)
}

const ID_RULE: &str = "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'";

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

/// Why `u` is not an http(s) URL, in plain words with the fix; `None` when it is one.
fn http_url_problem(u: &str) -> Option<String> {
    match reqwest::Url::parse(u) {
        Ok(x) if matches!(x.scheme(), "http" | "https") => None,
        _ if !u.contains("://") => Some(format!(
            "\"{u}\" has no scheme: write http://{u} (or https://{u})"
        )),
        Ok(x) => Some(format!("scheme \"{}\" is not http or https", x.scheme())),
        Err(e) => Some(format!("\"{u}\" is not a URL ({e})")),
    }
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
        // Duplicate ids are found while decoding, where every element's id is still known.
        if !valid_id(&d.id) {
            push(format!("{at}.id"), ID_RULE.into());
        }
        if let Some(c) = &d.carrier {
            if !CARRIERS.contains(&c.as_str()) {
                push(
                    format!("{at}.carrier"),
                    format!(
                        "unknown carrier \"{c}\"; expected one of: {}",
                        CARRIERS.join(", ")
                    ),
                );
            }
        }
        let fed_by_mqtt = cfg.mqtt.as_ref().is_some_and(|m| {
            m.subscriptions
                .iter()
                .any(|s| s.device == d.id || s.device.contains('{'))
        });
        for (k, msg) in crate::acquisition::meter_bus::check_device(cfg, d) {
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
                match (&m.address, &m.bus) {
                    (Some(_), Some(_)) => push(
                        format!("{at}.modbus"),
                        "give either `address` (Modbus TCP) or `bus` (a [[buses]] id), not both".into(),
                    ),
                    (None, None) => push(
                        format!("{at}.modbus"),
                        "missing `address` (Modbus TCP host:port) or `bus` (a [[buses]] id)".into(),
                    ),
                    (Some(a), None) => {
                        if let Err(e) = check_host_port(a) {
                            push(format!("{at}.modbus.address"), e);
                        }
                    }
                    (None, Some(b)) => match cfg.buses.iter().find(|x| &x.id == b) {
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
                    },
                }
                if m.degraded_after == 0 {
                    push(format!("{at}.modbus.degraded_after"), "must be at least 1".into());
                }
                if m.interval.is_zero() {
                    push(
                        format!("{at}.modbus.interval"),
                        "must be greater than 0".into(),
                    );
                }
                if m.timeout.is_zero() {
                    push(
                        format!("{at}.modbus.timeout"),
                        "must be greater than 0".into(),
                    );
                }
                if !(1..=125).contains(&m.max_registers()) {
                    push(
                        format!("{at}.modbus.max_registers_per_request"),
                        format!(
                            "{} is out of range 1..=125 (Modbus allows at most 125 registers per read)",
                            m.max_registers()
                        ),
                    );
                }
                for (j, pt) in d.points.iter().enumerate() {
                    if pt.value_type.registers() > m.max_registers() {
                        push(
                            format!("{at}.points[{j}].type"),
                            "needs more registers than max_registers_per_request allows".into(),
                        );
                    }
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
            if u32::from(pt.register) + u32::from(pt.value_type.registers()) > 65_536 {
                push(
                    format!("{pat}.register"),
                    "the value runs past register 65535".into(),
                );
            }
            if !pt.scale.is_finite() || pt.scale == 0.0 {
                push(
                    format!("{pat}.scale"),
                    "must be a finite, non-zero number".into(),
                );
            }
            if !pt.offset.is_finite() {
                push(format!("{pat}.offset"), "must be a finite number".into());
            }
            if pt.interval.is_some_and(|i| i.is_zero()) {
                push(format!("{pat}.interval"), "must be greater than 0".into());
            }
            if let Some(b) = pt.bit {
                let width = u32::from(pt.value_type.registers()) * 16;
                if !pt.value_type.is_integer() {
                    push(
                        format!("{pat}.bit"),
                        "bits can only be taken from integer types".into(),
                    );
                } else if u32::from(b) >= width {
                    push(
                        format!("{pat}.bit"),
                        format!("bit {b} is outside a {width}-bit value"),
                    );
                }
            }
            for name in &pt.multiply_by {
                if !d.ratios.iter().any(|r| &r.name == name) {
                    push(
                        format!("{pat}.multiply_by"),
                        format!(
                            "refers to unknown ratio \"{name}\" (define it in [[devices.ratios]])"
                        ),
                    );
                }
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
        if !valid_id(&b.id) {
            push(format!("{at}.id"), ID_RULE.into());
        } else if !bus_ids.insert(b.id.as_str()) {
            push(format!("{at}.id"), format!("duplicate bus id \"{}\"", b.id));
        }
        match b.transport {
            super::BusTransport::Rtu => {
                if b.port.as_deref().unwrap_or("").is_empty() {
                    push(
                        format!("{at}.port"),
                        "required for transport = \"rtu\" (e.g. \"/dev/ttyUSB0\")".into(),
                    );
                }
                if b.baud == 0 {
                    push(format!("{at}.baud"), "must be greater than 0".into());
                }
                if !matches!(b.data_bits, 7 | 8) {
                    push(format!("{at}.data_bits"), "must be 7 or 8".into());
                }
                if !matches!(b.stop_bits, 1 | 2) {
                    push(format!("{at}.stop_bits"), "must be 1 or 2".into());
                }
            }
            super::BusTransport::RtuOverTcp => match &b.address {
                None => push(
                    format!("{at}.address"),
                    "required for transport = \"rtu_over_tcp\" (host:port)".into(),
                ),
                Some(a) => {
                    if let Err(e) = check_host_port(a) {
                        push(format!("{at}.address"), e);
                    }
                }
            },
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
        if !valid_id(&a.id) {
            push(format!("{at}.id"), ID_RULE.into());
        } else if !alert_ids.insert(a.id.as_str()) {
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
        if !valid_id(&n.id) {
            push(format!("{at}.id"), ID_RULE.into());
        } else if !seen_notifiers.insert(n.id.as_str()) {
            push(
                format!("{at}.id"),
                format!("duplicate notifier id \"{}\"", n.id),
            );
        }
        match (&n.kind, &n.url) {
            (super::NotifierKind::Log, _) => {}
            (_, None) => push(format!("{at}.url"), "required for this kind".into()),
            (_, Some(u)) => {
                if let Some(why) = http_url_problem(u) {
                    push(format!("{at}.url"), why);
                }
            }
        }
        if let Some(s) = n.secret.as_ref().filter(|_| n.enabled) {
            if let Err(e) = s.resolve() {
                push(format!("{at}.secret"), e);
            }
        }
        if n.rate_max == 0 {
            push(format!("{at}.rate_max"), "must be at least 1".into());
        }
        if n.rate_period.is_zero() {
            push(format!("{at}.rate_period"), "must be greater than 0".into());
        }
        if n.timeout.is_zero() {
            push(format!("{at}.timeout"), "must be greater than 0".into());
        }
    }

    // [outputs.influxdb.NAME]
    for (name, o) in &cfg.outputs.influxdb {
        let at = format!("outputs.influxdb.{name}");
        if !valid_id(name) {
            push(at.clone(), format!("output name {ID_RULE}"));
        }
        if let Some(why) = http_url_problem(&o.url) {
            push(format!("{at}.url"), why);
        }
        match o.api {
            InfluxApi::V1 => {
                if o.database.as_deref().unwrap_or("").is_empty() {
                    push(format!("{at}.database"), "required for api = \"v1\"".into());
                }
            }
            InfluxApi::V2 => {
                for (k, v) in [("org", &o.org), ("bucket", &o.bucket)] {
                    if v.as_deref().unwrap_or("").is_empty() {
                        push(format!("{at}.{k}"), "required for api = \"v2\"".into());
                    }
                }
                if o.token.is_none() {
                    push(format!("{at}.token"), "required for api = \"v2\"".into());
                }
            }
        }
        if o.password.is_some() && o.username.is_none() {
            push(
                format!("{at}.username"),
                "required when a password is set".into(),
            );
        }
        // Secrets of a disabled output are not needed, so not required to be readable.
        for (k, s) in [("password", &o.password), ("token", &o.token)] {
            if let Some(s) = s.as_ref().filter(|_| o.enabled) {
                if let Err(e) = s.resolve() {
                    push(format!("{at}.{k}"), e);
                }
            }
        }
        if !(1..=MAX_BATCH).contains(&o.batch_size) {
            push(
                format!("{at}.batch_size"),
                format!("{} is out of range 1..={MAX_BATCH}", o.batch_size),
            );
        }
        if o.timeout.is_zero() {
            push(format!("{at}.timeout"), "must be greater than 0".into());
        }
        if o.measurement.is_empty() {
            push(format!("{at}.measurement"), "must not be empty".into());
        }
        for (k, e) in crate::outputs::influxdb::schema::check_output(o) {
            push(format!("{at}.{k}"), e);
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
    crate::accounting::config::validate(cfg, &origin.devices, undecoded_devices, &mut push);

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

fn check_host_port(s: &str) -> Result<(), String> {
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

/// Checks one alert rule: what its kind needs, references, and thresholds that cannot work.
fn check_alert(
    cfg: &Config,
    a: &super::AlertRule,
    at: &str,
    undecoded_devices: &HashSet<String>,
    push: &mut impl FnMut(String, String),
) {
    use super::AlertKind as K;
    let needs_device = !matches!(a.kind, K::Outbox | K::Intensity);
    match (&a.device, needs_device) {
        (None, true) => push(
            format!("{at}.device"),
            format!("required for kind = \"{}\"", a.kind.as_str()),
        ),
        (Some(_), false) => push(
            format!("{at}.device"),
            format!(
                "kind = \"{}\" watches the site, not a device",
                a.kind.as_str()
            ),
        ),
        (Some(dev), true) => match cfg.device(dev) {
            None if undecoded_devices.contains(dev) => {}
            None => push(
                format!("{at}.device"),
                format!("refers to unknown device \"{dev}\""),
            ),
            Some(d) => {
                // The points of a Modbus device are known; an MQTT-fed device may send anything.
                let q = crate::alerting::effective_quantity(a);
                if let (Some(q), true) = (q, d.modbus.is_some() && a.kind != K::Deadman) {
                    if !d.points.iter().any(|p| p.quantity == q) {
                        push(
                            format!("{at}.quantity"),
                            format!("device \"{dev}\" has no point for {q}"),
                        );
                    }
                }
            }
        },
        (None, false) => {}
    }
    let need_quantity = matches!(a.kind, K::Threshold | K::RateOfChange | K::Counter);
    if need_quantity && a.quantity.is_none() {
        push(
            format!("{at}.quantity"),
            format!("required for kind = \"{}\"", a.kind.as_str()),
        );
    }
    if a.kind == K::Counter {
        if let Some(q) = a.quantity.filter(|q| !q.is_cumulative()) {
            push(
                format!("{at}.quantity"),
                format!("{q} is not a cumulative counter"),
            );
        }
    }
    for (k, v) in [
        ("above", a.above),
        ("below", a.below),
        ("contracted_kw", a.contracted_kw),
        ("max_rate_per_min", a.max_rate_per_min),
        ("tolerance_pct", a.tolerance_pct),
        ("fill_pct", a.fill_pct),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            push(format!("{at}.{k}"), "must be a finite number".into());
        }
    }
    if !a.hysteresis.is_finite() || a.hysteresis < 0.0 {
        push(
            format!("{at}.hysteresis"),
            "must be zero or a positive number".into(),
        );
    }
    let positive = |push: &mut dyn FnMut(String, String), k: &str, v: Option<f64>| match v {
        None => push(
            format!("{at}.{k}"),
            format!("required for kind = \"{}\"", a.kind.as_str()),
        ),
        Some(v) if v <= 0.0 => push(format!("{at}.{k}"), "must be greater than 0".into()),
        _ => {}
    };
    match a.kind {
        K::Threshold => match (a.above, a.below) {
            (None, None) => push(at.to_string(), "needs `above`, `below` or both".into()),
            (Some(hi), Some(lo)) if lo >= hi => push(
                format!("{at}.below"),
                format!("below ({lo}) must be less than above ({hi}) for an outside-band rule"),
            ),
            (Some(hi), Some(lo)) if a.hysteresis >= (hi - lo) / 2.0 => push(
                format!("{at}.hysteresis"),
                format!(
                    "{} is at least half the band {lo}..{hi}: the alert could never resolve",
                    a.hysteresis
                ),
            ),
            _ => {}
        },
        K::RateOfChange => positive(push, "max_rate_per_min", a.max_rate_per_min),
        K::Deadman => match a.timeout {
            None => push(
                format!("{at}.timeout"),
                "required for kind = \"deadman\" (e.g. \"60s\")".into(),
            ),
            Some(t) if t.is_zero() => {
                push(format!("{at}.timeout"), "must be greater than 0".into())
            }
            Some(t) => {
                let interval = a
                    .device
                    .as_deref()
                    .and_then(|d| cfg.device(d))
                    .and_then(|d| d.modbus.as_ref())
                    .map(|m| m.interval);
                if let Some(i) = interval.filter(|i| t < *i) {
                    push(format!("{at}.timeout"), format!("{t:?} is shorter than the device's poll interval {i:?}: the alert would fire between polls"));
                }
            }
        },
        K::Demand => positive(push, "contracted_kw", a.contracted_kw),
        K::PowerFactor => {
            if let Some(b) = a.below {
                if !(0.0..=1.0).contains(&b) {
                    push(
                        format!("{at}.below"),
                        format!("a power factor limit of {b} is impossible (0 to 1)"),
                    );
                }
            }
        }
        K::Imbalance => {
            if a.children.is_empty() {
                push(
                    format!("{at}.children"),
                    "required for kind = \"imbalance\" (the sub-meters)".into(),
                );
            }
            for c in &a.children {
                if cfg.device(c).is_none() && !undecoded_devices.contains(c) {
                    push(
                        format!("{at}.children"),
                        format!("refers to unknown device \"{c}\""),
                    );
                }
            }
            if a.tolerance_pct.is_some_and(|t| t <= 0.0) {
                push(
                    format!("{at}.tolerance_pct"),
                    "must be greater than 0".into(),
                );
            }
        }
        K::Counter => {}
        K::Intensity => {
            if a.tolerance_pct.is_some_and(|t| t < 0.0) {
                push(format!("{at}.tolerance_pct"), "must be zero or more".into());
            }
        }
        K::Outbox => {
            if a.fill_pct.is_some_and(|f| !(0.0..=100.0).contains(&f)) {
                push(format!("{at}.fill_pct"), "must be between 0 and 100".into());
            }
        }
    }
    if a.kind == K::Threshold && a.quantity == Some(crate::readings::Quantity::PowerFactor) {
        for (k, v) in [("above", a.above), ("below", a.below)] {
            if v.is_some_and(|v| v.abs() > 1.0) {
                push(
                    format!("{at}.{k}"),
                    "a power factor is never beyond ±1: the rule could never fire".into(),
                );
            }
        }
    }
}

fn check_mqtt(cfg: &Config, m: &super::MqttConfig, push: &mut impl FnMut(String, String)) {
    let tls = match reqwest::Url::parse(&m.url) {
        Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") && u.host_str().is_some() => {
            u.scheme() == "mqtts"
        }
        Ok(u) => {
            push(
                "mqtt.url".into(),
                format!("\"{}\": use mqtt://host:port or mqtts://host:port", u),
            );
            false
        }
        Err(e) => {
            push("mqtt.url".into(), format!("not a URL: {e}"));
            false
        }
    };
    if let Some(p) = &m.password {
        if let Err(e) = p.resolve() {
            push("mqtt.password".into(), e);
        }
        if m.username.is_none() {
            push(
                "mqtt.username".into(),
                "required when a password is set".into(),
            );
        }
    }
    if m.keep_alive < std::time::Duration::from_secs(5) {
        push("mqtt.keep_alive".into(), "must be at least 5s".into());
    }
    if m.max_message_size == 0 || m.max_message_size > super::MQTT_MAX_PACKET {
        push(
            "mqtt.max_message_size".into(),
            format!(
                "must be between 1 B and {} B (the MQTT maximum)",
                super::MQTT_MAX_PACKET
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
                push(format!("mqtt.{k}"), "only used with an mqtts:// url".into());
            } else if let Err(e) = std::fs::read(f) {
                push(
                    format!("mqtt.{k}"),
                    format!("cannot read {}: {e}", f.display()),
                );
            }
        }
    }
    if tls && m.ca_file.is_none() {
        push(
            "mqtt.ca_file".into(),
            "required with mqtts:// (the CA that signed the broker's certificate)".into(),
        );
    }
    if m.client_cert_file.is_some() != m.client_key_file.is_some() {
        push(
            "mqtt.client_key_file".into(),
            "client_cert_file and client_key_file go together".into(),
        );
    }
    for (i, s) in m.subscriptions.iter().enumerate() {
        let at = format!("mqtt.subscriptions[{i}]");
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
        check_template("device", &s.device, push);
        if !s.device.contains('{') && cfg.device(&s.device).is_none() && !s.accept_unknown_devices {
            push(
                format!("{at}.device"),
                format!(
                    "refers to unknown device \"{}\" (or set accept_unknown_devices = true)",
                    s.device
                ),
            );
        }
        match s.format {
            super::PayloadFormat::Number => match &s.quantity {
                None => push(
                    format!("{at}.quantity"),
                    "required for format = \"number\"".into(),
                ),
                Some(q) if q.contains('{') => check_template("quantity", q, push),
                Some(q) => {
                    if let Err(e) = q.parse::<crate::readings::Quantity>() {
                        push(format!("{at}.quantity"), e.to_string());
                    }
                }
            },
            super::PayloadFormat::Json => {
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
                .any(|m| m.starts_with("devices[0].modbus.interval: must be greater than 0")),
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
