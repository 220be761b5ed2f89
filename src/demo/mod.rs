//! `energy-gateway demo`: the gateway's main job on a simulated factory, with nothing to install.
//! The meters of [`simulator`] are served on loopback, the real gateway (same pipeline, same
//! store) polls them, and a live summary is printed until the duration is up or a signal arrives.

pub mod simulator;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::TimeZone as _;

use crate::config::{Config, Synchronous};
use crate::pipeline::{self, RunningGateway};
use crate::readings::Quantity;
use crate::storage::Store;

/// The demo configuration shipped in `config/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Options of a demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub data_dir: Option<PathBuf>,
    pub summary_every: Duration,
    /// Serve the live page, the API, `/metrics` and `/healthz` here (no token: loopback only).
    pub http: Option<std::net::SocketAddr>,
}

/// Loads the demo configuration (with `EGW__` overrides) and points it at `data_dir`.
pub fn demo_config(data_dir: PathBuf) -> anyhow::Result<Config> {
    let mut cfg = crate::config::load_str(DEMO_CONFIG).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!(
            "the demo configuration is invalid:\n  {}",
            list.join("\n  ")
        )
    })?;
    cfg.storage.data_dir = data_dir;
    Ok(cfg)
}

/// Runs the demo until `duration` has passed or `shutdown` resolves, printing summaries to
/// `out`. Returns the per-device reading counts in the store at the end.
pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let data_dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("energy-gateway-demo-{}", std::process::id())),
    };
    let mut cfg = demo_config(data_dir.clone())?;
    let factory = simulator::SimulatedFactory::start()
        .await
        .context("starting the simulated meters")?;
    for d in &mut cfg.devices {
        if let (Some(m), Some(addr)) = (d.modbus.as_mut(), factory.addr(&d.id)) {
            m.address = Some(addr.to_string());
        }
    }
    writeln!(
        out,
        "energy-gateway demo: {} simulated meters on loopback, store {}",
        cfg.devices.len(),
        cfg.store_path().display()
    )?;
    for d in &cfg.devices {
        if let Some(m) = &d.modbus {
            writeln!(
                out,
                "  {:<11} {:<18} modbus tcp {}",
                d.id,
                d.model.as_deref().unwrap_or("-"),
                m.address.as_deref().unwrap_or("-")
            )?;
        }
    }
    let http = match opts.http {
        Some(addr) if !addr.ip().is_loopback() => anyhow::bail!(
            "--http {addr}: the demo serves without a token, so only on a loopback address"
        ),
        Some(addr) => Some(crate::http::HttpServer::start(addr, None).await?),
        None => None,
    };
    let gw = pipeline::start(cfg).await?;
    if let Some(h) = &http {
        h.set_gateway(Some(&gw), "running");
        writeln!(
            out,
            "live page: http://{addr}/  (also http://{addr}/metrics, /healthz, /api/v1/status)",
            addr = h.local_addr()
        )?;
        out.flush()?;
    }
    let started = Instant::now();
    let mut ticker = tokio::time::interval(opts.summary_every);
    ticker.tick().await;
    tokio::pin!(shutdown);
    let deadline = tokio::time::sleep(opts.duration);
    tokio::pin!(deadline);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut shutdown => { interrupted = true; break; }
            _ = ticker.tick() => {
                let line = summary_line(&gw, started.elapsed()).await;
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
    }
    let final_line = format!("final  {}", summary_line(&gw, started.elapsed()).await);
    let config = gw.config.clone();
    let devices = gw.devices.clone();
    let rpc = gw.requests_per_cycle.clone();
    if let Some(h) = http {
        h.set_gateway(None, "stopping");
        h.shutdown().await;
    }
    let report = gw.shutdown().await?;
    drop(factory);
    writeln!(out, "{final_line}")?;
    let counts = {
        let path = config.store_path();
        tokio::task::spawn_blocking(move || {
            Store::open(&path, Synchronous::Normal).and_then(|s| s.count_by_device())
        })
        .await??
    };
    writeln!(
        out,
        "{} after {:.1} s: {} readings committed in {} transactions",
        if interrupted {
            "stopped by signal"
        } else {
            "finished"
        },
        started.elapsed().as_secs_f64(),
        report.writer.readings,
        report.writer.transactions
    )?;
    writeln!(
        out,
        "  device      readings  requests/cycle  polls  failures  last rtt"
    )?;
    for (id, st) in &devices {
        let s = st.snapshot();
        writeln!(
            out,
            "  {:<11} {:>8}  {:>14}  {:>5}  {:>8}  {:>6.2} ms",
            id,
            counts.get(id.as_str()).copied().unwrap_or(0),
            rpc.get(id).copied().unwrap_or(0),
            s.requests,
            s.failures,
            s.last_round_trip_ms
        )?;
    }
    writeln!(out, "store: {}", config.store_path().display())?;
    // The demo's configuration next to its store, so that its accounts can be reported on.
    let demo_toml = data_dir.join("demo.toml");
    let toml = DEMO_CONFIG.replacen(
        "data_dir = \"demo-data\"",
        &format!(
            "data_dir = {}",
            toml::Value::String(data_dir.to_string_lossy().into_owned())
        ),
        1,
    );
    match std::fs::write(&demo_toml, toml) {
        Ok(()) => {
            let month = chrono::Utc::now()
                .with_timezone(
                    &config
                        .site
                        .timezone
                        .parse()
                        .unwrap_or(chrono_tz::Asia::Shanghai),
                )
                .format("%Y-%m");
            writeln!(
                out,
                "report on it: energy-gateway report --config {} --period {month} --format html --lang zh -o demo-report.html",
                demo_toml.display()
            )?;
        }
        Err(e) => writeln!(out, "(could not write {}: {e})", demo_toml.display())?,
    }
    Ok(counts)
}

/// One line of live status: devices online, readings stored, site power, energy today.
pub async fn summary_line(gw: &RunningGateway, elapsed: Duration) -> String {
    let stored = *gw.committed.borrow();
    let power = gw
        .site_power_kw()
        .map(|p| format!("{p:.1} kW"))
        .unwrap_or_else(|| "-".into());
    let energy = energy_today(gw.config.clone())
        .await
        .map(|e| format!("{e:.2} kWh"))
        .unwrap_or_else(|| "-".into());
    let firing = gw
        .processing
        .alerts_firing
        .load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "[{:>4}s] devices online {}/{} | readings stored {} | site power {} | energy today {} | alerts firing {}",
        elapsed.as_secs(),
        gw.devices_online(),
        gw.devices.len(),
        stored,
        power,
        energy,
        firing
    )
}

/// Energy imported today (site time zone) by the main meters, from their counters in the store.
async fn energy_today(cfg: Arc<Config>) -> Option<f64> {
    tokio::task::spawn_blocking(move || {
        let tz: chrono_tz::Tz = cfg.site.timezone.parse().ok()?;
        let today = chrono::Utc::now().with_timezone(&tz).date_naive();
        let midnight = tz
            .from_local_datetime(&today.and_hms_opt(0, 0, 0)?)
            .earliest()?
            .timestamp_millis();
        let store = Store::open(&cfg.store_path(), Synchronous::Normal).ok()?;
        let mut total = None;
        for m in &cfg.site.main_meters {
            let first = store
                .first_good_since(m, Quantity::EnergyImport, midnight)
                .ok()??;
            let last = store.latest_good(m, Quantity::EnergyImport).ok()??;
            *total.get_or_insert(0.0) += (last.1 - first.1).max(0.0);
        }
        total
    })
    .await
    .ok()?
}
