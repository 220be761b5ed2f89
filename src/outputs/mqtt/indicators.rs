//! The site indicators over MQTT: devices online, site power and the month's accounts as the
//! accounting service holds them, queued in the MQTT outbox every `[mqtt.publish]
//! indicators_every` and whenever the accounts change.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::MqttOutbox;
use crate::accounting::service::Accounts;
use crate::acquisition::config::MqttPublishConfig;
use crate::acquisition::DeviceRegistry;
use crate::processing::LatestValues;
use crate::readings::now_ms;
use crate::settings::SiteConfig;

/// Queues the site indicators for the MQTT output every `[mqtt.publish] indicators_every`, and
/// at once whenever the accounting service has new accounts.
pub async fn publish(
    settings: MqttPublishConfig,
    site: SiteConfig,
    outbox: MqttOutbox,
    devices: DeviceRegistry,
    latest: Arc<Mutex<LatestValues>>,
    accounts: Arc<Accounts>,
    cancel: CancellationToken,
) {
    let mut changed = accounts.subscribe();
    let every = settings.indicators_every;
    if every.is_zero() {
        return;
    }
    let topic = crate::acquisition::mqtt::connection::topic(&settings.indicators_topic, &site.id);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
        let online = devices.values().filter(|s| s.is_online()).count();
        let power = crate::processing::site_power(&site.main_meters, &latest);
        let payload = payload(&site, online, devices.len(), power, &accounts.held());
        let (o, t) = (outbox.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || o.enqueue(&t, &payload, false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("cannot queue indicators: {e}"),
            Err(e) => tracing::error!("cannot queue indicators: {e}"),
        }
    }
}

/// The site indicators message.
pub fn payload(
    site: &SiteConfig,
    devices_online: usize,
    devices: usize,
    site_power_kw: Option<f64>,
    accounts: &crate::accounting::service::Held,
) -> String {
    let ts = now_ms();
    json!({
        "site": site.id,
        "park": site.park,
        "ts_ms": ts,
        "time": chrono::DateTime::from_timestamp_millis(ts).map(|t| t.to_rfc3339()),
        "devices_online": devices_online,
        "devices": devices,
        "site_power_kw": site_power_kw,
        "accounts": accounts_indicators(accounts),
    })
    .to_string()
}

/// The month's accounts as the accounting service holds them, for the indicators (`null`
/// before its first month).
fn accounts_indicators(h: &crate::accounting::service::Held) -> serde_json::Value {
    let Some(r) = &h.month else {
        return serde_json::Value::Null;
    };
    json!({
        "period": r.period,
        "in_progress": r.in_progress,
        "data_to": r.data_to,
        "revision": h.revision,
        "comprehensive_energy_tce": r.comprehensive_energy_tce,
        "assessment_energy_tce": r.assessment_energy_tce,
        "electricity_kwh": r.electricity.consumed_kwh,
        "value_added_10k_cny": r.value_added_10k_cny,
        "intensity_tce_per_10k_cny": r.intensity_tce_per_10k_cny,
        "total_tco2": r.carbon.total_tco2,
        "completeness_pct": r.data_quality.completeness_pct,
        "today_tce": h.today.as_ref().and_then(|t| t.tce),
    })
}
