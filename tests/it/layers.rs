//! The import rule between the library's top-level modules (README, "Where things live"): a
//! module uses modules on its own floor or below, never above, and the graph of top-level modules
//! has no cycle. Read from the `crate::…` paths in `src/`.
//!
//! Edges that still break the rule are listed in [`KNOWN_DEBT`] with the reason; the test fails on
//! any new one, and also when a listed one is gone (so the list only ever shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Floors, bottom (1) to top (5). A module not listed here fails the test: give it a floor.
const FLOORS: &[(&str, u8)] = &[
    // 1: shared basics, depending on nothing of ours.
    ("readings", 1),
    ("backoff", 1),
    ("carrier", 1),
    ("log_limit", 1),
    ("telemetry", 1),
    ("units", 1),
    ("redact", 1),
    ("secret", 1),
    ("lang", 1),
    ("clock", 1),
    ("health", 1),
    ("settings", 1),
    ("install_crypto_provider", 1),
    // 2: the store, the only owner of the SQLite schema.
    ("storage", 2),
    // 3: components.
    ("acquisition", 3),
    ("processing", 3),
    ("alerting", 3),
    ("accounting", 3),
    ("outputs", 3),
    // 4: configuration (composes the components' settings) and reports.
    ("config", 4),
    ("reporting", 4),
    // 5: wiring, lifecycle and the surfaces of the running daemon (HTTP reads the running
    // pipeline's state).
    ("pipeline", 5),
    ("http", 5),
    ("service", 5),
    ("demo", 5),
];

/// Edges that point up a floor, with why they remain. Empty since issue 12 (components are given
/// their settings instead of reading `Config`); an entry here is debt the test tolerates until
/// the edge is gone, and the test fails once it is.
const KNOWN_DEBT: &[(&str, &str, &str)] = &[];

fn floor(m: &str) -> Option<u8> {
    FLOORS.iter().find(|(n, _)| *n == m).map(|(_, f)| *f)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module of a file under src/ (`src/acquisition/modbus/plan.rs` → `acquisition`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (m != "lib" && m != "main").then(|| m.to_string())
}

/// Top-level modules named by `crate::NAME` in code (comments and doc comments skipped). A
/// file's unit tests (from its `#[cfg(test)]` module on) may reach across floors to check what
/// they need (a storage test that the accounts survive a prune), so they are not read.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in files {
        let Some(from) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for to in used_modules(&text) {
            if to != from {
                let rel = f.strip_prefix(&src).unwrap().display().to_string();
                edges.entry((from.clone(), to)).or_default().push(rel);
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_floor_and_no_edge_points_up() {
    let edges = edges();
    let mut problems = Vec::new();
    let mut seen_debt = BTreeSet::new();
    for ((from, to), files) in &edges {
        let (Some(f), Some(t)) = (floor(from), floor(to)) else {
            problems.push(format!(
                "module without a floor: {from} -> {to} (in {files:?}); add it to FLOORS"
            ));
            continue;
        };
        if t > f {
            if KNOWN_DEBT.iter().any(|(a, b, _)| a == from && b == to) {
                seen_debt.insert((from.clone(), to.clone()));
            } else {
                problems.push(format!(
                    "{from} (floor {f}) uses {to} (floor {t}), which is above it, in {files:?}"
                ));
            }
        }
    }
    for (a, b, why) in KNOWN_DEBT {
        if !seen_debt.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!(
                "{a} -> {b} is no longer used: remove it from KNOWN_DEBT ({why})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_module_graph_has_no_cycle_apart_from_known_debt() {
    let debt: BTreeSet<(String, String)> = KNOWN_DEBT
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges().into_keys() {
        if !debt.contains(&(from.clone(), to.clone())) {
            graph.entry(from).or_default().insert(to);
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!(
                "import cycle between top-level modules: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_scanner_sees_paths_in_code_not_in_comments() {
    let text = "use crate::storage::Store;\n// crate::http is only named here\n/// [`crate::pipeline`]\nlet x = crate::readings::now_ms(); // crate::demo\n#[cfg(test)]\nmod tests { use crate::config::Config; }\n";
    let got: Vec<String> = used_modules(text).into_iter().collect();
    assert_eq!(got, ["readings", "storage"]);
}

/// Lines of code (comments skipped) that speak to SQLite: the store (`src/storage/`) is the only
/// owner of the schema and of the SQL, and the other modules call its typed functions.
fn sqlite_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| l.contains("rusqlite"))
        .map(str::to_string)
        .collect()
}

#[test]
fn only_storage_speaks_sqlite() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.starts_with("storage") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for line in sqlite_lines(&text) {
            problems.push(format!("{}: {}", rel.display(), line.trim()));
        }
    }
    assert!(
        problems.is_empty(),
        "SQLite used outside src/storage (give the store a typed function instead):\n{}",
        problems.join("\n")
    );
    let text = "// rusqlite in a comment\nuse rusqlite::Connection;\nlet x = 1; // rusqlite\n";
    assert_eq!(sqlite_lines(text), ["use rusqlite::Connection;"]);
}
