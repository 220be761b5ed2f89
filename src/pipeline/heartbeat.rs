//! Whether the pipeline makes progress, for the systemd watchdog: an empty batch sent where the
//! sources send theirs must come out of the store writer (which answers it once everything
//! queued before it is committed) within the time given. A hung processing stage or store
//! writer, or a store that cannot commit, stops the watchdog pings; an HTTP server that still
//! answers does not keep them going. So does a stalled poller: one that has ended no poll,
//! answered or failed, for longer than its interval or backoff, its timeouts and
//! `[health] source_grace` (it hangs; the probe, which does not pass through it, would not see it).
//!
//! Two states are waiting by design, not stuck, and keep the pings going (a restart would not
//! help and would only loop): a full outbox with `when_full = "stop"` (the outputs must deliver
//! first) and a clock that is not trusted yet (readings are held until it is).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::acquisition::{DeviceRegistry, SourceBatch};
use crate::clock::Clock;
use crate::storage::writer::OutboxStatus;

/// A probe of one running pipeline. It does not keep the pipeline's channels open: a pipeline
/// that shuts down ends as if the probe did not exist.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub(super) src: mpsc::WeakSender<SourceBatch>,
    pub(super) devices: DeviceRegistry,
    pub(super) outbox: Arc<OutboxStatus>,
    pub(super) clock: Arc<Clock>,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// The probe went through processing and the store writer.
    Alive,
    /// No progress, by design (outbox full and held back, clock not trusted yet, stopping).
    Waiting(String),
    /// No progress: the pipeline is stuck or the store cannot commit.
    Stuck(String),
}

impl Heartbeat {
    /// Sends a probe through the pipeline and waits for it up to `within`.
    pub async fn beat(&self, within: Duration) -> Beat {
        if self.outbox.commit_failing.load(Ordering::Relaxed) {
            return Beat::Stuck("store commits are failing".into());
        }
        let stalled: Vec<String> = self
            .devices
            .iter()
            .filter_map(|(id, st)| {
                let d = st.stalled_for()?;
                Some(format!("{id} for {}s", d.as_secs()))
            })
            .collect();
        if !stalled.is_empty() {
            return Beat::Stuck(format!(
                "pollers stalled, no poll ended: {}",
                stalled.join(", ")
            ));
        }
        let Some(tx) = self.src.upgrade() else {
            return Beat::Waiting("the pipeline is stopping".into());
        };
        let started = Instant::now();
        let (ack, answered) = oneshot::channel();
        let probe = SourceBatch {
            readings: Vec::new(),
            ack: Some(ack),
        };
        let sent = tokio::time::timeout(within, tx.send(probe)).await;
        drop(tx);
        let outcome = match sent {
            Ok(Err(_)) => return Beat::Waiting("the pipeline is stopping".into()),
            Err(_) => None,
            Ok(Ok(())) => {
                let rest = within.saturating_sub(started.elapsed());
                match tokio::time::timeout(rest, answered).await {
                    Ok(Ok(())) => return Beat::Alive,
                    Ok(Err(_)) => Some("the store writer dropped the probe"),
                    Err(_) => None,
                }
            }
        };
        if self.outbox.full.load(Ordering::Relaxed) {
            return Beat::Waiting(
                "outbox full: sources are held back until outputs deliver".into(),
            );
        }
        if !self.clock.observe().trusted {
            return Beat::Waiting("clock not trusted: readings are held".into());
        }
        Beat::Stuck(outcome.map(str::to_string).unwrap_or_else(|| {
            format!(
                "no progress: processing and the store writer did not pass a probe within {within:?}"
            )
        }))
    }
}
