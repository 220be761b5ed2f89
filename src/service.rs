//! `energy-gateway run` as a service: the pipeline, the HTTP server of `[http]`, configuration
//! reload on SIGHUP and the systemd protocol (`Type=notify`: `READY=1` once the store is open and
//! polling has started, `RELOADING=1` around a reload, `STOPPING=1`, and `WATCHDOG=1` pings at
//! half the `WatchdogSec=` period when systemd asks for them, only while the pipeline makes
//! progress: see [`crate::pipeline::heartbeat`]).
//!
//! A reload loads and checks the file exactly as `energy-gateway check` does. An invalid file is
//! rejected with the same messages (logged) and the running pipeline is left alone. A valid one
//! replaces the pipeline: the old one shuts down cleanly (sources stop, everything they read is
//! committed to the store, outputs get their grace period, the rest waits in the store) and a
//! new one starts with the new configuration, taking over the store where the old one left it.
//! The HTTP server stays up throughout (`/readyz` says 503 while no pipeline runs). Its address
//! and the log settings are read at start only; a change to them is logged and applies at the
//! next restart. A new `[http] token` applies at once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;

use crate::config::{self, Config};
use crate::http::HttpServer;
use crate::pipeline::heartbeat::{Beat, Heartbeat};
use crate::pipeline::{self, RunningGateway};

/// Runs until `shutdown` resolves, reloading the configuration at `path` on every SIGHUP.
/// `cfg` is the configuration already loaded from `path`.
pub async fn run(
    path: PathBuf,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Before anything else: SIGHUP's default action would end the process.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let http = match &cfg.http {
        h if h.enabled => {
            let addr = h
                .bind_addr()
                .ok_or_else(|| anyhow::anyhow!("http.bind \"{}\" is not IP:port", h.bind))?;
            Some(
                HttpServer::start_with(
                    addr,
                    crate::http::resolve_token(h)?,
                    crate::http::ConnectionLimits::from(h),
                )
                .await?,
            )
        }
        _ => None,
    };
    let mut gw = match pipeline::start(cfg).await {
        Ok(gw) => gw,
        Err(e) => {
            if let Some(h) = http {
                h.shutdown().await;
            }
            return Err(e);
        }
    };
    if let Some(h) = &http {
        h.set_gateway(Some(&gw), "running");
    }
    notify(&[NotifyState::Ready, NotifyState::Status(&status_line(&gw))]);
    let heartbeat = Arc::new(Mutex::new(gw.heartbeat.clone()));
    let watchdog = spawn_watchdog(heartbeat.clone());

    tokio::pin!(shutdown);
    loop {
        let tasks = gw.tasks.clone();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tasks.died.notified() => {
                let dead = tasks.dead().join("; ");
                // A task that cannot be restarted alone, or panics in a loop (see
                // `pipeline::supervise`); others were restarted in the process.
                tracing::error!("a pipeline task died ({dead}): stopping, for the service manager to restart the gateway");
                notify(&[NotifyState::Stopping]);
                if let Some(h) = &http {
                    h.set_gateway(None, "stopping");
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), gw.shutdown()).await;
                if let Some(h) = http {
                    h.shutdown().await;
                }
                anyhow::bail!("a pipeline task died: {dead}");
            }
            got = hup.recv() => {
                if got.is_none() {
                    break;
                }
                gw = reload(&path, gw, http.as_ref()).await?;
                *heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = gw.heartbeat.clone();
            }
        }
    }

    tracing::info!("signal received");
    notify(&[NotifyState::Stopping]);
    if let Some(h) = &http {
        h.set_gateway(None, "stopping");
    }
    let report = gw.shutdown().await?;
    tracing::info!(
        readings = report.writer.readings,
        last_id = report.last_committed_id,
        "stopped cleanly"
    );
    if let Some(h) = http {
        h.shutdown().await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

fn status_line(gw: &RunningGateway) -> String {
    format!(
        "running: site {}, {} devices, {} outputs",
        gw.config.site.id,
        gw.devices.len(),
        gw.outputs.len()
    )
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Pings the systemd watchdog at half its period, when `WATCHDOG_USEC` asks for it, each time a
/// probe went through the pipeline within a quarter of the period (or the pipeline waits by
/// design): a gateway that makes no progress is restarted by systemd, even though its HTTP
/// server still answers.
fn spawn_watchdog(heartbeat: Arc<Mutex<Heartbeat>>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(100));
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log = crate::log_limit::LogLimiter::new(Duration::from_secs(60));
        let mut stuck = false;
        loop {
            tick.tick().await;
            let hb = heartbeat.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match hb.beat(every / 2).await {
                Beat::Stuck(why) => {
                    stuck = true;
                    if let Some(suppressed) = log.allow() {
                        tracing::error!(
                            suppressed,
                            "the pipeline makes no progress ({why}): the systemd watchdog is not pinged"
                        );
                    }
                }
                beat => {
                    if std::mem::take(&mut stuck) {
                        log.reset();
                        tracing::info!("the pipeline makes progress again: watchdog pings resume");
                    }
                    if let Beat::Waiting(why) = beat {
                        tracing::debug!("watchdog pinged while the pipeline waits: {why}");
                    }
                    notify(&[NotifyState::Watchdog]);
                }
            }
        }
    }))
}

/// The problems of an invalid configuration, as `energy-gateway check` prints them.
pub fn check_lines(path: &Path, problems: &[config::ConfigProblem]) -> Vec<String> {
    let mut lines = vec![format!(
        "{}: {} problem{}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )];
    lines.extend(problems.iter().map(|p| format!("  {p}")));
    lines
}

/// Logs the settings that are read at start only, when the new configuration changes them.
fn warn_restart_only(old: &Config, new: &Config, http_running: bool) {
    if old.log.level != new.log.level || old.log.format != new.log.format {
        tracing::warn!("[log] level/format changed: applies at the next restart");
    }
    if old.http.enabled != new.http.enabled || old.http.bind != new.http.bind {
        tracing::warn!(
            running = http_running,
            "[http] enabled/bind changed: the HTTP server is started or moved at the next restart"
        );
    }
}

async fn reload(
    path: &Path,
    gw: RunningGateway,
    http: Option<&HttpServer>,
) -> anyhow::Result<RunningGateway> {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
    let new = match config::load(path) {
        Ok(c) => c,
        Err(problems) => {
            let lines = check_lines(path, &problems);
            tracing::error!(
                "configuration reload rejected, the running configuration is kept; {}",
                lines[0]
            );
            for l in &lines[1..] {
                tracing::error!("{l}");
            }
            if let Some(h) = http {
                h.record_reload("rejected", problems.iter().map(|p| p.to_string()).collect());
            }
            notify(&[NotifyState::Status(
                "running; the last reload was rejected (invalid configuration, see the log)",
            )]);
            return Ok(gw);
        }
    };
    let old = gw.config.clone();
    warn_restart_only(&old, &new, http.is_some());
    notify(&[NotifyState::Reloading]);
    if let Some(h) = http {
        h.set_gateway(None, "reloading");
        h.set_token(crate::http::resolve_token(&new.http)?);
    }
    let processing = gw.processing.clone();
    let clock = gw.clock.clone();
    let report = gw.shutdown().await?;
    tracing::info!(
        processed = processing.readings.load(Ordering::Relaxed),
        committed = report.writer.readings,
        last_id = report.last_committed_id,
        "pipeline stopped for the reload; everything it read is committed"
    );
    let (gw, result) = match pipeline::start_with_clock(new, Some(clock.clone())).await {
        Ok(g) => (g, "applied"),
        Err(e) => {
            tracing::error!(
                "the new configuration could not start ({e:#}); starting the previous one again"
            );
            let g = pipeline::start_with_clock((*old).clone(), Some(clock))
                .await
                .context("restarting with the previous configuration")?;
            if let Some(h) = http {
                h.set_token(crate::http::resolve_token(&old.http)?);
            }
            (g, "failed")
        }
    };
    if let Some(h) = http {
        h.set_gateway(Some(&gw), "running");
        h.record_reload(result, Vec::new());
    }
    tracing::info!(
        result,
        devices = gw.devices.len(),
        outputs = gw.outputs.len(),
        "configuration reload done"
    );
    notify(&[NotifyState::Ready, NotifyState::Status(&status_line(&gw))]);
    Ok(gw)
}
