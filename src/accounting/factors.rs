//! Factor tables as data: standard-coal conversion factors (GB/T 2589), CO₂ emission factors
//! (fuels, purchased heat, official grid factors by year and area) and limit-standard grades.
//!
//! The shipped tables live in `config/factors/*.toml` and are embedded in the binary. Every row
//! names its sources (tags of `config/factors/sources.toml`). A site may add or replace rows with
//! its own file in the same format (`[accounting] factor_file`); a row with the id of a shipped
//! row replaces it. No number of these tables appears in code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The shipped standard-coal tables, by edition name.
pub const EDITIONS: &[(&str, &str)] = &[(
    "gbt2589-2020",
    include_str!("../../config/factors/gbt2589-2020.toml"),
)];
const SOURCES: &str = include_str!("../../config/factors/sources.toml");
const CARBON: &str = include_str!("../../config/factors/carbon-cn.toml");
const LIMITS: &str = include_str!("../../config/factors/limits-gb.toml");

/// One file in the factor-table format. Every section is optional so that an override file can
/// hold only the rows it changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorFile {
    #[serde(default)]
    pub edition: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub source: Vec<SourceRow>,
    #[serde(default)]
    pub constant: Vec<ConstantRow>,
    #[serde(default)]
    pub energy: Vec<EnergyRow>,
    #[serde(default)]
    pub fuel: Vec<FuelRow>,
    #[serde(default)]
    pub heat: Vec<HeatRow>,
    #[serde(default)]
    pub region: Vec<RegionRow>,
    #[serde(default)]
    pub province: Vec<ProvinceRow>,
    #[serde(default)]
    pub grid: Vec<GridRow>,
    #[serde(default)]
    pub limit: Vec<LimitRow>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRow {
    pub tag: String,
    /// P (primary/official), N (news), C (code-repository transcription), or S (site's own).
    pub grade: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantRow {
    pub id: String,
    pub value: f64,
    pub sources: Vec<String>,
}

/// 当量值 or 等价值.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// 当量值: the energy content of the carrier itself.
    Equivalent,
    /// 等价值: the primary energy spent to produce it.
    EqualValue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyRow {
    pub id: String,
    pub carrier: String,
    pub name: String,
    pub unit: String,
    pub kgce_per_unit: f64,
    #[serde(default)]
    pub ncv_kj_per_unit: Option<f64>,
    pub basis: Basis,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub verify: bool,
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuelRow {
    pub id: String,
    pub carrier: String,
    pub name: String,
    pub unit: String,
    /// Net calorific value in GJ per `ncv_per` units.
    pub ncv_gj: f64,
    pub ncv_per: f64,
    /// Carbon content, tC/TJ.
    pub cc_tc_per_tj: f64,
    /// Oxidation fraction.
    pub oxidation: f64,
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

impl FuelRow {
    /// tCO₂ per unit = NCV × CC × OF × 44/12 / 1000 (NCV in GJ per unit, CC in tC/TJ).
    pub fn tco2_per_unit(&self) -> f64 {
        self.ncv_gj / self.ncv_per * self.cc_tc_per_tj * self.oxidation * 44.0 / 12.0 / 1000.0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatRow {
    pub id: String,
    pub carrier: String,
    pub name: String,
    pub unit: String,
    /// Direct factor.
    #[serde(default)]
    pub tco2_per_unit: Option<f64>,
    /// Or: GJ of heat per unit, times the `purchased_heat` row's factor.
    #[serde(default)]
    pub heat_gj_per_unit: Option<f64>,
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRow {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvinceRow {
    pub id: String,
    pub name: String,
    pub region: String,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GridSeries {
    Average,
    ExclMarketNonfossil,
    Fossil,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridRow {
    pub year: i32,
    /// "national", a region id or a province id.
    pub area: String,
    pub series: GridSeries,
    pub tco2_per_mwh: f64,
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// What a limit grade is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// Comprehensive energy, kgce per unit of product.
    Comprehensive,
    /// Electricity only, kWh per unit of product.
    Electricity,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRow {
    pub id: String,
    pub standard: String,
    pub product: String,
    pub indicator: Indicator,
    /// "kgce/<product unit>" or "kWh/<product unit>".
    pub unit: String,
    #[serde(default)]
    pub grade1: Option<f64>,
    #[serde(default)]
    pub grade2: Option<f64>,
    #[serde(default)]
    pub grade3: Option<f64>,
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// Additive correction by a share (GB 16780-2021 cement: clinker share): the grades move by
    /// `per_share_point[i]` per percentage point of the product's `share_pct` away from this.
    #[serde(default)]
    pub share_reference_pct: Option<f64>,
    /// Per grade 1, 2, 3, in the row's unit per percentage point.
    #[serde(default)]
    pub per_share_point: Vec<f64>,
}

impl LimitRow {
    /// The row with its grades moved additively for a product share (when the row has such a
    /// correction and the share is given); otherwise the row as it is.
    pub fn with_share(&self, share_pct: Option<f64>) -> LimitRow {
        let mut r = self.clone();
        if let (Some(reference), Some(share), [k1, k2, k3]) = (
            self.share_reference_pct,
            share_pct,
            self.per_share_point.as_slice(),
        ) {
            let d = share - reference;
            r.grade1 = r.grade1.map(|g| g + k1 * d);
            r.grade2 = r.grade2.map(|g| g + k2 * d);
            r.grade3 = r.grade3.map(|g| g + k3 * d);
        }
        r
    }

    /// The product unit this row is per (`m2` of `kgce/m2`).
    pub fn product_unit(&self) -> &str {
        self.unit.split_once('/').map(|(_, u)| u).unwrap_or("")
    }
}

/// All tables merged: the shipped edition, carbon and limit tables, then the site's file.
#[derive(Debug, Clone)]
pub struct Tables {
    pub edition: String,
    pub sources: BTreeMap<String, SourceRow>,
    pub constants: BTreeMap<String, ConstantRow>,
    pub energy: Vec<EnergyRow>,
    pub fuel: Vec<FuelRow>,
    pub heat: Vec<HeatRow>,
    pub regions: Vec<RegionRow>,
    pub provinces: Vec<ProvinceRow>,
    pub grid: Vec<GridRow>,
    pub limits: Vec<LimitRow>,
    /// Set when a site file was merged in.
    pub override_file: Option<String>,
    /// Each merged file and its edition (when the file names one), in load order.
    pub editions: Vec<(String, Option<String>)>,
}

/// Units the tables may use, and how many base units each is (kg and t, MJ and GJ, kWh and MWh).
const UNITS: &[(&str, &str, f64)] = &[
    ("kWh", "kWh", 1.0),
    ("MWh", "kWh", 1000.0),
    ("MJ", "MJ", 1.0),
    ("GJ", "MJ", 1000.0),
    ("kg", "kg", 1.0),
    ("t", "kg", 1000.0),
    ("m3", "m3", 1.0),
];

/// How many `to` one `from` is (`t` → `kg` = 1000), when the two measure the same thing.
pub fn unit_ratio(from: &str, to: &str) -> Option<f64> {
    let f = UNITS.iter().find(|u| u.0 == from)?;
    let t = UNITS.iter().find(|u| u.0 == to)?;
    (f.1 == t.1).then(|| f.2 / t.2)
}

/// The unit a carrier's quantities are reported in: the unit of its meters' counters for metered
/// carriers, otherwise tonnes for masses and GJ for heat.
pub fn report_unit(table_unit: &str) -> &str {
    match table_unit {
        "kg" => "t",
        "MJ" => "GJ",
        "MWh" => "kWh",
        other => other,
    }
}

fn parse_file(name: &str, text: &str) -> Result<FactorFile, String> {
    toml::from_str::<FactorFile>(text).map_err(|e| format!("{name}: {}", e.to_string().trim()))
}

impl Tables {
    /// The shipped tables of `edition`, with `override_file` merged in when given.
    pub fn load(edition: &str, override_file: Option<&Path>) -> Result<Tables, String> {
        let Some((_, text)) = EDITIONS.iter().find(|(e, _)| *e == edition) else {
            return Err(format!(
                "unknown factor table \"{edition}\"; shipped: {}",
                EDITIONS
                    .iter()
                    .map(|(e, _)| *e)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let mut t = Tables {
            edition: edition.to_string(),
            sources: BTreeMap::new(),
            constants: BTreeMap::new(),
            energy: Vec::new(),
            fuel: Vec::new(),
            heat: Vec::new(),
            regions: Vec::new(),
            provinces: Vec::new(),
            grid: Vec::new(),
            limits: Vec::new(),
            override_file: None,
            editions: Vec::new(),
        };
        for (name, text) in [
            ("sources.toml", SOURCES),
            (edition, *text),
            ("carbon-cn.toml", CARBON),
            ("limits-gb.toml", LIMITS),
        ] {
            let f = parse_file(name, text)?;
            t.editions.push((name.to_string(), f.edition.clone()));
            t.merge(f, name, false)?;
        }
        if let Some(path) = override_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let f = parse_file(&path.display().to_string(), &text)?;
            t.editions
                .push((path.display().to_string(), f.edition.clone()));
            t.merge(f, &path.display().to_string(), true)?;
            t.override_file = Some(path.display().to_string());
        }
        t.check()?;
        Ok(t)
    }

    fn merge(&mut self, f: FactorFile, name: &str, replace: bool) -> Result<(), String> {
        fn put<T>(
            rows: &mut Vec<T>,
            new: Vec<T>,
            key: impl Fn(&T) -> String,
            what: &str,
            name: &str,
            replace: bool,
        ) -> Result<(), String> {
            let mut seen = std::collections::HashSet::new();
            for r in new {
                let k = key(&r);
                if !seen.insert(k.clone()) {
                    return Err(format!("{name}: {what} \"{k}\" appears twice"));
                }
                match rows.iter().position(|o| key(o) == k) {
                    Some(i) if replace => rows[i] = r,
                    Some(_) => return Err(format!("{name}: {what} \"{k}\" is already defined")),
                    None => rows.push(r),
                }
            }
            Ok(())
        }
        for s in f.source {
            if !replace && self.sources.contains_key(&s.tag) {
                return Err(format!("{name}: source \"{}\" appears twice", s.tag));
            }
            self.sources.insert(s.tag.clone(), s);
        }
        for c in f.constant {
            self.constants.insert(c.id.clone(), c);
        }
        // A site row marked default replaces the default of its carrier.
        if replace {
            for r in f.energy.iter().filter(|r| r.default) {
                for o in self
                    .energy
                    .iter_mut()
                    .filter(|o| o.carrier == r.carrier && o.id != r.id)
                {
                    o.default = false;
                }
            }
        }
        put(
            &mut self.energy,
            f.energy,
            |r| r.id.clone(),
            "energy row",
            name,
            replace,
        )?;
        put(
            &mut self.fuel,
            f.fuel,
            |r| r.id.clone(),
            "fuel row",
            name,
            replace,
        )?;
        put(
            &mut self.heat,
            f.heat,
            |r| r.id.clone(),
            "heat row",
            name,
            replace,
        )?;
        put(
            &mut self.regions,
            f.region,
            |r| r.id.clone(),
            "region",
            name,
            replace,
        )?;
        put(
            &mut self.provinces,
            f.province,
            |r| r.id.clone(),
            "province",
            name,
            replace,
        )?;
        put(
            &mut self.grid,
            f.grid,
            |r| format!("{}/{}/{:?}", r.year, r.area, r.series),
            "grid factor",
            name,
            replace,
        )?;
        put(
            &mut self.limits,
            f.limit,
            |r| r.id.clone(),
            "limit row",
            name,
            replace,
        )?;
        Ok(())
    }

    /// Every row cites known sources, every number is finite and every unit known.
    fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut cite = |what: String, tags: &[String]| {
            if tags.is_empty() {
                problems.push(format!("{what}: names no source"));
            }
            for t in tags {
                if !self.sources.contains_key(t) {
                    problems.push(format!("{what}: unknown source tag \"{t}\""));
                }
            }
        };
        for c in self.constants.values() {
            cite(format!("constant {}", c.id), &c.sources);
        }
        for r in &self.energy {
            cite(format!("energy row {}", r.id), &r.sources);
        }
        for r in &self.fuel {
            cite(format!("fuel row {}", r.id), &r.sources);
        }
        for r in &self.heat {
            cite(format!("heat row {}", r.id), &r.sources);
        }
        for r in &self.provinces {
            cite(format!("province {}", r.id), &r.sources);
        }
        for r in &self.grid {
            cite(format!("grid factor {} {}", r.year, r.area), &r.sources);
        }
        for r in &self.limits {
            cite(format!("limit row {}", r.id), &r.sources);
        }
        for id in ["kj_per_kgce", "kwh_per_green_certificate"] {
            match self.constants.get(id) {
                Some(c) if c.value.is_finite() && c.value > 0.0 => {}
                _ => problems.push(format!("constant {id}: missing or not positive")),
            }
        }
        for r in &self.energy {
            if !(r.kgce_per_unit.is_finite() && r.kgce_per_unit > 0.0) {
                problems.push(format!(
                    "energy row {}: kgce_per_unit must be positive",
                    r.id
                ));
            }
            if unit_ratio(&r.unit, &r.unit).is_none() {
                problems.push(format!("energy row {}: unknown unit \"{}\"", r.id, r.unit));
            }
        }
        let mut defaults = BTreeMap::new();
        for r in self.energy.iter().filter(|r| r.default) {
            if let Some(other) = defaults.insert(r.carrier.as_str(), r.id.as_str()) {
                problems.push(format!(
                    "energy rows {other} and {} are both the default for carrier {}",
                    r.id, r.carrier
                ));
            }
        }
        for r in &self.fuel {
            let ef = r.tco2_per_unit();
            if !(ef.is_finite() && ef > 0.0) || unit_ratio(&r.unit, &r.unit).is_none() {
                problems.push(format!(
                    "fuel row {}: needs positive numbers and a known unit",
                    r.id
                ));
            }
        }
        for r in &self.heat {
            if r.tco2_per_unit.is_some() == r.heat_gj_per_unit.is_some() {
                problems.push(format!(
                    "heat row {}: give exactly one of tco2_per_unit and heat_gj_per_unit",
                    r.id
                ));
            }
        }
        for r in &self.provinces {
            if !self.regions.iter().any(|g| g.id == r.region) {
                problems.push(format!(
                    "province {}: unknown region \"{}\"",
                    r.id, r.region
                ));
            }
        }
        for r in &self.grid {
            if !self.area_known(&r.area) {
                problems.push(format!("grid factor {} {}: unknown area", r.year, r.area));
            }
            if !(r.tco2_per_mwh.is_finite() && r.tco2_per_mwh >= 0.0) {
                problems.push(format!(
                    "grid factor {} {}: must be zero or positive",
                    r.year, r.area
                ));
            }
        }
        for r in &self.limits {
            let ok_unit = r.unit.starts_with("kgce/") || r.unit.starts_with("kWh/");
            if !ok_unit || r.product_unit().is_empty() {
                problems.push(format!(
                    "limit row {}: unit must be kgce/<unit> or kWh/<unit>",
                    r.id
                ));
            }
            let grades: Vec<f64> = [r.grade1, r.grade2, r.grade3]
                .into_iter()
                .flatten()
                .collect();
            if (r.per_share_point.is_empty() != r.share_reference_pct.is_none())
                || !(r.per_share_point.is_empty() || r.per_share_point.len() == 3)
            {
                problems.push(format!(
                    "limit row {}: give share_reference_pct with three per_share_point values, or neither",
                    r.id
                ));
            }
            if grades.is_empty() || grades.windows(2).any(|w| w[0] > w[1]) {
                problems.push(format!(
                    "limit row {}: grades must be given and must not decrease from grade 1 to 3",
                    r.id
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// "national", a region or a province of the tables.
    pub fn area_known(&self, area: &str) -> bool {
        area == "national"
            || self.regions.iter().any(|r| r.id == area)
            || self.provinces.iter().any(|p| p.id == area)
    }

    pub fn energy_row(&self, id: &str) -> Option<&EnergyRow> {
        self.energy.iter().find(|r| r.id == id)
    }

    /// The default standard-coal row of a carrier.
    pub fn default_energy_row(&self, carrier: &str) -> Option<&EnergyRow> {
        self.energy
            .iter()
            .find(|r| r.carrier == carrier && r.default)
    }

    /// Carriers that have a default standard-coal row.
    pub fn carriers(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self
            .energy
            .iter()
            .filter(|r| r.default)
            .map(|r| r.carrier.as_str())
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// kJ per kgce (GB/T 2589: 1 kgce = 29 307 kJ).
    pub fn kj_per_kgce(&self) -> Option<&ConstantRow> {
        self.constants.get("kj_per_kgce")
    }

    /// kWh of renewable electricity per green certificate (绿证).
    pub fn kwh_per_green_certificate(&self) -> Option<&ConstantRow> {
        self.constants.get("kwh_per_green_certificate")
    }

    pub fn limit(&self, id: &str) -> Option<&LimitRow> {
        self.limits.iter().find(|r| r.id == id)
    }

    pub fn province(&self, id: &str) -> Option<&ProvinceRow> {
        self.provinces.iter().find(|r| r.id == id)
    }

    pub fn grid_factor(&self, year: i32, area: &str, series: GridSeries) -> Option<&GridRow> {
        self.grid
            .iter()
            .find(|r| r.year == year && r.area == area && r.series == series)
    }

    /// The factor of `area` and `series` at its latest year not after `year`.
    pub fn latest_grid(&self, area: &str, series: GridSeries, year: i32) -> Option<&GridRow> {
        self.grid
            .iter()
            .filter(|r| r.area == area && r.series == series && r.year <= year)
            .max_by_key(|r| r.year)
    }

    /// The factor of `area` and `series` at its earliest year.
    pub fn earliest_grid(&self, area: &str, series: GridSeries) -> Option<&GridRow> {
        self.grid
            .iter()
            .filter(|r| r.area == area && r.series == series)
            .min_by_key(|r| r.year)
    }

    /// The latest year ≤ `year` with any grid factor.
    pub fn latest_grid_year(&self, year: i32) -> Option<i32> {
        self.grid
            .iter()
            .map(|r| r.year)
            .filter(|y| *y <= year)
            .max()
    }

    /// The scope-1 fuel row of a carrier.
    pub fn fuel_row(&self, carrier: &str) -> Option<&FuelRow> {
        self.fuel.iter().find(|r| r.carrier == carrier)
    }

    /// Purchased heat/steam row of a carrier, with its factor per row unit.
    pub fn heat_factor(&self, carrier: &str) -> Option<(&HeatRow, f64)> {
        let row = self.heat.iter().find(|r| r.carrier == carrier)?;
        let f = match (row.tco2_per_unit, row.heat_gj_per_unit) {
            (Some(f), _) => f,
            (None, Some(gj)) => {
                let heat = self
                    .heat
                    .iter()
                    .find(|r| r.id == "purchased_heat")?
                    .tco2_per_unit?;
                gj * heat
            }
            (None, None) => return None,
        };
        Some((row, f))
    }

    /// The text of each tag, for a report's `sources` section.
    pub fn cite(
        &self,
        tags: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> BTreeMap<String, String> {
        tags.into_iter()
            .filter_map(|t| {
                self.sources
                    .get(t.as_ref())
                    .map(|s| (s.tag.clone(), format!("[{}] {}", s.grade, s.text)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tables_load_and_cite_known_sources() {
        let t = Tables::load("gbt2589-2020", None).unwrap();
        assert_eq!(
            t.default_energy_row("electricity").unwrap().kgce_per_unit,
            0.1229
        );
        assert_eq!(
            t.default_energy_row("natural_gas").unwrap().id,
            "natural_gas_gas_field"
        );
        assert_eq!(t.kj_per_kgce().unwrap().value, 29307.0);
        assert_eq!(
            t.limit("gb21252-2023.tile_dry_pressed_e_le_0_2")
                .unwrap()
                .grade2,
            Some(5.5)
        );
        assert_eq!(
            t.grid_factor(2022, "national", GridSeries::Average)
                .unwrap()
                .tco2_per_mwh,
            0.5366
        );
        assert_eq!(
            t.grid_factor(2023, "national", GridSeries::Average)
                .unwrap()
                .tco2_per_mwh,
            0.5306
        );
        // Chongqing and Sichuan are in the south-west grid, never central China.
        assert_eq!(t.province("chongqing").unwrap().region, "southwest");
        assert_eq!(t.province("sichuan").unwrap().region, "southwest");
        assert_eq!(t.latest_grid_year(2026), Some(2023));
        assert!(t
            .grid_factor(2023, "chongqing", GridSeries::Average)
            .is_none());
    }

    #[test]
    fn fuel_emission_factor_follows_the_formula() {
        let t = Tables::load("gbt2589-2020", None).unwrap();
        // 389.31 GJ/10^4 m3 × 15.3 tC/TJ × 0.99 × 44/12 / 1000 = 21.62 tCO2 per 10^4 m3
        let gas = t.fuel_row("natural_gas").unwrap().tco2_per_unit() * 10_000.0;
        assert!((gas - 21.62).abs() < 0.005, "{gas}");
        let diesel = t.fuel_row("diesel").unwrap().tco2_per_unit();
        assert!((diesel - 3.096).abs() < 0.0005, "{diesel}");
        let (_, steam) = t.heat_factor("steam").unwrap();
        assert_eq!(steam, 3.763 * 0.11);
    }

    #[test]
    fn site_file_replaces_and_adds_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("site.toml");
        std::fs::write(
            &p,
            r#"
[[source]]
tag = "LAB-2026-03"
grade = "S"
text = "gas supplier's calorific value certificate, March 2026"

[[energy]]
id = "natural_gas_site"
carrier = "natural_gas"
name = "天然气 (measured)"
unit = "m3"
kgce_per_unit = 1.25
basis = "equivalent"
default = true
sources = ["LAB-2026-03"]

[[grid]]
year = 2022
area = "national"
series = "average"
tco2_per_mwh = 0.5
sources = ["LAB-2026-03"]
"#,
        )
        .unwrap();
        let t = Tables::load("gbt2589-2020", Some(&p)).unwrap();
        assert_eq!(
            t.default_energy_row("natural_gas").unwrap().id,
            "natural_gas_site"
        );
        assert_eq!(
            t.grid_factor(2022, "national", GridSeries::Average)
                .unwrap()
                .tco2_per_mwh,
            0.5
        );
    }

    #[test]
    fn bad_site_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[[energy]]\nid = \"x\"\ncarrier = \"coal\"\nname = \"x\"\nunit = \"kg\"\nkgce_per_unit = 1.0\nbasis = \"equivalent\"\nsources = [\"S999\"]\n").unwrap();
        let e = Tables::load("gbt2589-2020", Some(&p)).unwrap_err();
        assert!(e.contains("unknown source tag \"S999\""), "{e}");
        std::fs::write(&p, "[[energy]]\nid = 3\n").unwrap();
        let e = Tables::load("gbt2589-2020", Some(&p)).unwrap_err();
        assert!(e.contains("bad.toml"), "{e}");
        let e = Tables::load("gbt2589-1999", None).unwrap_err();
        assert!(e.contains("unknown factor table"), "{e}");
    }

    #[test]
    fn unit_ratios() {
        assert_eq!(unit_ratio("t", "kg"), Some(1000.0));
        assert_eq!(unit_ratio("GJ", "MJ"), Some(1000.0));
        assert_eq!(unit_ratio("kg", "t"), Some(0.001));
        assert_eq!(unit_ratio("m3", "kg"), None);
    }
}
