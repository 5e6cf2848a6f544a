//! Host routing: the mode the programs run in (`SETTINGS`) and the
//! counters of what they delivered themselves and what they left to the
//! kernel (`ROUTING`).
use std::collections::HashSet;

use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, PerCpuArray};
use netd_common::{
    routing::{HOST_ROUTING_EBPF, HOST_ROUTING_KERNEL},
    Fallback, Settings, Shortcut, MAP_NO_SHORTCUT, MAP_ROUTING, MAP_SETTINGS,
};
use serde::Serialize;

use super::Datapath;

/// `netd daemon --host-routing`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HostRouting {
    /// The programs deliver packets themselves (redirect into the
    /// receiver's netns, fib lookup and redirect to the uplink), past the
    /// bridge and the host's netfilter hooks.
    #[default]
    Ebpf,
    /// The programs decide and translate; the bridge and the kernel's
    /// routing (and the host's firewall) forward.
    Kernel,
}

impl HostRouting {
    pub fn as_str(self) -> &'static str {
        match self {
            HostRouting::Ebpf => "ebpf",
            HostRouting::Kernel => "kernel",
        }
    }
}

/// Counters by name, summed over CPUs.
#[derive(Debug, Default, Serialize)]
pub struct RoutingCounts {
    pub shortcuts: Vec<(&'static str, u64)>,
    pub fallbacks: Vec<(&'static str, u64)>,
}

impl Datapath {
    /// Switches every program (the attached ones included: the map is
    /// shared) to `mode`; the next packet sees it.
    pub fn set_host_routing(&mut self, mode: HostRouting) -> Result<()> {
        let mut settings: Array<_, Settings> = Array::try_from(self.map_mut(MAP_SETTINGS)?)?;
        let host_routing = match mode {
            HostRouting::Ebpf => HOST_ROUTING_EBPF,
            HostRouting::Kernel => HOST_ROUTING_KERNEL,
        };
        let mut s = settings.get(&0, 0).unwrap_or_default();
        s.host_routing = host_routing;
        settings
            .set(0, s, 0)
            .context("failed to write the host routing mode to the datapath")
    }

    /// The mode the programs run in now.
    pub fn host_routing(&self) -> Result<HostRouting> {
        let map = self
            .ebpf
            .map(MAP_SETTINGS)
            .ok_or_else(|| anyhow!("map {MAP_SETTINGS} missing"))?;
        let settings: Array<_, Settings> = Array::try_from(map)?;
        Ok(match settings.get(&0, 0)?.host_routing {
            HOST_ROUTING_KERNEL => HostRouting::Kernel,
            _ => HostRouting::Ebpf,
        })
    }

    /// Makes `NO_SHORTCUT` list exactly `ifindexes` (bridges and other
    /// master devices that are no uplink).
    pub fn set_no_shortcut(&mut self, ifindexes: &HashSet<u32>) -> Result<()> {
        self.set_keys(MAP_NO_SHORTCUT, ifindexes)
            .context("failed to write the devices the fib shortcut leaves alone")
    }

    pub fn routing_counts(&self) -> Result<RoutingCounts> {
        let map = self
            .ebpf
            .map(MAP_ROUTING)
            .ok_or_else(|| anyhow!("map {MAP_ROUTING} missing"))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |slot: u32| -> Result<u64> { Ok(counters.get(&slot, 0)?.iter().sum()) };
        let mut out = RoutingCounts::default();
        for s in Shortcut::ALL {
            out.shortcuts.push((s.name(), sum(s as u32)?));
        }
        for f in Fallback::ALL {
            out.fallbacks.push((f.name(), sum(f as u32)?));
        }
        Ok(out)
    }
}
