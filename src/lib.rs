//! energy-gateway: an edge daemon that polls energy meters, keeps a durable local store and
//! forwards readings to InfluxDB.
//!
//! Data flows one way through the modules:
//! [`acquisition`] (Modbus) → [`readings`] (the core model) → [`alerting`] → [`storage`]
//! (SQLite history + outbox) → [`outputs`] (InfluxDB). [`pipeline`] wires them together,
//! [`config`] describes and checks what to run, [`demo`] runs it all on a simulated factory.

pub mod accounting;
pub mod acquisition;
pub mod alerting;
pub mod backoff;
pub mod config;
pub mod demo;
pub mod http;
pub mod outputs;
pub mod pipeline;
pub mod readings;
pub mod reporting;
pub mod storage;
pub mod telemetry;

/// Installs rustls' ring crypto provider as the process default (once; later calls are no-ops).
/// The build carries ring only, never aws-lc or OpenSSL.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
