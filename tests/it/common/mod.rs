//! Integration-test harness: real `mosquitto` and `influxd` processes on loopback.
//!
//! Include it from an integration test with `mod common;`.
//!
//! * Every server gets its own free port(s) and its own `tempfile::TempDir` (config, logs, data),
//!   so tests can run in parallel and leave nothing behind.
//! * A missing binary is a hard failure (never a skip): install the servers with
//!   `apt-get install -y mosquitto influxdb` or run `scripts/test.sh`, which does it for you.
//! * `stop()` sends SIGTERM and waits (SIGKILL after 5 s); `kill()` sends SIGKILL (crash);
//!   `Drop` kills and reaps the process.
//! * Only std, `tempfile`, `serde_json` and `rumqttc` are used; HTTP goes through the tiny
//!   HTTP/1.1 client at the bottom of this file ([`http_request`]).
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The command that installs the servers this harness needs (named in every "binary missing" panic).
pub const APT_INSTALL: &str = "apt-get install -y mosquitto influxdb socat";

/// Loopback host every server binds to.
pub const HOST: &str = "127.0.0.1";

const MOSQUITTO_READY_TIMEOUT: Duration = Duration::from_secs(10);
const INFLUXD_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop()` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Ports, binaries, processes
// ---------------------------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, drop the listener).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports. They are drawn at random below the kernel's ephemeral range
/// (32768 and up on Linux), so that the outgoing connections of other tests running at the same
/// time cannot take a port between this check and the server binding it. All listeners are held
/// until every port is known, so one call never returns the same port twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut tries = 0;
    while listeners.len() < n {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 10_000 + (seed % 22_000) as u16;
        tries += 1;
        match TcpListener::bind((HOST, port)) {
            Ok(l) => listeners.push(l),
            Err(_) if tries < 1000 => continue,
            Err(_) => listeners.push(TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0")),
        }
    }
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Full path of an executable, looked up on `PATH` and then in the standard sbin directories
/// (Debian installs `mosquitto` in `/usr/sbin`, which a non-root `PATH` often lacks).
/// Panics with the apt command when it is not installed.
pub fn find_binary(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return candidate;
            }
        }
    }
    panic!(
        "`{name}` was not found on PATH (nor in /usr/sbin, /usr/local/sbin, /sbin). \
         The integration tests need real servers; install them with:\n    \
         sudo {APT_INSTALL}\n(or run scripts/test.sh, which installs them when missing)"
    );
}

/// Spawns `bin args…` with stdin closed and stdout+stderr appended to `log`.
fn spawn_logged(bin: &Path, args: &[&str], log: &Path) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log handle");
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                panic!(
                    "cannot run {}: {e}; install the test servers with: sudo {APT_INSTALL}",
                    bin.display()
                )
            }
            panic!("cannot spawn {}: {e}", bin.display())
        })
}

/// Sends a signal by name ("TERM", "KILL", …) with the `kill` utility (std only has SIGKILL).
fn send_signal(child: &mut Child, signal: &str) -> bool {
    let pid = child.id().to_string();
    let sig = format!("-{signal}");
    let via_kill = Command::new("kill")
        .args([sig.as_str(), pid.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match via_kill {
        Ok(status) => status.success(),
        // No `kill` binary: the shell builtin does the same.
        Err(_) => Command::new("sh")
            .args(["-c", &format!("kill {sig} {pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
    }
}

/// SIGTERM, wait up to `grace` (polling `try_wait`), then SIGKILL and wait. Reaps the child,
/// so no zombie is left behind. Returns the exit status if it could be collected.
fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if send_signal(child, "TERM") {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
    }
    kill_and_reap(child)
}

/// Sends SIGTERM and waits up to `limit` for the process to exit. Returns its exit status, or
/// `Err` (after SIGKILL) when it was still running at the limit.
pub fn sigterm_within(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let started = Instant::now();
    if !send_signal(child, "TERM") {
        return Err("could not send SIGTERM".into());
    }
    while started.elapsed() < limit {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    kill_and_reap(child);
    Err(format!("still running {limit:?} after SIGTERM"))
}

/// SIGKILL and wait (std's `Child::kill` is SIGKILL).
fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = child.kill();
    child.wait().ok()
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Mosquitto
// ---------------------------------------------------------------------------------------------

/// Options for [`Mosquitto::start_with`].
#[derive(Clone, Debug, Default)]
pub struct MosquittoOptions {
    /// `persistence true` with `persistence_location` in the temp dir. The database is saved
    /// on every change (`autosave_on_changes true`, `autosave_interval 1`), so queued QoS1
    /// messages of persistent sessions survive a graceful `stop()`/`restart()`, and a SIGKILL
    /// (`kill()`) once the save after the change is done (see [`Mosquitto::wait_for_db_save`]).
    pub persistence: bool,
    /// Extra lines appended verbatim to the generated `mosquitto.conf`.
    pub extra_config: String,
}

/// A mosquitto 2.x broker on `127.0.0.1:port`, anonymous access allowed.
pub struct Mosquitto {
    pub port: u16,
    options: MosquittoOptions,
    child: Option<Child>,
    conf: PathBuf,
    dir: TempDir,
}

impl Mosquitto {
    /// Broker without persistence (`persistence false`).
    pub fn start() -> Mosquitto {
        Self::start_with(MosquittoOptions::default())
    }

    /// Broker whose in-memory database (persistent sessions, queued QoS1 messages, retained
    /// messages) is saved in the temp dir and reloaded by [`Mosquitto::restart`].
    pub fn start_with_persistence() -> Mosquitto {
        Self::start_with(MosquittoOptions {
            persistence: true,
            ..Default::default()
        })
    }

    pub fn start_with(options: MosquittoOptions) -> Mosquitto {
        let bin = find_binary("mosquitto");
        let dir = tempfile::Builder::new()
            .prefix("gw-mosquitto-")
            .tempdir()
            .expect("create temp dir for mosquitto");
        let port = free_port();
        let d = dir.path().display();
        // `user root`: as root, mosquitto 2.x otherwise drops privileges to user `mosquitto`,
        // which cannot write into our 0700 temp dir. For a non-root user the option is ignored.
        let mut conf = format!(
            "user root\n\
             listener {port} {HOST}\n\
             allow_anonymous true\n\
             log_dest file {d}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n\
             log_timestamp true\n"
        );
        if options.persistence {
            conf.push_str(&format!(
                "persistence true\n\
                 persistence_location {d}/\n\
                 persistence_file mosquitto.db\n\
                 autosave_on_changes true\n\
                 autosave_interval 1\n"
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        if !options.extra_config.is_empty() {
            conf.push_str(&options.extra_config);
            conf.push('\n');
        }
        let conf_path = dir.path().join("mosquitto.conf");
        fs::write(&conf_path, conf).expect("write mosquitto.conf");

        let mut broker = Mosquitto {
            port,
            options,
            child: None,
            conf: conf_path,
            dir,
        };
        broker.launch(&bin);
        broker
    }

    fn launch(&mut self, bin: &Path) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let conf = self.conf.to_str().expect("utf-8 temp path").to_owned();
        let stdio_log = self.dir.path().join("mosquitto.stdio.log");
        self.child = Some(spawn_logged(bin, &["-c", &conf], &stdio_log));
        let addr: SocketAddr = self.addr().parse().expect("socket addr");
        let deadline = Instant::now() + MOSQUITTO_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                panic!(
                    "mosquitto exited during startup ({status}) on port {}\n{}",
                    self.port,
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    kill_and_reap(&mut child);
                }
                panic!(
                    "mosquitto did not accept connections on {addr} within {:?}\n{}",
                    MOSQUITTO_READY_TIMEOUT,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://{HOST}:{}", self.port)
    }

    /// rumqttc options for this broker (v3.1.1, clean session, 5 s keep-alive).
    pub fn mqtt_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(client_id, HOST, self.port);
        o.set_keep_alive(Duration::from_secs(5));
        o
    }

    pub fn options(&self) -> &MosquittoOptions {
        &self.options
    }

    /// The temp dir holding `mosquitto.conf`, the logs and (with persistence) `mosquitto.db`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Broker log plus anything the process wrote to stdout/stderr (for assertion messages).
    pub fn log(&self) -> String {
        let d = self.dir.path();
        format!(
            "--- mosquitto.log ---\n{}\n--- mosquitto stdout/stderr ---\n{}",
            read_lossy(&d.join("mosquitto.log")),
            read_lossy(&d.join("mosquitto.stdio.log"))
        )
    }

    /// How many times the broker has written its persistence database so far (counts the
    /// "Saving in-memory database" lines in the log; survives restarts).
    pub fn db_saves(&self) -> usize {
        read_lossy(&self.dir.path().join("mosquitto.log"))
            .matches("Saving in-memory database")
            .count()
    }

    /// Waits until the broker has *finished* a database save that started after
    /// [`Mosquitto::db_saves`] returned `saves_before`. With persistence the broker saves in its
    /// main loop right after each change, so before a SIGKILL (`kill()`) that must not lose a
    /// change do:
    /// `let n = broker.db_saves(); /* change, e.g. publish + PUBACK */ broker.wait_for_db_save(n, t); broker.kill();`
    /// (The log line is written when a save *starts*; the MQTT round trip of
    /// [`Mosquitto::barrier`] afterwards proves the single-threaded broker finished it.)
    /// A graceful `stop()`/`restart()` always saves and needs none of this.
    pub fn wait_for_db_save(&self, saves_before: usize, timeout: Duration) {
        assert!(
            self.options.persistence,
            "wait_for_db_save needs start_with_persistence()"
        );
        let deadline = Instant::now() + timeout;
        while self.db_saves() <= saves_before {
            if Instant::now() > deadline {
                panic!(
                    "mosquitto did not save its database within {timeout:?}\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(5));
        }
        self.barrier();
    }

    /// Synchronous MQTT 3.1.1 round trip (CONNECT → CONNACK → DISCONNECT, clean session) on a
    /// fresh connection. mosquitto is single-threaded, so when this returns it has finished
    /// everything it was doing when the CONNECT arrived (e.g. a database save).
    pub fn barrier(&self) {
        let id = format!("gw-harness-barrier-{}", std::process::id());
        let mut pkt = vec![
            0x10,
            (12 + id.len()) as u8,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0x02,
            0,
            30,
        ];
        pkt.extend_from_slice(&(id.len() as u16).to_be_bytes());
        pkt.extend_from_slice(id.as_bytes());
        let result = (|| -> io::Result<[u8; 4]> {
            let addr: SocketAddr = self.addr().parse().expect("socket addr");
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(&pkt)?;
            let mut connack = [0u8; 4];
            s.read_exact(&mut connack)?;
            let _ = s.write_all(&[0xE0, 0x00]);
            Ok(connack)
        })();
        match result {
            Ok([0x20, 0x02, _, 0x00]) => {}
            other => panic!("MQTT barrier round trip failed: {other:?}\n{}", self.log()),
        }
    }

    /// Graceful stop: SIGTERM (mosquitto saves its database), wait, SIGKILL after 5 s.
    /// No-op when not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
    }

    /// Crash: SIGKILL and reap. No-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts the broker again on the same port with the same config and data dir
    /// (stopping it gracefully first if it is still running).
    pub fn restart(&mut self) {
        self.stop();
        let bin = find_binary("mosquitto");
        self.launch(&bin);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// InfluxDB 1.x
// ---------------------------------------------------------------------------------------------

/// An `influxd` 1.x server: HTTP API on `127.0.0.1:port`, RPC on `127.0.0.1:rpc_port`, all data
/// in a temp dir (kept across `stop()` / `start_again()`).
pub struct Influxd {
    pub port: u16,
    pub rpc_port: u16,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Option<Child>,
    conf: PathBuf,
    dir: TempDir,
}

impl Influxd {
    pub fn start() -> Influxd {
        let bin = find_binary("influxd");
        let dir = tempfile::Builder::new()
            .prefix("gw-influxd-")
            .tempdir()
            .expect("create temp dir for influxd");
        let ports = free_ports(2);
        let (port, rpc_port) = (ports[0], ports[1]);
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\n\
             bind-address = \"{HOST}:{rpc_port}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"{HOST}:{port}\"\n  log-enabled = false\n\
             [logging]\n  level = \"warn\"\n"
        );
        let conf_path = dir.path().join("influxdb.conf");
        fs::write(&conf_path, conf).expect("write influxdb.conf");
        let mut server = Influxd {
            port,
            rpc_port,
            url: format!("http://{HOST}:{port}"),
            child: None,
            conf: conf_path,
            dir,
        };
        server.launch(&bin);
        server
    }

    fn launch(&mut self, bin: &Path) {
        assert!(self.child.is_none(), "influxd is already running");
        let conf = self.conf.to_str().expect("utf-8 temp path").to_owned();
        let log = self.dir.path().join("influxd.log");
        self.child = Some(spawn_logged(bin, &["-config", &conf], &log));
        let deadline = Instant::now() + INFLUXD_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                panic!(
                    "influxd exited during startup ({status}), http port {} rpc port {}\n{}",
                    self.port,
                    self.rpc_port,
                    self.log()
                );
            }
            if self.ping() {
                return;
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    kill_and_reap(&mut child);
                }
                panic!(
                    "influxd did not answer GET /ping with 204 on {} within {:?}\n{}",
                    self.url,
                    INFLUXD_READY_TIMEOUT,
                    self.log()
                );
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// influxd's stdout/stderr (level `warn`).
    pub fn log(&self) -> String {
        format!(
            "--- influxd.log ---\n{}",
            read_lossy(&self.dir.path().join("influxd.log"))
        )
    }

    /// `GET /ping` answered 204.
    pub fn ping(&self) -> bool {
        matches!(
            http_request_timeout(&self.addr(), "GET", "/ping", &[], b"", Duration::from_secs(2)),
            Ok(r) if r.status == 204
        )
    }

    /// Any HTTP request against this server; panics on transport errors.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http_request(&self.addr(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}\n{}", self.url, self.log()))
    }

    /// `CREATE DATABASE "db"`; panics if influxd reports an error.
    pub fn create_database(&self, db: &str) {
        let v = self.query("", &format!("CREATE DATABASE {}", quote_ident(db)));
        if let Some(err) = statement_error(&v) {
            panic!("CREATE DATABASE {db}: {err}");
        }
    }

    /// `POST /query` with form fields `db` (omitted when empty) and `q`; returns the JSON body
    /// as-is (statement errors are inside `results[i].error`). Panics on transport errors or a
    /// non-JSON body.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let mut fields = Vec::new();
        if !db.is_empty() {
            fields.push(("db", db));
        }
        fields.push(("q", q));
        let body = form_encode(&fields);
        let resp = self.request(
            "POST",
            "/query",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
            panic!(
                "query {q:?} on db {db:?}: HTTP {} non-JSON body ({e}): {}",
                resp.status,
                resp.text()
            )
        })
    }

    /// `POST /write?db=DB&precision=PRECISION` with a line-protocol body.
    /// Returns (status, body); 204 means written. `precision` may be empty (nanoseconds).
    pub fn write(&self, db: &str, precision: &str, body: &str) -> (u16, String) {
        let mut params = vec![("db", db)];
        if !precision.is_empty() {
            params.push(("precision", precision));
        }
        let path = format!("/write?{}", form_encode(&params));
        let resp = self.request(
            "POST",
            &path,
            &[("Content-Type", "text/plain; charset=utf-8")],
            body.as_bytes(),
        );
        (resp.status, resp.text())
    }

    /// Number of points in `measurement`: runs `SELECT count(*) FROM "measurement"` and takes the
    /// largest `count_<field>` column of the first row (count(*) gives one column per field, so
    /// summing would count fields, not points). Exact when some field is present in every point;
    /// use [`Influxd::count_field`] for one field. 0 for an empty/missing measurement or a
    /// missing database; panics on other query errors.
    pub fn count(&self, db: &str, measurement: &str) -> u64 {
        let q = format!("SELECT count(*) FROM {}", quote_ident(measurement));
        let v = self.query(db, &q);
        first_row_counts(&v, &q).into_iter().max().unwrap_or(0)
    }

    /// `SELECT count("field") FROM "measurement"`; 0 when the series is empty.
    pub fn count_field(&self, db: &str, measurement: &str, field: &str) -> u64 {
        let q = format!(
            "SELECT count({}) FROM {}",
            quote_ident(field),
            quote_ident(measurement)
        );
        let v = self.query(db, &q);
        first_row_counts(&v, &q).into_iter().max().unwrap_or(0)
    }

    /// Polls [`Influxd::count`] until it is at least `expected` or `timeout` passes; returns the
    /// last count (assert on it).
    pub fn wait_for_count(
        &self,
        db: &str,
        measurement: &str,
        expected: u64,
        timeout: Duration,
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.count(db, measurement);
            if n >= expected || Instant::now() > deadline {
                return n;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Graceful stop: SIGTERM, wait, SIGKILL after 5 s. Data stays in the temp dir.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
    }

    /// Crash: SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts influxd again with the same ports, config and data (stopping it first if running).
    pub fn start_again(&mut self) {
        self.stop();
        let bin = find_binary("influxd");
        self.launch(&bin);
    }

    /// Same as [`Influxd::start_again`].
    pub fn restart(&mut self) {
        self.start_again();
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

/// InfluxQL identifier quoting: `"name"` with `\` and `"` escaped.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The first `results[i].error` (or a top-level `error`) of an InfluxDB /query response.
pub fn statement_error(v: &serde_json::Value) -> Option<String> {
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(e.to_owned());
    }
    v.get("results")?
        .as_array()?
        .iter()
        .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(str::to_owned))
}

/// Numeric values of the `count*` columns in the first row of the first series.
fn first_row_counts(v: &serde_json::Value, q: &str) -> Vec<u64> {
    if let Some(err) = statement_error(v) {
        if err.contains("database not found") {
            return Vec::new();
        }
        panic!("{q}: {err}");
    }
    let Some(series) = v.pointer("/results/0/series/0") else {
        return Vec::new(); // no series: measurement empty or missing
    };
    let columns = series
        .get("columns")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let Some(row) = series.pointer("/values/0").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    columns
        .iter()
        .zip(row)
        .filter(|(c, _)| c.as_str().is_some_and(|c| c.starts_with("count")))
        .filter_map(|(_, val)| val.as_u64().or_else(|| val.as_f64().map(|f| f as u64)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tiny HTTP/1.1 client (std::net only)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names as sent by the server; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    /// Body with any chunked transfer encoding removed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// One request over a fresh connection to `addr` (`host:port`), `Connection: close`, 30 s
/// timeouts. `path` includes any query string. `Content-Length` is always sent for non-GET/HEAD
/// requests or non-empty bodies.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    http_request_timeout(addr, method, path, headers, body, HTTP_TIMEOUT)
}

pub fn http_get(addr: &str, path: &str) -> io::Result<HttpResponse> {
    http_request(addr, "GET", path, &[], b"")
}

pub fn http_post(
    addr: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<HttpResponse> {
    http_request(addr, "POST", path, &[("Content-Type", content_type)], body)
}

pub fn http_request_timeout(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let sock: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot resolve {addr}"),
                )
            })?,
    };
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);

    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: gw-test-harness\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let bodyless = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    if !body.is_empty() || !bodyless {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut raw_req = req.into_bytes();
    raw_req.extend_from_slice(body);
    stream.write_all(&raw_req)?;
    stream.flush()?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete HTTP/1.x response (the server closed the connection after it).
/// Skips interim 1xx responses.
pub fn parse_response(raw: &[u8], head_request: bool) -> io::Result<HttpResponse> {
    let mut raw = raw;
    loop {
        let head_end = find(raw, b"\r\n\r\n")
            .ok_or_else(|| invalid(format!("incomplete HTTP response ({} bytes)", raw.len())))?;
        let head = std::str::from_utf8(&raw[..head_end])
            .map_err(|_| invalid("non-UTF-8 response head"))?;
        let rest = &raw[head_end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        if (100..200).contains(&status) {
            raw = rest;
            continue;
        }
        let mut resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        resp.body = if chunked {
            decode_chunked(rest)?
        } else if let Some(len) = resp.header("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
            if rest.len() < len {
                return Err(invalid(format!(
                    "body truncated: {} of {len} bytes",
                    rest.len()
                )));
            }
            rest[..len].to_vec()
        } else {
            rest.to_vec() // delimited by connection close
        };
        return Ok(resp);
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (chunk extensions and trailers are ignored).
pub fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end =
            find(data, b"\r\n").ok_or_else(|| invalid("chunked body: missing chunk-size line"))?;
        let line = std::str::from_utf8(&data[..line_end])
            .map_err(|_| invalid("chunked body: bad size line"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("chunked body: bad chunk size {size_hex:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out); // trailers (if any) are ignored
        }
        if data.len() < size {
            return Err(invalid(format!(
                "chunked body truncated: want {size}, have {}",
                data.len()
            )));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        data = data
            .strip_prefix(b"\r\n")
            .ok_or_else(|| invalid("chunked body: missing CRLF after chunk"))?;
    }
}

/// Percent-encodes one form/query component (unreserved characters kept, everything else `%XX`).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k1=v1&k2=v2` with both sides percent-encoded (valid as a query string and as an
/// `application/x-www-form-urlencoded` body).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A pair of connected pseudo-terminals made by `socat`: what one end writes the other reads, as
/// on an RS-485 line between the gateway and its meters.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn start() -> PtyPair {
        let socat = find_binary("socat");
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("ttyA");
        let b = dir.path().join("ttyB");
        let child = Command::new(socat)
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat made no pty pair within 10 s"
            );
            sleep(Duration::from_millis(20));
        }
        PtyPair {
            a,
            b,
            child: Some(child),
            _dir: dir,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }
}

/// The `energy-gateway` binary with no `EGW__` override from the developer's shell, and its
/// store in `data_dir`.
pub fn gateway_cmd(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_energy-gateway"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EGW__") {
            c.env_remove(k);
        }
    }
    c.env("EGW__STORAGE__DATA_DIR", data_dir);
    // Reports carry the day they were made: fixed, so that golden files stay golden
    // (2026-12-01 in Shanghai).
    c.env("SOURCE_DATE_EPOCH", "1796054400");
    c
}

/// Runs the gateway binary with `args` to completion.
pub fn run_gateway(data_dir: &Path, args: &[&str]) -> std::process::Output {
    gateway_cmd(data_dir)
        .args(args)
        .output()
        .expect("running energy-gateway")
}

/// Its stdout, after asserting it succeeded (showing both streams when it did not).
pub fn expect_success(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Debian's Chromium, or a panic naming the package to install.
pub fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "headless Chromium is needed: apt-get install -y chromium (scripts/test.sh installs it)"
    );
}

/// Runs Chromium headless on `url` with a fresh profile and no background networking (the
/// machine's network is closed), plus `flags` (--dump-dom, --screenshot, window size…). Killed
/// after `limit`.
pub fn run_chromium(url: &str, flags: &[String], limit: Duration) -> std::process::Output {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(flags)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        match child.try_wait().expect("waiting for chromium") {
            Some(_) => return child.wait_with_output().expect("chromium output"),
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("chromium output");
                panic!(
                    "chromium did not finish within {limit:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => sleep(Duration::from_millis(50)),
        }
    }
}
