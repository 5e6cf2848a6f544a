//! The maps the programs share with the agent, pinned by name so that they
//! outlive the agent (the agent chooses the pin directory).
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, PerCpuArray},
};
use netd_common::{
    drop_reason::DROP_REASON_SLOTS, Endpoint, NetworkInfo, MAX_ENDPOINTS, MAX_NETWORKS,
};

/// Host-side veth ifindex -> the endpoint behind it.
#[map(name = "ENDPOINTS")]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Subnet (LPM) -> the netd network it belongs to.
#[map(name = "NETWORKS")]
pub static NETWORKS: LpmTrie<u32, NetworkInfo> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// Per-CPU drop counters indexed by `DropReason`.
#[map(name = "DROPS")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_REASON_SLOTS, 0);
