//! The InfluxDB v2 write path (`POST /api/v2/write`) against an in-test stand-in: no InfluxDB 2.x
//! server can be installed on the build machines, so a small HTTP/1.1 server here plays one. It
//! checks what a 2.x server checks (path, org, bucket, precision, `Authorization: Token`), gunzips
//! and parses the body with the `influxdb-line-protocol` crate, keeps points the way InfluxDB does
//! (one per series and timestamp, so replays overwrite), and answers as each test scripts it:
//! 204, partial writes (400 with a realistic JSON body), 401/403/404, 413, 429/503 with
//! `Retry-After`, 500 and dropped connections.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use energy_gateway::config::{self, Config, Synchronous};
use energy_gateway::outputs::influxdb::{InfluxOutput, OutputStatus};
use energy_gateway::readings::{Quantity, Reading};
use energy_gateway::storage::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// The stand-in server
// ---------------------------------------------------------------------------------------------

/// One write request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    at: Instant,
    path: String,
    query: BTreeMap<String, String>,
    headers: HashMap<String, String>,
    /// The body after gunzip.
    body: String,
}

impl Request {
    fn lines(&self) -> Vec<&str> {
        self.body.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// What to answer.
enum Reply {
    Status(u16, Vec<(String, String)>, String),
    /// Close the connection without answering.
    Drop,
}

fn status(code: u16) -> Reply {
    Reply::Status(code, vec![], String::new())
}

type Script = Box<dyn FnMut(usize, &Request, &mut Points) -> Reply + Send>;

/// Points kept by the server: (series key, timestamp) → line, as InfluxDB keys them.
#[derive(Default)]
struct Points {
    by_key: BTreeMap<(String, i64), String>,
}

impl Points {
    /// Keeps the lines for which `accept` says yes; returns the 1-based numbers of the others.
    fn keep(&mut self, body: &str, accept: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
        let mut rejected = Vec::new();
        for (i, line) in body.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            if !accept(line) {
                rejected.push((i + 1, line.to_string()));
                continue;
            }
            let parsed = influxdb_line_protocol::parse_lines(line)
                .next()
                .expect("one line")
                .unwrap_or_else(|e| {
                    panic!("the gateway sent a line that does not parse ({e}): {line}")
                });
            let series = parsed.series.to_string();
            let ts = parsed.timestamp.expect("every line has a timestamp");
            self.by_key.insert((series, ts), line.to_string());
        }
        rejected
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }

    fn contains_marker(&self, marker: &str) -> bool {
        self.by_key.values().any(|l| l.contains(marker))
    }
}

struct Fake {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    points: Arc<Mutex<Points>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(script: Script) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let points = Arc::new(Mutex::new(Points::default()));
        let script = Arc::new(Mutex::new(script));
        let (r, p) = (requests.clone(), points.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (r, p, s) = (r.clone(), p.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, r, p, s).await;
                });
            }
        });
        Fake {
            addr,
            requests,
            points,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn points(&self) -> std::sync::MutexGuard<'_, Points> {
        self.points.lock().unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

async fn serve(
    mut sock: TcpStream,
    requests: Arc<Mutex<Vec<Request>>>,
    points: Arc<Mutex<Points>>,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // Head
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .expect("the gateway sends Content-Length");
        while buf.len() < len {
            let mut chunk = [0u8; 65536];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let raw: Vec<u8> = buf.drain(..len).collect();
        let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .expect("the gzip body decodes");
            s
        } else {
            String::from_utf8(raw).expect("utf-8 body")
        };
        let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
        let query = qs
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (url_decode(k), url_decode(v)))
            .collect();
        assert_eq!(method, "POST");
        let req = Request {
            at: Instant::now(),
            path: path.to_string(),
            query,
            headers,
            body,
        };
        let reply = {
            let n = {
                let mut r = requests.lock().unwrap();
                r.push(req.clone());
                r.len()
            };
            let mut p = points.lock().unwrap();
            (script.lock().unwrap())(n, &req, &mut p)
        };
        match reply {
            Reply::Drop => return Ok(()),
            Reply::Status(code, hdrs, body) => {
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
                if !body.is_empty() {
                    out.push_str("Content-Type: application/json; charset=utf-8\r\n");
                }
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                sock.write_all(out.as_bytes()).await?;
            }
        }
    }
}

/// Keeps every line and answers 204, like a healthy server.
fn accept_all(p: &mut Points, req: &Request) -> Reply {
    p.keep(&req.body, |_| true);
    status(204)
}

// ---------------------------------------------------------------------------------------------
// The gateway side
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "s3cr3t-token";

fn config(dir: &std::path::Path, url: &str, extra: &str) -> Config {
    let toml = format!(
        r#"
[site]
id = "plant-v2"
[storage]
data_dir = "{dir}"
[outputs.influxdb.park]
url = "{url}"
api = "v2"
org = "park org"
bucket = "energy/raw"
token = "{TOKEN}"
precision = "us"
batch_size = 50
flush_interval = "10ms"
timeout = "2s"
backoff_initial = "100ms"
backoff_max = "400ms"
setup_retry_interval = "300ms"
{extra}
"#,
        dir = dir.display(),
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:?}"))
}

/// Readings 1..=n; those whose index is in `poison` come from device `poison` (the marker the
/// stand-in rejects in partial-write tests).
fn readings(n: usize, poison: &[usize]) -> Vec<Reading> {
    let t0 = 1_763_000_000_000;
    (1..=n)
        .map(|i| {
            let dev = if poison.contains(&i) {
                "poison"
            } else {
                "meter"
            };
            Reading::new(
                dev,
                Quantity::ActivePower,
                i as f64 * 0.5,
                t0 + i as i64 * 1000,
            )
        })
        .collect()
}

struct Run {
    dir: tempfile::TempDir,
    status: Arc<OutputStatus>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    last_id: i64,
}

impl Run {
    /// Stores `rs`, then starts the output `park` on the store.
    fn start(fake_url: &str, extra: &str, rs: &[Reading]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), fake_url, extra);
        let mut store = Store::open(&cfg.store_path(), Synchronous::Normal).unwrap();
        let last_id = store.insert_readings(rs).unwrap();
        let status = Arc::new(OutputStatus::default());
        let out = InfluxOutput::new(
            "park",
            cfg.outputs.influxdb["park"].clone(),
            &cfg.site,
            &cfg.devices,
            cfg.store_path(),
            status.clone(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let (_tx, rx) = watch::channel(last_id);
        let task = tokio::spawn(out.run(rx, stop.clone(), Duration::from_secs(1)));
        Run {
            dir,
            status,
            stop,
            task,
            last_id,
        }
    }

    async fn wait_delivered(&self, within: Duration) {
        let t = Instant::now();
        while self.status.cursor.load(Ordering::Relaxed) < self.last_id {
            assert!(
                t.elapsed() < within,
                "cursor {} of {} after {within:?}; last error {:?}",
                self.status.cursor.load(Ordering::Relaxed),
                self.last_id,
                self.status.last_error()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the output; returns the store (and the directory that must outlive it).
    async fn stop(self) -> (Store, tempfile::TempDir) {
        self.stop.cancel();
        let Run { dir, task, .. } = self;
        task.await.unwrap();
        let store = Store::open(&dir.path().join("store.sqlite"), Synchronous::Normal).unwrap();
        (store, dir)
    }
}

fn gaps(reqs: &[Request]) -> Vec<Duration> {
    reqs.windows(2).map(|w| w[1].at - w[0].at).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_org_bucket_precision_token_and_a_gzip_body() {
    let fake = Fake::start(Box::new(|_, req, p| accept_all(p, req))).await;
    let rs = readings(120, &[]);
    let run = Run::start(&fake.url(), "", &rs);
    run.wait_delivered(Duration::from_secs(10)).await;
    let (store, _dir) = run.stop().await;

    let reqs = fake.requests();
    assert!(
        reqs.len() >= 3,
        "120 points in batches of 50: {}",
        reqs.len()
    );
    for r in &reqs {
        assert_eq!(r.path, "/api/v2/write");
        assert_eq!(r.query.get("org").map(String::as_str), Some("park org"));
        assert_eq!(
            r.query.get("bucket").map(String::as_str),
            Some("energy/raw")
        );
        assert_eq!(r.query.get("precision").map(String::as_str), Some("us"));
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(&*format!("Token {TOKEN}"))
        );
        assert_eq!(
            r.headers.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
        assert!(r.lines().len() <= 50);
    }
    let p = fake.points();
    assert_eq!(p.len(), 120);
    // Microsecond timestamps, the documented tags, float values.
    let first = influxdb_line_protocol::parse_lines(p.by_key.values().next().unwrap())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(first.timestamp, Some((1_763_000_000_000 + 1000) * 1000));
    assert_eq!(first.series.measurement.as_str(), "reading");
    assert_eq!(
        first.tag_value("site").map(|v| v.to_string()),
        Some("plant-v2".into())
    );
    assert_eq!(
        first.tag_value("unit").map(|v| v.to_string()),
        Some("kW".into())
    );
    assert_eq!(
        first.field_value("value"),
        Some(&influxdb_line_protocol::FieldValue::F64(0.5))
    );
    assert_eq!(store.cursor("influxdb.park").unwrap(), 120);
    assert!(store.quarantined(None).unwrap().is_empty());
}

/// InfluxDB 2.x/3.x style: 400 with the failing line numbers; the good lines were kept.
fn partial_with_line_numbers(p: &mut Points, req: &Request) -> Reply {
    let rejected = p.keep(&req.body, |l| !l.contains("device=poison"));
    if rejected.is_empty() {
        return status(204);
    }
    let msg: Vec<String> = rejected
        .iter()
        .map(|(n, _)| format!("error parsing line {n} (1-based): field type conflict on \"value\""))
        .collect();
    let body = serde_json::json!({
        "code": "invalid",
        "line": rejected[0].0,
        "message": format!("failed to parse line protocol: errors encountered on line(s):\n{}", msg.join("\n")),
    });
    Reply::Status(400, vec![], body.to_string())
}

/// InfluxDB OSS 2.x style type conflict: 400 naming no line.
fn partial_without_hints(p: &mut Points, req: &Request) -> Reply {
    let rejected = p.keep(&req.body, |l| !l.contains("device=poison"));
    if rejected.is_empty() {
        return status(204);
    }
    let body = serde_json::json!({
        "code": "invalid",
        "message": format!("partial write: field type conflict: input field \"value\" on measurement \"reading\" is type float, already exists as type string dropped={}", rejected.len()),
    });
    Reply::Status(400, vec![], body.to_string())
}

async fn partial_write_case(
    script: fn(&mut Points, &Request) -> Reply,
) -> (Vec<Request>, Store, tempfile::TempDir) {
    let poison = [3, 4, 57, 58, 59, 100, 141];
    let fake = Fake::start(Box::new(move |_, req, p| script(p, req))).await;
    let rs = readings(150, &poison);
    let run = Run::start(&fake.url(), "", &rs);
    run.wait_delivered(Duration::from_secs(20)).await;
    assert_eq!(
        run.status.quarantined.load(Ordering::Relaxed),
        poison.len() as u64
    );
    let (store, dir) = run.stop().await;

    // Every good point reached the server, none of the bad ones.
    {
        let p = fake.points();
        assert_eq!(p.len(), 150 - poison.len());
        assert!(!p.contains_marker("device=poison"));
    }
    // Exactly the bad points are quarantined, with the server's answer and the line as sent.
    let q = store.quarantined(Some("influxdb.park")).unwrap();
    let ids: Vec<i64> = q.iter().map(|q| q.reading_id).collect();
    assert_eq!(ids, poison.iter().map(|&i| i as i64).collect::<Vec<_>>());
    for line in &q {
        assert_eq!(line.status, Some(400));
        assert!(line.error.contains("conflict"), "{}", line.error);
        assert!(line.line.contains("device=poison"), "{}", line.line);
    }
    // The queue went on: the cursor is past everything.
    assert_eq!(store.cursor("influxdb.park").unwrap(), 150);
    (fake.requests(), store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_write_naming_lines_quarantines_only_those_lines() {
    let (reqs, _store, _dir) = partial_write_case(partial_with_line_numbers).await;
    // 3 batches, each with bad lines: each costs one request, one per named line and one per
    // range between them (16 here); bisecting without the hints takes about 50.
    assert!(reqs.len() <= 20, "{} requests", reqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_write_without_hints_is_bisected_to_the_bad_lines() {
    let (reqs, _store, _dir) = partial_write_case(partial_without_hints).await;
    assert!(reqs.len() < 60, "bisection took {} requests", reqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_keep_the_data_and_retry_slowly() {
    // 401, 403 and 404 in turn, then the destination is fixed.
    let fake = Fake::start(Box::new(|n, req, p| match n {
        1 | 2 => Reply::Status(
            401,
            vec![],
            r#"{"code":"unauthorized","message":"unauthorized access"}"#.into(),
        ),
        3 => Reply::Status(
            403,
            vec![],
            r#"{"code":"forbidden","message":"insufficient permissions for write"}"#.into(),
        ),
        4 => Reply::Status(
            404,
            vec![],
            r#"{"code":"not found","message":"bucket \"energy/raw\" not found"}"#.into(),
        ),
        _ => accept_all(p, req),
    }))
    .await;
    let rs = readings(30, &[]);
    let run = Run::start(&fake.url(), "", &rs);
    // While refused, nothing moves and the output says why.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(run.status.cursor.load(Ordering::Relaxed), 0);
    assert!(run.status.refused.load(Ordering::Relaxed));
    assert!(run.status.last_error().unwrap_or_default().contains("401"));
    run.wait_delivered(Duration::from_secs(10)).await;
    assert!(!run.status.refused.load(Ordering::Relaxed));
    let (store, _dir) = run.stop().await;

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 5, "four refusals, then one write");
    // setup_retry_interval = 300 ms (±20 %), not the 100 ms backoff.
    for g in gaps(&reqs) {
        assert!(g >= Duration::from_millis(235), "retried after {g:?}");
    }
    // Every refused request carried the same 30 points; all of them arrived, none quarantined.
    assert!(reqs.iter().all(|r| r.lines().len() == 30));
    assert_eq!(fake.points().len(), 30);
    assert!(store.quarantined(None).unwrap().is_empty());
    assert_eq!(store.cursor("influxdb.park").unwrap(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_requests_are_split_and_a_single_oversized_point_is_quarantined() {
    // At most 16 lines per request; a point of device `huge` is always too large.
    let fake = Fake::start(Box::new(|_, req, p| {
        if req.lines().len() > 16 || req.body.contains("device=huge") {
            return Reply::Status(
                413,
                vec![],
                r#"{"code":"request too large","message":"unable to read data: points batch is too large"}"#
                    .into(),
            );
        }
        accept_all(p, req)
    }))
    .await;
    let mut rs = readings(100, &[]);
    rs[40].device = "huge".into();
    let run = Run::start(&fake.url(), "", &rs);
    run.wait_delivered(Duration::from_secs(10)).await;
    assert!(run.status.splits.load(Ordering::Relaxed) >= 2);
    let (store, _dir) = run.stop().await;

    assert_eq!(fake.points().len(), 99);
    let q = store.quarantined(None).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].reading_id, q[0].status), (41, Some(413)));
    // Batches shrank to what the server takes: the last requests fit, and the whole run took
    // a bounded number of requests (the oversized point cost a bisection of its batch).
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.lines().len()).collect();
    assert!(sizes.len() < 30, "{sizes:?}");
    assert!(sizes.iter().rev().take(3).all(|&n| n <= 16), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    let fake = Fake::start(Box::new(|n, req, p| match n {
        1 => Reply::Status(
            429,
            vec![("Retry-After".into(), "1".into())],
            r#"{"code":"too many requests","message":"write limit reached"}"#.into(),
        ),
        2 => {
            // An HTTP date two seconds ahead (whole seconds: the wait is 1-2 s).
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            Reply::Status(
                503,
                vec![(
                    "Retry-After".into(),
                    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                )],
                r#"{"code":"unavailable","message":"service unavailable"}"#.into(),
            )
        }
        _ => accept_all(p, req),
    }))
    .await;
    let rs = readings(10, &[]);
    let run = Run::start(&fake.url(), "", &rs);
    run.wait_delivered(Duration::from_secs(10)).await;
    let (store, _dir) = run.stop().await;
    let g = gaps(&fake.requests());
    assert_eq!(g.len(), 2);
    // Not the 100 ms backoff: the server's delay.
    assert!(
        g[0] >= Duration::from_millis(950) && g[0] < Duration::from_millis(1900),
        "{g:?}"
    );
    assert!(
        g[1] >= Duration::from_millis(950) && g[1] < Duration::from_millis(2900),
        "{g:?}"
    );
    assert_eq!(fake.points().len(), 10);
    assert_eq!(store.cursor("influxdb.park").unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried_with_backoff() {
    let fake = Fake::start(Box::new(|n, req, p| match n {
        1 | 2 => Reply::Status(
            503,
            vec![],
            r#"{"code":"unavailable","message":"starting"}"#.into(),
        ),
        3 => Reply::Status(
            500,
            vec![],
            r#"{"code":"internal error","message":"boom"}"#.into(),
        ),
        4 => {
            // The write reached the server but the answer is lost: the replay must not duplicate.
            p.keep(&req.body, |_| true);
            Reply::Drop
        }
        _ => accept_all(p, req),
    }))
    .await;
    let rs = readings(25, &[]);
    let run = Run::start(&fake.url(), "", &rs);
    run.wait_delivered(Duration::from_secs(10)).await;
    let (store, _dir) = run.stop().await;
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 5);
    let g = gaps(&reqs);
    // Exponential: ~100 ms, ~200 ms, ~400 ms (±20 % jitter), capped at backoff_max = 400 ms.
    assert!(
        g[0] >= Duration::from_millis(75) && g[0] < Duration::from_millis(200),
        "{g:?}"
    );
    assert!(g[1] > g[0] && g[1] >= Duration::from_millis(155), "{g:?}");
    assert!(
        g[2] >= Duration::from_millis(315) && g[2] < Duration::from_millis(700),
        "{g:?}"
    );
    assert!(g[3] >= Duration::from_millis(315), "{g:?}");
    assert_eq!(
        fake.points().len(),
        25,
        "a replay overwrites, it does not duplicate"
    );
    assert!(store.quarantined(None).unwrap().is_empty());
    assert_eq!(store.cursor("influxdb.park").unwrap(), 25);
}
