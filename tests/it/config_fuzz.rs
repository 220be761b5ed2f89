//! `check` → `run` fuzz: every configuration `check` accepts must start the gateway without a
//! panic. Mutated configurations are made from the shipped ones (`config/example.toml`,
//! `config/demo.toml`, the .deb's and the compose stack's): a value replaced by a huge, negative or
//! zero number, a huge or zero duration, an empty or unicode string, a key or a whole section
//! removed, an element of a list repeated (mostly values of the original's kind at their edges,
//! so that many pass the type checks and reach the range checks and `run`). Each accepted one is started in-process like `run`
//! does (the pipeline, and the HTTP server on a free loopback port, asked for `/readyz`), left
//! to run a moment and stopped; a panic anywhere (in `check`, at start, in a task, at shutdown)
//! fails the test with the configuration that caused it.
//!
//! 300 seeded cases by default; `EGW_FUZZ_CASES=5000` (and `EGW_FUZZ_SEED=N`) for a long run.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use energy_gateway::config;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// xorshift64*: reproducible from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The shipped configurations, made loadable here (secrets from files that exist).
fn seeds(dir: &Path) -> Vec<toml::Table> {
    let token = dir.join("http-token");
    std::fs::write(&token, "fuzz-token-0123456789abcdef\n").unwrap();
    let docker = std::fs::read_to_string(repo().join("deploy/docker/gateway.toml"))
        .unwrap()
        .replace("/run/secrets/gateway-http-token", token.to_str().unwrap())
        .replace(
            "{ env = \"EGW__OUTPUTS__INFLUXDB__CENTRAL__TOKEN\" }",
            "\"dev-token\"",
        );
    [
        std::fs::read_to_string(repo().join("config/example.toml")).unwrap(),
        std::fs::read_to_string(repo().join("config/demo.toml")).unwrap(),
        std::fs::read_to_string(repo().join("deploy/debian/config.toml")).unwrap(),
        docker,
    ]
    .iter()
    .map(|t| toml::from_str(t).unwrap())
    .collect()
}

/// Every place in the tree a mutation can hit: a path of keys and indexes.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(v: &toml::Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                at.push(Step::Key(k.clone()));
                out.push(at.clone());
                paths(v, at, out);
                at.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                at.push(Step::Index(i));
                out.push(at.clone());
                paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn parent_mut<'a>(root: &'a mut toml::Value, path: &[Step]) -> Option<&'a mut toml::Value> {
    let mut v = root;
    for s in path {
        v = match (s, v) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn replacement(rng: &mut Rng) -> toml::Value {
    use toml::Value::{Boolean, Float, Integer, String as S};
    match rng.below(22) {
        0 => Integer(i64::MAX),
        1 => Integer(i64::MIN),
        2 => Integer(-1),
        3 => Integer(0),
        4 => Integer(1),
        5 => Integer(65_536),
        6 => Integer(4_294_967_296),
        7 => Float(1e308),
        8 => Float(-1e308),
        9 => Float(f64::NAN),
        10 => S("18446744073709551615s".into()),
        11 => S("36500d".into()),
        12 => S("0s".into()),
        13 => S("1ns".into()),
        14 => S(String::new()),
        15 => S("电表🔥\u{7}\\ ".into()),
        16 => S("x".repeat(5000)),
        17 => Boolean(true),
        18 => Boolean(false),
        19 => S("1e308".into()),
        20 => S("99999999999999999999GiB".into()),
        _ => S("127.0.0.1:0".into()),
    }
}

/// Mostly a value of the same kind as `old` at its edges (so that many mutated files still
/// pass the type checks and reach the range checks and `run`), sometimes anything.
fn like(old: Option<&toml::Value>, rng: &mut Rng) -> toml::Value {
    use toml::Value::{Float, Integer, String as S};
    if rng.below(4) == 0 {
        return replacement(rng);
    }
    match old {
        Some(Integer(_)) => Integer(
            [
                i64::MAX,
                i64::MIN,
                -1,
                0,
                1,
                2,
                10,
                255,
                256,
                1000,
                65_535,
                65_536,
                1_000_000,
                1 << 32,
                1 << 53,
            ][rng.below(15)],
        ),
        Some(Float(_)) => {
            Float([1e308, -1e308, 0.0, -0.0, 1e-300, -1.0, f64::INFINITY][rng.below(7)])
        }
        Some(S(s)) if s.chars().next().is_some_and(|c| c.is_ascii_digit()) => S([
            "18446744073709551615s",
            "36500d",
            "0s",
            "1ns",
            "0ms",
            "99999999999999999999GiB",
            "0B",
            "1B",
            "16EiB",
            "4294967296",
            "1ms",
            "100ms",
            "1h",
            "1d",
            "3650d",
            "1KiB",
            "1TiB",
        ][rng.below(17)]
        .into()),
        Some(S(s)) => S(match rng.below(5) {
            0 => String::new(),
            1 => format!("{s}{s}"),
            2 => "电表🔥\u{7}\\ ".into(),
            3 => "x".repeat(5000),
            _ => format!("{s}/../..//"),
        }),
        _ => replacement(rng),
    }
}

/// One to three mutations of a seed.
fn mutate(seed: &toml::Table, rng: &mut Rng) -> toml::Table {
    let mut root = toml::Value::Table(seed.clone());
    for _ in 0..[1, 1, 1, 2, 3][rng.below(5)] {
        let mut all = Vec::new();
        paths(&root, &mut Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let path = all[rng.below(all.len())].clone();
        let (last, parent) = path.split_last().unwrap();
        let kind = rng.below(10);
        let Some(p) = parent_mut(&mut root, parent) else {
            continue;
        };
        match (kind, last, p) {
            // Remove the key or the element (a whole section when the key is top-level).
            (0 | 1, Step::Key(k), toml::Value::Table(t)) => {
                t.remove(k);
            }
            (0 | 1, Step::Index(i), toml::Value::Array(a)) => {
                a.remove(*i);
            }
            // Repeat a list element (duplicate ids, twice the devices).
            (2, Step::Index(i), toml::Value::Array(a)) => {
                let e = a[*i].clone();
                a.push(e);
            }
            (_, Step::Key(k), toml::Value::Table(t)) => {
                let new = like(t.get(k), rng);
                t.insert(k.clone(), new);
            }
            (_, Step::Index(i), toml::Value::Array(a)) => {
                a[*i] = like(a.get(*i), rng);
            }
            _ => {}
        }
    }
    match root {
        toml::Value::Table(t) => t,
        _ => unreachable!(),
    }
}

/// Points the store and every other path at `dir` so that a run touches nothing else.
fn confine(t: &mut toml::Table, dir: &Path) {
    if let Some(toml::Value::Table(s)) = t.get_mut("storage") {
        s.insert(
            "data_dir".into(),
            toml::Value::String(dir.to_str().unwrap().into()),
        );
    } else if !t.contains_key("storage") {
        let mut s = toml::Table::new();
        s.insert(
            "data_dir".into(),
            toml::Value::String(dir.to_str().unwrap().into()),
        );
        t.insert("storage".into(), toml::Value::Table(s));
    }
}

/// What became of one configuration.
#[derive(Debug, PartialEq)]
enum Outcome {
    Rejected,
    Ran,
    /// `check` accepted it but the pipeline refused to start (an error, not a panic).
    StartFailed(String),
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// `check`, then start and stop what it accepted. Err: a panic, with where.
fn check_then_run(rt: &tokio::runtime::Runtime, text: &str) -> Result<Outcome, String> {
    let cfg = match std::panic::catch_unwind(|| config::load_str(text)) {
        Err(p) => return Err(format!("check panicked: {}", panic_text(&*p))),
        Ok(Err(_)) => return Ok(Outcome::Rejected),
        Ok(Ok(c)) => c,
    };
    let http = cfg.http.clone();
    rt.block_on(async move {
        let server = if http.enabled {
            let token = energy_gateway::http::resolve_token(&http).map_err(|e| format!("{e:#}"));
            let limits = energy_gateway::http::ConnectionLimits::from(&http);
            let started = tokio::spawn(async move {
                energy_gateway::http::HttpServer::start_with(
                    "127.0.0.1:0".parse().unwrap(),
                    token.ok().flatten(),
                    limits,
                )
                .await
            });
            match started.await {
                Err(e) if e.is_panic() => {
                    return Err(format!(
                        "HTTP start panicked: {}",
                        panic_text(&*e.into_panic())
                    ))
                }
                Ok(Ok(s)) => Some(s),
                _ => None,
            }
        } else {
            None
        };
        let started = tokio::spawn(energy_gateway::pipeline::start(cfg)).await;
        let gw = match started {
            Err(e) if e.is_panic() => {
                return Err(format!("start panicked: {}", panic_text(&*e.into_panic())))
            }
            Err(e) => return Err(format!("start task failed: {e}")),
            Ok(Err(e)) => {
                if let Some(s) = server {
                    s.shutdown().await;
                }
                return Ok(Outcome::StartFailed(format!("{e:#}")));
            }
            Ok(Ok(gw)) => gw,
        };
        if let Some(s) = &server {
            s.set_gateway(Some(&gw), "running");
            let addr = s.local_addr().to_string();
            let _ = tokio::task::spawn_blocking(move || crate::common::http_get(&addr, "/readyz"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let beat = gw.heartbeat.beat(Duration::from_millis(500)).await;
        let tasks = gw.tasks.clone();
        let stopped = tokio::time::timeout(Duration::from_secs(20), gw.shutdown()).await;
        if let Some(s) = server {
            s.set_gateway(None, "stopping");
            s.shutdown().await;
        }
        // Shutdown waited for every task, so every death is recorded by now.
        // Restarted or not, a panic is a failure of the check.
        let panicked = tasks.panicked();
        if !panicked.is_empty() {
            return Err(format!("tasks panicked: {}", panicked.join("; ")));
        }
        match stopped {
            Err(_) => Err("shutdown took more than 20 s".into()),
            Ok(Err(e)) => Err(format!("shutdown failed: {e:#}")),
            Ok(Ok(_)) => {
                let _ = beat;
                Ok(Outcome::Ran)
            }
        }
    })
}

#[test]
fn every_config_check_accepts_starts_without_a_panic() {
    let cases: usize = std::env::var("EGW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("EGW_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x15c0_ffee);
    let tmp = tempfile::tempdir().unwrap();
    let seeds = seeds(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, s) in seeds.iter().enumerate() {
        let mut t = s.clone();
        confine(&mut t, &tmp.path().join("seed"));
        let text = toml::to_string(&t).unwrap();
        if let Err(p) = config::load_str(&text) {
            panic!("seed {i} does not pass check: {p:#?}");
        }
    }
    let mut rng = Rng(seed | 1);
    let (mut rejected, mut ran) = (0usize, 0usize);
    let mut start_failed: Vec<String> = Vec::new();
    let mut panics: Vec<String> = Vec::new();
    for case in 0..cases {
        let data = tmp.path().join(format!("case-{case}"));
        let mut t = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        confine(&mut t, &data);
        let text = toml::to_string(&t).unwrap();
        match std::panic::catch_unwind(AssertUnwindSafe(|| check_then_run(&rt, &text))) {
            Ok(Ok(Outcome::Rejected)) => rejected += 1,
            Ok(Ok(Outcome::Ran)) => ran += 1,
            Ok(Ok(Outcome::StartFailed(e))) => start_failed.push(format!("case {case}: {e}")),
            Ok(Err(e)) => panics.push(format!("case {case}: {e}\n{text}")),
            Err(p) => panics.push(format!("case {case}: {}\n{text}", panic_text(&*p))),
        }
        let _ = std::fs::remove_dir_all(&data);
    }
    eprintln!(
        "config fuzz (seed {seed}): {cases} cases, {rejected} rejected by check, {ran} accepted and ran, {} accepted but refused at start, {} panics",
        start_failed.len(),
        panics.len()
    );
    for e in &start_failed {
        eprintln!("  refused at start: {e}");
    }
    assert!(panics.is_empty(), "{}", panics.join("\n\n"));
    // The fuzz reaches `run`: a good share of the mutated configurations pass `check`.
    assert!(
        ran * 10 >= cases,
        "only {ran} of {cases} configurations ran"
    );
}
