//! IPv6: map names, keys and values. Addresses are [`Addr6`]: the 16
//! address bytes in network order held as four `u32` words, exactly as a
//! program reads them out of a packet (the IPv4 rule, four times).
//!
//! An endpoint has IPv6 when it has an `ENDPOINT6` entry; its `ENDPOINTS`
//! entry (network id, flags, MAC) is required on every network, IPv6-only
//! ones included (with address 0).

/// An IPv6 address: the bytes in network order, as four words.
pub type Addr6 = [u32; 4];

/// The [`Addr6`] of an address's octets.
pub const fn addr6_from_octets(o: [u8; 16]) -> Addr6 {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The octets of an [`Addr6`].
pub const fn addr6_octets(a: Addr6) -> [u8; 16] {
    let (w0, w1, w2, w3) = (
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    );
    [
        w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3], w3[0],
        w3[1], w3[2], w3[3],
    ]
}

pub const MAP_NETWORKS6: &str = "NETWORKS6";
pub const MAP_ENDPOINT6: &str = "ENDPOINT6";
pub const MAP_ENDPOINT6_BY_IP: &str = "ENDPOINT6_BY_IP";
pub const MAP_HOST_ADDRS6: &str = "HOST_ADDRS6";
pub const MAP_UPLINKS6: &str = "UPLINKS6";
pub const MAP_CT6_OUT: &str = "CT6_OUT";
pub const MAP_CT6_IN: &str = "CT6_IN";
pub const MAP_CT6_LOCAL: &str = "CT6_LOCAL";
pub const MAP_FRAGMENTS6: &str = "FRAGMENTS6";
pub const MAP_PUBLISHED6: &str = "PUBLISHED6";

pub const MAP_SOCK_ORIGIN6: &str = "SOCK_ORIGIN6";

/// Extension headers the parser follows before it gives up on a packet
/// (counted as `ipv6-ext-headers`).
pub const MAX_EXT_HEADERS: usize = 8;

/// Value of `NETWORKS6`, an LPM trie keyed by the IPv6 subnet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkInfo6 {
    /// The network's datapath id (the same as its IPv4 entry's).
    pub net_id: u32,
    /// `NET_F_*` flags of the network.
    pub flags: u32,
    pub prefix_len: u32,
    pub _pad: u32,
    /// The IPv6 gateway (the bridge's address).
    pub gateway: Addr6,
}

/// Value of `ENDPOINT6`, keyed by the ifindex of the host end of the veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint6 {
    /// The container's IPv6 address on this network.
    pub ip: Addr6,
    /// The network's IPv6 gateway.
    pub gateway: Addr6,
    /// MAC of the bridge (the gateway's link address).
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Value of `ENDPOINT6_BY_IP`, keyed by a container's IPv6 address: where
/// to deliver a packet for it past the host stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointRef6 {
    /// Host end of the container's veth.
    pub ifindex: u32,
    /// MAC of the container's interface.
    pub mac: [u8; 6],
    /// MAC of the bridge.
    pub gateway_mac: [u8; 6],
}

/// Value of `UPLINKS6`, keyed by the uplink's ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uplink6 {
    /// Global IPv6 address masqueraded flows leave with (zero: none).
    pub addr: Addr6,
    /// First and last source port (host order) SNAT may allocate.
    pub port_min: u16,
    pub port_max: u16,
    pub _pad: u32,
}

/// An IPv6 flow tuple as seen in one direction (ports as in `CtKey`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey6 {
    pub saddr: Addr6,
    pub daddr: Addr6,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey6 {
    /// The tuple of the other direction.
    pub const fn reversed(&self) -> CtKey6 {
        CtKey6 {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Value of `CT6_OUT`, `CT6_IN` and `CT6_LOCAL`, as `CtEntry` for IPv4
/// (a `CT6_LOCAL` reply finds its client by address, `ENDPOINT6_BY_IP`,
/// and a hairpin's peer is `CT_F_HAIRPIN`: the reply's own source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry6 {
    pub last_seen_ns: u64,
    pub addr: Addr6,
    /// Network order.
    pub port: u16,
    /// `CT_F_*`.
    pub flags: u8,
    /// TCP flags seen in this direction.
    pub tcp_flags: u8,
    pub _pad: u32,
}

/// Key of `PUBLISHED6`: a host IPv6 address (`[0; 4]` = every host IPv6
/// address), a port (network order) and an IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PublishKey6 {
    pub addr: Addr6,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of `PUBLISHED6` (and of `SOCK_ORIGIN6`): a container's IPv6
/// address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishTarget6 {
    pub addr: Addr6,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

/// Key of `SOCK_ORIGIN6`: a socket and the target it was sent to, so
/// `recvmsg6` can show the published address the program rewrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOriginKey6 {
    pub cookie: u64,
    pub addr: Addr6,
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Key of `FRAGMENTS6`: one fragmented datagram arriving at an uplink,
/// sent by a container to (or from) a published port (as it reaches the
/// target: `way` [`crate::FRAG_PUBLISHED`]), or leaving by an uplink
/// ([`crate::FRAG_LEAVING`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey6 {
    pub saddr: Addr6,
    pub daddr: Addr6,
    /// Fragment header identification (network order).
    pub id: u32,
    pub proto: u8,
    /// [`crate::FRAG_LEAVING`], [`crate::FRAG_PUBLISHED`] or 0.
    pub way: u8,
    pub _pad: [u8; 2],
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::NetworkInfo6 {}
    unsafe impl aya::Pod for super::Endpoint6 {}
    unsafe impl aya::Pod for super::EndpointRef6 {}
    unsafe impl aya::Pod for super::Uplink6 {}
    unsafe impl aya::Pod for super::CtKey6 {}
    unsafe impl aya::Pod for super::CtEntry6 {}
    unsafe impl aya::Pod for super::FragKey6 {}
    unsafe impl aya::Pod for super::PublishKey6 {}
    unsafe impl aya::Pod for super::PublishTarget6 {}
    unsafe impl aya::Pod for super::SockOriginKey6 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octets_round_trip() {
        let o = [0xfd, 0, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        assert_eq!(addr6_octets(addr6_from_octets(o)), o);
        assert_eq!(addr6_from_octets(o)[0].to_ne_bytes(), [0xfd, 0, 0, 0xa]);
    }
}
