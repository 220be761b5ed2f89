//! Modbus acquisition: Modbus TCP, Modbus RTU on serial ports and RTU over TCP.
//!
//! - [`link`]: how devices are reached (TCP connection, serial port, RTU over TCP).
//! - [`scheduler`]: one task per link polls its devices at their groups' intervals, with
//!   timeouts, reconnects and backoff for dead devices.
//! - [`plan`]: merges a device's registers into as few requests as its limits allow.
//! - [`decode`]: register words → numbers (types, word orders, composites).
//! - [`templates`]: meter models as data (`config/meters/*.toml`).
//! - [`probe`]: read one device once (`energy-gateway probe`).

pub mod decode;
pub mod link;
pub mod plan;
pub mod probe;
pub mod scheduler;
mod tcp_client;
pub mod templates;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{BusConfig, DeviceConfig};
use super::{DeviceRegistry, DeviceStatus, SourceBatch};
use link::Link;
use scheduler::{Poller, Target};

/// Started pollers and what they poll.
pub struct Started {
    pub devices: DeviceRegistry,
    pub tasks: Vec<JoinHandle<()>>,
    /// Requests one full poll cycle takes, by device.
    pub requests_per_cycle: BTreeMap<crate::readings::DeviceId, usize>,
}

/// Starts one poller per Modbus TCP device and one per bus, for every enabled device of
/// `devices` (the lines in `buses`). Each poller keeps a pulse of the polls it ends, stalled
/// after `source_grace` more than it normally takes (see [`Poller::watch`]). `wrap` is given
/// the ids of a poller's devices and its task before it is spawned (the fault hooks of debug
/// builds).
pub fn spawn_pollers(
    devices: &[DeviceConfig],
    buses: &[BusConfig],
    tx: &mpsc::Sender<SourceBatch>,
    cancel: &CancellationToken,
    source_grace: std::time::Duration,
    wrap: impl Fn(&[String], BoxFuture<'static, ()>) -> BoxFuture<'static, ()>,
) -> Started {
    let mut registry = DeviceRegistry::new();
    let mut by_bus: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    let mut pollers = Vec::new();
    for d in devices.iter().filter(|d| d.enabled) {
        let Some(m) = d.modbus.clone() else { continue };
        let status = Arc::new(DeviceStatus::default());
        registry.insert(d.id.clone(), status.clone());
        let target = Target {
            device: Arc::new(d.clone()),
            modbus: m.clone(),
            status,
        };
        match (&m.bus, &m.address) {
            (Some(bus), _) => by_bus.entry(bus.clone()).or_default().push(target),
            (None, Some(addr)) => pollers.push(Poller::new(
                Link::Tcp(addr.clone()),
                std::time::Duration::ZERO,
                vec![target],
                tx.clone(),
            )),
            (None, None) => {} // rejected by the configuration check
        }
    }
    for (bus_id, targets) in by_bus {
        if let Some(bus) = buses.iter().find(|b| b.id == bus_id) {
            pollers.push(Poller::new(
                Link::from_bus(bus),
                bus.pause,
                targets,
                tx.clone(),
            ));
        }
    }
    let mut requests_per_cycle = BTreeMap::new();
    let mut tasks = Vec::new();
    for mut p in pollers {
        let per_device = p.requests_per_cycle();
        let ids: Vec<String> = per_device.iter().map(|(id, _)| id.to_string()).collect();
        requests_per_cycle.extend(per_device);
        p.watch(source_grace);
        tasks.push(tokio::spawn(wrap(&ids, p.run(cancel.clone()).boxed())));
    }
    Started {
        devices: registry,
        tasks,
        requests_per_cycle,
    }
}
