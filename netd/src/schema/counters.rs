//! Live traffic counters of an endpoint or a network.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CountersView {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Drop reason → packets (reasons that counted none are left out).
    pub drops: BTreeMap<String, u64>,
}

impl CountersView {
    /// Packets dropped for any reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}
