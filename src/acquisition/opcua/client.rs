//! Building the OPC UA client of one device: its own certificate (generated once under the PKI
//! directory, private key 0600), server-certificate trust, the identity it logs in with, the
//! endpoint it asks for, and plain-language explanations of the status codes people meet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opcua_client::transport::TcpConnector;
use opcua_client::{Client, ClientBuilder, IdentityToken, Session, SessionEventLoop};
use opcua_crypto::CertificateStore;
use opcua_types::{EndpointDescription, MessageSecurityMode, StatusCode, UserTokenPolicy};

use super::config::{OpcUaConfig, SecurityMode, SecurityPolicy};

/// Clients are built one at a time: two devices sharing a PKI directory must not both generate
/// its key pair.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The directories of a PKI: `own/`, `private/` (0700), `trusted/`, `rejected/`.
fn prepare_pki(pki: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for sub in ["own", "private", "trusted", "rejected"] {
        let d = pki.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let private = pki.join("private");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", private.display()))?;
    name_trusted_certs(&pki.join("trusted"));
    Ok(())
}

/// The stack finds a trusted certificate only under its own file name (`CN [thumbprint].der`).
/// A certificate an installer put into `trusted/` under any other name (`plc1.der`,
/// `server.pem`) is copied to that name, so dropping the file there is enough.
fn name_trusted_certs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let Ok(cert) = CertificateStore::read_cert(&path) else {
            continue; // not a .der/.pem certificate
        };
        let name = CertificateStore::cert_file_name(&cert);
        let target = dir.join(&name);
        if target == path || target.exists() {
            continue;
        }
        match cert.to_der() {
            Ok(der) => {
                if let Err(e) = std::fs::write(&target, der) {
                    tracing::warn!(
                        "opcua: cannot copy trusted certificate {} to {}: {e}",
                        path.display(),
                        target.display()
                    );
                }
            }
            Err(e) => tracing::warn!(
                "opcua: cannot encode trusted certificate {}: {e}",
                path.display()
            ),
        }
    }
}

/// A client for `cfg`, with the PKI under `pki`. Generates the client's certificate and key on
/// first use (RSA 2048: slow, so call it off the async threads).
pub fn build(cfg: &OpcUaConfig, pki: &Path, app_uri: &str) -> Result<Client, String> {
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    prepare_pki(pki)?;
    let client = ClientBuilder::new()
        .application_name("energy-gateway")
        .application_uri(app_uri)
        .product_uri("urn:energy-gateway")
        .create_sample_keypair(true)
        .pki_dir(pki)
        .trust_server_certs(cfg.trust_server_cert)
        // A new session (server restarted) gets its subscription from the source itself.
        .recreate_subscriptions(false)
        .session_retry_limit(-1)
        .session_retry_initial(Duration::from_secs(1))
        .session_retry_max(cfg.max_backoff)
        .request_timeout(cfg.timeout)
        .session_name("energy-gateway")
        .client()
        .map_err(|e| e.join("; "))?;
    let key = client.certificate_store().read().own_private_key_path();
    restrict_key(&key)?;
    Ok(client)
}

fn restrict_key(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(key) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot restrict {}: {e}", key.display()))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "the client's private key {} was not created: {e}",
            key.display()
        )),
    }
}

/// The identity the session logs in with.
pub fn identity(cfg: &OpcUaConfig) -> Result<IdentityToken, String> {
    match (&cfg.username, &cfg.user_cert_file, &cfg.user_key_file) {
        (Some(u), _, _) => {
            let p = match &cfg.password {
                Some(p) => p.resolve().map_err(|e| format!("password: {e}"))?,
                None => String::new(),
            };
            Ok(IdentityToken::new_user_name(u.clone(), p))
        }
        (None, Some(c), Some(k)) => {
            IdentityToken::new_x509_path(c, k).map_err(|e| format!("user certificate: {e}"))
        }
        _ => Ok(IdentityToken::Anonymous),
    }
}

/// The endpoint asked for: URL, security policy and mode (the server's own description with
/// its certificate is looked up when connecting).
pub fn endpoint(cfg: &OpcUaConfig) -> EndpointDescription {
    let mode = match cfg.mode() {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    };
    (
        cfg.endpoint.as_str(),
        cfg.security_policy.as_str(),
        mode,
        UserTokenPolicy::anonymous(),
    )
        .into()
}

/// Asks the server for its endpoints and prepares a session on the one configured. The session
/// is created and activated by polling the returned event loop.
pub async fn connect(
    client: &mut Client,
    cfg: &OpcUaConfig,
    identity: IdentityToken,
    pki: &Path,
) -> Result<(Arc<Session>, SessionEventLoop<TcpConnector>), String> {
    match tokio::time::timeout(
        cfg.timeout,
        client.connect_to_matching_endpoint(endpoint(cfg), identity),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(explain(e.status(), &e.to_string(), cfg, pki)),
        Err(_) => Err(format!(
            "no answer from {} within {:?}",
            cfg.endpoint, cfg.timeout
        )),
    }
}

/// A status code from connecting or reading, said so that an installer knows what to do.
pub fn explain(code: StatusCode, detail: &str, cfg: &OpcUaConfig, pki: &Path) -> String {
    let detail = if detail.is_empty() || detail == code.to_string() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let trusted: PathBuf = pki.join("trusted");
    let rejected: PathBuf = pki.join("rejected");
    match code {
        StatusCode::BadUserAccessDenied
        | StatusCode::BadIdentityTokenRejected
        | StatusCode::BadIdentityTokenInvalid
        | StatusCode::BadUserSignatureInvalid => format!(
            "the server refused the credentials ({code}): check {}{detail}",
            if cfg.username.is_some() {
                "opcua.username and opcua.password"
            } else if cfg.user_cert_file.is_some() {
                "opcua.user_cert_file (is the certificate trusted by the server?)"
            } else {
                "whether the server allows anonymous sessions (else set opcua.username/password)"
            }
        ),
        StatusCode::BadCertificateUntrusted
        | StatusCode::BadSecurityChecksFailed
        | StatusCode::BadCertificateInvalid
        | StatusCode::BadCertificateHostNameInvalid
        | StatusCode::BadCertificateUriInvalid
        | StatusCode::BadCertificateTimeInvalid => format!(
            "the server's certificate is not trusted ({code}): check it, then move it from {} to {} (or set opcua.trust_server_cert = true); if the server refuses ours, trust the gateway's certificate in {}/own on the server{detail}",
            rejected.display(),
            trusted.display(),
            pki.display()
        ),
        StatusCode::BadTcpEndpointUrlInvalid | StatusCode::BadSecurityPolicyRejected => format!(
            "{} offers no endpoint with security {} / {:?} ({code}){detail}",
            cfg.endpoint,
            cfg.security_policy.as_str(),
            cfg.mode()
        ),
        _ if cfg.security_policy == SecurityPolicy::None => {
            format!("{} ({code}){detail}", cfg.endpoint)
        }
        _ => format!(
            "{} with security {} ({code}){detail}",
            cfg.endpoint,
            cfg.security_policy.as_str()
        ),
    }
}
