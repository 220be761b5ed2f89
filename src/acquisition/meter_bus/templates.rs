//! Templates of DL/T 645 and CJ/T 188 meter families: which data identifiers (DI) hold which
//! quantity, in which format. Data, one TOML file per family in `config/meters/` (marked by
//! `protocol = "dlt645-2007" | "dlt645-1997" | "cjt188"`), embedded in the binary; the Modbus
//! templates directory (`[modbus] templates_dir`) may add or replace families.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::config::LineProtocol;
use crate::acquisition::bcd::BcdFormat;
use crate::readings::Quantity;
use crate::units::opt_duration;

/// One meter family as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusTemplate {
    pub protocol: LineProtocol,
    pub model: String,
    pub manufacturer: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where the identifiers and formats come from (standard, clause, table).
    pub sources: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
    /// CJ/T 188: the meter type sent in requests (0x10 cold water, 0x20 heat, 0x30 gas…).
    #[serde(default)]
    pub meter_type: Option<u8>,
    pub points: Vec<BusPointConfig>,
}

/// One quantity read from one data identifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusPointConfig {
    pub quantity: Quantity,
    /// Data identifier in hex as the standard writes it (`"00010000"`, `"9010"`, `"901F"`).
    pub di: String,
    /// The item's format as the standard writes it: `XXXXXX.XX`, `XX.XXXX`… for numbers,
    /// `YYMMDDhhmm` for a date-time (stored as Unix seconds), `MMDDhhmm` for one without a
    /// year (DL/T 645-1997: the latest such moment, see [`Decode::DateTimeNoYear`]),
    /// `YYMMDDWW` for the meter date (with `time_di` in `hhmmss`: the meter clock minus the
    /// gateway clock, in seconds).
    pub format: String,
    /// The top bit of the most significant byte is the sign.
    #[serde(default)]
    pub signed: bool,
    /// Byte offset of the value inside the item's data (items holding several values).
    #[serde(default)]
    pub offset: usize,
    /// CJ/T 188: a unit code byte follows the digits and is converted to the quantity's unit.
    #[serde(default)]
    pub unit_code: bool,
    /// Factor applied after decoding (e.g. a format in W for a quantity in kW).
    #[serde(default = "one")]
    pub scale: f64,
    /// Meter date: the identifier of the time of day.
    #[serde(default)]
    pub time_di: Option<String>,
    /// Poll interval of this point (default: the device's).
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
}

fn one() -> f64 {
    1.0
}

/// How a point's bytes become a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decode {
    Number {
        format: BcdFormat,
        signed: bool,
        unit_code: bool,
    },
    /// `YYMMDDhhmm` in the site's time zone, as Unix seconds.
    DateTime,
    /// `MMDDhhmm` in the site's time zone, as Unix seconds: the year is the one that puts it
    /// latest but not more than a day after the read (a meter clock may run ahead).
    DateTimeNoYear,
    /// Meter clock offset from a `YYMMDDWW` date and the `hhmmss` time of `time_di`.
    Clock { time_di: u32 },
}

/// A point ready to poll.
#[derive(Debug, Clone, PartialEq)]
pub struct BusPoint {
    pub quantity: Quantity,
    pub di: u32,
    pub offset: usize,
    pub decode: Decode,
    pub scale: f64,
    pub interval: Option<Duration>,
}

impl BusPoint {
    /// Bytes of the item's data the point needs.
    pub fn end(&self) -> usize {
        self.offset
            + match self.decode {
                Decode::Number {
                    format, unit_code, ..
                } => format.bytes + usize::from(unit_code),
                Decode::DateTime => 5,
                Decode::DateTimeNoYear => 4,
                Decode::Clock { .. } => 4,
            }
    }
}

fn parse_di(s: &str, protocol: LineProtocol) -> Result<u32, String> {
    let digits = match protocol {
        LineProtocol::Dlt645V2007 => 8,
        _ => 4,
    };
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "di \"{s}\": write the {digits} hex digits of a {} identifier",
            protocol.as_str()
        ));
    }
    u32::from_str_radix(s, 16).map_err(|e| format!("di \"{s}\": {e}"))
}

impl BusTemplate {
    /// The template's points, checked.
    pub fn compile(&self) -> Result<Vec<BusPoint>, Vec<String>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            let at = format!("points[{i}]");
            let r = (|| {
                let di = parse_di(&p.di, self.protocol)?;
                let decode = match (p.format.as_str(), &p.time_di) {
                    ("YYMMDDhhmm", None) => Decode::DateTime,
                    ("MMDDhhmm", None) => Decode::DateTimeNoYear,
                    ("YYMMDDWW", Some(t)) => Decode::Clock {
                        time_di: parse_di(t, self.protocol)?,
                    },
                    ("YYMMDDWW", None) => {
                        return Err("format YYMMDDWW needs time_di (the hhmmss item)".into())
                    }
                    (f, None) => Decode::Number {
                        format: BcdFormat::parse(f)?,
                        signed: p.signed,
                        unit_code: p.unit_code,
                    },
                    (_, Some(_)) => return Err("time_di goes with format YYMMDDWW only".into()),
                };
                if p.unit_code && self.protocol != LineProtocol::Cjt188 {
                    return Err("unit_code is a CJ/T 188 field".into());
                }
                if !p.scale.is_finite() || p.scale == 0.0 {
                    return Err(format!("scale {} is not a usable factor", p.scale));
                }
                Ok::<_, String>(BusPoint {
                    quantity: p.quantity,
                    di,
                    offset: p.offset,
                    decode,
                    scale: p.scale,
                    interval: p.interval,
                })
            })();
            match r {
                Ok(bp) if out.iter().any(|o: &BusPoint| o.quantity == bp.quantity) => {
                    problems.push(format!("{at}: quantity {} read twice", bp.quantity))
                }
                Ok(bp) => out.push(bp),
                Err(e) => problems.push(format!("{at}: {e}")),
            }
        }
        if self.protocol == LineProtocol::Modbus {
            problems
                .push("protocol: a bus template names dlt645-2007, dlt645-1997 or cjt188".into());
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

/// The built-in families, as shipped in `config/meters/`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "dlt645-2007-three-phase.toml",
        include_str!("../../../config/meters/dlt645-2007-three-phase.toml"),
    ),
    (
        "dlt645-1997-three-phase.toml",
        include_str!("../../../config/meters/dlt645-1997-three-phase.toml"),
    ),
    (
        "cjt188-water.toml",
        include_str!("../../../config/meters/cjt188-water.toml"),
    ),
    (
        "cjt188-gas.toml",
        include_str!("../../../config/meters/cjt188-gas.toml"),
    ),
    (
        "cjt188-heat.toml",
        include_str!("../../../config/meters/cjt188-heat.toml"),
    ),
];

/// True when a template file is for a DL/T 645 or CJ/T 188 line (it names its `protocol`).
pub fn is_bus_template(text: &str) -> bool {
    crate::settings::parse_toml(text).is_ok_and(|v| v.get("protocol").is_some())
}

/// Parses and checks one template file.
pub fn parse(name: &str, text: &str) -> Result<(BusTemplate, Vec<BusPoint>), String> {
    let v = crate::settings::parse_toml(text).map_err(|e| format!("{name}: {e}"))?;
    let t: BusTemplate = serde_path_to_error::deserialize(v)
        .map_err(|e| format!("{name}: {}: {}", e.path(), e.inner()))?;
    let points = t
        .compile()
        .map_err(|p| format!("{name}: {}", p.join("; ")))?;
    Ok((t, points))
}

/// Meter families by model name and alias, each with its checked points.
pub type Families = BTreeMap<String, (BusTemplate, Vec<BusPoint>)>;

/// All families by model name and alias: the built-in ones, then those of `dir` (files that
/// name a `protocol`; the others are Modbus templates).
pub fn load(dir: Option<&Path>) -> Result<Families, Vec<String>> {
    let mut files: Vec<(String, String)> = BUILTIN
        .iter()
        .map(|(n, t)| (format!("built-in {n}"), (*t).to_string()))
        .collect();
    let mut problems = Vec::new();
    if let Some(dir) = dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                match std::fs::read_to_string(&p) {
                    Ok(t) if is_bus_template(&t) => files.push((p.display().to_string(), t)),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("cannot read {}: {e}", p.display())),
                }
            }
        }
        // An unreadable directory is reported by the Modbus template loader.
    }
    let mut out = BTreeMap::new();
    for (name, text) in files {
        match parse(&name, &text) {
            Ok((t, points)) => {
                for alias in &t.aliases {
                    out.insert(alias.clone(), (t.clone(), points.clone()));
                }
                out.insert(t.model.clone(), (t, points));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_family_parses_and_cites_a_source() {
        let all = load(None).unwrap();
        for (file, _) in BUILTIN {
            let model = file.trim_end_matches(".toml");
            let (t, points) = &all[model];
            assert!(!t.sources.is_empty(), "{model}");
            assert!(!points.is_empty(), "{model}");
        }
        let (t, _) = &all["dlt645-2007-three-phase"];
        assert_eq!(t.protocol, LineProtocol::Dlt645V2007);
    }

    #[test]
    fn a_user_directory_holds_both_kinds_of_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("my-645.toml"),
            "protocol = \"dlt645-2007\"\nmodel = \"my-645\"\nmanufacturer = \"x\"\nname = \"x\"\nsources = [\"own test\"]\n[[points]]\nquantity = \"frequency\"\ndi = \"02800002\"\nformat = \"XX.XX\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "model = \"mine\"\nmanufacturer = \"x\"\nname = \"x\"\nsources = [\"own test\"]\n[[points]]\nquantity = \"frequency\"\nregister = 70\ntype = \"f32\"\n",
        )
        .unwrap();
        let bus = load(Some(dir.path())).unwrap();
        assert_eq!(bus["my-645"].1[0].di, 0x0280_0002);
        assert!(!bus.contains_key("mine"));
        let modbus = crate::acquisition::modbus::templates::load(Some(dir.path())).unwrap();
        assert!(modbus.contains_key("mine"));
        assert!(!modbus.contains_key("my-645"));
    }

    #[test]
    fn bad_points_are_named() {
        let text = "protocol = \"dlt645-2007\"\nmodel = \"x\"\nmanufacturer = \"x\"\nname = \"x\"\nsources = [\"s\"]\n[[points]]\nquantity = \"frequency\"\ndi = \"0280\"\nformat = \"XX.XX\"\n[[points]]\nquantity = \"voltage_l1\"\ndi = \"02010100\"\nformat = \"XX?X\"\n";
        let err = parse("x.toml", text).unwrap_err();
        assert!(err.contains("points[0]: di \"0280\""), "{err}");
        assert!(err.contains("points[1]: \"XX?X\""), "{err}");
    }
}
