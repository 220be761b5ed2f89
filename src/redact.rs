//! Keeping secrets out of logs: robot and webhook URLs carry their keys in the query string
//! (WeCom `key=`, DingTalk `access_token=`), InfluxDB URLs may carry a password. Errors of HTTP
//! requests are logged by their cause (refused, timed out, TLS…) without the URL.

use std::error::Error as _;

/// A request error as a log line: what failed and the innermost cause, never the URL.
pub fn request_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut cause = None;
    let mut source = e.source();
    while let Some(s) = source {
        cause = Some(s.to_string());
        source = s.source();
    }
    match cause {
        Some(c) => format!("{kind}: {c}"),
        None => format!("{kind}: {e}"),
    }
}

/// A URL for a log line: no password, no query string.
pub fn url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_request_names_the_cause_and_not_the_key() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        crate::install_crypto_provider();
        let e = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/cgi-bin/webhook/send?key=SECRET-KEY-123"
            ))
            .send()
            .await
            .unwrap_err();
        let line = request_error(e);
        assert!(!line.contains("SECRET-KEY-123"), "{line}");
        assert!(!line.contains("key="), "{line}");
        assert!(line.starts_with("cannot connect"), "{line}");
    }

    #[test]
    fn urls_lose_password_and_query() {
        let u = reqwest::Url::parse("https://user:pw@example.invalid/write?db=x&p=pw").unwrap();
        assert_eq!(url(&u), "https://user@example.invalid/write");
    }
}
