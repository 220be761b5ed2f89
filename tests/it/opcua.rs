//! OPC UA in, against a real OPC UA server: Python's `asyncua` (an implementation independent of
//! the gateway's Rust stack), started by the test from `tests/it/opcua_server.py` (installed by
//! `scripts/test.sh`'s pip step). Subscriptions and polling, source timestamps, status codes,
//! server restarts, refused credentials, Basic256Sha256 SignAndEncrypt, and `probe --opcua`.

use crate::common;
use crate::mqtt::{runtime, wait_until};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use energy_gateway::acquisition::AcquisitionMode;
use energy_gateway::config::{self, Synchronous};
use energy_gateway::pipeline;
use energy_gateway::readings::{Quality, Quantity, Reading};
use energy_gateway::storage::Store;
use tempfile::TempDir;

/// Python's start-up (importing asyncua) is slow on a busy machine.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The test server: `python3 tests/it/opcua_server.py`, on a free port, with its certificate in
/// its own directory (kept across restarts).
struct OpcServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// Source timestamp of counter value n: base_ms + n × 1000.
    base_ms: i64,
    user: Option<(String, String)>,
    /// More arguments of the server script.
    args: Vec<String>,
}

impl OpcServer {
    fn start(user: Option<(&str, &str)>) -> OpcServer {
        OpcServer::start_with(user, &[])
    }

    fn start_with(user: Option<(&str, &str)>, args: &[&str]) -> OpcServer {
        // An hour ago, on a whole second plus 123 ms: not what a receive time looks like.
        let base_ms = (energy_gateway::readings::now_ms() / 1000 - 3600) * 1000 + 123;
        OpcServer::start_at(user, args, base_ms)
    }

    fn start_at(user: Option<(&str, &str)>, args: &[&str], base_ms: i64) -> OpcServer {
        let mut s = OpcServer {
            child: None,
            port: common::free_port(),
            dir: tempfile::tempdir().unwrap(),
            base_ms,
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.launch(0);
        s
    }

    fn launch(&mut self, start: u32) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/opcua_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--base-ms", &self.base_ms.to_string()])
            .args(["--start", &start.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("server.log")).unwrap(),
            ));
        if let Some((u, p)) = &self.user {
            cmd.args(["--user", u, "--password", p]);
        }
        cmd.args(&self.args);
        let mut child = cmd
            .spawn()
            .expect("python3 with asyncua (pip install asyncua; scripts/test.sh does it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(SERVER_READY_TIMEOUT).is_err() {
            let _ = child.kill();
            panic!(
                "OPC UA test server not ready within {SERVER_READY_TIMEOUT:?}: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.port)
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server_cert.der")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn gateway_config(dir: &Path, device: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"plant-o\"\ntimezone = \"Asia/Shanghai\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\ncommit_delay = \"0s\"\n{device}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

const NODES: &str = r#"
[[devices.opcua.nodes]]
node = "ns=2;s=Line1.Pieces"
quantity = "production_count"
[[devices.opcua.nodes]]
node = "ns=2;s=Line1.Power"
quantity = "active_power"
scale = 0.001
[[devices.opcua.nodes]]
node = "ns=2;i=5001"
quantity = "frequency"
[[devices.opcua.nodes]]
node = "ns=2;s=Line1.Broken"
quantity = "temperature"
"#;

fn rows(dir: &Path) -> Vec<Reading> {
    Store::open(&dir.join("store.sqlite"), Synchronous::Normal)
        .and_then(|s| s.readings_after(0, 10_000_000))
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.reading)
        .collect()
}

fn of(rows: &[Reading], q: Quantity) -> Vec<Reading> {
    rows.iter().filter(|r| r.quantity == q).cloned().collect()
}

/// The gateway with `device` configured, and that device's status.
fn start_gateway(
    dir: &Path,
    device: &str,
) -> (
    tokio::runtime::Runtime,
    pipeline::RunningGateway,
    std::sync::Arc<energy_gateway::acquisition::DeviceStatus>,
) {
    let rt = runtime();
    let gw = rt
        .block_on(pipeline::start(gateway_config(dir, device)))
        .unwrap();
    let status = gw
        .devices
        .get("line1")
        .expect("line1 in the registry")
        .clone();
    (rt, gw, status)
}

/// Every counter reading carries the server's source timestamp of its value.
fn assert_source_timestamps(counts: &[Reading], base_ms: i64) {
    assert!(!counts.is_empty());
    for r in counts {
        let n = r.value.expect("counter value");
        assert_eq!(r.quality, Quality::Good, "{r:?}");
        assert_eq!(
            r.ts_ms,
            base_ms + (n as i64) * 1000,
            "value {n} stored at {} instead of its source timestamp",
            r.ts_ms
        );
    }
}

#[test]
fn subscription_stores_source_timestamps_and_survives_a_server_restart() {
    let mut server = OpcServer::start(Some(("gw", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\ncarrier = \"production\"\n[devices.opcua]\nendpoint = \"{}\"\nusername = \"gw\"\npassword = {{ env = \"EGW_TEST_OPCUA_PW\" }}\ninterval = \"200ms\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url()
    );
    std::env::set_var("EGW_TEST_OPCUA_PW", "s3cret");
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until("10 counter readings", Duration::from_secs(90), || {
        of(&rows(dir.path()), Quantity::ProductionCount).len() >= 10
    });
    assert!(status.is_online());
    assert_eq!(status.snapshot().mode, Some(AcquisitionMode::Subscribe));
    let all = rows(dir.path());
    assert_source_timestamps(&of(&all, Quantity::ProductionCount), server.base_ms);
    // Power: scaled (W → kW) and stamped like the counter.
    let power = of(&all, Quantity::ActivePower);
    let p = power.last().expect("power readings");
    let n = ((p.ts_ms - server.base_ms) / 1000) as f64;
    assert!(
        (p.value.unwrap() - (10.0 + n / 10.0) * 0.001).abs() < 1e-9,
        "{p:?}"
    );
    // No source timestamp: the server's, flagged.
    let f = of(&all, Quantity::Frequency);
    let f = f.first().expect("frequency reading");
    assert_eq!(f.good_value(), Some(50.0));
    assert!(
        matches!(&f.quality, Quality::Estimated(r) if r.contains("server timestamp")),
        "{f:?}"
    );
    // A bad status: a bad reading without a value.
    let t = of(&all, Quantity::Temperature);
    let t = t.first().expect("temperature reading");
    assert_eq!(t.value, None);
    assert!(
        t.quality.reason().unwrap().contains("BadSensorFailure"),
        "{t:?}"
    );

    // The server goes away: the device goes offline, and comes back with the server.
    server.kill();
    wait_until("device offline", Duration::from_secs(60), || {
        !status.is_online()
    });
    let before = of(&rows(dir.path()), Quantity::ProductionCount).len();
    server.launch(1000);
    wait_until(
        "readings after the restart",
        Duration::from_secs(120),
        || {
            of(&rows(dir.path()), Quantity::ProductionCount)
                .iter()
                .filter(|r| r.value.unwrap_or(0.0) >= 1000.0)
                .count()
                >= 5
        },
    );
    assert!(status.is_online());
    let counts = of(&rows(dir.path()), Quantity::ProductionCount);
    assert!(counts.len() > before);
    assert_source_timestamps(&counts, server.base_ms);
    assert_eq!(status.snapshot().last_error, None);
    rt.block_on(gw.shutdown()).unwrap();
}

/// An embedded server with no subscription to give (BadTooManySubscriptions): the device in
/// `subscribe` mode reads its nodes every interval instead, with the source timestamps.
#[test]
fn a_server_without_subscriptions_is_polled_instead() {
    let server = OpcServer::start_with(None, &["--refuse-subscriptions"]);
    let dir = tempfile::tempdir().unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\n[devices.opcua]\nendpoint = \"{}\"\nmode = \"subscribe\"\ninterval = \"200ms\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url()
    );
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until("5 polled counter readings", Duration::from_secs(90), || {
        of(&rows(dir.path()), Quantity::ProductionCount).len() >= 5
    });
    let s = status.snapshot();
    rt.block_on(gw.shutdown()).unwrap();
    assert!(s.online, "{s:?}");
    assert_eq!(s.last_error, None);
    // The device API says the source polls because the server refused the subscription.
    assert_eq!(s.mode, Some(AcquisitionMode::PollFallback), "{s:?}");
    let all = rows(dir.path());
    assert_source_timestamps(&of(&all, Quantity::ProductionCount), server.base_ms);
}

/// The production counter of a line's PLC, read over OPC UA, is the denominator of the
/// product's unit energy: the month's output is what the counter rose by, stamped with the PLC's
/// source times (a day after the binary's release date: older readings would be refused, and
/// its month is closed when the report is built as of 2030).
#[test]
fn an_opcua_production_counter_is_the_output_of_unit_product_energy() {
    let day = energy_gateway::clock::floor_ms() + 86_400_000;
    let (t0, month) = {
        let d = chrono::DateTime::from_timestamp_millis(day)
            .unwrap()
            .with_timezone(&chrono_tz::Asia::Shanghai);
        (d.timestamp_millis(), d.format("%Y-%m").to_string())
    };
    let server = OpcServer::start_at(None, &[], t0 + 60_000);
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[devices]]\nid = \"line1\"\ncarrier = \"production\"\n[devices.opcua]\nendpoint = \"{}\"\ninterval = \"200ms\"\nmax_backoff = \"2s\"\n\
         [[devices.opcua.nodes]]\nnode = \"ns=2;s=Line1.Pieces\"\nquantity = \"production_count\"\n\
         [[devices]]\nid = \"main\"\ncarrier = \"electricity\"\n[devices.modbus]\naddress = \"127.0.0.1:{}\"\ninterval = \"60s\"\n\
         [[devices.points]]\nquantity = \"energy_import\"\nregister = 0\ntype = \"f32\"\n\
         [[accounting.products]]\nid = \"piece\"\nunit = \"piece\"\ncommon_share = 1.0\nproduction_device = \"line1\"\n",
        server.url(),
        common::free_port()
    );
    let (rt, gw, _status) = start_gateway(dir.path(), &body);
    wait_until("20 counter readings", Duration::from_secs(90), || {
        of(&rows(dir.path()), Quantity::ProductionCount).len() >= 20
    });
    rt.block_on(gw.shutdown()).unwrap();
    let counts = of(&rows(dir.path()), Quantity::ProductionCount);
    assert_source_timestamps(&counts, server.base_ms);
    let values: Vec<f64> = counts.iter().filter_map(|r| r.value).collect();
    let output = values.iter().cloned().fold(f64::MIN, f64::max)
        - values.iter().cloned().fold(f64::MAX, f64::min);
    assert!(output >= 19.0, "{values:?}");
    // The site's meter: 1 000 kWh in the same quarter hour = 0.1229 tce (equivalent value).
    let mut store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
    store
        .insert_readings(&[
            Reading::new("main", Quantity::EnergyImport, 0.0, t0),
            Reading::new("main", Quantity::EnergyImport, 1000.0, t0 + 900_000),
        ])
        .unwrap();
    drop(store);
    let cfg = gateway_config(dir.path(), &body);
    let period: energy_gateway::accounting::calendar::Period = month.parse().unwrap();
    // As of 2030: the month is closed whatever the real date.
    let r = energy_gateway::reporting::build_as_of(
        &cfg.accounting_context(),
        period,
        false,
        1_893_427_200_000,
    )
    .unwrap();
    let piece = &r.products[0];
    assert_eq!(piece.output_origin, "counter");
    assert_eq!(piece.output, Some(output), "{piece:?}");
    assert!(piece.energy_tce > 0.0, "{piece:?}");
    let unit = piece.unit_energy.expect("unit energy");
    assert!(
        (unit - piece.energy_tce * 1000.0 / output).abs() < 1e-9,
        "{unit} kgce/piece, {piece:?}"
    );
}

#[test]
fn wrong_credentials_are_refused_with_a_clear_error() {
    let server = OpcServer::start(Some(("gw", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\n[devices.opcua]\nendpoint = \"{}\"\nusername = \"gw\"\npassword = \"wrong\"\ninterval = \"200ms\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url()
    );
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until("the refusal", Duration::from_secs(60), || {
        status.snapshot().last_error.is_some()
    });
    let s = status.snapshot();
    let err = s.last_error.unwrap();
    assert!(
        err.contains("refused the credentials") && err.contains("BadUserAccessDenied"),
        "{err}"
    );
    assert!(err.contains("opcua.username and opcua.password"), "{err}");
    assert!(!s.online);
    assert!(s.failures >= 1);
    rt.block_on(gw.shutdown()).unwrap();
    assert!(
        rows(dir.path()).is_empty(),
        "nothing is read without a session"
    );
}

#[test]
fn sign_and_encrypt_with_a_trusted_server_certificate_in_poll_mode() {
    let server = OpcServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    // The installer's step: the server's certificate goes into the PKI's trusted/ folder.
    let trusted = dir.path().join("opcua/pki/trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(server.cert(), trusted.join("server.der")).unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\n[devices.opcua]\nendpoint = \"{}\"\nsecurity_policy = \"Basic256Sha256\"\nsecurity_mode = \"sign_and_encrypt\"\nmode = \"poll\"\ninterval = \"300ms\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url()
    );
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until(
        "5 polled counter readings",
        Duration::from_secs(120),
        || of(&rows(dir.path()), Quantity::ProductionCount).len() >= 5,
    );
    assert!(status.is_online());
    assert!(status.snapshot().last_error.is_none());
    rt.block_on(gw.shutdown()).unwrap();
    assert_source_timestamps(
        &of(&rows(dir.path()), Quantity::ProductionCount),
        server.base_ms,
    );
    // The gateway's own key pair was made on first use; the private key is 0600.
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("opcua/pki/private/private.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    assert!(dir.path().join("opcua/pki/own/cert.der").is_file());
}

#[test]
fn an_untrusted_server_certificate_is_rejected_and_kept_for_review() {
    let server = OpcServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\n[devices.opcua]\nendpoint = \"{}\"\nsecurity_policy = \"Basic256Sha256\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url()
    );
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until("the rejection", Duration::from_secs(60), || {
        status.snapshot().last_error.is_some()
    });
    rt.block_on(gw.shutdown()).unwrap();
    let err = status.snapshot().last_error.unwrap();
    assert!(
        err.contains("not trusted") && err.contains("trusted"),
        "{err}"
    );
    let rejected = std::fs::read_dir(dir.path().join("opcua/pki/rejected"))
        .unwrap()
        .count();
    assert!(
        rejected >= 1,
        "the server's certificate is kept in rejected/"
    );
    assert!(rows(dir.path()).is_empty());
}

#[test]
fn a_user_certificate_logs_in() {
    let server = OpcServer::start(Some(("gw", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    // The user's certificate and key, as a site's PKI would issue them.
    let (cert, key) = (dir.path().join("user.der"), dir.path().join("user.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gateway-user",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trusted = dir.path().join("opcua/pki/trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(server.cert(), trusted.join("server.der")).unwrap();
    let device = format!(
        "[[devices]]\nid = \"line1\"\n[devices.opcua]\nendpoint = \"{}\"\nsecurity_policy = \"Basic256Sha256\"\nuser_cert_file = \"{}\"\nuser_key_file = \"{}\"\ninterval = \"200ms\"\nmax_backoff = \"2s\"\n{NODES}",
        server.url(),
        cert.display(),
        key.display()
    );
    let (rt, gw, status) = start_gateway(dir.path(), &device);
    wait_until("3 counter readings", Duration::from_secs(60), || {
        of(&rows(dir.path()), Quantity::ProductionCount).len() >= 3
    });
    assert!(status.is_online());
    rt.block_on(gw.shutdown()).unwrap();
}

fn probe(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    cmd.arg("probe").args(args);
    cmd.arg("--pki-dir").arg(dir.path().join("pki"));
    cmd.output().unwrap()
}

#[test]
fn probe_reads_nodes_browses_and_says_why_not() {
    let server = OpcServer::start(None);
    let url = server.url();
    let out = probe(&[
        "--opcua",
        &url,
        "--node",
        "ns=2;s=Line1.Pieces",
        "--node",
        "ns=2;i=5001",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ns=2;s=Line1.Pieces") && text.contains("50"),
        "{text}"
    );

    // Browse: the variables under Objects, with their paths.
    let out = probe(&["--opcua", &url, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["path"].as_str())
        .collect();
    assert!(paths.contains(&"Line1/Pieces"), "{paths:?}");
    assert!(paths.contains(&"Line1/Frequency"), "{paths:?}");

    // Only a bad node: nothing read, non-zero exit.
    let out = probe(&["--opcua", &url, "--node", "ns=2;s=Line1.Broken"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no value could be read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nobody listening: says so, non-zero exit.
    let nobody = format!("opc.tcp://127.0.0.1:{}/", common::free_port());
    let out = probe(&["--opcua", &nobody]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probe failed") && err.contains(&nobody),
        "{err}"
    );
}

/// The OPC UA stack's crypto is RustCrypto (rsa, aes, sha2, x509-cert): Cargo.lock, which holds
/// every package of every target and feature the build can use, has no OpenSSL and no aws-lc
/// (what `cargo tree -i openssl-sys` / `-i aws-lc-sys` confirm by saying nothing).
#[test]
fn the_opcua_stack_keeps_openssl_and_aws_lc_out_of_the_tree() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock is committed");
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(packages.len() > 100, "{} packages", packages.len());
    for banned in ["openssl", "openssl-sys", "aws-lc-rs", "aws-lc-sys"] {
        assert!(!packages.contains(&banned), "{banned} is in Cargo.lock");
    }
    let crypto = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"async-opcua-crypto\""))
        .expect("async-opcua-crypto in Cargo.lock");
    for rust_crypto in ["\"rsa\"", "\"aes\"", "\"sha2\"", "\"x509-cert\""] {
        assert!(crypto.contains(rust_crypto), "{rust_crypto}: {crypto}");
    }
}
