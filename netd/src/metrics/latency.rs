//! API request latency, a histogram per (method, route) pattern. Routes are
//! axum's matched patterns (`/v1/containers/{name}`), so the label set
//! stays bounded whatever names clients use; unmatched paths share one.
use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

use super::exposition::{Exposition, Kind};

/// Upper bounds in seconds (Prometheus' default buckets).
pub const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Default)]
struct Series {
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; BOUNDS.len() + 1],
    sum: f64,
}

/// The agent process's API latency, shared by its routers (Unix socket
/// and `--metrics` TCP).
pub static API_LATENCY: std::sync::LazyLock<ApiLatency> =
    std::sync::LazyLock::new(ApiLatency::default);

#[derive(Default)]
pub struct ApiLatency {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl ApiLatency {
    pub fn observe(&self, method: &str, route: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = slot(&BOUNDS, secs);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series
            .entry((method.to_string(), route.to_string()))
            .or_default();
        s.buckets[slot] += 1;
        s.sum += secs;
    }

    pub fn expose(&self, e: &mut Exposition) {
        const NAME: &str = "netd_api_request_duration_seconds";
        e.family(
            NAME,
            "Time the agent took to answer API requests, by method and route.",
            Kind::Histogram,
        );
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, route), s) in series.iter() {
            e.histogram(
                NAME,
                &[("method", method), ("route", route)],
                &BOUNDS,
                &cumulative(&s.buckets),
                s.sum,
            );
        }
    }
}

/// The bucket of `secs` under `bounds` (one past the last: `+Inf`).
pub(super) fn slot(bounds: &[f64], secs: f64) -> usize {
    bounds
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(bounds.len())
}

/// Per-bucket counts made cumulative, as the exposition wants them.
pub(super) fn cumulative(buckets: &[u64]) -> Vec<u64> {
    let mut total = 0;
    buckets
        .iter()
        .map(|n| {
            total += n;
            total
        })
        .collect()
}

/// Middleware: times every request under its matched route.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    API_LATENCY.observe(&method, &route, start.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_in_the_count() {
        let l = ApiLatency::default();
        l.observe("GET", "/v1/status", Duration::from_millis(3));
        l.observe("GET", "/v1/status", Duration::from_millis(70));
        l.observe("GET", "/v1/status", Duration::from_secs(20));
        let mut e = Exposition::default();
        l.expose(&mut e);
        let text = e.finish();
        let b = "netd_api_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/status\"";
        assert!(text.contains(&format!("{b},le=\"0.005\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("{b},le=\"0.1\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{b},le=\"10\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{b},le=\"+Inf\"}} 3\n")), "{text}");
    }
}
