//! Modbus TCP acquisition: one task per device polls its planned blocks at the device's
//! interval. Every connect and request runs under the device's timeout; after a timeout or a
//! transport error the connection is dropped and made anew (a late reply on a reused connection
//! would otherwise be taken for the answer to the next request). A device that keeps failing is
//! retried with exponential backoff, so a dead meter costs the others nothing.

pub mod decode;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{timeout, MissedTickBehavior};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;

use super::{DeviceStatus, LogLimiter};
use crate::config::{DeviceConfig, ModbusConfig, RegisterKind};
use crate::readings::{now_ms, Reading};
use plan::Block;

/// Longest wait between reconnect attempts to a device that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Polls one Modbus TCP device until cancelled.
pub struct ModbusPoller {
    device: Arc<DeviceConfig>,
    modbus: ModbusConfig,
    blocks: Vec<Block>,
    status: Arc<DeviceStatus>,
    tx: mpsc::Sender<Vec<Reading>>,
}

impl ModbusPoller {
    /// `device.modbus` must be set (the configuration check guarantees it).
    pub fn new(
        device: Arc<DeviceConfig>,
        status: Arc<DeviceStatus>,
        tx: mpsc::Sender<Vec<Reading>>,
    ) -> Option<Self> {
        let modbus = device.modbus.clone()?;
        let blocks = plan::plan(
            &device.points,
            modbus.max_registers_per_request,
            modbus.max_gap,
        );
        Some(ModbusPoller {
            device,
            modbus,
            blocks,
            status,
            tx,
        })
    }

    /// Number of requests one full poll cycle takes.
    pub fn requests_per_cycle(&self) -> usize {
        self.blocks.len()
    }

    pub async fn run(self, cancel: CancellationToken) {
        let id = self.device.id.clone();
        let mut ticker = tokio::time::interval(self.modbus.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut ctx: Option<Context> = None;
        let mut retry_at = Instant::now();
        let mut backoff = self.modbus.interval;
        let mut log = LogLimiter::new(Duration::from_secs(60));
        tracing::info!(device = %id, address = %self.modbus.address, requests_per_cycle = self.blocks.len(), "polling");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if Instant::now() < retry_at {
                continue;
            }
            match self.cycle(&mut ctx, &cancel).await {
                Ok(readings) => {
                    if !self.status.is_online() {
                        tracing::info!(device = %id, "device online");
                        log.reset();
                    }
                    self.status.record_success();
                    backoff = self.modbus.interval;
                    if !readings.is_empty() && self.tx.send(readings).await.is_err() {
                        break; // pipeline shut down
                    }
                }
                Err(CycleError::Cancelled) => break,
                Err(CycleError::Failed { error, partial }) => {
                    ctx = None;
                    let failures = self.status.record_failure();
                    if let Some(suppressed) = log.allow() {
                        tracing::warn!(device = %id, address = %self.modbus.address, consecutive_failures = failures, suppressed, "poll failed: {error}");
                    }
                    if failures >= 3 {
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        retry_at = Instant::now() + backoff;
                    }
                    if !partial.is_empty() && self.tx.send(partial).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::debug!(device = %id, "poller stopped");
    }

    /// One pass over every block. Modbus exceptions make only that block's points bad; a timeout
    /// or transport error ends the cycle and drops the connection.
    async fn cycle(
        &self,
        ctx: &mut Option<Context>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Reading>, CycleError> {
        let t = self.modbus.timeout;
        if ctx.is_none() {
            let addr = tokio::net::lookup_host(&self.modbus.address)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    CycleError::failed(format!("cannot resolve {}", self.modbus.address))
                })?;
            let connect = tcp::connect_slave(addr, Slave(self.modbus.unit));
            let c = tokio::select! {
                _ = cancel.cancelled() => return Err(CycleError::Cancelled),
                r = timeout(t, connect) => r,
            };
            *ctx = Some(match c {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(CycleError::failed(format!("connect: {e}"))),
                Err(_) => {
                    return Err(CycleError::failed(format!(
                        "connect: timed out after {t:?}"
                    )))
                }
            });
        }
        let Some(c) = ctx.as_mut() else {
            return Err(CycleError::failed("no connection".into()));
        };
        let mut out = Vec::with_capacity(self.device.points.len());
        for block in &self.blocks {
            let ts = now_ms();
            let started = Instant::now();
            let req = async {
                match block.kind {
                    RegisterKind::Holding => {
                        c.read_holding_registers(block.start, block.count).await
                    }
                    RegisterKind::Input => c.read_input_registers(block.start, block.count).await,
                }
            };
            let res = tokio::select! {
                _ = cancel.cancelled() => return Err(CycleError::Cancelled),
                r = timeout(t, req) => r,
            };
            self.status.record_request(started.elapsed());
            match res {
                Ok(Ok(Ok(regs))) if regs.len() == usize::from(block.count) => {
                    self.decode_block(block, &regs, ts, &mut out);
                }
                Ok(Ok(Ok(regs))) => {
                    return Err(CycleError::partial(
                        format!(
                            "short answer: asked {} registers at {}, got {}",
                            block.count,
                            block.start,
                            regs.len()
                        ),
                        out,
                    ))
                }
                Ok(Ok(Err(exception))) => {
                    self.status.record_exception();
                    let reason = format!("modbus exception: {exception}");
                    for &i in &block.points {
                        out.push(Reading::bad(
                            &self.device.id,
                            self.device.points[i].quantity,
                            ts,
                            &reason,
                        ));
                    }
                }
                Ok(Err(e)) => return Err(CycleError::partial(format!("transport: {e}"), out)),
                Err(_) => {
                    return Err(CycleError::partial(
                        format!(
                            "read {:?} {}+{}: timed out after {t:?}",
                            block.kind, block.start, block.count
                        ),
                        out,
                    ))
                }
            }
        }
        Ok(out)
    }

    fn decode_block(&self, block: &Block, regs: &[u16], ts: i64, out: &mut Vec<Reading>) {
        for &i in &block.points {
            let p = &self.device.points[i];
            let off = usize::from(p.register - block.start);
            let n = usize::from(p.value_type.registers());
            let r = match decode::decode(&regs[off..off + n], p.value_type, p.order) {
                Ok(raw) => Reading::new(&self.device.id, p.quantity, raw * p.scale + p.offset, ts),
                Err(e) => Reading::bad(&self.device.id, p.quantity, ts, e),
            };
            out.push(r);
        }
    }
}

enum CycleError {
    Cancelled,
    /// The cycle ended early; `partial` holds what was decoded before the failure.
    Failed {
        error: String,
        partial: Vec<Reading>,
    },
}

impl CycleError {
    fn failed(error: String) -> Self {
        CycleError::Failed {
            error,
            partial: Vec::new(),
        }
    }
    fn partial(error: String, partial: Vec<Reading>) -> Self {
        CycleError::Failed { error, partial }
    }
}
