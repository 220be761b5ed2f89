//! Alerts end to end: a simulated Modbus meter crosses thresholds, the gateway's pipeline
//! evaluates the rules, and notifiers deliver to a local webhook receiver (a real HTTP server on
//! loopback) and in the group-robot formats; restarts and receiver outages included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use energy_gateway::config::{self, ValueType, WordOrder};
use energy_gateway::demo::simulator::{self, BusService, RegisterBank};
use energy_gateway::pipeline;

/// What the receiver got: (arrival, path and query, headers, body).
type Received = Arc<Mutex<Vec<(Instant, String, HeaderMap, String)>>>;

struct Receiver {
    port: u16,
    got: Received,
    task: Option<tokio::task::JoinHandle<()>>,
    answer: Arc<Mutex<(u16, String)>>,
}

impl Receiver {
    async fn start(port: u16, got: Received) -> Receiver {
        let answer = Arc::new(Mutex::new((
            200u16,
            "{\"errcode\":0,\"code\":0}".to_string(),
        )));
        let mut r = Receiver {
            port,
            got,
            task: None,
            answer,
        };
        r.up().await;
        r
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        let (got, answer) = (self.got.clone(), self.answer.clone());
        let app = axum::Router::new().route(
            "/{*path}",
            post(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let (got, answer) = (got.clone(), answer.clone());
                async move {
                    got.lock().unwrap().push((
                        Instant::now(),
                        uri.to_string(),
                        headers,
                        String::from_utf8_lossy(&body).to_string(),
                    ));
                    let (code, text) = answer.lock().unwrap().clone();
                    (StatusCode::from_u16(code).unwrap(), text)
                }
            }),
        );
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// A meter whose active power (SDM120 map, input 0x0C, W) the test sets.
struct Meter {
    bank: Arc<Mutex<RegisterBank>>,
    service: BusService,
    addr: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Meter {
    async fn start() -> Meter {
        let mut bank = RegisterBank::default();
        RegisterBank::define(&mut bank.input, 0, 0x50);
        let bank = Arc::new(Mutex::new(bank));
        let service = BusService::default();
        service.insert(1, bank.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = simulator::serve_tcp(l, service.clone());
        Meter {
            bank,
            service,
            addr,
            _server: server,
        }
    }

    fn set_kw(&self, kw: f64) {
        RegisterBank::put(
            &mut self.bank.lock().unwrap().input,
            0x0C,
            kw * 1000.0,
            ValueType::F32,
            WordOrder::ABCD,
        );
    }
}

fn config(dir: &std::path::Path, meter: &str, extra: &str) -> config::Config {
    let toml = format!(
        "[site]\nid = \"plant-a\"\npark = \"park-9\"\n[log]\nlevel = \"warn\"\n[storage]\ndata_dir = \"{}\"\n\
         [[devices]]\nid = \"press\"\nmodel = \"eastron-sdm120\"\n[devices.modbus]\naddress = \"{meter}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\ndegraded_after = 1000\n\
         [[alerts]]\nid = \"press-peak\"\ndevice = \"press\"\nquantity = \"active_power\"\nabove = 100.0\nhysteresis = 10.0\nseverity = \"critical\"\nlabels = {{ team = \"maintenance\" }}\n\
         {extra}",
        dir.display()
    );
    config::load_str(&toml).unwrap_or_else(|p| panic!("{p:#?}"))
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bodies(got: &Received, path: &str) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _, _)| p.starts_with(path))
        .map(|(_, _, _, b)| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_crossing_gives_exactly_one_firing_and_one_resolved_webhook() {
    let meter = Meter::start().await;
    meter.set_kw(50.0);
    let got: Received = Default::default();
    let rx = Receiver::start(0, got.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[notifiers]]\nid = \"park-webhook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"s3cret\"\n",
        rx.url("hook")
    );
    let gw = pipeline::start(config(dir.path(), &meter.addr, &extra))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let crossed = Instant::now();
    meter.set_kw(150.0);
    wait_for("firing", Duration::from_secs(10), || {
        !bodies(&got, "/hook").is_empty()
    })
    .await;
    let latency = got.lock().unwrap()[0].0 - crossed;
    tokio::time::sleep(Duration::from_millis(1000)).await; // still above: nothing more
    assert_eq!(bodies(&got, "/hook").len(), 1);
    meter.set_kw(95.0); // within the hysteresis: still firing
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bodies(&got, "/hook").len(), 1);
    meter.set_kw(40.0);
    wait_for("resolved", Duration::from_secs(10), || {
        bodies(&got, "/hook").len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    gw.shutdown().await.unwrap();

    let b = bodies(&got, "/hook");
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[0]["state"], "firing");
    assert_eq!(b[0]["rule"], "press-peak");
    assert_eq!(b[0]["kind"], "threshold");
    assert_eq!(b[0]["severity"], "critical");
    assert_eq!(b[0]["value"], 150.0);
    assert_eq!(b[0]["unit"], "kW");
    assert_eq!(b[0]["site"], "plant-a");
    assert_eq!(b[0]["park"], "park-9");
    assert_eq!(b[0]["device"], "press");
    assert_eq!(b[0]["labels"]["team"], "maintenance");
    assert_eq!(b[1]["state"], "resolved");
    assert_eq!(b[1]["value"], 40.0);
    // The sentence for people, in the site's language.
    assert_eq!(b[0]["text"], "press 有功功率 150 kW，超过上限 100 kW");
    assert_eq!(b[1]["text"], "press 有功功率 40 kW，已恢复，上限 100 kW");
    // The signature is HMAC-SHA256 of the body with the shared secret.
    let (_, _, headers, body) = got.lock().unwrap()[0].clone();
    let sig = headers
        .get("x-energy-gateway-signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sig,
        energy_gateway::alerting::notify::webhook_signature("s3cret", body.as_bytes())
    );
    println!("reading-to-webhook latency: {latency:?} (poll interval 200 ms)");
    assert!(latency < Duration::from_secs(3), "{latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_meter_raises_offline_and_receiver_outage_is_bridged() {
    let meter = Meter::start().await;
    meter.set_kw(50.0);
    let got: Received = Default::default();
    let mut rx = Receiver::start(0, got.clone()).await;
    let port = rx.port;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[alerts]]\nid = \"press-offline\"\nkind = \"deadman\"\ndevice = \"press\"\ntimeout = \"2s\"\nnotify = [\"ops\"]\n\
         [[notifiers]]\nid = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\nmax_backoff = \"500ms\"\n",
        rx.url("ops")
    );
    let gw = pipeline::start(config(dir.path(), &meter.addr, &extra))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The receiver goes down, then the meter stops answering.
    rx.down();
    let silent_at = Instant::now();
    meter.service.set_silent(1, true);
    // offline fires about 2 s after the last good reading (checked every second)
    wait_for("offline alert recorded", Duration::from_secs(6), || {
        gw.active_alerts
            .lock()
            .unwrap()
            .contains_key("press-offline")
    })
    .await;
    let detected = silent_at.elapsed();
    assert!(
        detected <= Duration::from_millis(3500),
        "offline detected after {detected:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(bodies(&got, "/ops").is_empty());
    // The receiver comes back on the same port: the notification is delivered.
    rx.port = port;
    rx.up().await;
    wait_for(
        "delayed offline notification",
        Duration::from_secs(10),
        || !bodies(&got, "/ops").is_empty(),
    )
    .await;
    // The meter answers again: resolved.
    meter.service.set_silent(1, false);
    wait_for("back online", Duration::from_secs(10), || {
        bodies(&got, "/ops").len() >= 2
    })
    .await;
    gw.shutdown().await.unwrap();
    let b = bodies(&got, "/ops");
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(
        (b[0]["rule"].as_str(), b[0]["state"].as_str()),
        (Some("press-offline"), Some("firing"))
    );
    assert!(b[0]["message"].as_str().unwrap().contains("offline"));
    assert_eq!(b[1]["state"], "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_firing_neither_repeats_nor_loses_the_alert() {
    let meter = Meter::start().await;
    meter.set_kw(150.0);
    let got: Received = Default::default();
    let rx = Receiver::start(0, got.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[notifiers]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.url("hook")
    );
    let gw = pipeline::start(config(dir.path(), &meter.addr, &extra))
        .await
        .unwrap();
    wait_for("firing", Duration::from_secs(10), || {
        !bodies(&got, "/hook").is_empty()
    })
    .await;
    gw.shutdown().await.unwrap();

    // Same store, still above the threshold: no second firing.
    let gw = pipeline::start(config(dir.path(), &meter.addr, &extra))
        .await
        .unwrap();
    assert!(
        gw.active_alerts.lock().unwrap().contains_key("press-peak"),
        "restored as firing"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(bodies(&got, "/hook").len(), 1);
    meter.set_kw(20.0);
    wait_for("resolved after restart", Duration::from_secs(10), || {
        bodies(&got, "/hook").len() >= 2
    })
    .await;
    gw.shutdown().await.unwrap();
    let b = bodies(&got, "/hook");
    assert_eq!(
        b.iter()
            .map(|x| x["state"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["firing", "resolved"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_robot_formats_and_rate_limit() {
    let meter = Meter::start().await;
    meter.set_kw(50.0);
    let got: Received = Default::default();
    let rx = Receiver::start(0, got.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[notifiers]]\nid = \"wecom\"\nkind = \"wecom\"\nurl = \"{}\"\n\
         [[notifiers]]\nid = \"dingtalk\"\nkind = \"dingtalk\"\nurl = \"{}\"\nsecret = \"SECding\"\n\
         [[notifiers]]\nid = \"feishu\"\nkind = \"feishu\"\nurl = \"{}\"\nsecret = \"fs\"\nrate_max = 1\nrate_period = \"1h\"\n\
         [[notifiers]]\nid = \"log\"\nkind = \"log\"\n",
        rx.url("wecom?key=abc"),
        rx.url("dingtalk?access_token=t"),
        rx.url("feishu/hook")
    );
    let gw = pipeline::start(config(dir.path(), &meter.addr, &extra))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    meter.set_kw(150.0);
    wait_for("three robots", Duration::from_secs(10), || {
        got.lock().unwrap().len() >= 3
    })
    .await;
    meter.set_kw(10.0);
    wait_for(
        "resolved to wecom and dingtalk",
        Duration::from_secs(10),
        || got.lock().unwrap().len() >= 5,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = gw.notifiers["feishu"].clone();
    gw.shutdown().await.unwrap();

    let all = got.lock().unwrap().clone();
    let wecom: Vec<_> = all
        .iter()
        .filter(|(_, p, _, _)| p.starts_with("/wecom"))
        .collect();
    let ding: Vec<_> = all
        .iter()
        .filter(|(_, p, _, _)| p.starts_with("/dingtalk"))
        .collect();
    let feishu: Vec<_> = all
        .iter()
        .filter(|(_, p, _, _)| p.starts_with("/feishu"))
        .collect();
    assert_eq!(
        (wecom.len(), ding.len(), feishu.len()),
        (2, 2, 1),
        "feishu is rate-limited to 1 per hour"
    );
    assert_eq!(
        stats.suppressed.load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let w: serde_json::Value = serde_json::from_str(&wecom[0].3).unwrap();
    assert_eq!(w["msgtype"], "text");
    let text = w["text"]["content"].as_str().unwrap();
    // In the site's language (zh by default): device, quantity, a rounded value, the limit.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "【告警】严重", "{text}");
    let what = lines[1]
        .strip_prefix("press 有功功率 ")
        .and_then(|r| r.strip_suffix(" kW，超过上限 100 kW"))
        .unwrap_or_else(|| panic!("{text}"));
    let v: f64 = what.parse().unwrap_or_else(|_| panic!("{text}"));
    assert!(
        v > 100.0 && what.split('.').nth(1).is_none_or(|d| d.len() <= 1),
        "rounded for people: {text}"
    );
    assert!(
        text.contains("\n站点：plant-a（park-9）\n") && text.contains("\n规则：press-peak\n"),
        "{text}"
    );
    assert!(!text.contains("active_power"), "{text}");
    let w2: serde_json::Value = serde_json::from_str(&wecom[1].3).unwrap();
    let t2 = w2["text"]["content"].as_str().unwrap();
    assert!(t2.starts_with("【恢复】严重\npress 有功功率 "), "{t2}");
    assert!(t2.contains("已恢复，上限 100 kW"), "{t2}");

    // DingTalk: signed with timestamp and sign query parameters.
    let q = &ding[0].1;
    let ts: i64 = q
        .split("timestamp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sign = q.split("sign=").nth(1).unwrap();
    let expected = energy_gateway::alerting::notify::dingtalk_sign("SECding", ts);
    let decoded = expected
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(sign, decoded);
    assert!(q.contains("access_token=t"));

    // Feishu: msg_type text, timestamp and sign in the body.
    let f: serde_json::Value = serde_json::from_str(&feishu[0].3).unwrap();
    assert_eq!(f["msg_type"], "text");
    let fts: i64 = f["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        f["sign"],
        energy_gateway::alerting::notify::feishu_sign("fs", fts)
    );
}
