//! Host routing: whether the programs deliver what they decided themselves
//! (`bpf_redirect_peer`, `bpf_fib_lookup` + `bpf_redirect`/`bpf_redirect_neigh`)
//! or hand it to the kernel's bridge and routing path, and the counters of
//! both outcomes. The `ROUTING` map is indexed by [`Shortcut`] and
//! [`Fallback`] values (disjoint ranges).

/// `Settings::host_routing`: the programs forward (the default, and what
/// a zeroed map means).
pub const HOST_ROUTING_EBPF: u32 = 0;
/// `Settings::host_routing`: the programs decide, the stack forwards.
pub const HOST_ROUTING_KERNEL: u32 = 1;

/// `SETTINGS[0]`: datapath-wide settings the agent writes at start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `HOST_ROUTING_*`.
    pub host_routing: u32,
    pub _reserved: u32,
}

/// Slots of the per-CPU `ROUTING` counter array.
pub const ROUTING_SLOTS: u32 = 32;

/// A packet the programs delivered themselves.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// Container to container on one network, into the receiver's netns.
    PeerSameNetwork = 1,
    /// Routed into a container's netns (from an uplink, or a published
    /// port of another container), TTL decremented.
    PeerRouted = 2,
    /// Container to the world: fib lookup, resolved neighbour, redirect.
    FibRedirect = 3,
    /// Container to the world with the neighbour left to the kernel
    /// (`bpf_redirect_neigh` with the fib's next hop).
    NeighRedirect = 4,
    /// Broadcast or multicast cloned to the network's endpoints.
    GroupClone = 5,
    /// To a container on another host: into the VXLAN tunnel.
    OverlayEncap = 6,
    /// From the VXLAN tunnel into a local container.
    OverlayDecap = 7,
    /// An ARP request for a container on another host, answered.
    OverlayArpReply = 8,
    /// An IPv6 neighbour solicitation for the gateway or a container of
    /// the sender's network, answered at its veth.
    NdReply = 9,
}

impl Shortcut {
    pub const ALL: [Shortcut; 9] = [
        Shortcut::PeerSameNetwork,
        Shortcut::PeerRouted,
        Shortcut::FibRedirect,
        Shortcut::NeighRedirect,
        Shortcut::GroupClone,
        Shortcut::OverlayEncap,
        Shortcut::OverlayDecap,
        Shortcut::OverlayArpReply,
        Shortcut::NdReply,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Shortcut::PeerSameNetwork => "peer-same-network",
            Shortcut::PeerRouted => "peer-routed",
            Shortcut::FibRedirect => "fib-redirect",
            Shortcut::NeighRedirect => "fib-redirect-neigh",
            Shortcut::GroupClone => "group-clone",
            Shortcut::OverlayEncap => "overlay-encap",
            Shortcut::OverlayDecap => "overlay-decap",
            Shortcut::OverlayArpReply => "overlay-arp-reply",
            Shortcut::NdReply => "nd-reply",
        }
    }
}

/// Why a packet the programs let through was left to the kernel's path
/// (the bridge, or routing and the host's firewall) in eBPF host routing.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// ARP, IPv6 and other non-IPv4 frames (the bridge carries them).
    NotIpv4 = 16,
    /// IPv4 broadcast or multicast the clone path does not serve.
    GroupAddress = 17,
    /// A routed packet with IP options (the stack processes them).
    IpOptions = 18,
    /// No packet any more: every fragment is delivered as unfragmented
    /// packets are (later fragments follow their first by source,
    /// destination and id). The counter stays (always 0) so that `netd
    /// status` keeps the fallbacks it has always listed.
    Fragment = 19,
    /// A routed packet whose TTL runs out here (the stack answers with
    /// time exceeded).
    TtlExpired = 20,
    /// No neighbour and no next hop the kernel could resolve.
    NoNeighbour = 21,
    /// The route is a blackhole, unreachable or prohibit (the stack drops
    /// or answers with the ICMP error the route asks for).
    RouteRefused = 22,
    /// Larger than the next hop's MTU (the stack sends "fragmentation
    /// needed" or fragments).
    FragNeeded = 23,
    /// The fib does not forward it: no route, or a local address.
    NotForwarded = 24,
    /// The route leaves by a bridge (another runtime's, such as docker0)
    /// or another master device that is no uplink: what is routed onto it
    /// stays the host firewall's to judge.
    ToBridge = 25,
    /// A destination in a netd subnet with no endpoint on this host.
    NoEndpoint = 26,
    /// The fib lookup failed otherwise (forwarding disabled, unsupported
    /// encapsulation, no source address).
    FibError = 27,
}

impl Fallback {
    pub const ALL: [Fallback; 12] = [
        Fallback::NotIpv4,
        Fallback::GroupAddress,
        Fallback::IpOptions,
        Fallback::Fragment,
        Fallback::TtlExpired,
        Fallback::NoNeighbour,
        Fallback::RouteRefused,
        Fallback::FragNeeded,
        Fallback::NotForwarded,
        Fallback::ToBridge,
        Fallback::NoEndpoint,
        Fallback::FibError,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Fallback::NotIpv4 => "not-ipv4",
            Fallback::GroupAddress => "broadcast-multicast",
            Fallback::IpOptions => "ip-options",
            Fallback::Fragment => "fragment",
            Fallback::TtlExpired => "ttl-expired",
            Fallback::NoNeighbour => "no-neighbour",
            Fallback::RouteRefused => "route-refused",
            Fallback::FragNeeded => "frag-needed",
            Fallback::NotForwarded => "not-forwarded",
            Fallback::ToBridge => "to-bridge",
            Fallback::NoEndpoint => "no-endpoint",
            Fallback::FibError => "fib-error",
        }
    }
}
