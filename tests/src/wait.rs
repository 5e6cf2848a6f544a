//! Waiting for a condition, bounded: the one polling loop of the tests.
//!
//! ```ignore
//! // Panics after 10 s with the last complaint.
//! let (view, took) = wait_for("a2 to be gone", Duration::from_secs(10), || {
//!     bed.netd(&["container", "inspect", "a2"]).success().then(|| Err("still there".into())).unwrap_or(Ok(()))
//! });
//! wait_until("the agent to answer", Duration::from_secs(20), || bed.netd(&["status"]).success());
//! ```
use std::{
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

/// How often [`wait_for`] asks again.
pub const POLL: Duration = Duration::from_millis(100);

/// Asks `f` every [`POLL`] until it gives a value or `limit` passes, then
/// panics with `what` and its last complaint. Returns the value and how
/// long it took.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return (v, start.elapsed()),
            Err(e) if start.elapsed() > limit => {
                panic!("waited {limit:?} for {what}; still: {e}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`wait_for`] without the panic: the last complaint as the error.
pub fn try_wait_for<T>(limit: Duration, f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    poll(limit, POLL, f)
}

/// Asks `f` every `every` until it gives a value or `limit` passes.
fn poll<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// Asks `cond` every [`POLL`] until it holds or `limit` passes; whether it
/// held. For clean-up paths, which report rather than panic.
pub fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    try_wait_for(limit, || cond().then_some(()).ok_or_else(String::new)).is_ok()
}

/// Waits (at most `limit`, asking every 10 ms) for `child` to exit: its
/// status, or `None` if it still runs.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll(limit, Duration::from_millis(10), || {
        match child.try_wait() {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Err("running".into()),
            Err(e) => Err(e.to_string()),
        }
    })
    .ok()
}

/// [`wait_for`] a condition that has nothing to say while it does not hold.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    wait_for(what, limit, || {
        cond().then_some(()).ok_or_else(|| "not yet".into())
    })
    .1
}
