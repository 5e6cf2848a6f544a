//! Overlay networks across hosts: the VXLAN device, the networks it carries
//! (by VNI) and the containers on other hosts (remote endpoints).
//!
//! `net_id` is always the LOCAL datapath id of a network (each host numbers
//! its networks itself); the VNI is the cluster-wide name of an overlay
//! network.

/// `RemoteKey` -> `RemoteEndpoint`: containers of overlay networks on
/// other hosts.
pub const MAP_OVERLAY_REMOTES: &str = "OVERLAY_REMOTES";
/// VNI -> `OverlayNet`: which local network a received VNI belongs to.
pub const MAP_OVERLAY_VNIS: &str = "OVERLAY_VNIS";
/// `OVERLAY_CONFIG[0]`: the VXLAN device (`OverlayConfig`).
pub const MAP_OVERLAY_CONFIG: &str = "OVERLAY_CONFIG";

pub const MAX_REMOTE_ENDPOINTS: u32 = 65_536;
/// Overlay networks one host can carry.
pub const MAX_OVERLAY_NETWORKS: u32 = 4_096;

/// Default UDP port of the VXLAN device (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to a container's packet (outer IPv4 20, UDP 8, VXLAN 8,
/// inner Ethernet 14): an overlay network's MTU is the underlay's minus this.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The one VXLAN device (external / collect_md) of a host.
pub const VXLAN_DEVICE: &str = "netd-vxlan";
/// VNIs are 24 bits; 0 is not used.
pub const VNI_MAX: u32 = 0xFF_FFFF;
/// TTL of the outer header.
pub const TUNNEL_TTL: u8 = 64;

/// Key of `OVERLAY_REMOTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteKey {
    /// Local datapath id of the overlay network.
    pub net_id: u32,
    /// The container's address (network order bytes).
    pub addr: u32,
}

/// Value of `OVERLAY_REMOTES`: where a container on another host is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// Tunnel (advertise) address of the host it runs on (network order
    /// bytes).
    pub host: u32,
    /// VNI of the network.
    pub vni: u32,
    /// MAC of the container's interface (ARP answers, inner Ethernet
    /// destination).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `OVERLAY_VNIS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayNet {
    /// Local datapath id of the network the VNI carries.
    pub net_id: u32,
    pub _reserved: u32,
}

/// `OVERLAY_CONFIG[0]`; ifindex 0: no VXLAN device (not clustered).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayConfig {
    /// The VXLAN device packets for remote endpoints are redirected to.
    pub ifindex: u32,
    /// Outer source address (the advertise address, network order bytes).
    pub local: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::RemoteKey {}
    unsafe impl aya::Pod for super::RemoteEndpoint {}
    unsafe impl aya::Pod for super::OverlayNet {}
    unsafe impl aya::Pod for super::OverlayConfig {}
}
