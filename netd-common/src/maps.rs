//! Map names, sizes and the layout of their keys and values.

/// Bumped whenever a key or value layout below changes. Maps are pinned under
/// `BPFFS/v{MAP_LAYOUT_VERSION}/`, so an agent never reuses a pin of another
/// layout (the kernel does not type-check a reused pin).
pub const MAP_LAYOUT_VERSION: u32 = 1;

pub const MAP_ENDPOINTS: &str = "ENDPOINTS";
pub const MAP_ENDPOINT_BY_IP: &str = "ENDPOINT_BY_IP";
pub const MAP_NETWORKS: &str = "NETWORKS";
pub const MAP_DROPS: &str = "DROPS";
pub const MAP_UPLINKS: &str = "UPLINKS";
pub const MAP_CT_OUT: &str = "CT_OUT";
pub const MAP_CT_IN: &str = "CT_IN";

pub const MAP_PUBLISHED: &str = "PUBLISHED";
pub const MAP_HOST_ADDRS: &str = "HOST_ADDRS";
pub const MAP_CT_LOCAL: &str = "CT_LOCAL";
pub const MAP_SOCK_CONFIG: &str = "SOCK_CONFIG";
pub const MAP_SOCK_ORIGIN: &str = "SOCK_ORIGIN";
pub const MAP_FRAGMENTS: &str = "FRAGMENTS";
pub const MAP_SETTINGS: &str = "SETTINGS";
pub const MAP_ROUTING: &str = "ROUTING";
pub const MAP_NO_SHORTCUT: &str = "NO_SHORTCUT";
/// The programs hooks jump into by tail call (`programs::TAIL_*` slots).
pub const MAP_TAILS: &str = "TAILS";

pub const MAX_UPLINKS: u32 = 64;
pub const MAX_PUBLISHED: u32 = 65_536;
pub const MAX_HOST_ADDRS: u32 = 1_024;
/// Bridges (and other master devices) the fib shortcut leaves alone.
pub const MAX_NO_SHORTCUT: u32 = 1_024;
pub const MAX_SOCK_ORIGINS: u32 = 65_536;
pub const MAX_FRAGMENTED: u32 = 8_192;
/// Default capacity of each conntrack map (`--ct-size` overrides).
pub const DEFAULT_CT_SIZE: u32 = 65_536;

pub const MAX_ENDPOINTS: u32 = 65_536;
pub const MAX_NETWORKS: u32 = 4_096;

/// Network flag: traffic may not leave the subnet (except to the gateway).
pub const NET_F_INTERNAL: u32 = 1 << 0;
/// Network flag: containers on the network may talk to each other.
pub const NET_F_ICC: u32 = 1 << 1;
/// Network flag: egress to the world is masqueraded.
pub const NET_F_MASQUERADE: u32 = 1 << 2;
/// Network flag: an overlay network (spans hosts; its containers on other
/// hosts are in `OVERLAY_REMOTES`).
pub const NET_F_OVERLAY: u32 = 1 << 3;

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
    /// MAC of the container's interface (frames delivered past the bridge
    /// carry it).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `ENDPOINT_BY_IP`, keyed by a container address: where to
/// deliver a packet for it past the host stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointRef {
    /// Host end of the container's veth.
    pub ifindex: u32,
    /// Gateway of the network (its bridge has `02:42:` + this address).
    pub gateway: u32,
    /// MAC of the container's interface.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `UPLINKS`, keyed by the uplink's ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uplink {
    /// Primary IPv4 address masqueraded flows leave with (0: none yet).
    pub addr: u32,
    /// First and last source port (host order) SNAT may allocate.
    pub port_min: u16,
    pub port_max: u16,
}

/// A flow tuple as seen in one direction. For ICMP echo the identifier is
/// the source port of a request and the destination port of a reply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    /// Ports in network order, as in the packet.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The tuple of the other direction.
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Packets matching the entry are rewritten to `addr`/`port` (the source
/// on the way out, the destination on the way in).
pub const CT_F_SNAT: u8 = 1 << 0;
/// A reply has been seen (set on the `CT_IN` entry).
pub const CT_F_REPLIED: u8 = 1 << 1;
/// The flow reached a published port (DNAT), not a masqueraded one.
pub const CT_F_DNAT: u8 = 1 << 2;
/// `CT6_LOCAL` replies only: a hairpin (a container to its own published
/// port), whose source was rewritten to its gateway on the way in; the
/// reply goes back to the address it comes from (IPv4 keeps that address
/// in `CtEntry::peer`).
pub const CT_F_HAIRPIN: u8 = 1 << 3;

/// TCP flags remembered per direction (OR of what was seen).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Value of `CT_OUT` (key: the container's tuple leaving the uplink) and of
/// `CT_IN` (key: the reply tuple arriving at the uplink). `addr`/`port` is
/// what the packet is rewritten to: the NAT source for `CT_OUT`, the
/// container's address for `CT_IN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet.
    pub last_seen_ns: u64,
    pub addr: u32,
    /// Network order.
    pub port: u16,
    /// `CT_F_*`.
    pub flags: u8,
    /// TCP flags seen in this direction.
    pub tcp_flags: u8,
    /// Hairpin replies only: the container the reply goes back to (the
    /// destination was rewritten to its gateway on the way in).
    pub peer: u32,
    /// Replies of flows between containers: the host end of the client's
    /// veth, where the translated reply is redirected (its source is a host
    /// address, which the host stack would drop as martian).
    pub ifindex: u32,
}

/// Key of `FRAGMENTS`: one fragmented datagram, as its fragments carry it
/// (source, destination, IP id, protocol), arriving at an uplink (the
/// value: the destination its fragments get), leaving by one
/// ([`FRAG_LEAVING`]: the source they leave with), or reaching a published
/// port's target container through a host address ([`FRAG_PUBLISHED`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub saddr: u32,
    pub daddr: u32,
    pub id: u16,
    pub proto: u8,
    /// [`FRAG_LEAVING`], [`FRAG_PUBLISHED`] or 0.
    pub way: u8,
}

/// `FragKey::way` and `FragKey6::way` of a datagram a container sends out
/// of an uplink: its first fragment was translated by its ports, the later
/// ones (which carry none) leave with the source it got. 0: every other
/// entry (the layout of the pad byte this replaced).
pub const FRAG_LEAVING: u8 = 1;

/// `FragKey::way` and `FragKey6::way` of a datagram a container sends to a
/// published port through a host address, keyed as its fragments reach
/// the target (the source the target sees, the target's address; the
/// value: the host address dialled): the later fragments (which carry no
/// ports to find the flow by) cross networks by design as their first
/// did. `to_container` judges them when the kernel forwards them
/// (`--host-routing kernel`); eBPF host routing delivers them past it.
pub const FRAG_PUBLISHED: u8 = 2;

/// Key of `PUBLISHED`: a host address (0 = every host address), a port
/// (network order) and an IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PublishKey {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of `PUBLISHED`: where the published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishTarget {
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

/// `SOCK_CONFIG[0]`: what the socket programs need to know.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockConfig {
    /// Network namespace cookie of the agent: the socket programs act on
    /// sockets of this namespace only.
    pub netns_cookie: u64,
}

/// Key of `SOCK_ORIGIN`: a UDP socket and the target it was sent to, so
/// `recvmsg4` can show the published address the program rewrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOriginKey {
    pub cookie: u64,
    pub addr: u32,
    pub port: u16,
    pub _pad: u16,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::NetworkInfo {}
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::Uplink {}
    unsafe impl aya::Pod for super::EndpointRef {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::PublishKey {}
    unsafe impl aya::Pod for super::PublishTarget {}
    unsafe impl aya::Pod for super::SockConfig {}
    unsafe impl aya::Pod for super::SockOriginKey {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for crate::routing::Settings {}
}
