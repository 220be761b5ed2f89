//! `[devices.opcua]`: how a device's values are read from an OPC UA server (a PLC, an MES, a
//! SCADA), and the checks of those settings. `config` composes this into `[[devices]]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::readings::Quantity;
use crate::secret::Secret;
use crate::units::duration;

/// `[devices.opcua]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaConfig {
    /// `opc.tcp://host:port[/path]` of the server.
    pub endpoint: String,
    /// `None` or `Basic256Sha256`.
    #[serde(default)]
    pub security_policy: SecurityPolicy,
    /// `none`, `sign` or `sign_and_encrypt` (default: `sign_and_encrypt` with Basic256Sha256,
    /// `none` without security).
    #[serde(default)]
    pub security_mode: Option<SecurityMode>,
    /// User name (user name and password authentication). Without it and without `user_cert_file`
    /// the session is anonymous.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`: inline, `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Certificate authentication: the user's X.509 certificate (DER or PEM) and its private key
    /// (PEM).
    #[serde(default)]
    pub user_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub user_key_file: Option<PathBuf>,
    /// Where the client's own certificate and key (generated at the first start, key 0600), the
    /// trusted server certificates (`trusted/`) and rejected ones (`rejected/`) live
    /// (default: `<storage.data_dir>/opcua/pki`).
    #[serde(default)]
    pub pki_dir: Option<PathBuf>,
    /// Trust whatever certificate the server presents (it is stored in `trusted/`). Convenient on
    /// the first day, but a man in the middle is trusted too: logged as a warning at every start.
    #[serde(default)]
    pub trust_server_cert: bool,
    /// `subscribe` (monitored items: the server reports changes) or `poll` (read every `interval`).
    #[serde(default)]
    pub mode: OpcUaMode,
    /// subscribe: publishing interval; poll: read interval.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// subscribe: how often the server samples each node (default: `interval`).
    #[serde(default, with = "crate::units::opt_duration")]
    pub sampling_interval: Option<Duration>,
    /// Time allowed for each request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Longest wait between reconnection attempts.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    /// What to read.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

/// `[[devices.opcua.nodes]]`: one node mapped to one quantity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id in the standard text form: `ns=2;s=Line1.Pieces`, `ns=3;i=1001`, `i=2258`.
    pub node: String,
    pub quantity: Quantity,
    /// canonical value = value × scale + offset
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

/// OPC UA security policies the gateway offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SecurityPolicy {
    #[default]
    None,
    Basic256Sha256,
}

impl SecurityPolicy {
    /// The name in OPC UA's policy URIs (`http://opcfoundation.org/UA/SecurityPolicy#…`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
        }
    }
}

/// OPC UA message security modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

/// How values arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpcUaMode {
    #[default]
    Subscribe,
    Poll,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn one() -> f64 {
    1.0
}

impl OpcUaConfig {
    /// The security mode in force (see `security_mode`).
    pub fn mode(&self) -> SecurityMode {
        self.security_mode.unwrap_or(match self.security_policy {
            SecurityPolicy::None => SecurityMode::None,
            SecurityPolicy::Basic256Sha256 => SecurityMode::SignAndEncrypt,
        })
    }

    /// The PKI directory (client certificate, trusted and rejected server certificates).
    pub fn pki_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("opcua").join("pki"))
    }

    /// The quantities this device yields.
    pub fn quantities(&self) -> impl Iterator<Item = Quantity> + '_ {
        self.nodes.iter().map(|n| n.quantity)
    }

    /// Every problem of these settings, as (key below `opcua`, message). The password must be
    /// readable only when the device is `enabled`.
    pub fn check(&self, enabled: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, m: String| out.push((k.to_string(), m));
        if let Err(e) = check_endpoint(&self.endpoint) {
            push("endpoint", e);
        }
        match (self.security_policy, self.mode()) {
            (SecurityPolicy::None, SecurityMode::None) => {}
            (SecurityPolicy::None, _) => push(
                "security_mode",
                "signing and encryption need security_policy = \"Basic256Sha256\"".into(),
            ),
            (_, SecurityMode::None) => push(
                "security_mode",
                "security_policy Basic256Sha256 needs security_mode \"sign\" or \"sign_and_encrypt\"".into(),
            ),
            _ => {}
        }
        match (&self.username, &self.password) {
            (Some(_), None) => push("password", "required with username".into()),
            (None, Some(_)) => push("username", "required with password".into()),
            (Some(u), Some(_)) if u.trim().is_empty() => {
                push("username", "must not be empty".into())
            }
            (Some(_), Some(p)) if enabled => {
                if let Err(e) = p.resolve() {
                    push("password", e);
                }
            }
            _ => {}
        }
        match (&self.user_cert_file, &self.user_key_file) {
            (Some(_), None) => push("user_key_file", "required with user_cert_file".into()),
            (None, Some(_)) => push("user_cert_file", "required with user_key_file".into()),
            (Some(c), Some(k)) => {
                if self.username.is_some() {
                    push(
                        "user_cert_file",
                        "give either username/password or user_cert_file/user_key_file, not both"
                            .into(),
                    );
                }
                for (key, p) in [("user_cert_file", c), ("user_key_file", k)] {
                    match std::fs::metadata(p) {
                        Err(e) if enabled => push(key, format!("cannot read {}: {e}", p.display())),
                        _ => {}
                    }
                }
            }
            (None, None) => {}
        }
        if self.interval < crate::acquisition::config::MIN_POLL_INTERVAL {
            push(
                "interval",
                crate::acquisition::config::min_interval_message(),
            );
        }
        if self.sampling_interval.is_some_and(|s| s.is_zero()) {
            push("sampling_interval", "must be greater than 0".into());
        }
        if self.timeout.is_zero() {
            push("timeout", "must be greater than 0".into());
        }
        if self.max_backoff < Duration::from_secs(1) {
            push("max_backoff", "must be at least 1s".into());
        }
        if self.nodes.is_empty() {
            push("nodes", "a device needs at least one node".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (j, n) in self.nodes.iter().enumerate() {
            if let Err(e) = super::values::parse_node_id(&n.node) {
                push(&format!("nodes[{j}].node"), e);
            }
            if !seen.insert(n.quantity) {
                push(
                    &format!("nodes[{j}].quantity"),
                    format!("quantity {} is read twice on this device", n.quantity),
                );
            }
            if !n.scale.is_finite() || n.scale == 0.0 {
                push(
                    &format!("nodes[{j}].scale"),
                    "must be a finite, non-zero number".into(),
                );
            }
            if !n.offset.is_finite() {
                push(
                    &format!("nodes[{j}].offset"),
                    "must be a finite number".into(),
                );
            }
        }
        out
    }
}

/// `opc.tcp://host:port[/path]`.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("opc.tcp://")
        .ok_or_else(|| format!("\"{url}\" is not an opc.tcp://host:port URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{url}\" has no port (OPC UA's usual one is 4840)"))?;
    if host.trim_matches(['[', ']']).is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("\"{url}\": port \"{port}\" is not 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> OpcUaConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_and_security_mode() {
        let c = parse("endpoint = \"opc.tcp://plc:4840\"\n[[nodes]]\nnode = \"ns=2;s=A\"\nquantity = \"production_count\"\n");
        assert_eq!(c.mode(), SecurityMode::None);
        assert_eq!(c.mode, OpcUaMode::Subscribe);
        assert!(c.check(true).is_empty(), "{:?}", c.check(true));
        let c = parse("endpoint = \"opc.tcp://plc:4840\"\nsecurity_policy = \"Basic256Sha256\"\n[[nodes]]\nnode = \"i=2258\"\nquantity = \"temperature\"\n");
        assert_eq!(c.mode(), SecurityMode::SignAndEncrypt);
        assert!(c.check(true).is_empty(), "{:?}", c.check(true));
    }

    #[test]
    fn problems_name_their_keys() {
        let c = parse(
            "endpoint = \"http://plc\"\nsecurity_mode = \"sign\"\nusername = \"u\"\ninterval = \"0s\"\n\
             [[nodes]]\nnode = \"ns=2;x=A\"\nquantity = \"production_count\"\nscale = 0\n\
             [[nodes]]\nnode = \"ns=2;s=B\"\nquantity = \"production_count\"\n",
        );
        let keys: Vec<String> = c.check(true).into_iter().map(|(k, _)| k).collect();
        for k in [
            "endpoint",
            "security_mode",
            "password",
            "interval",
            "nodes[0].node",
            "nodes[0].scale",
            "nodes[1].quantity",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("opc.tcp://127.0.0.1:4840/").is_ok());
        assert!(check_endpoint("opc.tcp://plc:4840/UA/Server").is_ok());
        assert!(check_endpoint("opc.tcp://plc").is_err());
        assert!(check_endpoint("opc.tcp://:4840").is_err());
        assert!(check_endpoint("opc.tcp://plc:0").is_err());
    }
}
