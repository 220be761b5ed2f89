//! The `energy-gateway` command.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use energy_gateway::{config, demo, telemetry};

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
        /// Also serve the live page, the JSON API, /metrics and /healthz at this loopback
        /// address, e.g. 127.0.0.1:8080 (port 0: any free port; the address is printed).
        #[arg(long, value_name = "IP:PORT", value_parser = parse_http_addr)]
        http: Option<std::net::SocketAddr>,
    },
    /// Read one Modbus device once with a meter template and print what it yields, in canonical
    /// quantities and units (what an installer runs on day one).
    Probe(ProbeArgs),
    /// Show or export the points a destination rejected for good (quarantined in the store).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Import CSV data into the store: meter readings (backfill), monthly value added,
    /// production, or consumption of carriers without a meter.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// The energy and carbon account of one period: a month (2026-10), a quarter (2026-Q3) or a
    /// year (2026). Also writes the intervals and accounts to the store.
    ///
    /// With --park: the park report of many factories from a central InfluxDB instead.
    Report {
        /// Path of the TOML configuration file (not with --park).
        #[arg(long, short, value_name = "FILE", required_unless_present = "park")]
        config: Option<PathBuf>,
        /// 2026-10, 2026-Q3 or 2026.
        #[arg(long, value_name = "PERIOD")]
        period: String,
        /// Output format: json, csv, html, md, or lp (line protocol of the accounts, for the
        /// park's InfluxDB).
        #[arg(long, default_value = "json", value_parser = parse_report_format)]
        format: String,
        /// Label language: zh (Chinese then English) or en.
        #[arg(long, default_value = "zh", value_parser = parse_lang)]
        lang: String,
        /// Park report: aggregate the factories' accounts from a central InfluxDB.
        #[arg(long, conflicts_with = "config")]
        park: bool,
        /// Park report source (only influxdb).
        #[arg(long, default_value = "influxdb", value_parser = ["influxdb"], requires = "park")]
        source: String,
        /// Park report: InfluxDB base URL (v1 query API), e.g. http://influx.park.example:8086.
        #[arg(long, requires = "park", required_if_eq("park", "true"))]
        url: Option<String>,
        /// Park report: database.
        #[arg(long, requires = "park", required_if_eq("park", "true"))]
        db: Option<String>,
        /// Park report: only sites with this `park` tag.
        #[arg(long, requires = "park")]
        park_tag: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Do not write intervals, accounts and counter events to the store.
        #[arg(long)]
        no_store: bool,
    },
    /// Export data for other systems.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Meter counters.
    Counter {
        #[command(subcommand)]
        action: CounterAction,
    },
    /// A series' readings or aggregates for a time range, from whichever tier of the store holds
    /// them (raw readings, minute aggregates, counters' interval boundaries).
    History {
        /// Path of the TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        device: String,
        /// Quantity, e.g. active_power or energy_import.
        #[arg(long)]
        quantity: String,
        /// Start: RFC 3339 with an offset (2026-10-01T08:00:00+08:00) or ms since the epoch.
        #[arg(long)]
        from: String,
        /// End, inclusive (default now).
        #[arg(long)]
        to: Option<String>,
        /// raw, auto (readings where the raw tier holds the range, else minutes) or a step
        /// such as 1m, 15m, 1h, 1d (aggregates: count, bad, min, max, mean, last).
        #[arg(long, default_value = "auto")]
        step: String,
        /// csv or json.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ExportWhat {
    /// 15-minute, daily and monthly energy items per carrier for the 重点用能单位 online
    /// monitoring platform (three files in --out).
    Monitoring {
        /// Path of the TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// 2026-10, 2026-Q3 or 2026.
        #[arg(long, value_name = "PERIOD")]
        period: String,
        /// Directory to write into (created if missing). `-o/--output` like every command;
        /// `--out` is still understood.
        #[arg(
            long = "output",
            short = 'o',
            visible_alias = "out",
            value_name = "DIR"
        )]
        out: PathBuf,
        /// json or csv.
        #[arg(long, default_value = "json", value_parser = parse_monitoring_format)]
        format: String,
        /// Item-code mapping file (default: the shipped config/monitoring/codes.toml).
        #[arg(long, value_name = "FILE")]
        codes: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// `time,device,quantity,value` (RFC 3339 times); rows already in the store are skipped.
    Readings(ImportArgs),
    /// `period,value_added_10k_cny[,value_added_comparable_10k_cny]` per month (YYYY-MM).
    ValueAdded(ImportArgs),
    /// `period,product,quantity` per month, in the product's unit.
    Production(ImportArgs),
    /// `period,carrier,quantity,unit[,use]` per month for carriers without a meter (use:
    /// energy or feedstock).
    Consumption(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The CSV file.
    #[arg(value_name = "FILE.csv")]
    file: PathBuf,
    /// Path of the TOML configuration file (locates the store).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum CounterAction {
    /// Record a meter replacement (old meter's final reading, new meter's initial reading) so
    /// that the accounts lose no energy.
    Replace {
        /// Path of the TOML configuration file (locates the store).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Device id.
        #[arg(long)]
        device: String,
        /// Counter quantity, e.g. energy_import.
        #[arg(long)]
        quantity: String,
        /// When the meter was replaced, RFC 3339 (2026-10-12T14:30:00+08:00).
        #[arg(long)]
        time: String,
        /// Last reading of the old meter.
        #[arg(long)]
        old_final: f64,
        /// First reading of the new meter.
        #[arg(long)]
        new_initial: f64,
        /// Free text kept with the record.
        #[arg(long)]
        note: Option<String>,
    },
}

fn accounting_command(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn import_command(what: ImportWhat) -> ExitCode {
    use energy_gateway::reporting::cli::{import, ImportKind};
    let (kind, a) = match what {
        ImportWhat::Readings(a) => (ImportKind::Readings, a),
        ImportWhat::ValueAdded(a) => (ImportKind::ValueAdded, a),
        ImportWhat::Production(a) => (ImportKind::Production, a),
        ImportWhat::Consumption(a) => (ImportKind::Consumption, a),
    };
    accounting_command(import(kind, &a.file, &a.config))
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// Print a summary per destination and every quarantined point with the server's answer.
    List {
        /// Path of the TOML configuration file (locates the store).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only this output (e.g. `central` or `influxdb.central`).
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
    /// Write the quarantined points as JSON lines (every detail) or line protocol (to replay).
    Export {
        /// Path of the TOML configuration file (locates the store).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only this output (e.g. `central` or `influxdb.central`).
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
        /// `jsonl` or `lp` (line protocol).
        #[arg(long, default_value = "jsonl")]
        format: energy_gateway::storage::quarantine::ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("link").required(true).args(["tcp", "rtu", "rtu_over_tcp", "dlt645", "cjt188", "opcua"])))]
struct ProbeArgs {
    /// Modbus TCP device, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    tcp: Option<String>,
    /// Modbus RTU on a serial port, e.g. /dev/ttyUSB0.
    #[arg(long, value_name = "DEVICE")]
    rtu: Option<String>,
    /// Modbus RTU frames through a TCP connection (serial device server), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    rtu_over_tcp: Option<String>,
    /// DL/T 645 meter on a serial port (e.g. /dev/ttyUSB0) or behind a serial device server
    /// (HOST:PORT); without --address the address is found by broadcast.
    #[arg(long, value_name = "PORT or HOST:PORT")]
    dlt645: Option<String>,
    /// CJ/T 188 water, heat or gas meter on a serial port or HOST:PORT.
    #[arg(long, value_name = "PORT or HOST:PORT")]
    cjt188: Option<String>,
    /// DL/T 645 (12 digits) or CJ/T 188 (14 digits) meter address; default: found by broadcast.
    #[arg(long)]
    address: Option<String>,
    /// CJ/T 188 meter type (e.g. 0x10 water, 0x20 heat, 0x30 gas); default: as discovered.
    #[arg(long, value_parser = parse_hex_u8)]
    meter_type: Option<u8>,
    /// Unit (slave) id.
    #[arg(long, default_value_t = 1)]
    unit: u8,
    /// Meter template (file name under config/meters/ without .toml, or an alias). Required
    /// for Modbus; for DL/T 645 / CJ/T 188 the default is the family of the protocol found.
    #[arg(long)]
    model: Option<String>,
    /// OPC UA server, opc.tcp://HOST:PORT[/PATH]: reads the --node ids given, or browses the
    /// Objects folder and reads the variables found.
    #[arg(long, value_name = "URL")]
    opcua: Option<String>,
    /// OPC UA: node id to read, e.g. "ns=2;s=Line1.Pieces" (repeatable).
    #[arg(long, value_name = "NODE_ID", requires = "opcua")]
    node: Vec<String>,
    /// OPC UA: security policy (Basic256Sha256 signs and encrypts).
    #[arg(long, default_value = "None", value_parser = ["None", "Basic256Sha256"], requires = "opcua")]
    security: String,
    /// OPC UA: user name (the password is taken from the environment variable --password-env).
    #[arg(long, requires = "opcua")]
    user: Option<String>,
    /// OPC UA: environment variable holding the password of --user.
    #[arg(long, value_name = "VAR", default_value = "EGW_OPCUA_PASSWORD")]
    password_env: String,
    /// OPC UA: trust the server's certificate without checking it (else it must be in the PKI
    /// directory's trusted/ folder).
    #[arg(long, requires = "opcua")]
    trust_server_cert: bool,
    /// OPC UA: PKI directory (the probe's own certificate; trusted/ and rejected/ server
    /// certificates). Default: energy-gateway-opcua-probe in the temporary directory.
    #[arg(long, value_name = "DIR", requires = "opcua")]
    pki_dir: Option<PathBuf>,
    /// Serial: baud rate.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Serial: parity.
    #[arg(long, default_value = "none", value_parser = ["none", "even", "odd"])]
    parity: String,
    /// Serial: stop bits.
    #[arg(long, default_value_t = 1)]
    stop_bits: u8,
    /// Time allowed for connecting and for each request.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
    /// Directory of user meter templates.
    #[arg(long, value_name = "DIR")]
    templates_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

/// `demo --http`: a loopback IP:port (the demo serves without a token).
fn parse_http_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let a: std::net::SocketAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("\"{s}\" is not IP:PORT, e.g. 127.0.0.1:8080"))?;
    if !a.ip().is_loopback() {
        return Err(format!(
            "{a} is not a loopback address; the demo serves without a token, so use 127.0.0.1 or [::1] (run with [http] and a token to serve the network)"
        ));
    }
    Ok(a)
}

/// `report --format`, checked when the command line is read (not after the store was read).
fn parse_report_format(s: &str) -> Result<String, String> {
    s.parse::<energy_gateway::reporting::Format>()
        .map(|_| s.to_string())
}

fn parse_lang(s: &str) -> Result<String, String> {
    s.parse::<energy_gateway::reporting::labels::Lang>()
        .map(|_| s.to_string())
}

fn parse_monitoring_format(s: &str) -> Result<String, String> {
    match s {
        "json" | "csv" => Ok(s.to_string()),
        other => Err(format!("unknown format \"{other}\"; available: json, csv")),
    }
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
        Command::Probe(args) => with_runtime(probe(args)),
        Command::Quarantine { action } => quarantine(action),
        Command::History {
            config,
            device,
            quantity,
            from,
            to,
            step,
            format,
        } => accounting_command(load_config(&config).and_then(|cfg| {
            use energy_gateway::storage::history::HistoryQuery;
            let q = HistoryQuery::parse(&device, &quantity, &from, to.as_deref(), Some(&step))
                .map_err(anyhow::Error::msg)?;
            let h = q.run_at(&cfg.store_path())?;
            if format == "json" {
                Ok(format!("{:#}\n", q.json(&h)))
            } else {
                let mut out = Vec::new();
                q.write_csv(&h, &mut out)?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
        })),
        Command::Import { what } => import_command(what),
        Command::Report {
            config,
            period,
            format,
            lang,
            park,
            source: _,
            url,
            db,
            park_tag,
            output,
            no_store,
        } => accounting_command(match (park, config) {
            (true, _) => energy_gateway::reporting::cli::park_report(
                url.as_deref().unwrap_or_default(),
                db.as_deref().unwrap_or_default(),
                &period,
                park_tag.as_deref(),
                &format,
                &lang,
                output.as_deref(),
            ),
            (false, Some(config)) => energy_gateway::reporting::cli::report(
                &config,
                &period,
                &format,
                &lang,
                output.as_deref(),
                !no_store,
            ),
            (false, None) => Err(anyhow::anyhow!("--config is required (or --park)")),
        }),
        Command::Export {
            what:
                ExportWhat::Monitoring {
                    config,
                    period,
                    out,
                    format,
                    codes,
                },
        } => accounting_command(energy_gateway::reporting::cli::export_monitoring(
            &config,
            &period,
            &out,
            &format,
            codes.as_deref(),
        )),
        Command::Counter {
            action:
                CounterAction::Replace {
                    config,
                    device,
                    quantity,
                    time,
                    old_final,
                    new_initial,
                    note,
                },
        } => accounting_command(energy_gateway::reporting::cli::counter_replace(
            &config,
            &device,
            &quantity,
            &time,
            old_final,
            new_initial,
            note.as_deref(),
        )),
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
            http,
        } => with_runtime(run_demo(duration, data_dir, summary_every, http)),
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
    let warnings = config::warnings::warnings(path);
    let code = check_problems(path);
    // Warnings do not fail `check`; printed after the problems, in the site's language.
    let prefix = config::warnings::prefix(path);
    for w in &warnings {
        println!("  {prefix}{w}");
    }
    code
}

fn check_problems(path: &std::path::Path) -> ExitCode {
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

/// `0x10`, `10H` or `16`.
fn parse_hex_u8(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u8::from_str_radix(h, 16)
    } else if let Some(h) = t.strip_suffix('H').or_else(|| t.strip_suffix('h')) {
        u8::from_str_radix(h, 16)
    } else {
        t.parse()
    };
    r.map_err(|e| format!("{s}: {e}"))
}

/// `probe --dlt645` / `--cjt188`.
async fn probe_meter_bus(a: ProbeArgs) -> anyhow::Result<()> {
    use energy_gateway::acquisition::meter_bus::config::LineProtocol;
    use energy_gateway::acquisition::meter_bus::probe::{probe, BusProbe};
    use energy_gateway::acquisition::modbus::link::{Link, SerialSettings};
    use energy_gateway::config::Parity;
    let (protocol, target) = match (a.dlt645.clone(), a.cjt188.clone()) {
        (Some(t), None) => (LineProtocol::Dlt645V2007, t),
        (None, Some(t)) => (LineProtocol::Cjt188, t),
        _ => anyhow::bail!("give one of --dlt645 and --cjt188"),
    };
    // A serial device path, or host:port of a serial device server.
    let link = if !target.starts_with('/') && target.contains(':') {
        Link::RtuOverTcp(target)
    } else {
        Link::Rtu(SerialSettings {
            port: target,
            baud: a.baud,
            parity: match a.parity.as_str() {
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                _ => Parity::None,
            },
            data_bits: 8,
            stop_bits: a.stop_bits,
        })
    };
    let result = probe(BusProbe {
        link,
        protocol,
        address: a.address.clone(),
        model: a.model.clone(),
        meter_type: a.meter_type,
        templates_dir: a.templates_dir.clone(),
        timeout: a.timeout,
        timezone: chrono_tz::Asia::Shanghai,
    })
    .await
    .map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", result.to_text());
    }
    if result.values.values().all(|v| v.value.is_none()) {
        anyhow::bail!(
            "no value could be read from {} address {} (every point failed)",
            result.link,
            result.address
        );
    }
    Ok(())
}

async fn probe(a: ProbeArgs) -> anyhow::Result<()> {
    use energy_gateway::acquisition::modbus::link::{Link, SerialSettings};
    use energy_gateway::config::Parity;
    if a.dlt645.is_some() || a.cjt188.is_some() {
        return probe_meter_bus(a).await;
    }
    if a.opcua.is_some() {
        return probe_opcua(a).await;
    }
    let Some(model) = a.model.clone() else {
        anyhow::bail!("give --model (a meter template) for a Modbus probe");
    };
    let link = match (a.tcp, a.rtu, a.rtu_over_tcp) {
        (Some(addr), _, _) => Link::Tcp(addr),
        (_, _, Some(addr)) => Link::RtuOverTcp(addr),
        (_, Some(port), _) => Link::Rtu(SerialSettings {
            port,
            baud: a.baud,
            parity: match a.parity.as_str() {
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                _ => Parity::None,
            },
            data_bits: 8,
            stop_bits: a.stop_bits,
        }),
        _ => anyhow::bail!("give --tcp, --rtu, --rtu-over-tcp, --dlt645 or --cjt188"),
    };
    let result = energy_gateway::acquisition::modbus::probe::probe(
        link,
        a.unit,
        &model,
        a.templates_dir.as_deref(),
        a.timeout,
    )
    .await
    .map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
    print_probe(&a.format, &result, || result.to_text())?;
    // A probe that read nothing found no meter: say so in the exit status too.
    if !result.values.is_empty() && result.values.values().all(|v| v.value.is_none()) {
        anyhow::bail!(
            "no value could be read from unit {} at {} (every point failed)",
            result.unit_id,
            result.link
        );
    }
    Ok(())
}

/// Prints a probe's result as `--format` asks.
fn print_probe<T: serde::Serialize>(
    format: &str,
    result: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// `probe --opcua`: exit status non-zero when no value could be read.
async fn probe_opcua(a: ProbeArgs) -> anyhow::Result<()> {
    use energy_gateway::acquisition::opcua::probe;
    let endpoint = a.opcua.clone().unwrap_or_default();
    let mut cfg = serde_json::json!({
        "endpoint": endpoint,
        "security_policy": a.security,
        "trust_server_cert": a.trust_server_cert,
        "timeout": humantime::format_duration(a.timeout.max(Duration::from_secs(5))).to_string(),
    });
    if let Some(u) = &a.user {
        cfg["username"] = u.clone().into();
        cfg["password"] = serde_json::json!({ "env": a.password_env });
    }
    let cfg: energy_gateway::config::OpcUaConfig = serde_json::from_value(cfg)?;
    let problems: Vec<String> = cfg
        .check(true)
        .into_iter()
        .filter(|(k, _)| k != "nodes")
        .map(|(k, m)| format!("{k}: {m}"))
        .collect();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    let pki = a
        .pki_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("energy-gateway-opcua-probe"));
    let result = probe::probe(probe::ProbeRequest {
        cfg,
        nodes: a.node.clone(),
        pki,
    })
    .await
    .map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
    print_probe(&a.format, &result, || result.to_text())?;
    if result.readable() == 0 {
        anyhow::bail!(
            "no value could be read from {} ({} node(s) tried)",
            result.endpoint,
            result.nodes.len()
        );
    }
    Ok(())
}

fn quarantine(action: QuarantineAction) -> ExitCode {
    use energy_gateway::storage::quarantine;
    let (config_path, result) = match action {
        QuarantineAction::List {
            config,
            destination,
        } => {
            let r = load_config(&config).and_then(|cfg| {
                quarantine::list(
                    &cfg.store_path(),
                    destination.as_deref(),
                    &mut std::io::stdout().lock(),
                )
            });
            (config, r)
        }
        QuarantineAction::Export {
            config,
            destination,
            format,
            output,
        } => {
            let r = load_config(&config).and_then(|cfg| {
                let mut out: Box<dyn std::io::Write> = match &output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
                    )),
                    None => Box::new(std::io::stdout().lock()),
                };
                let n = quarantine::export(
                    &cfg.store_path(),
                    destination.as_deref(),
                    format,
                    &mut out,
                )?;
                if let Some(p) = &output {
                    eprintln!("exported {n} quarantined points to {}", p.display());
                }
                Ok(n)
            });
            (config, r)
        }
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error ({}): {e:#}", config_path.display());
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "invalid configuration {}:\n{}",
            path.display(),
            list.join("\n")
        )
    })
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
    // HTTP server of [http], SIGHUP reload, systemd notify and watchdog.
    energy_gateway::service::run(path, cfg, shutdown_signal()).await
}

async fn run_demo(
    duration: Duration,
    data_dir: Option<PathBuf>,
    summary_every: Duration,
    http: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let cfg = demo::demo_config(PathBuf::new())?;
    telemetry::init(&cfg.log);
    let mut out = std::io::stdout();
    demo::run(
        demo::DemoOptions {
            duration,
            data_dir,
            summary_every,
            http,
        },
        shutdown_signal(),
        &mut out,
    )
    .await?;
    Ok(())
}
