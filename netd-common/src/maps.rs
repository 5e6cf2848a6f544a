//! Map names, sizes and the layout of their keys and values.

/// Bumped whenever a key or value layout below changes. Maps are pinned under
/// `BPFFS/v{MAP_LAYOUT_VERSION}/`, so an agent never reuses a pin of another
/// layout (the kernel does not type-check a reused pin).
pub const MAP_LAYOUT_VERSION: u32 = 1;

pub const MAP_ENDPOINTS: &str = "ENDPOINTS";
pub const MAP_NETWORKS: &str = "NETWORKS";
pub const MAP_DROPS: &str = "DROPS";

pub const MAX_ENDPOINTS: u32 = 65_536;
pub const MAX_NETWORKS: u32 = 4_096;

/// Network flag: traffic may not leave the subnet (except to the gateway).
pub const NET_F_INTERNAL: u32 = 1 << 0;
/// Network flag: containers on the network may talk to each other.
pub const NET_F_ICC: u32 = 1 << 1;
/// Network flag: egress to the world is masqueraded.
pub const NET_F_MASQUERADE: u32 = 1 << 2;

/// Value of `NETWORKS`, an LPM trie keyed by the subnet (prefix, address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Agent-assigned datapath id, never 0.
    pub net_id: u32,
    /// Gateway address (network order bytes).
    pub gateway: u32,
    /// `NET_F_*` flags.
    pub flags: u32,
    pub prefix_len: u32,
}

/// Value of `ENDPOINTS`, keyed by the ifindex of the host end of the veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's address on this network (network order bytes).
    pub ip: u32,
    /// `NetworkInfo::net_id` of the network the veth is on.
    pub net_id: u32,
    /// Copy of the network's `NET_F_*` flags, so one lookup serves policy.
    pub net_flags: u32,
    /// Gateway address of the network.
    pub gateway: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::NetworkInfo {}
    unsafe impl aya::Pod for super::Endpoint {}
}
