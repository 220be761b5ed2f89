//! MQTT connection settings shared by the subscriber (readings in) and the publisher (status,
//! alerts, indicators out): broker URL, stable client id, credentials, TLS with rustls (custom
//! CA, optional client certificate), and reconnect backoff.

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::acquisition::config::{MqttConfig, MQTT_MAX_PACKET};

/// Client options for one of the gateway's two connections. `role` is appended to the client id
/// (`""` for the subscriber, `"-pub"` for the publisher).
pub fn options(cfg: &MqttConfig, site: &str, role: &str) -> Result<MqttOptions, String> {
    let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("mqtt.url: {e}"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err(format!("mqtt.url: scheme {other} is not mqtt or mqtts")),
    };
    let host = url
        .host_str()
        .ok_or("mqtt.url: no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let id = format!(
        "{}{role}",
        cfg.client_id
            .clone()
            .unwrap_or_else(|| format!("energy-gateway-{site}"))
    );
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(cfg.keep_alive);
    // Incoming: whatever the protocol allows, so that an oversized message is read, judged by
    // `mqtt.max_message_size` and acknowledged instead of breaking the connection each time the
    // broker redelivers it. Outgoing: the gateway's own messages are small.
    o.set_max_packet_size(MQTT_MAX_PACKET as usize, 256 * 1024);
    if let Some(user) = &cfg.username {
        let pass = match &cfg.password {
            Some(p) => p.resolve().map_err(|e| format!("mqtt.password: {e}"))?,
            None => String::new(),
        };
        o.set_credentials(user.clone(), pass);
    }
    if tls {
        crate::install_crypto_provider();
        let read = |key: &str, p: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>, String> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p)
                        .map_err(|e| format!("mqtt.{key}: cannot read {}: {e}", p.display()))
                })
                .transpose()
        };
        let ca = read("ca_file", &cfg.ca_file)?.ok_or("mqtt.ca_file: required with mqtts://")?;
        let client_auth = match (
            read("client_cert_file", &cfg.client_cert_file)?,
            read("client_key_file", &cfg.client_key_file)?,
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        };
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}

/// `{site}` in a configured topic is the site id.
pub fn topic(template: &str, site: &str) -> String {
    template.replace("{site}", site)
}
