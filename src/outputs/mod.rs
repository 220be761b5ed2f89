//! Outputs: destinations the store's outbox is delivered to. Each keeps its own cursor in the
//! store, so a slow or unreachable destination never holds back another.

pub mod cursor;
pub mod influxdb;
pub mod metrics;
pub mod mqtt;
pub mod mqtt_readings;
