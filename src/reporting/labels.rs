//! Report languages: `zh` shows every label in Chinese then English (the default, for
//! regulators), `en` in English only.

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
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

pub const YES: L = L("是", "yes");
pub const NO: L = L("否", "no");
