//! Why a program dropped a packet. The value indexes the `DROPS` counter map.

/// Number of slots in the `DROPS` map; reasons past the defined ones are
/// reserved for later features (conntrack, NAT, uplink filters).
pub const DROP_REASON_SLOTS: u32 = 32;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A header was cut short or inconsistent (bad IHL, total length).
    Malformed = 1,
    /// A container sent an 802.1Q/802.1ad tagged frame.
    VlanTagged = 2,
    /// A packet on a veth that no endpoint owns.
    UnknownEndpoint = 3,
    /// The source address is not the endpoint's own.
    Spoofed = 4,
    /// Source and destination are on different networks.
    Isolation = 5,
    /// Container-to-container traffic on a network with icc disabled.
    Icc = 6,
    /// Traffic leaving an internal network's subnet.
    Internal = 7,
    /// No free SNAT port for the destination.
    NatExhausted = 8,
    /// From beyond the uplink to a container address, and not a reply.
    NotAReply = 9,
    /// A conntrack entry could not be written.
    CtInsert = 10,
    /// A VXLAN packet whose VNI is no overlay network of this host.
    OverlayUnknownVni = 11,
    /// A VXLAN packet whose inner source is no remote endpoint of its
    /// network behind its outer source address.
    OverlayUnknownSource = 12,
    /// A VXLAN packet whose inner destination is no local container of its
    /// network.
    OverlayNoEndpoint = 13,
    /// A VXLAN packet that carries no IPv4 (ARP is answered at the sender,
    /// IPv6 is not carried across hosts).
    OverlayNotIpv4 = 14,
    /// For a remote endpoint, but no VXLAN device is set up or the kernel
    /// refused the tunnel key.
    OverlayNoDevice = 15,
    /// A header was cut short: the packet ends inside it.
    Truncated = 16,
    /// An IPv6 extension header chain longer than `MAX_EXT_HEADERS`, a
    /// routing header with segments left, or a first fragment without its
    /// upper-layer header.
    Ipv6ExtHeaders = 17,
    /// IPv6 leaving the link from an endpoint without an IPv6 address.
    NoIpv6 = 18,
    /// A router advertisement or redirect sent by a container.
    RouterMessage = 19,
    /// A NAT or forwarding rewrite of the packet failed.
    RewriteFailed = 20,
}

impl DropReason {
    pub const ALL: [DropReason; 20] = [
        DropReason::Malformed,
        DropReason::VlanTagged,
        DropReason::UnknownEndpoint,
        DropReason::Spoofed,
        DropReason::Isolation,
        DropReason::Icc,
        DropReason::Internal,
        DropReason::NatExhausted,
        DropReason::NotAReply,
        DropReason::CtInsert,
        DropReason::OverlayUnknownVni,
        DropReason::OverlayUnknownSource,
        DropReason::OverlayNoEndpoint,
        DropReason::OverlayNotIpv4,
        DropReason::OverlayNoDevice,
        DropReason::Truncated,
        DropReason::Ipv6ExtHeaders,
        DropReason::NoIpv6,
        DropReason::RouterMessage,
        DropReason::RewriteFailed,
    ];

    /// Stable name shown by `netd status`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::VlanTagged => "vlan-tagged",
            DropReason::UnknownEndpoint => "unknown-endpoint",
            DropReason::Spoofed => "spoofed-source",
            DropReason::Isolation => "network-isolation",
            DropReason::Icc => "icc-disabled",
            DropReason::Internal => "internal-network",
            DropReason::NatExhausted => "snat-ports-exhausted",
            DropReason::NotAReply => "not-a-reply",
            DropReason::CtInsert => "ct-insert-failed",
            DropReason::OverlayUnknownVni => "overlay-unknown-vni",
            DropReason::OverlayUnknownSource => "overlay-unknown-source",
            DropReason::OverlayNoEndpoint => "overlay-no-endpoint",
            DropReason::OverlayNotIpv4 => "overlay-not-ipv4",
            DropReason::OverlayNoDevice => "overlay-no-device",
            DropReason::Truncated => "truncated",
            DropReason::Ipv6ExtHeaders => "ipv6-ext-headers",
            DropReason::NoIpv6 => "ipv6-not-enabled",
            DropReason::RouterMessage => "nd-router-message",
            DropReason::RewriteFailed => "rewrite-failed",
        }
    }
}
