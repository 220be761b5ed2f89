//! Metrics for `/metrics`, kept by the components that count them.
//!
//! A component registers its metrics once, when it starts, in the registry it is given (a
//! [`Registry`] with the `energy_gateway` prefix) and updates them where the event happens. Most
//! of a component's counts are the atomics it already keeps for its status (the JSON API and
//! `/readyz` read them too): [`Live`] registers such an atomic as a counter or gauge that is
//! read when scraped, so nothing is copied, counted twice or rebuilt per scrape. Latencies are
//! `prometheus_client` histograms.
//!
//! Two registries make the exposition: the process's (build, uptime, reloads, process
//! resources; it lives as long as the HTTP server) and the running pipeline's (every
//! component's; it is built when a pipeline starts and dropped with it, so after a reload the
//! series of removed devices, outputs or notifiers are gone and the counters of the new pipeline
//! start from zero, which Prometheus' `rate()` and `increase()` take as a reset). [`encode`]
//! writes both as one OpenMetrics text.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::Registry;

/// Prefix of every metric name.
pub const PREFIX: &str = "energy_gateway";

/// A gauge of floating point values.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Label pairs of one series, e.g. `[("device", "main")]`.
pub type Labels = Vec<(&'static str, String)>;

/// A counter read from a component's state `T`: name, help, how to read it.
pub type CounterDef<T> = (&'static str, &'static str, fn(&T) -> u64);

/// A gauge read from a component's state `T`: name, help, how to read it (`None`: no value).
pub type GaugeDef<T> = (&'static str, &'static str, fn(&T) -> Option<f64>);

/// Registers `counters` and `gauges` read from `state`.
pub fn register_live<T: Send + Sync + 'static>(
    reg: &mut Registry,
    state: &Arc<T>,
    counters: &[CounterDef<T>],
    gauges: &[GaugeDef<T>],
) {
    for (name, help, read) in counters {
        reg.register(*name, *help, Live::counter(state.clone(), *read));
    }
    for (name, help, read) in gauges {
        reg.register(*name, *help, Live::gauge(state.clone(), *read));
    }
}

/// Registers `counters` and `gauges` with a series per entry of `states`, labelled `label`.
pub fn register_live_families<K: AsRef<str>, T: Send + Sync + 'static>(
    reg: &mut Registry,
    label: &'static str,
    states: &std::collections::BTreeMap<K, Arc<T>>,
    counters: &[CounterDef<T>],
    gauges: &[GaugeDef<T>],
) {
    for (name, help, read) in counters {
        reg.register(*name, *help, Live::counters(label, states, *read));
    }
    for (name, help, read) in gauges {
        reg.register(*name, *help, Live::gauges(label, states, *read));
    }
}

/// A new registry whose names start with [`PREFIX`].
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// How a [`Live`] metric reads a value from a component's state.
enum Read<T> {
    Counter(fn(&T) -> u64),
    /// `None`: no value (the series is left out, e.g. a last success that never happened).
    Gauge(fn(&T) -> Option<f64>),
}

/// A counter or gauge (one series, or one per label set) whose values are read from the state
/// a component keeps, when the metric is scraped.
pub struct Live<T> {
    rows: Vec<(Labels, Arc<T>)>,
    read: Read<T>,
}

impl<T> Live<T> {
    /// One counter.
    pub fn counter(state: Arc<T>, read: fn(&T) -> u64) -> Self {
        Live {
            rows: vec![(Vec::new(), state)],
            read: Read::Counter(read),
        }
    }

    /// One gauge.
    pub fn gauge(state: Arc<T>, read: fn(&T) -> Option<f64>) -> Self {
        Live {
            rows: vec![(Vec::new(), state)],
            read: Read::Gauge(read),
        }
    }

    /// A counter per `label` value (a device, a destination…).
    pub fn counters<'a, K: AsRef<str> + 'a>(
        label: &'static str,
        rows: impl IntoIterator<Item = (&'a K, &'a Arc<T>)>,
        read: fn(&T) -> u64,
    ) -> Self
    where
        T: 'a,
    {
        Live {
            rows: labelled(label, rows),
            read: Read::Counter(read),
        }
    }

    /// A gauge per `label` value.
    pub fn gauges<'a, K: AsRef<str> + 'a>(
        label: &'static str,
        rows: impl IntoIterator<Item = (&'a K, &'a Arc<T>)>,
        read: fn(&T) -> Option<f64>,
    ) -> Self
    where
        T: 'a,
    {
        Live {
            rows: labelled(label, rows),
            read: Read::Gauge(read),
        }
    }
}

fn labelled<'a, K: AsRef<str> + 'a, T: 'a>(
    label: &'static str,
    rows: impl IntoIterator<Item = (&'a K, &'a Arc<T>)>,
) -> Vec<(Labels, Arc<T>)> {
    rows.into_iter()
        .map(|(v, s)| (vec![(label, v.as_ref().to_owned())], s.clone()))
        .collect()
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("series", &self.rows.len())
            .finish()
    }
}

impl<T> Live<T> {
    fn put(&self, e: &mut MetricEncoder, state: &T) -> Result<(), std::fmt::Error> {
        match self.read {
            Read::Counter(read) => e.encode_counter::<NoLabelSet, _, u64>(&read(state), None),
            Read::Gauge(read) => match read(state) {
                Some(v) => e.encode_gauge(&v),
                None => Ok(()),
            },
        }
    }
}

impl<T: Send + Sync> EncodeMetric for Live<T> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, state) in &self.rows {
            if labels.is_empty() {
                self.put(&mut encoder, state)?;
            } else {
                self.put(&mut encoder.encode_family(labels)?, state)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        match self.read {
            Read::Counter(_) => MetricType::Counter,
            Read::Gauge(_) => MetricType::Gauge,
        }
    }

    /// A family without series is left out of the exposition, as `prometheus_client`'s are.
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// 1.0 for true, 0.0 for false.
pub fn flag(b: bool) -> Option<f64> {
    Some(f64::from(u8::from(b)))
}

/// Registers what the process itself reports: `build_info`, `uptime_seconds` (since `started`)
/// and, on Linux, `process_resident_memory_bytes`, `process_open_fds` and
/// `process_cpu_seconds_total`, read from `/proc/self` when scraped.
pub fn register_process(reg: &mut Registry, started: Instant) {
    reg.register(
        "build",
        "Version of the running binary",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]),
    );
    reg.register_collector(Box::new(ProcessCollector { started }));
}

/// The process's uptime and resources, read when scraped (a collector's help gets no full stop
/// added, unlike a registered metric's, so these carry their own).
#[derive(Debug)]
struct ProcessCollector {
    started: Instant,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn gauge(
            encoder: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            v: f64,
        ) -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(v);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)
        }
        gauge(
            &mut encoder,
            "uptime_seconds",
            "Seconds since the process started.",
            self.started.elapsed().as_secs_f64(),
        )?;
        let p = process_stats();
        if let Some(rss) = p.rss_bytes {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory of the gateway process.",
                rss as f64,
            )?;
        }
        if let Some(fds) = p.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors of the gateway process.",
                fds as f64,
            )?;
        }
        if let Some(cpu) = p.cpu_seconds {
            let c = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "CPU time of the gateway process (user + system), seconds.",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        Ok(())
    }
}

/// What the kernel says of this process (Linux `/proc/self`); None where it cannot be read.
#[derive(Debug, Default)]
struct ProcessStats {
    rss_bytes: Option<u64>,
    open_fds: Option<u64>,
    cpu_seconds: Option<f64>,
}

fn process_stats() -> ProcessStats {
    let mut p = ProcessStats::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        p.rss_bytes = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    // Fields 14 and 15 of /proc/self/stat (utime, stime) in clock ticks, after the command
    // name in parentheses; ticks are 100 per second on every Linux the gateway targets.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|v| v.parse::<f64>().ok()),
                f.get(12).and_then(|v| v.parse::<f64>().ok()),
            ) {
                p.cpu_seconds = Some((u + s) / 100.0);
            }
        }
    }
    p
}

/// The OpenMetrics text of `registries`, in order, as one exposition.
pub fn encode<'a>(
    out: &mut String,
    registries: impl IntoIterator<Item = &'a Registry>,
) -> Result<(), std::fmt::Error> {
    for r in registries {
        prometheus_client::encoding::text::encode_registry(out, r)?;
    }
    prometheus_client::encoding::text::encode_eof(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[derive(Default)]
    struct State {
        n: AtomicU64,
        up: std::sync::atomic::AtomicBool,
    }

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, [reg]).unwrap();
        s
    }

    #[test]
    fn live_metrics_read_the_state_when_scraped() {
        let a = Arc::new(State::default());
        let b = Arc::new(State::default());
        let mut reg = registry();
        reg.register(
            "events",
            "Events",
            Live::counter(a.clone(), |s| s.n.load(Ordering::Relaxed)),
        );
        let rows = [("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        reg.sub_registry_with_prefix("device").register(
            "up",
            "Up",
            Live::gauges("device", rows.iter().map(|(k, v)| (k, v)), |s| {
                s.up.load(Ordering::Relaxed).then_some(1.0)
            }),
        );
        let none: [(String, Arc<State>); 0] = [];
        reg.register(
            "nothing",
            "No series",
            Live::counters("device", none.iter().map(|(k, v)| (k, v)), |_| 0),
        );
        a.n.fetch_add(3, Ordering::Relaxed);
        b.up.store(true, Ordering::Relaxed);
        let t = text(&reg);
        assert!(
            t.contains("# TYPE energy_gateway_events counter\nenergy_gateway_events_total 3\n"),
            "{t}"
        );
        assert!(
            t.contains("energy_gateway_device_up{device=\"b\"} 1.0\n"),
            "{t}"
        );
        assert!(!t.contains("device=\"a\""), "{t}");
        assert!(!t.contains("nothing"), "{t}");
        a.n.fetch_add(1, Ordering::Relaxed);
        assert!(text(&reg).contains("energy_gateway_events_total 4\n"));
    }

    #[test]
    fn the_process_reports_its_build_uptime_and_resources() {
        let mut reg = registry();
        register_process(&mut reg, Instant::now());
        let t = text(&reg);
        assert!(t.contains("energy_gateway_build_info{version=\""), "{t}");
        assert!(t.contains("energy_gateway_uptime_seconds "), "{t}");
        assert!(
            t.contains("# HELP energy_gateway_uptime_seconds Seconds since the process started.\n"),
            "{t}"
        );
        assert!(
            t.contains("energy_gateway_process_resident_memory_bytes "),
            "{t}"
        );
        assert!(t.contains("energy_gateway_process_open_fds "), "{t}");
        assert!(
            t.contains("energy_gateway_process_cpu_seconds_total "),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"));
    }
}
