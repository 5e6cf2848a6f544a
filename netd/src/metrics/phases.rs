//! Where a `container add` spends its time: a histogram per phase
//! (`netd_container_add_phase_seconds{phase=...}`) and, at debug level,
//! one log line per add with every phase in milliseconds.
//!
//! The add runs inside [`timed`]; the steps call [`lap`] as they finish
//! one. A lap outside a timed add (a connect, a reconcile) is a no-op, so
//! shared steps (the veth, the maps) can mark their phases unconditionally.
use std::{
    cell::RefCell,
    collections::BTreeMap,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::exposition::{Exposition, Kind};

/// Upper bounds in seconds: the phases are sub-millisecond to tens of ms.
pub const BOUNDS: [f64; 12] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone, Default)]
struct Series {
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; BOUNDS.len() + 1],
    sum: f64,
}

/// Phase times of every add since the agent started.
#[derive(Default)]
pub struct PhaseLatency {
    series: Mutex<BTreeMap<&'static str, Series>>,
}

/// The agent process's add phases.
pub static ADD_PHASES: std::sync::LazyLock<PhaseLatency> =
    std::sync::LazyLock::new(PhaseLatency::default);

impl PhaseLatency {
    pub fn observe(&self, phase: &'static str, took: Duration) {
        let slot = super::latency::slot(&BOUNDS, took.as_secs_f64());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.entry(phase).or_default();
        s.buckets[slot] += 1;
        s.sum += took.as_secs_f64();
    }

    pub fn expose(&self, e: &mut Exposition) {
        const NAME: &str = "netd_container_add_phase_seconds";
        e.family(
            NAME,
            "Time the phases of `container add` took (plan: checks and claims under the state; \
             netns: opening the container's netns; veth: the pair on the bridge and in the \
             container; configure: addresses, routes and links up inside it; maps: the \
             endpoint in the datapath; attach: the veth bound to the endpoint programs; up: \
             the host end up; ports: published ports; store: the durable commit; commit: the \
             state updated).",
            Kind::Histogram,
        );
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (phase, s) in series.iter() {
            let cumulative = super::latency::cumulative(&s.buckets);
            e.histogram(NAME, &[("phase", phase)], &BOUNDS, &cumulative, s.sum);
        }
    }
}

/// The laps of the add running on this task.
struct Laps {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

tokio::task_local! {
    static LAPS: RefCell<Laps>;
}

/// Ends the current phase of the timed add on this task (no-op elsewhere).
pub fn lap(phase: &'static str) {
    let _ = LAPS.try_with(|l| {
        let mut l = l.borrow_mut();
        let now = Instant::now();
        let took = now - l.last;
        l.last = now;
        l.done.push((phase, took));
    });
}

/// Runs an add with its phases timed: recorded in [`ADD_PHASES`] when it
/// succeeds, logged at debug level either way.
pub async fn timed<T, E>(what: &str, add: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let start = Instant::now();
    let laps = RefCell::new(Laps {
        last: start,
        done: Vec::new(),
    });
    let (result, laps) = LAPS
        .scope(laps, async {
            let r = add.await;
            let laps = LAPS.with(|l| std::mem::take(&mut l.borrow_mut().done));
            (r, laps)
        })
        .await;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let shown: Vec<String> = laps
            .iter()
            .map(|(p, d)| format!("{p}={:.2}", d.as_secs_f64() * 1000.0))
            .collect();
        tracing::debug!(
            container = what,
            ok = result.is_ok(),
            total_ms = format!("{:.2}", start.elapsed().as_secs_f64() * 1000.0),
            phases_ms = %shown.join(" "),
            "container add timed"
        );
    }
    if result.is_ok() {
        // A phase visited twice (two endpoints) counts once, summed.
        let mut summed: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for (p, d) in laps {
            *summed.entry(p).or_default() += d;
        }
        for (p, d) in summed {
            ADD_PHASES.observe(p, d);
        }
        ADD_PHASES.observe("total", start.elapsed());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn laps_inside_a_timed_add_are_recorded_and_outside_ignored() {
        lap("outside");
        let r: Result<u32, ()> = timed("c1", async {
            lap("plan");
            tokio::time::sleep(Duration::from_millis(2)).await;
            lap("veth");
            lap("veth");
            Ok(7)
        })
        .await;
        assert_eq!(r, Ok(7));
        let mut e = Exposition::default();
        ADD_PHASES.expose(&mut e);
        let text = e.finish();
        let b = "netd_container_add_phase_seconds_bucket{phase=";
        assert!(
            text.contains(&format!("{b}\"veth\",le=\"+Inf\"}}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{b}\"total\",le=\"+Inf\"}}")),
            "{text}"
        );
        assert!(!text.contains("outside"), "{text}");
        // The veth phase (two laps, one sample) took the 2 ms sleep.
        let veth_sum = text
            .lines()
            .find(|l| l.starts_with("netd_container_add_phase_seconds_sum{phase=\"veth\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap();
        assert!(veth_sum >= 0.002, "{text}");
    }
}
