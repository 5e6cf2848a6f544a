//! Types shared by the netd agent and its eBPF programs.
//!
//! Every map key and value is a `#[repr(C)]` plain-old-data struct defined
//! once here. Addresses are stored as `u32` holding the four address bytes in
//! network order (`u32::from_ne_bytes(addr.octets())`), exactly as a program
//! reads them out of a packet, so neither side ever swaps bytes.
#![no_std]

pub mod drop_reason;
pub mod events;
pub mod ipv6;
pub mod layout;
pub mod maps;
pub mod overlay;
pub mod programs;
pub mod proto;
pub mod routing;

pub use drop_reason::DropReason;
pub use events::*;
pub use ipv6::*;
pub use layout::{map_spec, MapSpec, MAPS};
pub use maps::*;
pub use overlay::*;
pub use proto::{mac_for_addr, tcp_flow_closed};
pub use routing::{Fallback, Settings, Shortcut};
