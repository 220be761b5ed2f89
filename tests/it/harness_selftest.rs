//! Proves the integration-test harness (`tests/common/mod.rs`) against the real servers.

use crate::common;

use std::net::TcpStream;
use std::time::Duration;

use crate::common::{Influxd, Mosquitto};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS};

const MQTT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls the event loop until `done` returns true for an event; panics (with the broker log)
/// on an MQTT error or when `MQTT_TIMEOUT` passes. Returns every event seen.
async fn poll_until(
    eventloop: &mut EventLoop,
    broker: &Mosquitto,
    what: &str,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + MQTT_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let event = match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => panic!(
                "timed out waiting for {what}; events: {seen:?}\n{}",
                broker.log()
            ),
            Ok(Err(e)) => panic!(
                "MQTT error while waiting for {what}: {e}; events: {seen:?}\n{}",
                broker.log()
            ),
            Ok(Ok(event)) => event,
        };
        let finished = done(&event);
        seen.push(event);
        if finished {
            return seen;
        }
    }
}

/// Sends DISCONNECT and polls until it has been written (or the connection closed).
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    client.disconnect().await.expect("queue DISCONNECT");
    let deadline = tokio::time::Instant::now() + MQTT_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => panic!("DISCONNECT not sent within {MQTT_TIMEOUT:?}"),
            Ok(Err(_)) => return,
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => return,
            Ok(Ok(_)) => {}
        }
    }
}

fn find_publish(events: &[Event]) -> Option<&Publish> {
    events.iter().find_map(|e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p),
        _ => None,
    })
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[tokio::test]
async fn mosquitto_qos1_publish_subscribe_roundtrip() {
    let broker = Mosquitto::start();
    let (client, mut eventloop) = AsyncClient::new(broker.mqtt_options("selftest-roundtrip"), 10);
    client
        .subscribe("selftest/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            "selftest/m1/power",
            QoS::AtLeastOnce,
            false,
            br#"{"kw":1.5}"#.to_vec(),
        )
        .await
        .unwrap();

    let (mut puback, mut received) = (false, false);
    let events = poll_until(
        &mut eventloop,
        &broker,
        "PUBACK and the echoed publish",
        |e| {
            match e {
                Event::Incoming(Packet::PubAck(_)) => puback = true,
                Event::Incoming(Packet::Publish(_)) => received = true,
                _ => {}
            }
            puback && received
        },
    )
    .await;

    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Incoming(Packet::ConnAck(_)))),
        "no CONNACK: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Incoming(Packet::SubAck(_)))),
        "no SUBACK: {events:?}"
    );
    let msg = find_publish(&events).unwrap();
    assert_eq!(msg.topic, "selftest/m1/power");
    assert_eq!(&msg.payload[..], br#"{"kw":1.5}"#);
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Incoming(Packet::PubAck(p)) if p.pkid != 0)),
        "no PUBACK with a packet id: {events:?}"
    );
    disconnect(&client, &mut eventloop).await;
}

/// A persistent session (clean_session=false) subscribes, goes away, a QoS1 message is queued
/// for it, the broker goes down (graceful stop or SIGKILL) and comes back on the same port:
/// the session and the queued message must still be there.
async fn queued_qos1_survives_broker_restart(crash: bool) {
    let mut broker = Mosquitto::start_with_persistence();
    let sub_id = "selftest-persistent-sub";
    let topic = "selftest/persist";

    let mut opts = broker.mqtt_options(sub_id);
    opts.set_clean_session(false);
    let (sub, mut sub_loop) = AsyncClient::new(opts.clone(), 10);
    sub.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    poll_until(&mut sub_loop, &broker, "SUBACK", |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    })
    .await;
    disconnect(&sub, &mut sub_loop).await;
    drop((sub, sub_loop));

    let saves_before = broker.db_saves();
    let (publisher, mut pub_loop) =
        AsyncClient::new(broker.mqtt_options("selftest-persistent-pub"), 10);
    publisher
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            b"queued-before-restart".to_vec(),
        )
        .await
        .unwrap();
    poll_until(&mut pub_loop, &broker, "PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    disconnect(&publisher, &mut pub_loop).await;
    drop((publisher, pub_loop));

    let port = broker.port;
    if crash {
        // The database is saved in the broker's main loop right after the change: wait for it.
        broker.wait_for_db_save(saves_before, Duration::from_secs(5));
        broker.kill();
    } else {
        broker.stop();
    }
    assert!(!broker.is_running());
    assert!(
        !accepts_connections(port),
        "port {port} still open after stop"
    );
    broker.restart();
    assert_eq!(broker.port, port);
    assert!(broker.is_running());

    let (sub, mut sub_loop) = AsyncClient::new(opts, 10);
    let events = poll_until(&mut sub_loop, &broker, "the queued publish", |e| {
        matches!(e, Event::Incoming(Packet::Publish(_)))
    })
    .await;
    let connack = events
        .iter()
        .find_map(|e| match e {
            Event::Incoming(Packet::ConnAck(c)) => Some(c),
            _ => None,
        })
        .expect("CONNACK");
    assert!(
        connack.session_present,
        "session lost across restart: {events:?}\n{}",
        broker.log()
    );
    let msg = find_publish(&events).unwrap();
    assert_eq!(msg.topic, topic);
    assert_eq!(&msg.payload[..], b"queued-before-restart");
    disconnect(&sub, &mut sub_loop).await;
}

#[tokio::test]
async fn mosquitto_persistence_survives_graceful_restart() {
    queued_qos1_survives_broker_restart(false).await;
}

#[tokio::test]
async fn mosquitto_persistence_survives_sigkill() {
    queued_qos1_survives_broker_restart(true).await;
}

#[test]
fn mosquitto_without_persistence_forgets_sessions_and_drop_frees_port() {
    let mut broker = Mosquitto::start();
    let port = broker.port;
    assert!(!broker.dir().join("mosquitto.db").exists());
    broker.restart();
    assert!(accepts_connections(port));
    drop(broker);
    assert!(
        !accepts_connections(port),
        "broker still listening after Drop"
    );
}

#[test]
fn influxd_write_count_and_persist_across_restart() {
    let mut influx = Influxd::start();
    assert_eq!(influx.url, format!("http://127.0.0.1:{}", influx.port));
    assert_ne!(influx.port, influx.rpc_port);
    influx.create_database("gw");

    // Missing database: 404 from /write, 0 from count.
    let (status, body) = influx.write("nope", "ms", "power,meter=m1 kw=1 1763827200000");
    assert_eq!(status, 404, "{body}");
    assert_eq!(influx.count("nope", "power"), 0);
    assert_eq!(
        influx.count("gw", "power"),
        0,
        "empty measurement counts as 0"
    );

    let lines = "power,site=p1,meter=m1 kw=1.5,kwh=1234i 1763827200000\n\
                 power,site=p1,meter=m1 kw=1.75,kwh=1235i 1763827201000\n";
    let (status, body) = influx.write("gw", "ms", lines);
    assert_eq!(status, 204, "write failed: {body}\n{}", influx.log());
    assert_eq!(influx.count("gw", "power"), 2);
    assert_eq!(influx.count_field("gw", "power", "kw"), 2);
    assert_eq!(influx.count_field("gw", "power", "kwh"), 2);
    assert_eq!(influx.count_field("gw", "power", "missing_field"), 0);

    // A bad line is a 400, not a transport error.
    let (status, body) = influx.write("gw", "ms", "this is not line protocol");
    assert_eq!(status, 400, "{body}");

    let v = influx.query("gw", "SELECT kw FROM power ORDER BY time DESC LIMIT 1");
    assert_eq!(
        v.pointer("/results/0/series/0/values/0/1")
            .and_then(|x| x.as_f64()),
        Some(1.75),
        "{v}"
    );

    let port = influx.port;
    influx.stop();
    assert!(!influx.ping());
    influx.start_again();
    assert_eq!(influx.port, port);
    assert!(influx.ping());
    assert_eq!(
        influx.count("gw", "power"),
        2,
        "data lost across restart\n{}",
        influx.log()
    );

    // The same after a crash: the WAL keeps acknowledged writes.
    let (status, _) = influx.write(
        "gw",
        "ms",
        "power,site=p1,meter=m1 kw=2.0,kwh=1236i 1763827202000",
    );
    assert_eq!(status, 204);
    influx.kill();
    influx.start_again();
    assert_eq!(
        influx.count("gw", "power"),
        3,
        "data lost across SIGKILL\n{}",
        influx.log()
    );
}

#[test]
fn influxd_large_chunked_response_is_decoded() {
    let influx = Influxd::start();
    influx.create_database("gw");
    let n = 3000u64;
    let body: String = (0..n)
        .map(|i| {
            format!(
                "energy,meter=m{} value={}.5,quality=\"good\" {}\n",
                i % 7,
                i,
                1_763_827_200_000u64 + i
            )
        })
        .collect();
    let (status, text) = influx.write("gw", "ms", &body);
    assert_eq!(status, 204, "{text}");
    assert_eq!(influx.count("gw", "energy"), n);
    assert_eq!(influx.count_field("gw", "energy", "quality"), n);
    assert_eq!(
        influx.wait_for_count("gw", "energy", n, Duration::from_secs(5)),
        n
    );

    let resp = influx.request(
        "POST",
        "/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        common::form_encode(&[("db", "gw"), ("q", "SELECT * FROM energy")]).as_bytes(),
    );
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("transfer-encoding")
            .is_some_and(|te| te.contains("chunked")),
        "expected a chunked response, headers: {:?}",
        resp.headers
    );
    let v = resp.json();
    let rows = v
        .pointer("/results/0/series/0/values")
        .and_then(|r| r.as_array())
        .expect("rows");
    assert_eq!(rows.len() as u64, n);
}

#[test]
fn http_parsing_helpers() {
    let raw =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                4\r\n{\"a\"\r\n6;ext=1\r\n:[1,2]\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n";
    let r = common::parse_response(raw, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({"a": [1, 2]}));

    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\n\r\n";
    let r = common::parse_response(raw, false).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());

    let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhello-extra";
    assert_eq!(common::parse_response(raw, false).unwrap().text(), "hello");
    assert!(
        common::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false)
            .is_err()
    );
    assert!(common::decode_chunked(b"5\r\nab").is_err());

    assert_eq!(
        common::form_encode(&[
            ("db", "gw"),
            ("q", "SELECT count(*) FROM \"power\" WHERE a='b&c'")
        ]),
        "db=gw&q=SELECT%20count%28%2A%29%20FROM%20%22power%22%20WHERE%20a%3D%27b%26c%27"
    );
    assert_eq!(common::quote_ident(r#"we"ird"#), r#""we\"ird""#);
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports = common::free_ports(4);
    let mut sorted = ports.clone();
    sorted.dedup();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "{ports:?}");
    let p = common::free_port();
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free_port() should be bindable");
}

#[test]
#[should_panic(expected = "apt-get install -y mosquitto influxdb")]
fn missing_binary_names_the_apt_command() {
    common::find_binary("gw-selftest-no-such-server-binary");
}

#[test]
#[should_panic(expected = "mosquitto exited during startup")]
fn mosquitto_startup_failure_panics_with_log() {
    common::Mosquitto::start_with(common::MosquittoOptions {
        extra_config: "no_such_option_for_the_selftest 1".into(),
        ..Default::default()
    });
}
