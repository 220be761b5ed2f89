//! Supervision of the pipeline's tasks: a task that panics is logged, counted
//! (`task_panics`) and named in `/readyz` (503 while it is down).
//!
//! A task that can be built again from its settings (the outputs and notifiers, which deliver
//! from the store by cursor, and the sources and services that keep nothing of their own: the
//! MQTT source, whose broker delivers again what was not acknowledged, the accounting service,
//! the indicators publisher) is restarted in the process after a pause that doubles with each
//! panic: 1 s, 2 s, 4 s (±20 %), counted in `task_restarts`. A task that panics
//! [`CRASH_LOOP_PANICS`] times within [`CRASH_WINDOW`] is in a crash loop: it is not restarted
//! again, and the gateway exits non-zero for the service manager to restart the whole process.
//! So does a task that cannot be built again alone: the processing stage (its channels die with
//! it) and the Modbus, DL/T 645 / CJ/T 188 and OPC UA pollers (started as one group).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fault;

/// Panics of one task within [`CRASH_WINDOW`] that make a crash loop (not restarted again).
pub const CRASH_LOOP_PANICS: usize = 4;
/// The window in which [`CRASH_LOOP_PANICS`] panics are a crash loop.
pub const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// The pause before the first restart; it doubles with each panic within [`CRASH_WINDOW`].
pub const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between attempts to build a task again that fail.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(60);

/// When a task is restarted and when it is given up.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub first_pause: Duration,
    pub crash_loop_panics: usize,
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// [`FIRST_RESTART_PAUSE`], [`CRASH_LOOP_PANICS`] within [`CRASH_WINDOW`].
    fn default() -> Self {
        RestartPolicy {
            first_pause: FIRST_RESTART_PAUSE,
            crash_loop_panics: CRASH_LOOP_PANICS,
            window: CRASH_WINDOW,
        }
    }
}
/// Panic messages kept for [`TaskHealth::panicked`].
const KEEP_PANICS: usize = 100;

/// Builds a task (again) from its settings: the future to run, or why it cannot be built.
pub type Build = Box<dyn FnMut() -> anyhow::Result<BoxFuture<'static, ()>> + Send>;

/// The tasks of a pipeline that panicked, are down now, or died for good.
#[derive(Debug, Default)]
pub struct TaskHealth {
    pub panics: AtomicU64,
    /// Tasks started again in the process after a panic.
    pub restarts: AtomicU64,
    state: Mutex<State>,
    /// Woken when a task dies for good (`run` then exits non-zero).
    pub died: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The last panics, oldest first: `task: message`.
    panicked: VecDeque<String>,
    down: BTreeMap<String, Down>,
}

/// A task that is not running because it panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The task's name (`output:influxdb.local`, `source:mqtt`, `processing`…).
    pub task: String,
    /// The panic's message.
    pub panic: String,
    /// `Some(n)`: restart number n is due; `None`: not restarted (the gateway exits).
    pub restart: Option<u64>,
}

impl TaskHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tasks down now, by name.
    pub fn down(&self) -> Vec<Down> {
        self.state().down.values().cloned().collect()
    }

    /// The tasks that died for good (`task: message`): the gateway exits non-zero.
    pub fn dead(&self) -> Vec<String> {
        self.state()
            .down
            .values()
            .filter(|d| d.restart.is_none())
            .map(|d| format!("{}: {}", d.task, d.panic))
            .collect()
    }

    /// The last panics (`task: message`), restarted or not.
    pub fn panicked(&self) -> Vec<String> {
        self.state().panicked.iter().cloned().collect()
    }

    fn record_panic(&self, task: &str, msg: &str) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state();
        if s.panicked.len() == KEEP_PANICS {
            s.panicked.pop_front();
        }
        s.panicked.push_back(format!("{task}: {msg}"));
    }

    fn set_down(&self, task: &str, panic: &str, restart: Option<u64>) {
        self.state().down.insert(
            task.to_string(),
            Down {
                task: task.to_string(),
                panic: panic.to_string(),
                restart,
            },
        );
        if restart.is_none() {
            self.died.notify_one();
        }
    }

    fn set_up(&self, task: &str) {
        self.state().down.remove(task);
    }
}

fn panic_message(e: tokio::task::JoinError) -> Option<String> {
    if !e.is_panic() {
        return None;
    }
    let p = e.into_panic();
    Some(
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
    )
}

/// Spawns `fut` as the task `name` (with the fault hook of debug builds, [`fault`]).
pub fn spawn(name: &str, fut: BoxFuture<'static, ()>) -> JoinHandle<()> {
    tokio::spawn(fault::inject(name, fut))
}

/// Watches a task that cannot be built again alone: when it panics, the panic is logged,
/// counted and the task named dead in `health`, which wakes `run` (it exits non-zero).
pub fn supervise(name: &str, health: &Arc<TaskHealth>, task: JoinHandle<()>) -> JoinHandle<()> {
    let health = health.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = task.await {
            if let Some(msg) = panic_message(e) {
                health.record_panic(&name, &msg);
                tracing::error!(task = %name, "a pipeline task panicked: {msg}; it cannot be restarted alone");
                health.set_down(&name, &msg, None);
            }
        }
    })
}

/// Builds the task `name` and runs it; when it panics, builds and runs it again after a pause
/// (see the module's notes), until `stop` is cancelled or it panicked [`CRASH_LOOP_PANICS`]
/// times within [`CRASH_WINDOW`]. A first build that fails is the caller's error. The returned
/// handle ends when the task ends without a panic or is given up; `build` (and whatever it
/// holds, such as a channel's sender) is dropped then.
pub fn supervise_restarting(
    name: String,
    health: &Arc<TaskHealth>,
    stop: CancellationToken,
    build: Build,
) -> anyhow::Result<JoinHandle<()>> {
    supervise_with(name, health, stop, build, RestartPolicy::default())
}

/// [`supervise_restarting`] with its own pauses and crash-loop limit.
pub fn supervise_with(
    name: String,
    health: &Arc<TaskHealth>,
    stop: CancellationToken,
    mut build: Build,
    policy: RestartPolicy,
) -> anyhow::Result<JoinHandle<()>> {
    let first = build()?;
    let health = health.clone();
    Ok(tokio::spawn(async move {
        let mut fut = first;
        let mut panics: VecDeque<Instant> = VecDeque::new();
        let mut jitter = crate::backoff::Backoff::new();
        loop {
            let Err(e) = spawn(&name, fut).await else {
                return;
            };
            let Some(msg) = panic_message(e) else {
                return;
            };
            health.record_panic(&name, &msg);
            let now = Instant::now();
            while panics
                .front()
                .is_some_and(|t| now.duration_since(*t) >= policy.window)
            {
                panics.pop_front();
            }
            panics.push_back(now);
            if stop.is_cancelled() {
                tracing::error!(task = %name, "a pipeline task panicked while stopping: {msg}");
                health.set_down(&name, &msg, None);
                return;
            }
            if panics.len() >= policy.crash_loop_panics {
                let window = humantime::format_duration(policy.window);
                tracing::error!(
                    task = %name,
                    panics = panics.len(),
                    "a pipeline task panicked: {msg}; {} panics within {window}: a crash loop, not restarted again",
                    panics.len()
                );
                health.set_down(
                    &name,
                    &format!("{msg} ({} panics within {window})", panics.len()),
                    None,
                );
                return;
            }
            // This task's restart within the window: 1, 2, 3…
            let restart = panics.len() as u64;
            let doublings = (panics.len() - 1).min(16) as u32;
            let mut pause = (policy.first_pause * 2u32.pow(doublings))
                .mul_f64(jitter.jitter())
                .min(MAX_RESTART_PAUSE);
            tracing::error!(
                task = %name,
                pause_ms = pause.as_millis() as u64,
                "a pipeline task panicked: {msg}; restarting it in {pause:?}"
            );
            health.set_down(&name, &msg, Some(restart));
            fut = loop {
                tokio::select! {
                    _ = stop.cancelled() => {
                        health.set_up(&name);
                        return;
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
                match build() {
                    Ok(f) => break f,
                    Err(e) => {
                        pause = (pause * 2).min(MAX_RESTART_PAUSE);
                        tracing::error!(task = %name, "the task cannot be built again ({e:#}); next attempt in {pause:?}");
                    }
                }
            };
            health.restarts.fetch_add(1, Ordering::Relaxed);
            health.set_up(&name);
            tracing::warn!(task = %name, restart, "pipeline task restarted");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_panicking_task_is_logged_counted_named_and_wakes_the_service() {
        let health = Arc::new(TaskHealth::default());
        let fine = supervise("output", &health, tokio::spawn(async {}));
        fine.await.unwrap();
        assert!(health.dead().is_empty());
        let waiter = {
            let h = health.clone();
            tokio::spawn(async move { h.died.notified().await })
        };
        let task = supervise(
            "processing",
            &health,
            tokio::spawn(async { panic!("attempt to add with overflow") }),
        );
        task.await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(health.panics.load(Ordering::Relaxed), 1);
        assert_eq!(health.dead(), ["processing: attempt to add with overflow"]);
    }

    /// A supervised task that panics on its first `fail` runs, then runs until stopped.
    struct Flaky {
        health: Arc<TaskHealth>,
        stop: CancellationToken,
        runs: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    fn flaky(name: &str, fail: usize, policy: RestartPolicy) -> Flaky {
        let health = Arc::new(TaskHealth::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (r, s) = (runs.clone(), stop.clone());
        let build: Build = Box::new(move || {
            let run = r.fetch_add(1, Ordering::SeqCst);
            let stop = s.clone();
            Ok(async move {
                if run < fail {
                    panic!("run {run} failed");
                }
                stop.cancelled().await;
            }
            .boxed())
        });
        let task = supervise_with(name.into(), &health, stop.clone(), build, policy).unwrap();
        Flaky {
            health,
            stop,
            runs,
            task,
        }
    }

    /// Pauses of 100 ms, 200 ms…, 4 panics within a minute are a crash loop.
    const QUICK: RestartPolicy = RestartPolicy {
        first_pause: Duration::from_millis(100),
        crash_loop_panics: 4,
        window: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn a_restartable_task_is_down_until_built_again_after_a_growing_pause() {
        let t0 = Instant::now();
        let Flaky {
            health,
            stop,
            runs,
            task,
        } = flaky("output:x", 2, QUICK);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let down = health.down();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].task, "output:x");
        assert_eq!(down[0].panic, "run 0 failed");
        assert_eq!(down[0].restart, Some(1));
        assert!(health.dead().is_empty(), "restarting is not dead");
        // 100 ms, then 200 ms (±20 %): built again after both pauses, not before.
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(240),
            "{:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(health.down().is_empty());
        assert_eq!(health.panics.load(Ordering::Relaxed), 2);
        assert_eq!(health.restarts.load(Ordering::Relaxed), 2);
        assert_eq!(
            health.panicked(),
            ["output:x: run 0 failed", "output:x: run 1 failed"]
        );
        stop.cancel();
        task.await.unwrap();
        assert!(health.dead().is_empty());
    }

    #[tokio::test]
    async fn a_crash_loop_is_given_up_and_wakes_the_service() {
        let f = flaky("source:mqtt", usize::MAX, QUICK);
        tokio::time::timeout(Duration::from_secs(10), f.health.died.notified())
            .await
            .unwrap();
        f.task.await.unwrap();
        assert_eq!(f.runs.load(Ordering::SeqCst), 4);
        assert_eq!(f.health.restarts.load(Ordering::Relaxed), 3);
        assert_eq!(
            f.health.dead(),
            ["source:mqtt: run 3 failed (4 panics within 1m)"]
        );
    }

    #[tokio::test]
    async fn a_stop_during_the_pause_ends_the_supervisor_without_a_restart() {
        // The default policy: a first pause of 1 s (±20 %).
        let f = flaky("output:y", 1, RestartPolicy::default());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(f.health.down().len(), 1);
        f.stop.cancel();
        f.task.await.unwrap();
        assert_eq!(f.runs.load(Ordering::SeqCst), 1);
        assert!(f.health.down().is_empty());
        assert_eq!(f.health.restarts.load(Ordering::Relaxed), 0);
    }
}
