//! Meter templates: device knowledge as data. One TOML file per meter model in `config/meters/`,
//! embedded in the binary; a user directory (`[modbus] templates_dir`) can add models or replace
//! built-in ones. A device names its template with `model`; points it lists itself replace the
//! template's point of the same quantity or add to them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::acquisition::config::{DeviceConfig, PointConfig, RatioConfig};
use crate::settings::ConfigProblem;

/// One meter model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterTemplate {
    pub model: String,
    pub manufacturer: String,
    pub name: String,
    /// Other model names this template answers to.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where the register map comes from (manual, driver, commit).
    pub sources: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
    /// True when the meter reports primary-side values (CT/PT already applied).
    #[serde(default)]
    pub primary_side: Option<bool>,
    #[serde(default)]
    pub modbus: TemplateLimits,
    pub points: Vec<PointConfig>,
    #[serde(default)]
    pub ratios: Vec<RatioConfig>,
}

/// Request limits of a model; a device may override each.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateLimits {
    pub max_registers_per_request: Option<u16>,
    pub max_gap: Option<u16>,
    pub even_reads: Option<bool>,
}

/// The built-in templates, as shipped in `config/meters/`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "abb-b23.toml",
        include_str!("../../../config/meters/abb-b23.toml"),
    ),
    (
        "acrel-dtsd1352.toml",
        include_str!("../../../config/meters/acrel-dtsd1352.toml"),
    ),
    (
        "carlo-gavazzi-em340.toml",
        include_str!("../../../config/meters/carlo-gavazzi-em340.toml"),
    ),
    (
        "chint-dtsu666.toml",
        include_str!("../../../config/meters/chint-dtsu666.toml"),
    ),
    (
        "eastron-sdm120.toml",
        include_str!("../../../config/meters/eastron-sdm120.toml"),
    ),
    (
        "eastron-sdm630.toml",
        include_str!("../../../config/meters/eastron-sdm630.toml"),
    ),
    (
        "janitza-umg604.toml",
        include_str!("../../../config/meters/janitza-umg604.toml"),
    ),
    (
        "schneider-iem3000.toml",
        include_str!("../../../config/meters/schneider-iem3000.toml"),
    ),
    (
        "tuf-2000.toml",
        include_str!("../../../config/meters/tuf-2000.toml"),
    ),
];

/// Parses one template file.
pub fn parse(name: &str, text: &str) -> Result<MeterTemplate, String> {
    crate::settings::parse_toml(text)
        .map_err(|e| format!("{name}: {e}"))
        .and_then(|v| {
            serde_path_to_error::deserialize::<_, MeterTemplate>(v)
                .map_err(|e| format!("{name}: {}: {}", e.path(), e.inner()))
        })
}

/// All templates by model name (and alias): the built-in ones, then those of `dir`.
pub fn load(dir: Option<&Path>) -> Result<BTreeMap<String, MeterTemplate>, Vec<String>> {
    let mut problems = Vec::new();
    let mut files: Vec<(String, String)> = BUILTIN
        .iter()
        .map(|(n, t)| (format!("built-in {n}"), (*t).to_string()))
        .collect();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Err(e) => problems.push(format!(
                "cannot read templates directory {}: {e}",
                dir.display()
            )),
            Ok(entries) => {
                let mut paths: Vec<_> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                for p in paths {
                    match std::fs::read_to_string(&p) {
                        // DL/T 645 and CJ/T 188 families name their protocol (meter_bus).
                        Ok(t) if crate::acquisition::meter_bus::templates::is_bus_template(&t) => {}
                        Ok(t) => files.push((p.display().to_string(), t)),
                        Err(e) => problems.push(format!("cannot read {}: {e}", p.display())),
                    }
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (name, text) in files {
        match parse(&name, &text) {
            Ok(t) => {
                for alias in t.aliases.clone() {
                    out.insert(alias, t.clone());
                }
                out.insert(t.model.clone(), t);
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Applies the template named by each device's `model`. `index[i]` is device i's position in the
/// file (for problem paths).
pub fn resolve(
    devices: &mut [DeviceConfig],
    index: &[usize],
    templates: &BTreeMap<String, MeterTemplate>,
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (i, d) in devices.iter_mut().enumerate() {
        let at = format!("devices[{}]", index.get(i).copied().unwrap_or(i));
        // Templates describe Modbus register maps; other devices' models are just tags.
        let Some(model) = d.model.clone().filter(|_| d.modbus.is_some()) else {
            continue;
        };
        let Some(t) = templates.get(&model) else {
            if d.points.is_empty() {
                let known: Vec<&str> = templates.keys().map(String::as_str).collect();
                problems.push(ConfigProblem::new(
                    format!("{at}.model"),
                    format!(
                        "no meter template for model \"{model}\" and no points given; known models: {}",
                        known.join(", ")
                    ),
                ));
            }
            continue;
        };
        apply(d, t);
    }
    problems
}

/// Merges a template into a device: the device's own points and ratios win by quantity / name,
/// and its own request limits win over the template's.
pub fn apply(d: &mut DeviceConfig, t: &MeterTemplate) {
    let mut points: Vec<PointConfig> = t
        .points
        .iter()
        .filter(|tp| !d.points.iter().any(|p| p.quantity == tp.quantity))
        .cloned()
        .collect();
    points.append(&mut d.points);
    d.points = points;
    let mut ratios: Vec<RatioConfig> = t
        .ratios
        .iter()
        .filter(|tr| !d.ratios.iter().any(|r| r.name == tr.name))
        .cloned()
        .collect();
    ratios.append(&mut d.ratios);
    d.ratios = ratios;
    if let Some(m) = d.modbus.as_mut() {
        m.max_registers_per_request = m
            .max_registers_per_request
            .or(t.modbus.max_registers_per_request);
        m.max_gap = m.max_gap.or(t.modbus.max_gap);
        m.even_reads = m.even_reads.or(t.modbus.even_reads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_parses_and_cites_a_source() {
        let all = load(None).unwrap();
        for (file, _) in BUILTIN {
            let model = file.trim_end_matches(".toml");
            let t = all.get(model).unwrap_or_else(|| panic!("{model} missing"));
            assert!(!t.sources.is_empty(), "{model} cites no source");
            assert!(!t.points.is_empty());
            // every multiply_by names a ratio of the template
            for p in &t.points {
                for r in &p.multiply_by {
                    assert!(
                        t.ratios.iter().any(|x| &x.name == r),
                        "{model}: unknown ratio {r}"
                    );
                }
            }
        }
        assert_eq!(all["acrel-adl400"].model, "acrel-dtsd1352");
        assert_eq!(
            all["abb-b23"]
                .points
                .iter()
                .find(|p| p.register == 0x5000)
                .unwrap()
                .not_available,
            vec![u64::MAX]
        );
    }

    #[test]
    fn device_points_override_template_points_by_quantity() {
        let all = load(None).unwrap();
        let mut d: DeviceConfig = serde_json::from_value(serde_json::json!({
            "id": "m", "model": "eastron-sdm120",
            "modbus": {"address": "h:1", "max_gap": 0},
            "points": [{"quantity": "active_power", "register": 12, "kind": "input", "type": "f32", "scale": 1.0}]
        }))
        .unwrap();
        assert!(resolve(std::slice::from_mut(&mut d), &[0], &all).is_empty());
        let p: Vec<_> = d
            .points
            .iter()
            .filter(|p| p.quantity == crate::readings::Quantity::ActivePower)
            .collect();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].scale, 1.0);
        assert_eq!(d.points.len(), all["eastron-sdm120"].points.len());
        let m = d.modbus.unwrap();
        assert_eq!(
            (m.max_gap, m.even_reads, m.max_registers_per_request),
            (Some(0), Some(true), Some(60))
        );
    }

    #[test]
    fn user_directory_adds_and_replaces_models_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "model = \"eastron-sdm120\"\nmanufacturer = \"x\"\nname = \"patched\"\nsources = [\"own test\"]\n[[points]]\nquantity = \"frequency\"\nregister = 70\nkind = \"input\"\ntype = \"f32\"\n",
        )
        .unwrap();
        let all = load(Some(dir.path())).unwrap();
        assert_eq!(all["eastron-sdm120"].name, "patched");
        std::fs::write(dir.path().join("bad.toml"), "model = 3\n").unwrap();
        let err = load(Some(dir.path())).unwrap_err();
        assert!(err[0].contains("bad.toml"), "{err:?}");
    }
}
