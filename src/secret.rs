//! Secrets (tokens, passwords) that may be written inline, taken from an environment variable or
//! read from a file (systemd credentials, Docker/Kubernetes secrets). Never printed.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `token = "…"` (or an environment override of the key itself).
    Literal(String),
    /// `token = { env = "VAR" }`
    Env(String),
    /// `token = { file = "/run/credentials/…" }`; surrounding white space is trimmed.
    File(PathBuf),
}

impl Secret {
    /// The secret's value, or a message saying why it cannot be had.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Literal(s) => Ok(s.clone()),
            Secret::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(format!("environment variable `{var}` is empty")),
                Err(_) => Err(format!("environment variable `{var}` is not set")),
            },
            Secret::File(path) => match std::fs::read_to_string(path) {
                Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env(v) => write!(f, "Secret(env {v})"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

const EXPECTED: &str = "expected a string, { env = \"VAR\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(s) => Ok(Secret::Literal(s)),
            // An environment override such as EGW__…__PASSWORD=1234 arrives as a number.
            serde_json::Value::Number(n) => Ok(Secret::Literal(n.to_string())),
            serde_json::Value::Object(map) => {
                let mut it = map.into_iter();
                match (it.next(), it.next()) {
                    (Some((k, serde_json::Value::String(s))), None) if k == "env" => {
                        Ok(Secret::Env(s))
                    }
                    (Some((k, serde_json::Value::String(s))), None) if k == "file" => {
                        Ok(Secret::File(PathBuf::from(s)))
                    }
                    _ => Err(D::Error::custom(format!(
                        "invalid secret table: {EXPECTED}"
                    ))),
                }
            }
            other => Err(D::Error::custom(format!(
                "invalid type: {}, {EXPECTED}",
                crate::units::duration::describe(&other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Secret, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn forms() {
        assert_eq!(parse("\"abc\"").unwrap(), Secret::Literal("abc".into()));
        assert_eq!(parse("{\"env\":\"X\"}").unwrap(), Secret::Env("X".into()));
        assert_eq!(
            parse("{\"file\":\"/x\"}").unwrap(),
            Secret::File(PathBuf::from("/x"))
        );
        assert!(parse("{\"vault\":\"x\"}").unwrap_err().contains("env"));
        assert!(parse("true").unwrap_err().contains("boolean"));
    }

    #[test]
    fn file_secret_is_trimmed_and_missing_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(Secret::File(p.clone()).resolve().unwrap(), "s3cret");
        let err = Secret::File(dir.path().join("nope")).resolve().unwrap_err();
        assert!(err.contains("cannot read secret file"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = format!("{:?}", Secret::Literal("hunter2".into()));
        assert!(!s.contains("hunter2"));
    }
}
