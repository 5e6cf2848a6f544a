//! Packet rewrites for NAT with incremental checksum updates.
//!
//! The kernel helpers do the checksum arithmetic and respect the skb's
//! checksum state (CHECKSUM_PARTIAL from offloading senders only has the
//! pseudo-header folded into the L4 field), so the same code is right with
//! and without offload.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};

use netd_common::DropReason;

use crate::{
    parse::{Ipv4, ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    parse6::{Ipv6, IPPROTO_ICMPV6},
};

const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SRC_OFF: usize = ETH_HLEN + 12;
pub const IP_DST_OFF: usize = ETH_HLEN + 16;

/// A failed rewrite says why the packet is dropped.
pub type RewriteResult = Result<(), DropReason>;

/// Offset of the L4 checksum and the helper flags for updating it when an
/// address (pseudo-header) changes; `None` when there is no L4 checksum to
/// fix (later fragments, ICMP, other protocols).
#[inline(always)]
fn l4_csum(ip: &Ipv4) -> Option<(usize, u64)> {
    if ip.later_fragment {
        return None;
    }
    match ip.proto {
        IPPROTO_TCP => Some((ip.l4_off + 16, 0)),
        IPPROTO_UDP => Some((ip.l4_off + 6, BPF_F_MARK_MANGLED_0 as u64)),
        _ => None,
    }
}

/// Rewrites the source (`dst == false`) or destination address.
#[inline(always)]
pub fn rewrite_addr(ctx: &TcContext, ip: &Ipv4, dst: bool, old: u32, new: u32) -> RewriteResult {
    if let Some((off, flags)) = l4_csum(ip) {
        ctx.l4_csum_replace(
            off,
            old as u64,
            new as u64,
            flags | BPF_F_PSEUDO_HDR as u64 | 4,
        )
        .map_err(|_| DropReason::RewriteFailed)?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, old as u64, new as u64, 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    let off = if dst { IP_DST_OFF } else { IP_SRC_OFF };
    ctx.store(off, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Where the transport header of an IPv4 or IPv6 packet is: what the
/// port rewrite, the same for both families, needs.
pub trait Transport {
    fn proto(&self) -> u8;
    fn l4_off(&self) -> usize;
}

impl Transport for Ipv4 {
    #[inline(always)]
    fn proto(&self) -> u8 {
        self.proto
    }
    #[inline(always)]
    fn l4_off(&self) -> usize {
        self.l4_off
    }
}

impl Transport for Ipv6 {
    #[inline(always)]
    fn proto(&self) -> u8 {
        self.proto
    }
    #[inline(always)]
    fn l4_off(&self) -> usize {
        self.l4_off
    }
}

/// Rewrites the TCP/UDP source (`dst == false`) or destination port, or the
/// ICMP/ICMPv6 echo identifier (`dst` ignored). Values are in network
/// order. Ports are no part of the pseudo-header: the same for both
/// families.
#[inline(always)]
pub fn rewrite_port<T: Transport>(
    ctx: &TcContext,
    ip: &T,
    dst: bool,
    old: u16,
    new: u16,
) -> RewriteResult {
    let l4_off = ip.l4_off();
    let (field, csum_off, flags) = match ip.proto() {
        IPPROTO_TCP => (if dst { 2 } else { 0 }, l4_off + 16, 0),
        IPPROTO_UDP => (
            if dst { 2 } else { 0 },
            l4_off + 6,
            BPF_F_MARK_MANGLED_0 as u64,
        ),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (4, l4_off + 2, 0),
        _ => return Ok(()),
    };
    ctx.l4_csum_replace(csum_off, old as u64, new as u64, flags | 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(l4_off + field, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Where the packet quoted by an ICMP error sits.
pub struct Quoted {
    /// Offset of the quoted IP header.
    pub ip_off: usize,
    /// Offset of the quoted L4 header.
    pub l4_off: usize,
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// Quoted ports (network order); for a quoted echo, `sport` is the id.
    pub sport: u16,
    pub dport: u16,
}

#[inline(always)]
pub fn parse_quoted(ctx: &TcContext, ip: &Ipv4) -> Option<Quoted> {
    let ip_off = ip.l4_off + 8;
    let h: [u8; 20] = ctx.load(ip_off).ok()?;
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let l4_off = ip_off + ihl;
    let l4: [u8; 8] = ctx.load(l4_off).ok()?;
    let (sport, dport) = match h[9] {
        IPPROTO_TCP | IPPROTO_UDP => (
            u16::from_ne_bytes([l4[0], l4[1]]),
            u16::from_ne_bytes([l4[2], l4[3]]),
        ),
        IPPROTO_ICMP => (u16::from_ne_bytes([l4[4], l4[5]]), 0),
        _ => return None,
    };
    Some(Quoted {
        ip_off,
        l4_off,
        src: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_ne_bytes([h[16], h[17], h[18], h[19]]),
        proto: h[9],
        sport,
        dport,
    })
}

/// Reverse-translates the packet quoted by an ICMP error: its source
/// address and port become the container's. The outer ICMP checksum covers
/// the quoted bytes, so every change is folded into it too.
#[inline(always)]
pub fn rewrite_quoted_source(
    ctx: &TcContext,
    icmp_csum_off: usize,
    q: &Quoted,
    new_addr: u32,
    new_port: u16,
) -> RewriteResult {
    let qcsum_off = q.ip_off + 10;
    let old_qcsum: u16 = ctx.load(qcsum_off).map_err(|_| DropReason::Truncated)?;
    ctx.l3_csum_replace(qcsum_off, q.src as u64, new_addr as u64, 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    let new_qcsum: u16 = ctx.load(qcsum_off).map_err(|_| DropReason::Truncated)?;
    ctx.store(q.ip_off + 12, &new_addr, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.l4_csum_replace(icmp_csum_off, q.src as u64, new_addr as u64, 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.l4_csum_replace(icmp_csum_off, old_qcsum as u64, new_qcsum as u64, 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    let port_off = if q.proto == IPPROTO_ICMP {
        q.l4_off + 4
    } else {
        q.l4_off
    };
    ctx.store(port_off, &new_port, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.l4_csum_replace(icmp_csum_off, q.sport as u64, new_port as u64, 2)
        .map_err(|_| DropReason::RewriteFailed)
}
