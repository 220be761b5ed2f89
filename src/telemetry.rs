//! Logging setup: human-readable or JSON lines on stderr, filtered by `[log] level` or, when set,
//! the `RUST_LOG` environment variable; [`metrics`] for `/metrics`.

pub mod metrics;

use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::units::duration;

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, or `info,energy_gateway::acquisition=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// How often to log one status line per device (polls, failures, exceptions by code, round
    /// trip). "0s" turns it off.
    #[serde(default = "default_status_every", with = "duration")]
    pub status_every: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
            status_every: default_status_every(),
        }
    }
}

fn default_status_every() -> Duration {
    Duration::from_secs(300)
}

fn default_log_level() -> String {
    "info".into()
}

/// Human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: never escape codes in files, pipes or the journal.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        // A log that cannot be written (a full disk under a redirected stderr) must not stop
        // the thread that logs: the default reports it with eprintln!, which panics.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
