//! Packaging and operations: the systemd protocol of `run` (READY, RELOADING, STOPPING and
//! watchdog pings on a real notify socket), the .deb metadata and the files it ships, the
//! Docker and compose configuration, and the Grafana dashboards (their JSON model; every metric
//! an alerts panel queries is one the gateway serves; every Flux query reads one series the
//! gateway writes, with its tags and fields, and quantities it knows).
//!
//! The .deb itself is built and its contents listed and checked by `deploy/package.sh deb`
//! (run by scripts/test.sh); the aarch64 build by `deploy/package.sh aarch64`.

use crate::common;
use crate::http_support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_support::{write_config, ConfigSpec, Factory, Gateway};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Receives notify messages until `until` holds for the lines seen so far.
fn receive_until(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    limit: Duration,
    what: &str,
    until: impl Fn(&[String]) -> bool,
) {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while !until(seen) {
        assert!(
            started.elapsed() < limit,
            "no {what} within {limit:?}; got {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.extend(msg.lines().map(str::to_string));
        }
    }
}

#[test]
fn systemd_notify_ready_reloading_stopping_and_watchdog() {
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(dir.path(), &factory, &ConfigSpec::new(addr.clone()));
    let sock_str = sock_path.to_str().unwrap().to_string();
    let mut gw = Gateway::spawn_with_env(
        &config,
        &addr,
        None,
        &[
            ("NOTIFY_SOCKET", sock_str.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let mut seen = Vec::new();
    receive_until(&sock, &mut seen, Duration::from_secs(30), "READY=1", |s| {
        s.iter().any(|l| l == "READY=1")
    });
    // READY comes after the HTTP server listens and the pipeline runs.
    let h = common::http_get(&addr, "/healthz").expect("HTTP is up at READY=1");
    assert_eq!(h.status, 200);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("STATUS=running: site plant-t, 2 devices")),
        "{seen:?}"
    );
    // Watchdog pings at half of WATCHDOG_USEC.
    let started = Instant::now();
    receive_until(
        &sock,
        &mut seen,
        Duration::from_secs(10),
        "3 watchdog pings",
        |s| s.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3,
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A reload says RELOADING=1, then READY=1 again.
    seen.clear();
    gw.signal("HUP");
    receive_until(
        &sock,
        &mut seen,
        Duration::from_secs(30),
        "RELOADING then READY",
        |s| {
            let r = s.iter().position(|l| l == "RELOADING=1");
            let ready = s.iter().rposition(|l| l == "READY=1");
            matches!((r, ready), (Some(r), Some(x)) if x > r)
        },
    );
    // Stopping says STOPPING=1.
    seen.clear();
    gw.signal("TERM");
    receive_until(
        &sock,
        &mut seen,
        Duration::from_secs(20),
        "STOPPING=1",
        |s| s.iter().any(|l| l == "STOPPING=1"),
    );
    let st = common::sigterm_within(&mut gw.child, Duration::from_secs(20));
    // Already exiting from the first SIGTERM; either way it must end cleanly.
    if let Ok(st) = st {
        assert!(st.success(), "{st}");
    }
}

#[test]
fn without_notify_socket_nothing_is_sent_and_it_runs() {
    // The same binary outside systemd: no NOTIFY_SOCKET, no WATCHDOG_USEC, no error logged.
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(dir.path(), &factory, &ConfigSpec::new(addr.clone()));
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(2, Duration::from_secs(30));
    let log = gw.stop();
    assert!(!log.contains("cannot notify systemd"), "{log}");
    assert!(!log.contains("watchdog enabled"), "{log}");
}

#[test]
fn deb_metadata_ships_existing_files_and_a_hardened_notify_unit() {
    let cargo: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &cargo["package"]["metadata"]["deb"];
    // Reports print Chinese: the CJK fonts the HTML report names first.
    assert_eq!(deb["recommends"].as_str(), Some("fonts-noto-cjk"));
    assert!(read("src/reporting/html.rs").contains("font-family: \"Noto Sans CJK SC\""));
    let assets = deb["assets"].as_array().expect("assets");
    let mut dests = BTreeSet::new();
    for a in assets {
        let a = a.as_array().unwrap();
        let src = a[0].as_str().unwrap();
        dests.insert(a[1].as_str().unwrap().to_string());
        if src.starts_with("target/") {
            continue;
        }
        if let Some(dir) = src.strip_suffix("/*.json") {
            let n = std::fs::read_dir(repo().join(dir))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count();
            assert!(n >= 3, "{src}: {n} dashboards");
        } else {
            assert!(repo().join(src).is_file(), "asset {src} does not exist");
        }
    }
    assert!(dests.contains("usr/bin/"));
    assert!(dests.contains("etc/energy-gateway/config.toml"));
    assert_eq!(
        deb["conf-files"].as_array().unwrap()[0].as_str(),
        Some("/etc/energy-gateway/config.toml")
    );
    let units = &deb["systemd-units"];
    assert_eq!(units["unit-name"].as_str(), Some("energy-gateway"));
    let unit_dir = units["unit-scripts"].as_str().unwrap();
    assert!(repo()
        .join(unit_dir)
        .join("energy-gateway.service")
        .is_file());
    assert_eq!(
        units["start"].as_bool(),
        Some(false),
        "must not start before configured"
    );

    // Maintainer scripts: executable sh, creating the user and the data directory.
    let scripts = repo().join(deb["maintainer-scripts"].as_str().unwrap());
    for s in ["postinst", "postrm"] {
        let p = scripts.join(s);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{s} is not executable");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"));
        assert!(text.contains("#DEBHELPER#"), "{s} lacks #DEBHELPER#");
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "{s} is not valid sh");
    }
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    assert!(postinst.contains("useradd --system"));
    assert!(postinst.contains(
        "install -d -o energy-gateway -g energy-gateway -m 0750 /var/lib/energy-gateway"
    ));

    // The unit: notify, watchdog, reload, the sandbox.
    let unit = read("deploy/systemd/energy-gateway.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/energy-gateway run --config /etc/energy-gateway/config.toml",
        "StateDirectory=energy-gateway",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=energy-gateway",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    assert!(!unit.lines().any(|l| l == "Type=simple"));
}

fn check_config(path: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    cmd.args(["check", "--config"]).arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {text}", path.display());
    text
}

#[test]
fn shipped_configs_pass_check() {
    check_config(&repo().join("deploy/debian/config.toml"), &[]);
    check_config(&repo().join("config/example.toml"), &[]);
    // The compose stack's config, with its two secrets as compose provides them.
    let dir = tempfile::tempdir().unwrap();
    let cfg = read("deploy/docker/gateway.toml");
    assert!(cfg.contains("bind = \"0.0.0.0:8080\""));
    let token = dir.path().join("gateway-http-token");
    std::fs::copy(repo().join("deploy/docker/http-token.dev"), &token).unwrap();
    let local = dir.path().join("gateway.toml");
    std::fs::write(
        &local,
        cfg.replace("/run/secrets/gateway-http-token", token.to_str().unwrap()),
    )
    .unwrap();
    check_config(
        &local,
        &[("EGW__OUTPUTS__INFLUXDB__CENTRAL__TOKEN", "dev-token")],
    );
}

#[test]
fn compose_and_dockerfile_refer_to_files_that_exist() {
    let compose = read("docker-compose.yml");
    let mut n = 0;
    for (i, _) in compose.match_indices("./deploy/") {
        let rel: String = compose[i + 2..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ':' | '}' | '"'))
            .collect();
        n += 1;
        assert!(
            repo().join(&rel).exists(),
            "docker-compose.yml refers to missing ./{rel}"
        );
    }
    assert!(n >= 6, "only {n} deploy paths found in docker-compose.yml");
    assert!(compose.contains("dockerfile: deploy/docker/Dockerfile"));
    assert!(repo().join("deploy/docker/Dockerfile").is_file());
    for service in ["gateway:", "prometheus:", "grafana:", "influxdb:"] {
        assert!(
            compose.contains(&format!("\n  {service}\n")),
            "no {service}"
        );
    }
    assert!(compose.contains("\"127.0.0.1:8080:8080\""));
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains("EXPOSE 8080"));
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("/healthz"));
    let prom = read("deploy/prometheus/prometheus.yml");
    assert!(prom.contains("targets: [\"gateway:8080\"]"));
    assert!(prom.contains("credentials_file: /run/secrets/gateway-http-token"));
}

/// `uid:` values of the provisioned Grafana data sources.
fn datasource_uids() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(repo().join("deploy/grafana/provisioning/datasources")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for l in text.lines() {
            if let Some(v) = l.trim().strip_prefix("uid:") {
                out.insert(v.split('#').next().unwrap().trim().to_string());
            }
        }
    }
    out
}

/// The tags and fields of each series the gateway writes: readings from the schema's
/// constants, `alert` and `energy_interval` from the table in `outputs/influxdb/streams.rs`,
/// `energy_account` from the park report's field lists.
fn written_series() -> std::collections::BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    use energy_gateway::outputs::influxdb::schema;
    use energy_gateway::reporting::park;
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    let mut out = std::collections::BTreeMap::new();
    out.insert(
        "reading".to_string(),
        (set(schema::READING_TAGS), set(schema::READING_FIELDS)),
    );
    let doc = read("src/outputs/influxdb/streams.rs");
    let ticks = |cell: &str| -> BTreeSet<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(|s| s.to_string())
            .collect()
    };
    for m in ["alert", "energy_interval"] {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("//! | `{m}` |")))
            .unwrap_or_else(|| panic!("{m} not in the streams table"));
        let cells: Vec<&str> = row.split(" | ").collect();
        out.insert(m.to_string(), (ticks(cells[3]), ticks(cells[4])));
    }
    let mut fields = set(park::SITE_FIELDS);
    fields.extend(set(park::PRODUCT_FIELDS));
    fields.insert("unit".into());
    out.insert(
        "energy_account".to_string(),
        (set(&["site", "park", "period", "kind", "product"]), fields),
    );
    out
}

/// A Flux query reads one series the gateway writes, with its tags and fields only.
fn check_flux(name: &str, q: &str) {
    let series = written_series();
    let measurements: BTreeSet<&str> = q
        .match_indices("r._measurement == \"")
        .map(|(i, m)| {
            let rest = &q[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    if !q.contains("from(bucket") && !q.contains("schema.tagValues") {
        return;
    }
    assert_eq!(
        measurements.len(),
        1,
        "{name}: one measurement per query: {q}"
    );
    let m = measurements.into_iter().next().unwrap();
    let (tags, fields) = series
        .get(m)
        .unwrap_or_else(|| panic!("{name}: the gateway writes no series {m}: {q}"));
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    // Tags filtered on (`r.tag`), listed in group/keep/pivot, or asked for by a variable.
    let mut used: BTreeSet<String> = q
        .match_indices("r.")
        .filter(|(i, _)| *i == 0 || !q.as_bytes()[i - 1].is_ascii_alphanumeric())
        .map(|(i, _)| ident(&q[i + 2..]))
        .filter(|t| !t.is_empty() && !t.starts_with('_'))
        .collect();
    for key in ["columns: [", "rowKey: [", "tag: \""] {
        for (i, _) in q.match_indices(key) {
            let rest = &q[i + key.len()..];
            let list = &rest[..rest.find([']', '\n']).unwrap_or(rest.len())];
            used.extend(
                list.split(',')
                    .map(|c| c.trim().trim_matches('"').to_string())
                    .filter(|c| !c.is_empty() && !c.starts_with('_')),
            );
        }
    }
    for t in &used {
        assert!(
            tags.contains(t) || fields.contains(t),
            "{name}: {m} has no tag or field {t}: {q}"
        );
    }
    for (i, k) in q.match_indices("r._field == \"") {
        let rest = &q[i + k.len()..];
        let f = &rest[..rest.find('"').unwrap()];
        assert!(fields.contains(f), "{name}: {m} has no field {f}: {q}");
    }
}

/// The parts of Grafana's dashboard JSON model a provisioned dashboard needs.
fn check_dashboard_schema(name: &str, d: &serde_json::Value, datasources: &BTreeSet<String>) {
    let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{name}: uid"));
    assert!(
        !uid.is_empty() && uid.len() <= 40,
        "{name}: uid of 1-40 characters"
    );
    assert!(
        d["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{name}: title"
    );
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
        "{name}: schemaVersion"
    );
    assert!(
        d["templating"]["list"].is_array(),
        "{name}: templating.list"
    );
    let known = [
        "stat",
        "timeseries",
        "table",
        "barchart",
        "bargauge",
        "gauge",
        "text",
        "piechart",
        "row",
        "state-timeline",
    ];
    let mut ids = BTreeSet::new();
    for p in d["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: panels"))
    {
        let title = p["title"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: panel title"));
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{name}: duplicate panel id"
        );
        assert!(
            known.contains(&p["type"].as_str().unwrap()),
            "{name}: {title}: type"
        );
        let g = &p["gridPos"];
        let (h, w, x) = (g["h"].as_u64(), g["w"].as_u64(), g["x"].as_u64());
        assert!(
            h.is_some() && g["y"].as_u64().is_some() && x.unwrap() + w.unwrap() <= 24,
            "{name}: {title}: gridPos"
        );
        let mut refs = BTreeSet::new();
        for t in p["targets"].as_array().into_iter().flatten() {
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{name}: {title}: refId"
            );
            let ds = t["datasource"]["uid"]
                .as_str()
                .or(p["datasource"]["uid"].as_str());
            assert!(
                ds.is_some_and(|u| datasources.contains(u)),
                "{name}: {title}: datasource"
            );
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        assert!(
            v["name"].as_str().is_some() && v["type"].as_str().is_some(),
            "{name}: variable"
        );
    }
}

fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    out.push(v);
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboards_query_what_the_gateway_provides() {
    let uids = datasource_uids();
    assert!(
        uids.contains("energy-influxdb") && uids.contains("energy-prometheus"),
        "{uids:?}"
    );

    // A live gateway with an output, for the metric names it actually serves.
    let factory = Factory::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = ConfigSpec::new(addr.clone());
    spec.extra = format!(
        "\n[outputs.influxdb.x]\nurl = \"http://127.0.0.1:{}\"\ndatabase = \"energy\"\n\n[[alerts]]\nid = \"a\"\ndevice = \"main\"\nquantity = \"active_power\"\nabove = 1.0\n",
        common::free_port()
    );
    let config = write_config(dir.path(), &factory, &spec);
    let mut gw = Gateway::spawn(&config, &addr, None);
    gw.wait_running(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = gw.get("/metrics").text();
    gw.stop();
    let served: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();

    let mut dashboard_uids = BTreeSet::new();
    let mut titles = Vec::new();
    for e in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert!(
            dashboard_uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{name}: duplicate uid"
        );
        titles.push(d["title"].as_str().unwrap().to_string());
        let mut nodes = Vec::new();
        walk(&d, &mut nodes);
        for n in &nodes {
            if let Some(uid) = n.get("datasource").and_then(|ds| ds.get("uid")) {
                let uid = uid.as_str().unwrap();
                assert!(
                    uid.starts_with("-- ") || uids.contains(uid),
                    "{name}: unknown data source {uid}"
                );
            }
            // Prometheus expressions: every energy_gateway_ name is served.
            if let Some(expr) = n.get("expr").and_then(|e| e.as_str()) {
                for (i, _) in expr.match_indices("energy_gateway_") {
                    let metric: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        served.contains(&metric),
                        "{name}: {metric} is not served by /metrics"
                    );
                }
            }
            // Flux queries: one series the gateway writes, its tags and fields only, and
            // quantities it knows.
            if let Some(q) = n.get("query").and_then(|e| e.as_str()) {
                check_flux(&name, q);
                for (i, _) in q.match_indices("r.quantity == \"") {
                    let rest = &q[i + "r.quantity == \"".len()..];
                    let quantity = &rest[..rest.find('"').unwrap()];
                    assert!(
                        quantity
                            .parse::<energy_gateway::readings::Quantity>()
                            .is_ok(),
                        "{name}: unknown quantity {quantity}"
                    );
                }
            }
        }
        check_dashboard_schema(&name, &d, &uids);
    }
    titles.sort();
    assert_eq!(
        titles,
        [
            "Energy alerts and gateway health",
            "Energy readings",
            "园区能源 Park energy",
            "能源账户 Energy accounts",
        ]
    );
}
