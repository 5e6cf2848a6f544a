//! Fragments of translated datagrams. Only the first fragment carries
//! ports, so the translation it got is remembered by (source, destination,
//! IP id, protocol, way) and applied to the fragments that follow (their
//! address only: they have no L4 header). IPv4 datagrams use `FRAGMENTS`,
//! IPv6 ones `FRAGMENTS6`: arriving at an uplink (the destination their
//! fragments get), leaving by one (`FRAG_LEAVING`: the source they leave
//! with), and sent by a container to or from a published port through a
//! host address (the target, or the published address a reply leaves as;
//! `FRAG_PUBLISHED`: the datagram as its target receives it, whose later
//! fragments `to_container` lets cross networks as it let their first).
//!
//! A later fragment that overtakes its first finds no entry: it is not
//! translated (the callers drop it if it is addressed to a container, or
//! leave it to the host, whose own it may be). Entries are never deleted
//! (a reordered later fragment may still follow the last one): the next
//! first fragment of the same key replaces one, the LRU evicts the oldest
//! beyond `MAX_FRAGMENTED`.
use aya_ebpf::{macros::map, maps::LruHashMap, programs::TcContext};
use netd_common::{
    Addr6, DropReason, FragKey, FragKey6, FRAG_LEAVING, FRAG_PUBLISHED, MAX_FRAGMENTED,
};

use crate::{maps::FRAGMENTS6, nat::rewrite_addr, parse::Ipv4, parse6::Ipv6};

/// First fragment seen -> the address it was translated to.
#[map(name = "FRAGMENTS")]
static FRAGMENTS: LruHashMap<FragKey, u32> = LruHashMap::pinned(MAX_FRAGMENTED, 0);

#[inline(always)]
fn frag_key(ip: &Ipv4, way: u8) -> FragKey {
    frag_key_of(ip, (ip.src, ip.dst), way)
}

/// The key of datagram `ip` were its addresses `(src, dst)`.
#[inline(always)]
fn frag_key_of(ip: &Ipv4, (saddr, daddr): (u32, u32), way: u8) -> FragKey {
    FragKey {
        saddr,
        daddr,
        id: ip.id,
        proto: ip.proto,
        way,
    }
}

/// Called when the destination of `ip` (as received) becomes `new_dst`
/// (`ip.dst` itself for a datagram let in untranslated).
#[inline(always)]
pub fn remember_first(ip: &Ipv4, new_dst: u32) {
    if ip.first_fragment {
        let _ = FRAGMENTS.insert(&frag_key(ip, 0), &new_dst, 0);
    }
}

/// Translates a later fragment like its first: the destination it has
/// now, `None` when its first was not let in (or not seen).
#[inline(always)]
pub fn translate_later(ctx: &TcContext, ip: &Ipv4) -> Result<Option<u32>, DropReason> {
    let Some(new_dst) = first_of(ip) else {
        return Ok(None);
    };
    if new_dst != ip.dst {
        rewrite_addr(ctx, ip, true, ip.dst, new_dst)?;
    }
    Ok(Some(new_dst))
}

/// What the first fragment of later fragment `ip` was remembered with
/// ([`remember_first`]), if it was.
#[inline(always)]
pub fn first_of(ip: &Ipv4) -> Option<u32> {
    // SAFETY: the value lives in the map.
    unsafe { FRAGMENTS.get(&frag_key(ip, 0)) }.copied()
}

/// A first fragment leaving by an uplink whose source became `new_src`.
#[inline(always)]
pub fn remember_leaving(ip: &Ipv4, new_src: u32) {
    if ip.first_fragment {
        let _ = FRAGMENTS.insert(&frag_key(ip, FRAG_LEAVING), &new_src, 0);
    }
}

/// The source the first fragment of later fragment `ip` left with, if it
/// was seen.
#[inline(always)]
pub fn leaving_source(ip: &Ipv4) -> Option<u32> {
    // SAFETY: the value lives in the map.
    unsafe { FRAGMENTS.get(&frag_key(ip, FRAG_LEAVING)) }.copied()
}

/// A first fragment container `src` sent to a published port through host
/// address `ip.dst`, as it goes on to the port's `target` (another
/// container: a hairpin comes back from its gateway, which needs none of
/// this). The later fragments the target receives from `src`, translated
/// as their first, are this flow's ([`published_later`]).
#[inline(always)]
pub fn remember_published(ip: &Ipv4, src: u32, target: u32) {
    if ip.first_fragment {
        let key = frag_key_of(ip, (src, target), FRAG_PUBLISHED);
        let _ = FRAGMENTS.insert(&key, &ip.dst, 0);
    }
}

/// Is later fragment `ip`, about to enter a container, one of a datagram
/// whose first fragment went to a published port ([`remember_published`])?
#[inline(always)]
pub fn published_later(ip: &Ipv4) -> bool {
    // SAFETY: the value lives in the map.
    ip.later_fragment && unsafe { FRAGMENTS.get(&frag_key(ip, FRAG_PUBLISHED)) }.is_some()
}

#[inline(always)]
fn frag_key6(ip: &Ipv6, way: u8) -> FragKey6 {
    frag_key6_of(ip, (ip.src, ip.dst), way)
}

/// The key of IPv6 datagram `ip` were its addresses `(src, dst)`.
#[inline(always)]
fn frag_key6_of(ip: &Ipv6, (saddr, daddr): (Addr6, Addr6), way: u8) -> FragKey6 {
    FragKey6 {
        saddr,
        daddr,
        id: ip.frag_id,
        proto: ip.proto,
        way,
        _pad: [0; 2],
    }
}

/// A first IPv6 fragment translated (or let in) with `addr`: its later
/// fragments (which carry no ports) follow it.
#[inline(always)]
pub fn remember_first6(ip: &Ipv6, addr: Addr6) {
    if ip.first_fragment {
        let _ = FRAGMENTS6.insert(&frag_key6(ip, 0), &addr, 0);
    }
}

/// What the first fragment of later IPv6 fragment `ip` was remembered
/// with, if it was.
#[inline(always)]
pub fn first_of6(ip: &Ipv6) -> Option<Addr6> {
    // SAFETY: the value lives in the map.
    unsafe { FRAGMENTS6.get(&frag_key6(ip, 0)) }.copied()
}

/// [`remember_leaving`] for IPv6.
#[inline(always)]
pub fn remember_leaving6(ip: &Ipv6, new_src: &Addr6) {
    if ip.first_fragment {
        let _ = FRAGMENTS6.insert(&frag_key6(ip, FRAG_LEAVING), new_src, 0);
    }
}

/// [`leaving_source`] for IPv6.
#[inline(always)]
pub fn leaving_source6(ip: &Ipv6) -> Option<Addr6> {
    // SAFETY: the value lives in the map.
    unsafe { FRAGMENTS6.get(&frag_key6(ip, FRAG_LEAVING)) }.copied()
}

/// [`remember_published`] for IPv6.
#[inline(always)]
pub fn remember_published6(ip: &Ipv6, src: Addr6, target: Addr6) {
    if ip.first_fragment {
        let key = frag_key6_of(ip, (src, target), FRAG_PUBLISHED);
        let _ = FRAGMENTS6.insert(&key, &ip.dst, 0);
    }
}

/// [`published_later`] for IPv6.
#[inline(always)]
pub fn published_later6(ip: &Ipv6) -> bool {
    // SAFETY: the value lives in the map.
    ip.later_fragment && unsafe { FRAGMENTS6.get(&frag_key6(ip, FRAG_PUBLISHED)) }.is_some()
}
