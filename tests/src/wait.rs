//! Waiting for a condition, bounded: the one polling loop of the tests.
use std::time::{Duration, Instant};

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
pub fn try_wait_for<T>(
    limit: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`wait_for`] a condition that has nothing to say while it does not hold.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    wait_for(what, limit, || {
        cond().then_some(()).ok_or_else(|| "not yet".into())
    })
    .1
}
