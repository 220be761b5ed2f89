//! The `energy-gateway` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use energy_gateway::{config, demo, pipeline, telemetry};

/// Edge gateway for factory energy monitoring: polls meters over Modbus, keeps every reading in a
/// durable local store, forwards to InfluxDB and raises threshold alerts.
#[derive(Parser)]
#[command(name = "energy-gateway", version, propagate_version = true)]
#[command(
    after_help = "Configuration keys are documented in config/example.toml. \
Any key can be overridden from the environment: EGW__SECTION__KEY (double underscores), \
for example EGW__LOG__LEVEL=debug or EGW__OUTPUTS__INFLUXDB__CENTRAL__TOKEN=..."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file until SIGINT/SIGTERM.
    Run {
        /// Path of the TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and print every problem with its key path (exit 0 = valid).
    Check {
        /// Path of the TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the gateway against a simulated factory (five Modbus TCP meters on loopback) and
    /// print a live summary. Needs no network and no other service.
    Demo {
        /// How long to run, e.g. 30s, 5m.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// Where to keep the store (default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// How often to print the summary line.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        summary_every: Duration,
    },
    /// Print the version.
    Version,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = config::duration::parse(s)?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("energy-gateway {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Run { config } => with_runtime(run(config)),
        Command::Demo {
            duration,
            data_dir,
            summary_every,
        } => with_runtime(run_demo(duration, data_dir, summary_every)),
    }
}

fn with_runtime(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} devices, {} alert rules, {} outputs)",
                path.display(),
                cfg.devices.len(),
                cfg.alerts.len(),
                cfg.outputs.influxdb.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!(
                "{}: {} problem{}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in &problems {
                println!("  {p}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let cfg = config::load(&path).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "invalid configuration {}:\n{}",
            path.display(),
            list.join("\n")
        )
    })?;
    telemetry::init(&cfg.log);
    let gw = pipeline::start(cfg).await?;
    shutdown_signal().await;
    tracing::info!("signal received");
    let report = gw.shutdown().await?;
    tracing::info!(
        readings = report.writer.readings,
        last_id = report.last_committed_id,
        "stopped cleanly"
    );
    Ok(())
}

async fn run_demo(
    duration: Duration,
    data_dir: Option<PathBuf>,
    summary_every: Duration,
) -> anyhow::Result<()> {
    let cfg = demo::demo_config(PathBuf::new())?;
    telemetry::init(&cfg.log);
    let mut out = std::io::stdout();
    demo::run(
        demo::DemoOptions {
            duration,
            data_dir,
            summary_every,
        },
        shutdown_signal(),
        &mut out,
    )
    .await?;
    Ok(())
}
