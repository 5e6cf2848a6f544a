//! Fragments of translated datagrams. Only the first fragment carries
//! ports, so the translation it got is remembered by (source, destination,
//! IP id, protocol) and applied to the fragments that follow (their
//! address only: they have no L4 header). A later fragment that overtakes
//! its first is not translated. IPv4 datagrams arriving at an uplink use
//! `FRAGMENTS`; IPv6 ones (arriving at an uplink, or sent by a container
//! to or from a published port) `FRAGMENTS6`.
use aya_ebpf::{macros::map, maps::LruHashMap, programs::TcContext};
use netd_common::{Addr6, DropReason, FragKey, FragKey6, MAX_FRAGMENTED};

use crate::{maps::FRAGMENTS6, nat::rewrite_addr, parse::Ipv4, parse6::Ipv6};

/// First fragment seen -> the destination address it was translated to.
#[map(name = "FRAGMENTS")]
static FRAGMENTS: LruHashMap<FragKey, u32> = LruHashMap::pinned(MAX_FRAGMENTED, 0);

#[inline(always)]
fn frag_key(ip: &Ipv4) -> FragKey {
    FragKey {
        saddr: ip.src,
        daddr: ip.dst,
        id: ip.id,
        proto: ip.proto,
        _pad: 0,
    }
}

/// Called when the destination of `ip` (as received) becomes `new_dst`.
#[inline(always)]
pub fn remember_first(ip: &Ipv4, new_dst: u32) {
    if ip.first_fragment {
        let _ = FRAGMENTS.insert(&frag_key(ip), &new_dst, 0);
    }
}

/// Translates a later fragment like its first; false when its first was
/// not translated (or not seen).
#[inline(always)]
pub fn translate_later(ctx: &TcContext, ip: &Ipv4) -> Result<bool, DropReason> {
    let Some(new_dst) = (unsafe { FRAGMENTS.get(&frag_key(ip)) }).copied() else {
        return Ok(false);
    };
    rewrite_addr(ctx, ip, true, ip.dst, new_dst)?;
    Ok(true)
}

#[inline(always)]
fn frag_key6(ip: &Ipv6) -> FragKey6 {
    FragKey6 {
        saddr: ip.src,
        daddr: ip.dst,
        id: ip.frag_id,
        proto: ip.proto,
        _pad: [0; 3],
    }
}

/// A first IPv6 fragment translated (or let in) with `addr`: its later
/// fragments (which carry no ports) follow it.
#[inline(always)]
pub fn remember_first6(ip: &Ipv6, addr: Addr6) {
    if ip.first_fragment {
        let _ = FRAGMENTS6.insert(&frag_key6(ip), &addr, 0);
    }
}

/// What the first fragment of later IPv6 fragment `ip` was remembered
/// with, if it was.
#[inline(always)]
pub fn first_of6(ip: &Ipv6) -> Option<Addr6> {
    // SAFETY: the value lives in the map.
    unsafe { FRAGMENTS6.get(&frag_key6(ip)) }.copied()
}
