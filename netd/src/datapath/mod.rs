//! The eBPF datapath: the embedded object, its pins under `--bpffs`, the maps
//! the agent feeds, and the TCX links on container veths.
//!
//! Pin layout (versioned, see `netd_common::MAP_LAYOUT_VERSION`):
//! `BPFFS/v1/maps/<MAP>`, `BPFFS/v1/progs/<program>`,
//! `BPFFS/v1/links/<host ifname>_<program>`.
mod bpffs;
mod loader;
mod stats;

pub use bpffs::ensure_bpffs;
pub use loader::{addr_key, ebpf_object, Datapath, PinLayout, FROM_CONTAINER, TO_CONTAINER};
pub use stats::DropCount;
