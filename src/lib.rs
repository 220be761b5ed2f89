//! energy-gateway: an edge daemon that polls energy meters, keeps a durable local store and
//! forwards readings to InfluxDB.
//!
//! Data flows one way through the modules:
//! [`acquisition`] (Modbus, MQTT) → [`processing`] (reading invariants, latest values,
//! [`alerting`]) → [`storage`] (SQLite history + outbox) → [`outputs`] (InfluxDB, MQTT,
//! notifiers). [`accounting`] computes and persists the energy and carbon accounts,
//! [`reporting`] renders them. [`pipeline`] wires the stages, [`service`] runs the daemon
//! (reload, systemd, shutdown), [`config`] loads and checks what to run, [`demo`] runs it all on
//! a simulated factory. Shared basics sit at the bottom: [`readings`] (the quantity
//! vocabulary), [`carrier`] (the energy carriers), [`settings`] (what every component's
//! settings share), [`backoff`], [`log_limit`]. The components are given their settings by the
//! wiring, never the whole configuration. The import rule is in the README ("Where things live")
//! and checked by `tests/it/layers.rs`.

#![forbid(unsafe_code)]

pub mod accounting;
pub mod acquisition;
pub mod alerting;
pub mod backoff;
pub mod carrier;
pub mod clock;
pub mod config;
pub mod demo;
pub mod health;
pub mod http;
pub mod lang;
pub mod log_limit;
pub mod outputs;
pub mod pipeline;
pub mod processing;
pub mod readings;
pub mod redact;
pub mod reporting;
pub mod secret;
pub mod service;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod units;

/// Installs rustls' ring crypto provider as the process default (once; later calls are no-ops).
/// The build carries ring only, never aws-lc or OpenSSL.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
