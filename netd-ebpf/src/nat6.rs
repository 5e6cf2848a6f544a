//! NAT66 packet rewrites: IPv6 addresses with the transport checksum
//! updated for the pseudo-header (TCP, UDP and ICMPv6 all cover it; IPv6
//! itself has no header checksum), and the packet an ICMPv6 error quotes,
//! translated back with its own transport checksum and the error's. Port
//! rewrites are the family-independent `nat::rewrite_port`.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netd_common::{Addr6, DropReason};

use crate::{
    csum::{diff16, diff_addr6, update},
    nat::RewriteResult,
    packet::Packet,
    parse::{ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP},
    parse6::{Ipv6, IPPROTO_ICMPV6, IPV6_HLEN},
};

pub const IP6_SRC_OFF: usize = ETH_HLEN + 8;
pub const IP6_DST_OFF: usize = ETH_HLEN + 24;

/// `bpf_l4_csum_replace`: the packet is IPv6 (a pseudo-header change
/// leaves `skb->csum` of a CHECKSUM_COMPLETE packet alone: no IP header
/// checksum absorbs it).
const BPF_F_IPV6: u64 = 1 << 7;

/// Offset of the transport checksum of an IPv6 packet and the flags for
/// updating it; `None` without one to fix (later fragments, other
/// protocols).
#[inline(always)]
fn l4_csum6(ip: &Ipv6) -> Option<(usize, u64)> {
    if ip.later_fragment {
        return None;
    }
    match ip.proto {
        IPPROTO_TCP => Some((ip.l4_off + 16, 0)),
        IPPROTO_UDP => Some((ip.l4_off + 6, BPF_F_MARK_MANGLED_0 as u64)),
        IPPROTO_ICMPV6 => Some((ip.l4_off + 2, 0)),
        _ => None,
    }
}

/// Rewrites the source (`dst == false`) or destination address.
#[inline(always)]
pub fn rewrite_addr6(
    ctx: &TcContext,
    ip: &Ipv6,
    dst: bool,
    old: Addr6,
    new: Addr6,
) -> RewriteResult {
    if let Some((off, flags)) = l4_csum6(ip) {
        // Size 0: `to` is the difference to fold in.
        ctx.l4_csum_replace(
            off,
            0,
            u64::from(diff_addr6(old, new)),
            flags | BPF_F_PSEUDO_HDR as u64 | BPF_F_IPV6,
        )
        .map_err(|_| DropReason::RewriteFailed)?;
    }
    let off = if dst { IP6_DST_OFF } else { IP6_SRC_OFF };
    ctx.store(off, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// The packet an ICMPv6 error quotes (as it left: its source is the
/// error's destination).
pub struct Quoted6 {
    /// Offset of the quoted IPv6 header.
    pub ip_off: usize,
    /// Offset of the quoted transport header.
    pub l4_off: usize,
    pub src: Addr6,
    pub dst: Addr6,
    pub proto: u8,
    /// Quoted ports (network order); for a quoted echo, `sport` is the id.
    pub sport: u16,
    pub dport: u16,
}

/// The quoted packet of the ICMPv6 error `ip`: TCP, UDP or an echo right
/// after the quoted fixed header (a quote with extension headers is not
/// followed).
#[inline(always)]
pub fn parse_quoted6<P: Packet>(p: &P, ip: &Ipv6) -> Option<Quoted6> {
    let ip_off = ip.l4_off + 8;
    // Version .. hop limit, then the addresses as the words they are.
    let h: [u8; 8] = p.read(ip_off)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let src: Addr6 = p.read(ip_off + 8)?;
    let dst: Addr6 = p.read(ip_off + 24)?;
    let l4_off = ip_off + IPV6_HLEN;
    let l4: [u16; 3] = p.read(l4_off)?;
    let (sport, dport) = match h[6] {
        IPPROTO_TCP | IPPROTO_UDP => (l4[0], l4[1]),
        IPPROTO_ICMPV6 => (l4[2], 0),
        _ => return None,
    };
    Some(Quoted6 {
        ip_off,
        l4_off,
        src,
        dst,
        proto: h[6],
        sport,
        dport,
    })
}

/// Translates the quoted packet of ICMPv6 error `ip` back: its source
/// address and port (echo id) become the container's, its transport
/// checksum (when quoted) follows, and the error's checksum, which covers
/// the quote, takes every change.
#[inline(always)]
pub fn rewrite_quoted_source6(
    ctx: &TcContext,
    ip: &Ipv6,
    q: &Quoted6,
    new_addr: Addr6,
    new_port: u16,
) -> RewriteResult {
    let change = diff_addr6(q.src, new_addr) + diff16(q.sport, new_port);
    let mut payload = change;
    ctx.store(q.ip_off + 8, &new_addr, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    let (port_off, csum_off) = match q.proto {
        IPPROTO_TCP => (q.l4_off, q.l4_off + 16),
        IPPROTO_UDP => (q.l4_off, q.l4_off + 6),
        _ => (q.l4_off + 4, q.l4_off + 2),
    };
    ctx.store(port_off, &new_port, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    if csum_off + 2 <= ip.end {
        let old: u16 = ctx.load(csum_off).map_err(|_| DropReason::Truncated)?;
        // A UDP checksum of 0 (none; invalid over IPv6) stays as it is.
        if !(q.proto == IPPROTO_UDP && old == 0) {
            let mut new = update(old, change);
            if q.proto == IPPROTO_UDP && new == 0 {
                new = 0xffff;
            }
            ctx.store(csum_off, &new, 0)
                .map_err(|_| DropReason::RewriteFailed)?;
            payload += diff16(old, new);
        }
    }
    ctx.l4_csum_replace(ip.l4_off + 2, 0, u64::from(payload), 0)
        .map_err(|_| DropReason::RewriteFailed)
}
