//! Report languages: `zh` shows every label in Chinese then English (the default, for
//! regulators), `en` in English only.

use crate::carrier::Carrier;

/// A label in Chinese and English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L(pub &'static str, pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "zh" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            other => Err(format!("unknown language \"{other}\"; available: zh, en")),
        }
    }
}

impl Lang {
    /// The label as shown: "中文 English" or "English".
    pub fn show(self, l: L) -> String {
        match self {
            Lang::Zh if l.0.is_empty() => l.1.to_string(),
            Lang::Zh => format!("{} {}", l.0, l.1),
            Lang::En => l.1.to_string(),
        }
    }
    /// A sentence in the language alone (notes): the Chinese text in `zh` (the English when
    /// there is none), the English in `en`.
    pub fn pick(self, l: L) -> &'static str {
        match self {
            Lang::Zh if !l.0.is_empty() => l.0,
            _ => l.1,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

pub const YES: L = L("是", "yes");
pub const NO: L = L("否", "no");

/// English names of the carriers the shipped factor tables know besides the devices' carriers
/// ([`Carrier::en_name`]; GB/T 2589-2020 rows).
const TABLE_CARRIERS_EN: &[(&str, &str)] = &[
    ("crude_oil", "Crude oil"),
    ("blast_furnace_gas", "Blast furnace gas"),
    ("softened_water", "Softened water"),
    ("deaerated_water", "Deaerated water"),
];

impl Lang {
    /// A carrier's name: the factor table's (Chinese) name in `zh`, an English name in `en`
    /// (the id, spaced, for a carrier not in the list).
    pub fn carrier_name(self, carrier: &str, table_name: &str) -> String {
        match self {
            Lang::Zh => table_name.to_string(),
            Lang::En => match carrier.parse::<Carrier>() {
                Ok(c) => c.en_name().to_string(),
                Err(_) => TABLE_CARRIERS_EN
                    .iter()
                    .find(|(id, _)| *id == carrier)
                    .map(|(_, en)| en.to_string())
                    .unwrap_or_else(|| carrier.replace('_', " ")),
            },
        }
    }
}
