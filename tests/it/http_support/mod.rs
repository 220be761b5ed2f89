//! Helpers of the HTTP, reload, live-page and packaging tests: the real binary (`energy-gateway
//! run`) against the in-process simulated factory, with `[http]` on a free loopback port.
//!
//! Include after `mod common;` with `mod http_support;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use energy_gateway::demo::simulator::SimulatedFactory;

use crate::common::{self, HttpResponse};

/// A token long enough for `[http] token`.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The simulated factory and the runtime serving it (kept alive together).
pub struct Factory {
    pub rt: tokio::runtime::Runtime,
    pub sim: SimulatedFactory,
}

impl Factory {
    pub fn start() -> Factory {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sim = rt.block_on(SimulatedFactory::start()).unwrap();
        Factory { rt, sim }
    }
    pub fn addr(&self, meter: &str) -> String {
        self.sim.addr(meter).unwrap().to_string()
    }
}

/// What goes into a test configuration.
pub struct ConfigSpec<'a> {
    pub bind: String,
    /// The `token = ...` line (or nothing).
    pub token_line: String,
    /// Devices to include, of main, gas, kiln, press, production.
    pub devices: &'a [&'a str],
    pub interval: &'a str,
    /// Extra TOML appended at the end.
    pub extra: String,
}

impl ConfigSpec<'_> {
    pub fn new(bind: String) -> ConfigSpec<'static> {
        ConfigSpec {
            bind,
            token_line: String::new(),
            devices: &["main", "gas"],
            interval: "200ms",
            extra: String::new(),
        }
    }
}

fn device_toml(id: &str, addr: &str, interval: &str) -> String {
    let (carrier, points) = match id {
        "main" => (
            "electricity",
            r#"
[[devices.points]]
quantity = "active_power"
register = 0x2012
type = "f32"
scale = 0.0001
[[devices.points]]
quantity = "voltage_l1"
register = 0x2006
type = "f32"
scale = 0.1
[[devices.points]]
quantity = "energy_import"
register = 0x101E
type = "f32"
"#,
        ),
        "gas" => (
            "natural_gas",
            r#"
[[devices.points]]
quantity = "gas_volume"
register = 0
type = "u32"
order = "CDAB"
scale = 0.01
"#,
        ),
        "kiln" | "press" => (
            "electricity",
            r#"
[[devices.points]]
quantity = "active_power"
register = 0x0034
kind = "input"
type = "f32"
scale = 0.001
[[devices.points]]
quantity = "energy_import"
register = 0x0048
kind = "input"
type = "f32"
"#,
        ),
        "production" => (
            "production",
            r#"
[[devices.points]]
quantity = "production_count"
register = 0
type = "u32"
scale = 0.01
"#,
        ),
        other => panic!("no such simulated meter: {other}"),
    };
    let parent = if matches!(id, "kiln" | "press") {
        "parent = \"main\"\n"
    } else {
        ""
    };
    format!(
        "\n[[devices]]\nid = \"{id}\"\ncarrier = \"{carrier}\"\n{parent}[devices.modbus]\naddress = \"{addr}\"\ninterval = \"{interval}\"\ntimeout = \"500ms\"\nmax_gap = 64\n{points}"
    )
}

/// Writes `gateway.toml` in `dir` and returns its path.
pub fn write_config(dir: &Path, factory: &Factory, spec: &ConfigSpec) -> PathBuf {
    let mut s = format!(
        r#"
[site]
id = "plant-t"
name = "Test plant"
timezone = "Asia/Shanghai"
main_meters = ["main"]
[log]
level = "info"
format = "json"
status_every = "0s"
[storage]
data_dir = "{data}"
[http]
enabled = true
bind = "{bind}"
{token}
"#,
        data = dir.join("data").display(),
        bind = spec.bind,
        token = spec.token_line,
    );
    for d in spec.devices {
        s.push_str(&device_toml(d, &factory.addr(d), spec.interval));
    }
    s.push_str(&spec.extra);
    let path = dir.join("gateway.toml");
    std::fs::write(&path, s).unwrap();
    path
}

/// `energy-gateway run` with its log (stderr) in a file.
pub struct Gateway {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
    pub token: Option<String>,
}

impl Gateway {
    pub fn spawn(config: &Path, addr: &str, token: Option<&str>) -> Gateway {
        Gateway::spawn_with_env(config, addr, token, &[])
    }

    pub fn spawn_with_env(
        config: &Path,
        addr: &str,
        token: Option<&str>,
        env: &[(&str, &str)],
    ) -> Gateway {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = config.with_file_name(format!(
            "gateway-{}.log",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Gateway {
            child: cmd.spawn().unwrap(),
            addr: addr.to_string(),
            log,
            token: token.map(str::to_string),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn auth(&self) -> Vec<(String, String)> {
        match &self.token {
            Some(t) => vec![("Authorization".into(), format!("Bearer {t}"))],
            None => Vec::new(),
        }
    }

    /// GET with the gateway's token (if any).
    pub fn get(&self, path: &str) -> HttpResponse {
        let h = self.auth();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::http_request(&self.addr, "GET", path, &h, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()))
    }

    /// GET, parsed as JSON, asserting the status.
    pub fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, status, "GET {path}: {}\n{}", r.text(), self.log());
        r.json()
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
        let mut h = self.auth();
        h.push(("Content-Type".into(), content_type.into()));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::http_request(&self.addr, "POST", path, &h, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log()))
    }

    /// Waits until `/api/v1/status` answers with every device online.
    pub fn wait_running(&mut self, devices: usize, limit: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the gateway exited with {st}\n{}", self.log());
            }
            let h = self.auth();
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Ok(r) = common::http_request_timeout(
                &self.addr,
                "GET",
                "/api/v1/status",
                &h,
                b"",
                Duration::from_secs(5),
            ) {
                if r.status == 200 {
                    let v = r.json();
                    if v["devices"]["online"] == devices && v["devices"]["total"] == devices {
                        return v;
                    }
                }
            }
            assert!(
                started.elapsed() < limit,
                "the gateway did not get {devices} devices online within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM and wait for a clean exit (0).
    pub fn stop(mut self) -> String {
        let st = common::sigterm_within(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        let log = self.log();
        assert!(st.success(), "exit status {st}\n{log}");
        log
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON log lines of a gateway (non-JSON lines are skipped).
pub fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// The current month in the test site's time zone (Asia/Shanghai, UTC+8, no DST).
pub fn current_month() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m")
        .to_string()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
