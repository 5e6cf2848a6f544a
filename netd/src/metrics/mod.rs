//! Prometheus metrics: the text format and the API latency histogram. The
//! agent's values are gathered by `agent::metrics` at scrape time.
mod exposition;
mod latency;
pub mod phases;

pub use exposition::{Exposition, Kind, CONTENT_TYPE};
pub use latency::{track, ApiLatency, API_LATENCY};
