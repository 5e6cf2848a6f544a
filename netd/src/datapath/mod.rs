//! The eBPF datapath: the embedded object, its pins under `--bpffs`, the maps
//! the agent feeds, the shared filter blocks that carry the programs of
//! container veths, and the TCX links of uplinks.
//!
//! Pin layout (versioned, see `netd_common::MAP_LAYOUT_VERSION`):
//! `BPFFS/v1/maps/<MAP>`, `BPFFS/v1/progs/<program>`,
//! `BPFFS/v1/links/<ifname>_<program>` (uplinks and the overlay device;
//! container veths of netd before the filter blocks had theirs there too).
mod blocks;
mod bpffs;
mod conntrack;
mod ipv6;
mod layout;
mod loader;
mod observe;
pub mod overlay;
mod publish;
mod publish6;
mod routing;
mod sandbox;
mod sock;
mod stats;
mod uplink;

pub use blocks::{
    ifindex as blocks_ifindex, ifname as blocks_ifname, is_holder_row, Binding, EndpointBlocks,
};
pub use bpffs::ensure_bpffs;
pub use conntrack::{monotonic_ns, CtStats, CtTimeouts};
pub use ipv6::{addr6_key, addr6_of};
pub use loader::{
    addr_key, all_programs, ebpf_object, Datapath, PinLayout, ENDPOINT_PROGRAM_NAMES,
    FROM_CONTAINER, OVERLAY_IN, PROGRAMS, TO_CONTAINER, UPLINK_IN, UPLINK_OUT, UPLINK_XDP,
};
pub use observe::EventMaps;
pub use publish6::publish_key6;
pub use routing::{HostRouting, RoutingCounts};
pub use sandbox::{test_run, Run, Sandbox};
pub use sock::{netns_cookie, SOCK_PROGRAMS};
pub use stats::{DropCount, MapFill};
