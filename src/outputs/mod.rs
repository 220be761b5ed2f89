//! Outputs: destinations the store's outbox is delivered to. Each keeps its own cursor in the
//! store, so a slow or unreachable destination never holds back another.

pub mod cursor;
pub mod influxdb;
pub mod metrics;
pub mod mqtt;
pub mod mqtt_readings;

/// Why `u` is not an http(s) URL, in plain words with the fix; `None` when it is one.
pub fn http_url_problem(u: &str) -> Option<String> {
    match reqwest::Url::parse(u) {
        Ok(x) if matches!(x.scheme(), "http" | "https") => None,
        _ if !u.contains("://") => Some(format!(
            "\"{u}\" has no scheme: write http://{u} (or https://{u})"
        )),
        Ok(x) => Some(format!("scheme \"{}\" is not http or https", x.scheme())),
        Err(e) => Some(format!("\"{u}\" is not a URL ({e})")),
    }
}
