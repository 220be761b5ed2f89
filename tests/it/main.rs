//! The integration tests, one binary (one link, one set of debug artefacts). Each module is one
//! area, against real parts: Mosquitto, InfluxDB 1.6, Modbus servers over sockets and socat ptys,
//! the gateway binary itself. `common` starts those parts on loopback ports in temp dirs;
//! `http_support` starts the daemon with its HTTP server. Run one area with
//! `cargo nextest run --test it modbus::`.

mod common;
mod http_support;

mod accounting_counters;
mod accounting_report;
mod accounting_service;
mod alerts;
mod cli_check;
mod clock;
mod config_fuzz;
mod demo;
mod harness_selftest;
mod history;
mod http;
mod influxdb_line_protocol;
mod influxdb_v1;
mod influxdb_v2;
mod layers;
mod live_page;
mod meter_bus;
mod meter_templates;
mod metrics;
mod modbus;
mod mqtt;
mod mqtt_readings;
mod opcua;
mod outbox;
mod overload;
mod packaging;
mod pipeline;
mod readiness;
mod reload;
mod report_formats;
mod report_park;
mod store_faults;
mod supervision;
