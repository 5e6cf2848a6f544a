//! Header parsing: Ethernet, IPv4 and the L4 fields conntrack keys on
//! (IPv6 and its extension headers: `parse6`). Generic over [`Packet`],
//! so every hook shares it.
use aya_ebpf::programs::TcContext;
use netd_common::DropReason;

use crate::packet::Packet;
pub use crate::parse6::{parse_ipv6, Ipv6};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_MIN_HLEN: usize = 20;

/// What the L2/L3 parser found.
pub enum L3 {
    Ipv4(Ipv4),
    /// IPv6 with its extension header chain followed.
    Ipv6(Ipv6),
    /// A VLAN tag, in the frame or in the skb's offloaded tag.
    Vlan,
    /// Any other ethertype (ARP, ...): not policed by netd.
    Other,
    /// Too short or inconsistent to be trusted, and why.
    Invalid(DropReason),
}

/// The fields of an IPv4 header the programs use.
pub struct Ipv4 {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// Offset of the L4 header (honours IP options).
    pub l4_off: usize,
    /// A fragment other than the first: it carries no L4 header.
    pub later_fragment: bool,
    /// The first fragment of a fragmented datagram (more fragments follow).
    pub first_fragment: bool,
    /// IP identification (network order), what fragments share.
    pub id: u16,
}

/// Makes sure `len` bytes are in the linear part of the skb.
#[inline(always)]
fn ensure_linear(ctx: &TcContext, len: usize) -> bool {
    if ctx.data() + len <= ctx.data_end() {
        return true;
    }
    if ctx.pull_data(len as u32).is_err() {
        return false;
    }
    ctx.data() + len <= ctx.data_end()
}

/// L2/L3 of a packet at a TC hook (the skb may carry an offloaded VLAN tag).
#[inline(always)]
pub fn parse_l3(ctx: &TcContext) -> L3 {
    // SAFETY: reading a field of the context the kernel handed us.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        return L3::Vlan;
    }
    // The headers the programs rewrite in place stay linear.
    let _ = ensure_linear(ctx, ETH_HLEN + IPV4_MIN_HLEN);
    parse_frame(ctx)
}

/// L2/L3 of an Ethernet frame, at any hook.
#[inline(always)]
pub fn parse_frame<P: Packet>(p: &P) -> L3 {
    let Some(proto) = p.read::<[u8; 2]>(12) else {
        return L3::Invalid(DropReason::Malformed);
    };
    match u16::from_be_bytes(proto) {
        ETH_P_IP => {}
        ETH_P_IPV6 => return parse_ipv6(p),
        ETH_P_8021Q | ETH_P_8021AD => return L3::Vlan,
        _ => return L3::Other,
    }
    let Some(ip) = p.read::<[u8; IPV4_MIN_HLEN]>(ETH_HLEN) else {
        return L3::Invalid(DropReason::Malformed);
    };
    parse_ipv4_header(&ip, p.length().saturating_sub(ETH_HLEN))
}

pub use netd_common::proto::{
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// The L4 fields conntrack keys on.
pub enum L4 {
    /// TCP, UDP or SCTP ports (network order) and, for TCP, its flags byte.
    Ports {
        sport: u16,
        dport: u16,
        tcp_flags: u8,
    },
    /// ICMP echo request or reply with its identifier (network order).
    Echo { request: bool, id: u16 },
    /// An ICMP error quoting another packet.
    IcmpError,
    /// Anything else (other ICMP, other protocols, later fragments).
    Other,
}

#[inline(always)]
pub fn parse_l4<P: Packet>(p: &P, ip: &Ipv4) -> Option<L4> {
    if ip.later_fragment {
        return Some(L4::Other);
    }
    if ip.proto == IPPROTO_ICMP {
        let h: [u8; 8] = p.read(ip.l4_off)?;
        return Some(match h[0] {
            ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => L4::Echo {
                request: h[0] == ICMP_ECHO_REQUEST,
                id: u16::from_ne_bytes([h[4], h[5]]),
            },
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM => L4::IcmpError,
            _ => L4::Other,
        });
    }
    ports_at(p, ip.proto, ip.l4_off)
}

/// The ports of a TCP, UDP or SCTP header at `off`; `Other` for any other
/// protocol, `None` when the header is cut short.
#[inline(always)]
fn ports_at<P: Packet>(p: &P, proto: u8, off: usize) -> Option<L4> {
    match proto {
        IPPROTO_TCP => {
            let h: [u8; 14] = p.read(off)?;
            Some(L4::Ports {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                tcp_flags: h[13],
            })
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            let h: [u8; 4] = p.read(off)?;
            Some(L4::Ports {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                tcp_flags: 0,
            })
        }
        _ => Some(L4::Other),
    }
}

impl L4 {
    /// Ports of TCP, UDP and SCTP packets.
    #[inline(always)]
    pub fn ports(&self) -> Option<(u16, u16, u8)> {
        match *self {
            L4::Ports {
                sport,
                dport,
                tcp_flags,
            } => Some((sport, dport, tcp_flags)),
            _ => None,
        }
    }
}

/// Validates a fixed IPv4 header; `l3_len` is what the frame holds past L2.
#[inline(always)]
pub fn parse_ipv4_header(ip: &[u8; IPV4_MIN_HLEN], l3_len: usize) -> L3 {
    let version = ip[0] >> 4;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if version != 4 || ihl < IPV4_MIN_HLEN || total_len < ihl || total_len > l3_len {
        return L3::Invalid(DropReason::Malformed);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let frag_off = frag & 0x1fff;
    let more_fragments = frag & 0x2000 != 0;
    L3::Ipv4(Ipv4 {
        src: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
        proto: ip[9],
        l4_off: ETH_HLEN + ihl,
        later_fragment: frag_off != 0,
        first_fragment: frag_off == 0 && more_fragments,
        id: u16::from_ne_bytes([ip[4], ip[5]]),
    })
}
