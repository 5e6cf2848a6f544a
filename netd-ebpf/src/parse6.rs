//! IPv6: the fixed header and the extension header chain, followed up to
//! `MAX_EXT_HEADERS` headers. What cannot be trusted is dropped with its
//! reason: a header the packet ends inside (`truncated`), a longer chain,
//! a routing header with segments left (its final destination is not the
//! one policy judged) or a first fragment whose upper-layer header is not
//! in it (RFC 7112) (`ipv6-ext-headers`), an inconsistent fixed header
//! (`malformed`).
use netd_common::{Addr6, DropReason, MAX_EXT_HEADERS};

use crate::{
    packet::Packet,
    parse::{ETH_HLEN, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, L3},
};

pub const IPV6_HLEN: usize = 40;
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub use netd_common::proto::IPPROTO_ICMPV6;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_MOBILITY: u8 = 135;
pub const IPPROTO_HIP: u8 = 139;
pub const IPPROTO_SHIM6: u8 = 140;

pub const ICMP6_DEST_UNREACH: u8 = 1;
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;
pub const ICMP6_TIME_EXCEEDED: u8 = 3;
pub const ICMP6_PARAM_PROBLEM: u8 = 4;
pub const ICMP6_ECHO_REQUEST: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;

/// The fields of an IPv6 packet the programs use.
#[derive(Default)]
pub struct Ipv6 {
    pub src: Addr6,
    pub dst: Addr6,
    /// The upper-layer protocol the chain ends in.
    pub proto: u8,
    /// Offset of the upper-layer header.
    pub l4_off: usize,
    pub hop_limit: u8,
    /// A fragment other than the first: it carries no upper-layer header.
    pub later_fragment: bool,
    /// The first fragment of a fragmented datagram.
    pub first_fragment: bool,
    /// Fragment identification (network order), 0 when not fragmented.
    pub frag_id: u32,
    /// Offset just past the IPv6 payload (Ethernet padding excluded).
    pub end: usize,
}

/// What one step of the chain found.
enum Step {
    /// Another header follows at this offset.
    Next(u8, usize),
    /// The upper-layer header (or a fragment's payload) starts here.
    Done,
}

/// Parses the IPv6 header at `ETH_HLEN` and its extension headers.
#[inline(always)]
pub fn parse_ipv6<P: Packet>(p: &P) -> L3 {
    match parse(p) {
        Ok(ip) => L3::Ipv6(ip),
        Err(reason) => L3::Invalid(reason),
    }
}

#[inline(always)]
fn parse<P: Packet>(p: &P) -> Result<Ipv6, DropReason> {
    let h: [u8; IPV6_HLEN] = p.read(ETH_HLEN).ok_or(DropReason::Truncated)?;
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if h[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let l3_len = p.length().saturating_sub(ETH_HLEN);
    if IPV6_HLEN + payload_len > l3_len {
        return Err(DropReason::Truncated);
    }
    // Payload length 0: a jumbogram or a BIG TCP aggregate, as long as the
    // packet.
    let payload_len = if payload_len == 0 {
        l3_len - IPV6_HLEN
    } else {
        payload_len
    };
    let mut ip = Ipv6 {
        src: addr6_at(&h, 8),
        dst: addr6_at(&h, 24),
        proto: h[6],
        l4_off: ETH_HLEN + IPV6_HLEN,
        hop_limit: h[7],
        later_fragment: false,
        first_fragment: false,
        frag_id: 0,
        end: ETH_HLEN + IPV6_HLEN + payload_len,
    };
    for _ in 0..MAX_EXT_HEADERS {
        match step(p, &mut ip)? {
            Step::Done => return Ok(ip),
            Step::Next(next, off) => {
                if off > ip.end {
                    return Err(cut_short(&ip));
                }
                ip.proto = next;
                ip.l4_off = off;
            }
        }
    }
    match step_kind(ip.proto) {
        Kind::Upper => Ok(ip),
        _ => Err(DropReason::Ipv6ExtHeaders),
    }
}

/// The address at byte `at` of an IPv6 header.
#[inline(always)]
pub fn addr6_at(h: &[u8; IPV6_HLEN], at: usize) -> Addr6 {
    let w = |i: usize| u32::from_ne_bytes([h[at + i], h[at + i + 1], h[at + i + 2], h[at + i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

enum Kind {
    /// Next header in byte 0, length in 8-octet units (minus one) in byte 1.
    Options,
    Fragment,
    /// Length in 4-octet units (minus two).
    Auth,
    Upper,
}

#[inline(always)]
fn step_kind(proto: u8) -> Kind {
    match proto {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MOBILITY | IPPROTO_HIP
        | IPPROTO_SHIM6 => Kind::Options,
        IPPROTO_FRAGMENT => Kind::Fragment,
        IPPROTO_AH => Kind::Auth,
        _ => Kind::Upper,
    }
}

/// One extension header at `ip.l4_off` (of type `ip.proto`).
#[inline(always)]
fn step<P: Packet>(p: &P, ip: &mut Ipv6) -> Result<Step, DropReason> {
    let off = ip.l4_off;
    match step_kind(ip.proto) {
        Kind::Upper => Ok(Step::Done),
        Kind::Options => {
            let h: [u8; 4] = p.read(off).ok_or(DropReason::Truncated)?;
            if ip.proto == IPPROTO_ROUTING && h[3] != 0 {
                return Err(DropReason::Ipv6ExtHeaders);
            }
            Ok(Step::Next(h[0], off + (usize::from(h[1]) + 1) * 8))
        }
        Kind::Auth => {
            let h: [u8; 2] = p.read(off).ok_or(DropReason::Truncated)?;
            Ok(Step::Next(h[0], off + (usize::from(h[1]) + 2) * 4))
        }
        Kind::Fragment => {
            let h: [u8; 8] = p.read(off).ok_or(DropReason::Truncated)?;
            let field = u16::from_be_bytes([h[2], h[3]]);
            let offset = field >> 3;
            let more = field & 1 != 0;
            ip.frag_id = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            if offset != 0 {
                // Its payload continues some other fragment's: no header
                // of the chain can be read in it.
                ip.later_fragment = true;
                ip.proto = h[0];
                ip.l4_off = off + 8;
                return Ok(Step::Done);
            }
            // An atomic fragment (offset 0, no more) is a whole datagram.
            ip.first_fragment = more;
            Ok(Step::Next(h[0], off + 8))
        }
    }
}

/// Why a chain that runs past the packet is refused: a first fragment
/// must hold the whole chain (RFC 7112), anything else was cut short.
#[inline(always)]
fn cut_short(ip: &Ipv6) -> DropReason {
    if ip.first_fragment {
        DropReason::Ipv6ExtHeaders
    } else {
        DropReason::Truncated
    }
}

/// What the upper-layer header of an IPv6 packet is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind6 {
    /// TCP, UDP or SCTP: ports (and TCP flags) set.
    Ports,
    /// ICMPv6 echo request or reply: `sport` holds the identifier.
    EchoRequest,
    EchoReply,
    /// An ICMPv6 error quoting another packet.
    Error,
    /// Other ICMPv6 (`icmp_type` set), other protocols, later fragments.
    Other,
    /// Cut short: `reason` says why the packet is refused.
    Refused,
}

/// The upper-layer fields of an IPv6 packet. Every field has a value
/// whatever the kind: an enum variant without ports would leave registers
/// undefined, and the compiler may copy those, which the verifier refuses.
#[derive(Clone, Copy)]
pub struct Upper6 {
    pub kind: Kind6,
    pub icmp_type: u8,
    pub tcp_flags: u8,
    pub sport: u16,
    pub dport: u16,
    /// `Truncated`, or `Ipv6ExtHeaders` for a first fragment without its
    /// upper-layer header (RFC 7112); meaningful for `Refused` only.
    pub first_fragment: bool,
}

impl Upper6 {
    #[inline(always)]
    fn of(kind: Kind6) -> Upper6 {
        Upper6 {
            kind,
            icmp_type: 0,
            tcp_flags: 0,
            sport: 0,
            dport: 0,
            first_fragment: false,
        }
    }

    /// Why a `Refused` packet is dropped.
    #[inline(always)]
    pub fn reason(&self) -> DropReason {
        if self.first_fragment {
            DropReason::Ipv6ExtHeaders
        } else {
            DropReason::Truncated
        }
    }

    /// `Err` with the reason for a refused packet.
    #[inline(always)]
    pub fn check(&self) -> Result<(), DropReason> {
        if self.kind == Kind6::Refused {
            Err(self.reason())
        } else {
            Ok(())
        }
    }

    /// The ICMPv6 type, for ICMPv6 packets with a header.
    #[inline(always)]
    pub fn icmp(&self, ip: &Ipv6) -> Option<u8> {
        (ip.proto == IPPROTO_ICMPV6 && !ip.later_fragment && self.kind != Kind6::Refused)
            .then_some(self.icmp_type)
    }
}

/// The upper-layer fields of an IPv6 packet, as `parse_l4` gives them for
/// IPv4 (ICMPv6 echo and errors included).
#[inline(always)]
pub fn parse_l4_6<P: Packet>(p: &P, ip: &Ipv6) -> Upper6 {
    if ip.later_fragment || ip.proto == IPPROTO_NONE || ip.proto == IPPROTO_ESP {
        return Upper6::of(Kind6::Other);
    }
    let refused = Upper6 {
        first_fragment: ip.first_fragment,
        ..Upper6::of(Kind6::Refused)
    };
    let need = match ip.proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_ICMPV6 => 8,
        _ => 0,
    };
    if ip.l4_off + need > ip.end {
        return refused;
    }
    match ip.proto {
        IPPROTO_ICMPV6 => {
            let Some(h) = p.read::<[u8; 8]>(ip.l4_off) else {
                return refused;
            };
            let kind = match h[0] {
                ICMP6_ECHO_REQUEST => Kind6::EchoRequest,
                ICMP6_ECHO_REPLY => Kind6::EchoReply,
                ICMP6_DEST_UNREACH | ICMP6_PACKET_TOO_BIG | ICMP6_TIME_EXCEEDED
                | ICMP6_PARAM_PROBLEM => Kind6::Error,
                _ => Kind6::Other,
            };
            Upper6 {
                icmp_type: h[0],
                sport: u16::from_ne_bytes([h[4], h[5]]),
                ..Upper6::of(kind)
            }
        }
        IPPROTO_TCP => {
            let Some(h) = p.read::<[u8; 14]>(ip.l4_off) else {
                return refused;
            };
            Upper6 {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                tcp_flags: h[13],
                ..Upper6::of(Kind6::Ports)
            }
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            let Some(h) = p.read::<[u8; 4]>(ip.l4_off) else {
                return refused;
            };
            Upper6 {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                ..Upper6::of(Kind6::Ports)
            }
        }
        _ => Upper6::of(Kind6::Other),
    }
}
