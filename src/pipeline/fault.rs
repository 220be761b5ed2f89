//! Faults on demand, for the tests of task supervision only: a pipeline task made to panic while
//! the real binary runs. The hook exists in debug builds only (`cfg(debug_assertions)`, which the
//! integration tests run); a release build, which is what the packages ship, has no such code and
//! ignores the variable.
//!
//! `EGW_FAULT_PANIC=TASK:after=DURATION[:times=N]`, several separated by `,`: the task named TASK
//! (as `/readyz` and the log name it, e.g. `output:influxdb.local`, `source:mqtt`, `processing`)
//! panics DURATION after it started, and again after each restart, N times in all (default 1).
//!
//! `EGW_FAULT_HANG=TASK:after=DURATION`, same form: the task stops making progress DURATION
//! after it started, without failing or ending (it is no longer polled, as if it awaited
//! something that never comes), until the gateway stops. A poller is named by each of its
//! devices, `source:modbus:DEVICE`; it hangs for every device of its line.

use futures_util::future::BoxFuture;

/// `fut`, made to panic as `EGW_FAULT_PANIC` asks for the task `name` (debug builds only).
#[cfg(debug_assertions)]
pub fn inject(name: &str, fut: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
    use futures_util::FutureExt as _;
    use std::sync::atomic::Ordering;

    let Some(fault) = faults("EGW_FAULT_PANIC").iter().find(|f| f.task == name) else {
        return fut;
    };
    let left = fault
        .times
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    if left.is_err() {
        return fut;
    }
    let after = fault.after;
    let name = name.to_string();
    async move {
        tokio::select! {
            _ = fut => {}
            _ = tokio::time::sleep(after) => {
                tracing::warn!(task = %name, "EGW_FAULT_PANIC: making the task panic (debug build)");
                panic!("fault injected by EGW_FAULT_PANIC after {after:?}");
            }
        }
    }
    .boxed()
}

/// `fut` as it is: release builds have no fault hook.
#[cfg(not(debug_assertions))]
pub fn inject(_name: &str, fut: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
    fut
}

/// `fut`, made to hang as `EGW_FAULT_HANG` asks for any of the task names `names` (debug builds
/// only): after the delay it is no longer polled, nor dropped, until `stop`.
#[cfg(debug_assertions)]
pub fn hang(
    names: &[String],
    stop: tokio_util::sync::CancellationToken,
    fut: BoxFuture<'static, ()>,
) -> BoxFuture<'static, ()> {
    use futures_util::FutureExt as _;

    let Some(fault) = faults("EGW_FAULT_HANG")
        .iter()
        .find(|f| names.contains(&f.task))
    else {
        return fut;
    };
    let (after, name) = (fault.after, fault.task.clone());
    async move {
        let mut fut = fut;
        tokio::select! {
            _ = &mut fut => return,
            _ = tokio::time::sleep(after) => {}
        }
        tracing::warn!(task = %name, "EGW_FAULT_HANG: the task hangs from now on (debug build)");
        stop.cancelled().await;
    }
    .boxed()
}

/// `fut` as it is: release builds have no fault hook.
#[cfg(not(debug_assertions))]
pub fn hang(
    _names: &[String],
    _stop: tokio_util::sync::CancellationToken,
    fut: BoxFuture<'static, ()>,
) -> BoxFuture<'static, ()> {
    fut
}

#[cfg(debug_assertions)]
#[derive(Debug)]
struct Fault {
    task: String,
    after: std::time::Duration,
    times: std::sync::atomic::AtomicU32,
}

/// The faults asked for in the variable `var` (`EGW_FAULT_PANIC` or `EGW_FAULT_HANG`), read
/// once per process.
#[cfg(debug_assertions)]
fn faults(var: &'static str) -> &'static [Fault] {
    use std::sync::OnceLock;
    static PANIC: OnceLock<Vec<Fault>> = OnceLock::new();
    static HANG: OnceLock<Vec<Fault>> = OnceLock::new();
    let cell = if var == "EGW_FAULT_HANG" {
        &HANG
    } else {
        &PANIC
    };
    cell.get_or_init(|| match std::env::var(var) {
        Ok(spec) => parse(&spec).unwrap_or_else(|e| {
            tracing::error!("{var} ignored: {e}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    })
}

#[cfg(debug_assertions)]
fn parse(spec: &str) -> Result<Vec<Fault>, String> {
    let mut out = Vec::new();
    for one in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // The task name may contain ':' (`output:influxdb.local`): options are the
        // `key=value` parts at the end.
        let mut parts: Vec<&str> = one.split(':').collect();
        let mut after = None;
        let mut times = 1u32;
        while let Some(last) = parts.last().copied() {
            let Some((k, v)) = last.split_once('=') else {
                break;
            };
            match k {
                "after" => {
                    after = Some(humantime::parse_duration(v).map_err(|e| format!("{one}: {e}"))?)
                }
                "times" => times = v.parse().map_err(|e| format!("{one}: times: {e}"))?,
                _ => return Err(format!("{one}: unknown option {k}")),
            }
            parts.pop();
        }
        let task = parts.join(":");
        if task.is_empty() {
            return Err(format!("{one}: no task name"));
        }
        out.push(Fault {
            task,
            after: after.ok_or_else(|| format!("{one}: after=DURATION is missing"))?,
            times: std::sync::atomic::AtomicU32::new(times),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn a_spec_names_the_task_its_delay_and_how_often() {
        let f = parse("output:influxdb.local:after=2s:times=3, processing:after=150ms").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].task, "output:influxdb.local");
        assert_eq!(f[0].after, Duration::from_secs(2));
        assert_eq!(f[0].times.load(Ordering::Relaxed), 3);
        assert_eq!(f[1].task, "processing");
        assert_eq!(f[1].times.load(Ordering::Relaxed), 1);
        assert!(parse("processing").is_err());
        assert!(parse("after=1s").is_err());
        assert!(parse("processing:after=soon").is_err());
        assert!(parse("processing:after=1s:every=2").is_err());
    }
}
