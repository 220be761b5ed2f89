//! The units every component's settings are written in: durations (`"1s"`, `"15m"`,
//! `"400d"`), optional durations and byte sizes (`"4GiB"`), as serde helpers
//! (`#[serde(with = "duration")]`). Depends on nothing of ours.

/// Optional durations (`interval = "60s"` or absent).
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        super::duration::parse_value(&v)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Sizes written as a number of bytes or a string such as `"512MiB"`, `"4GiB"`, `"800MB"`.
pub mod byte_size {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::Number(n) => n.as_u64().ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{n} is not a size; write a whole number of bytes or a string such as \"4GiB\""
                ))
            }),
            serde_json::Value::String(s) => parse(s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {}, expected a size such as \"4GiB\" or a number of bytes",
                super::duration::describe(other)
            ))),
        }
    }

    /// Parses `"4GiB"`-style sizes: B, kB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024).
    pub fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            u => {
                return Err(format!(
                    "\"{s}\": unknown unit \"{u}\"; use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
                ))
            }
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size; write it like \"4GiB\" or \"800MB\""))?;
        let bytes = n * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("\"{s}\" is out of range"));
        }
        Ok(bytes.round() as u64)
    }
}

/// Durations written as strings such as `"1s"`, `"250ms"`, `"15m"`, `"400d"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_value(&v).map_err(serde::de::Error::custom)
    }

    /// Parses a duration from a configuration value.
    pub fn parse_value(v: &serde_json::Value) -> Result<Duration, String> {
        match v {
            serde_json::Value::String(s) => parse(s),
            other => Err(format!(
                "invalid type: {}, expected a duration string such as \"1s\", \"250ms\" or \"15m\"",
                describe(other)
            )),
        }
    }

    /// The longest duration any setting takes (100 years): longer ones are typing mistakes, and
    /// timers cannot add them to the clock without overflowing.
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// Parses `"1s"`-style durations; negative values get a message of their own.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(format!(
                "duration \"{s}\" is negative; it must be zero or more"
            ));
        }
        let d = humantime::parse_duration(t).map_err(|e| {
            format!("\"{s}\" is not a duration ({e}); write it like \"1s\", \"250ms\" or \"15m\"")
        })?;
        if d > MAX {
            return Err(format!(
                "duration \"{s}\" is too long; the most is 100 years (\"36500d\")"
            ));
        }
        Ok(d)
    }

    pub(crate) fn describe(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Null => "null".into(),
            serde_json::Value::Bool(b) => format!("boolean `{b}`"),
            serde_json::Value::Number(n) => format!("number `{n}`"),
            serde_json::Value::String(s) => format!("string \"{s}\""),
            serde_json::Value::Array(_) => "array".into(),
            serde_json::Value::Object(_) => "table".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            super::duration::parse("400d").unwrap().as_secs(),
            400 * 86_400
        );
        let e = super::duration::parse("18446744073709551615s").unwrap_err();
        assert!(
            e.contains("too long") || e.contains("not a duration"),
            "{e}"
        );
        assert!(super::duration::parse("36501d")
            .unwrap_err()
            .contains("too long"));
        assert!(super::duration::parse("-1s")
            .unwrap_err()
            .contains("negative"));
    }
}
