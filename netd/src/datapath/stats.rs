//! Reading the datapath's counters and fill levels for `netd status`.
use anyhow::{anyhow, Result};
use aya::maps::PerCpuArray;
use netd_common::{DropReason, MAP_DROPS};
use serde::Serialize;

use super::Datapath;

#[derive(Debug, Serialize)]
pub struct DropCount {
    pub reason: &'static str,
    pub packets: u64,
}

impl Datapath {
    /// Drop counters summed over CPUs, one per reason.
    pub fn drop_counts(&self) -> Result<Vec<DropCount>> {
        let map = self
            .ebpf
            .map(MAP_DROPS)
            .ok_or_else(|| anyhow!("map {MAP_DROPS} missing"))?;
        let drops: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        DropReason::ALL
            .iter()
            .map(|r| {
                let per_cpu = drops.get(&(*r as u32), 0)?;
                Ok(DropCount {
                    reason: r.name(),
                    packets: per_cpu.iter().sum(),
                })
            })
            .collect()
    }
}
