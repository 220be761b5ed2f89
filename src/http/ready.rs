//! `GET /readyz`: whether the gateway does its job now, check by check.
//!
//! 200 when every check passes, 503 otherwise. Each check has a `name`, `ok`, a `detail` (English,
//! for logs and scripts) and a `message` in the site's language (`?lang=en|zh` picks one); the
//! messages of the failing checks are also listed in `problems`, and things worth a look that do
//! not make the gateway unready in `warnings`.
//!
//! Sources and sinks are judged with the grace periods of `[health]`:
//! - a **source is down** when every device on one line or gateway (a `[[buses]]` line, a Modbus
//!   TCP address, an OPC UA endpoint shared by two or more devices) has not answered for
//!   `source_grace`, when every polled device of the site has not, or when the MQTT source has
//!   not been connected to its broker for that long. One dead meter among others is a warning:
//!   the rest of the site is still measured;
//! - a **sink is down** when an InfluxDB destination has failed its writes (unreachable, 5xx,
//!   refusing the gateway) or an MQTT output or readings destination has not been connected for
//!   `sink_grace`. Readings wait in the store meanwhile.
//!
//! A **stalled poller** is 503 (check `pollers`, naming its devices): a poller that has ended no
//! poll, answered or failed, for longer than its interval or backoff, its timeouts and
//! `source_grace` hangs (a dead meter is not stalled: its polls end, in failures).
//!
//! A pipeline task that panicked is 503 (check `tasks`, naming it) until it runs again: restarted
//! in the process after its pause, or, when it cannot be restarted alone or panics in a loop,
//! until the gateway has exited for the service manager to restart it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::{GatewayView, Shared};
use crate::acquisition::DeviceStatus;
use crate::config::{DeviceConfig, Language};

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// English, for logs and scripts.
    detail: String,
    /// In the site's language, for people.
    message: String,
}

/// Words in the language asked for.
#[derive(Clone, Copy)]
struct Say(Language);

impl Say {
    fn pick(self, zh: impl Into<String>, en: impl Into<String>) -> String {
        match self.0 {
            Language::Zh => zh.into(),
            Language::En => en.into(),
        }
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn language(gw: Option<&GatewayView>, q: &HashMap<String, String>) -> Language {
    match q.get("lang").map(String::as_str) {
        Some("en") => Language::En,
        Some("zh") => Language::Zh,
        _ => gw.map(|g| g.config.site.language).unwrap_or_default(),
    }
}

/// The line or gateway a device is reached through: devices that share it fail together when
/// it fails.
fn link_of(d: &DeviceConfig) -> Option<String> {
    if let Some(m) = &d.modbus {
        if let Some(b) = &m.bus {
            return Some(format!("bus {b}"));
        }
        if let Some(a) = &m.address {
            return Some(format!("modbus {a}"));
        }
    }
    if let Some(m) = d.dlt645.as_ref().or(d.cjt188.as_ref()) {
        return Some(format!("bus {}", m.bus));
    }
    d.opcua.as_ref().map(|o| format!("opcua {}", o.endpoint))
}

/// What the sources check found: failing links (with their devices), whether every device is
/// down, and the devices down that make no link fail.
struct SourceVerdict {
    links_down: Vec<(String, Vec<String>)>,
    all_down: bool,
    offline: Vec<String>,
}

fn judge_sources(gw: &GatewayView, grace: Duration) -> SourceVerdict {
    let mut links: BTreeMap<String, Vec<(&str, &DeviceStatus)>> = BTreeMap::new();
    for (id, st) in &gw.devices {
        let link = gw
            .config
            .device(id)
            .and_then(link_of)
            .unwrap_or_else(|| format!("device {id}"));
        links
            .entry(link)
            .or_default()
            .push((id.as_str(), st.as_ref()));
    }
    let beyond = |s: &DeviceStatus| s.down_for().is_some_and(|d| d >= grace);
    let links_down: Vec<(String, Vec<String>)> = links
        .into_iter()
        .filter(|(_, ds)| ds.len() >= 2 && ds.iter().all(|(_, s)| beyond(s)))
        .map(|(l, ds)| (l, ds.iter().map(|(id, _)| id.to_string()).collect()))
        .collect();
    let all_down = !gw.devices.is_empty() && gw.devices.values().all(|s| beyond(s));
    let offline = gw
        .devices
        .iter()
        .filter(|(id, s)| {
            !s.is_online()
                && s.down_for().is_some()
                && !links_down
                    .iter()
                    .any(|(_, ds)| ds.iter().any(|d| d == id.as_str()))
        })
        .map(|(id, _)| id.to_string())
        .collect();
    SourceVerdict {
        links_down,
        all_down,
        offline,
    }
}

/// `GET /readyz`.
pub async fn readyz(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(gw) = shared.gateway() else {
        let say = Say(language(None, &q));
        let phase = shared.phase();
        let message = say.pick(
            format!("处理流程未运行（{phase}）"),
            format!("the pipeline is not running ({phase})"),
        );
        let body = json!({
            "ready": false,
            "phase": phase,
            "checks": [Check { name: "pipeline", ok: false, detail: format!("not running ({phase})"), message: message.clone() }],
            "problems": [message],
            "warnings": [],
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let say = Say(language(Some(&gw), &q));
    let health = &gw.config.health;
    let mut warnings = Vec::new();
    let mut checks = vec![Check {
        name: "pipeline",
        ok: true,
        detail: "running".into(),
        message: say.pick("运行中", "running"),
    }];

    // Sources: devices by line or gateway.
    let v = judge_sources(&gw, health.source_grace);
    let total = gw.devices.len();
    let online = gw.devices.values().filter(|s| s.is_online()).count();
    let grace = secs(health.source_grace);
    let (detail, message) = if v.all_down {
        (
            format!("none of the {total} devices answered for {grace} or more"),
            say.pick(
                format!("全部 {total} 台设备超过 {grace} 无应答：没有采集到数据"),
                format!(
                    "none of the {total} devices answered for {grace} or more: nothing is measured"
                ),
            ),
        )
    } else if !v.links_down.is_empty() {
        let en: Vec<String> = v
            .links_down
            .iter()
            .map(|(l, ds)| format!("{l} ({})", ds.join(", ")))
            .collect();
        (
            format!(
                "every device behind {} has not answered for {grace} or more",
                en.join("; ")
            ),
            say.pick(
                format!("线路或网关整体超过 {grace} 无应答：{}", en.join("；")),
                format!(
                    "a whole line or gateway has not answered for {grace} or more: {}",
                    en.join("; ")
                ),
            ),
        )
    } else {
        (
            format!("{online} of {total} connected"),
            say.pick(
                format!("{total} 台设备中 {online} 台在线"),
                format!("{online} of {total} devices online"),
            ),
        )
    };
    let sources_ok = !v.all_down && v.links_down.is_empty();
    if sources_ok && !v.offline.is_empty() {
        warnings.push(say.pick(
            format!("设备无应答（其余设备正常采集）：{}", v.offline.join("、")),
            format!(
                "devices not answering (the others are measured): {}",
                v.offline.join(", ")
            ),
        ));
    }
    checks.push(Check {
        name: "sources",
        ok: sources_ok,
        detail,
        message,
    });
    // Pollers that hang: no poll ended, answered or failed.
    let stalled: Vec<String> = gw
        .devices
        .iter()
        .filter_map(|(id, s)| Some(format!("{id} ({})", secs(s.stalled_for()?))))
        .collect();
    checks.push(if stalled.is_empty() {
        Check {
            name: "pollers",
            ok: true,
            detail: "every poller ends its polls".into(),
            message: say.pick("采集任务均在运行", "every poller ends its polls"),
        }
    } else {
        let en = stalled.join(", ");
        Check {
            name: "pollers",
            ok: false,
            detail: format!("pollers stalled: no poll (answered or failed) has ended for {en}"),
            message: say.pick(
                format!(
                    "采集任务停滞（既无应答也无失败，任务可能卡死）：设备 {}",
                    stalled.join("、")
                ),
                format!(
                    "pollers stalled (no poll answered or failed; the task may hang): devices {en}"
                ),
            ),
        }
    });
    if let Some(m) = &gw.mqtt_in {
        let down = m.down.down_for();
        let ok = !m.down.down_beyond(health.source_grace);
        let (detail, message) = match down {
            None => (
                "connected to the broker".to_string(),
                say.pick("已连接 MQTT 服务器", "connected to the MQTT broker"),
            ),
            Some(d) => (
                format!(
                    "not connected to the broker for {}: no MQTT readings arrive",
                    secs(d)
                ),
                say.pick(
                    format!("MQTT 数据源 {} 未连接服务器：收不到 MQTT 读数", secs(d)),
                    format!(
                        "MQTT source not connected to its broker for {}: no MQTT readings arrive",
                        secs(d)
                    ),
                ),
            ),
        };
        if ok && down.is_some() {
            warnings.push(message.clone());
        }
        checks.push(Check {
            name: "mqtt_source",
            ok,
            detail,
            message,
        });
    }

    // Sinks.
    let sink = |name: &'static str,
                what_zh: &str,
                what_en: &str,
                down: Option<Duration>,
                waits_zh: &str,
                waits_en: &str,
                warnings: &mut Vec<String>| {
        let ok = down.is_none_or(|d| d < health.sink_grace);
        let (detail, message) = match down {
            None => (
                format!("{what_en}: working"),
                say.pick(format!("{what_zh}：正常"), format!("{what_en}: working")),
            ),
            Some(d) => (
                format!("{what_en}: down for {}; {waits_en}", secs(d)),
                say.pick(
                    format!("{what_zh}：已中断 {}；{waits_zh}", secs(d)),
                    format!("{what_en}: down for {}; {waits_en}", secs(d)),
                ),
            ),
        };
        if ok && down.is_some() {
            warnings.push(message.clone());
        }
        Check {
            name,
            ok,
            detail,
            message,
        }
    };
    if let Some(m) = &gw.mqtt_out {
        let c = sink(
            "mqtt_output",
            "MQTT 输出",
            "MQTT output",
            m.down.down_for(),
            "状态、告警和指标在本地存储中等待",
            "status, alerts and indicators wait in the store",
            &mut warnings,
        );
        checks.push(c);
    }
    for (dest, st) in &gw.outputs {
        let (name, what_zh, what_en) = if gw.mqtt_readings.contains_key(dest) {
            (
                "mqtt_readings",
                format!("MQTT 读数输出 {dest}"),
                dest.clone(),
            )
        } else {
            ("influxdb", format!("InfluxDB 输出 {dest}"), dest.clone())
        };
        let c = sink(
            name,
            &what_zh,
            &what_en,
            st.down.down_for(),
            "读数在本地存储中等待",
            "readings wait in the store",
            &mut warnings,
        );
        checks.push(c);
    }

    // The store and the rest of the pipeline.
    let writer_alive = gw.committed.has_changed().is_ok();
    let failing = gw.outbox.commit_failing.load(Ordering::Relaxed);
    let errors = gw.outbox.commit_errors.load(Ordering::Relaxed);
    checks.push(Check {
        name: "store",
        ok: writer_alive && !failing,
        detail: if !writer_alive {
            "the store writer has stopped".into()
        } else if failing {
            format!(
                "commits are failing (disk full or store unwritable; {errors} failed commits): readings wait in memory, sources are held back"
            )
        } else {
            "store writer running".into()
        },
        message: if !writer_alive {
            say.pick("存储写入已停止", "the store writer has stopped")
        } else if failing {
            say.pick(
                format!("存储无法提交（磁盘满或不可写；已失败 {errors} 次）：读数暂存内存，采集被暂停"),
                format!("the store cannot commit (disk full or unwritable; {errors} failed commits): readings wait in memory, sources are held back"),
            )
        } else {
            say.pick("存储正常", "store writer running")
        },
    });
    let ob = gw.outbox.snapshot();
    let rows = ob.rows;
    checks.push(Check {
        name: "outbox",
        ok: !ob.full,
        detail: if ob.full {
            format!(
                "full: {rows} undelivered readings, new readings are held back or evict old ones (storage.outbox)"
            )
        } else {
            format!("{rows} undelivered readings")
        },
        message: if ob.full {
            say.pick(
                format!("待发送队列已满：{rows} 条读数未送达，新读数被暂停或挤掉最旧的（storage.outbox）"),
                format!("outbox full: {rows} undelivered readings, new readings are held back or evict old ones (storage.outbox)"),
            )
        } else {
            say.pick(
                format!("{rows} 条读数待发送"),
                format!("{rows} undelivered readings"),
            )
        },
    });
    // Tasks that panicked: restarting (503 until they run again) or dead for good.
    let down = gw.tasks.down();
    if !down.is_empty() {
        let (zh, en): (Vec<String>, Vec<String>) = down
            .iter()
            .map(|d| {
                let (task, panic) = (&d.task, &d.panic);
                match d.restart {
                    Some(n) => (
                        format!("{task} 崩溃（{panic}），正在第 {n} 次重启"),
                        format!("{task} panicked ({panic}), restart {n} is due"),
                    ),
                    None => (
                        format!("{task} 已终止（{panic}），不再重启：网关将退出，由服务管理器重新启动"),
                        format!("{task} died ({panic}), not restarted: the gateway exits for the service manager to restart it"),
                    ),
                }
            })
            .unzip();
        checks.push(Check {
            name: "tasks",
            ok: false,
            detail: format!("pipeline tasks down: {}", en.join("; ")),
            message: say.pick(
                format!("处理任务中断：{}", zh.join("；")),
                format!("pipeline tasks down: {}", en.join("; ")),
            ),
        });
    }
    let clock_ok = gw.clock.observe().trusted;
    let reason = gw.clock.reason();
    checks.push(Check {
        name: "clock",
        ok: clock_ok,
        detail: if clock_ok {
            "trusted".into()
        } else {
            format!("clock not trusted (时钟不可信): {reason}; readings are held")
        },
        message: if clock_ok {
            say.pick("时钟可信", "clock trusted")
        } else {
            say.pick(
                format!("时钟不可信：{reason}；读数暂缓入库"),
                format!("clock not trusted: {reason}; readings are held"),
            )
        },
    });
    // Keeping up: no device skipping poll slots, the store committing readings soon after they
    // were read.
    let behind: Vec<&str> = gw
        .devices
        .iter()
        .filter(|(_, s)| s.is_behind())
        .map(|(id, _)| id.as_str())
        .collect();
    let lag = ob.commit_lag_ms;
    let lagging = lag > crate::storage::writer::LAG_LIMIT_MS;
    let behind_list = behind.join(", ");
    checks.push(Check {
        name: "keeping_up",
        ok: behind.is_empty() && !lagging,
        detail: match (behind.is_empty(), lagging) {
            (true, false) => format!("every device on schedule; store commit lag {lag} ms"),
            (_, true) => format!(
                "the store commits readings {lag} ms after they were read: the pipeline cannot keep up{}",
                if behind.is_empty() { String::new() } else { format!("; devices behind their interval: {behind_list}") }
            ),
            (false, false) => {
                format!("devices behind their poll interval (slots skipped): {behind_list}")
            }
        },
        message: match (behind.is_empty(), lagging) {
            (true, false) => say.pick(
                format!("设备均按时采集；入库延迟 {lag} 毫秒"),
                format!("every device on schedule; store commit lag {lag} ms"),
            ),
            (_, true) => say.pick(
                format!("读数采集后 {lag} 毫秒才入库：处理跟不上"),
                format!("readings are committed {lag} ms after they were read: the pipeline cannot keep up"),
            ),
            (false, false) => say.pick(
                format!("设备跟不上采集周期（跳过了采集时隙）：{behind_list}"),
                format!("devices behind their poll interval (slots skipped): {behind_list}"),
            ),
        },
    });
    let ready = checks.iter().all(|c| c.ok);
    let problems: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.message.as_str())
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "phase": shared.phase(),
            "checks": checks,
            "problems": problems,
            "warnings": warnings,
        })),
    )
        .into_response()
}
