//! Delivering a packet straight to a container's veth, past the host stack.
//!
//! The frame gets the addresses the bridge would have given it: the
//! container's MAC (from its endpoint entry: `02:42:` + its address unless
//! the runtime chose one) and its gateway's (the bridge carries `02:42:` +
//! the gateway address).
//! Routed deliveries decrement the TTL as the stack would.
//! `bpf_redirect_peer` (from a TCX ingress only) puts the packet straight
//! into the container's netns, skipping the backlog queue and the host
//! veth's egress.
use aya_ebpf::{
    bindings::{bpf_check_mtu_flags::BPF_MTU_CHK_SEGS, TC_ACT_REDIRECT},
    helpers::{bpf_check_mtu, bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{Addr6, DropReason, Endpoint, EndpointRef, EndpointRef6, Fallback, Shortcut};

use crate::{
    maps::{ENDPOINT6_BY_IP, ENDPOINTS, ENDPOINT_BY_IP},
    parse::ETH_HLEN,
    routing,
};

/// `skb->pkt_type` of a packet for this host.
const PACKET_HOST: u32 = 0;

#[inline(always)]
pub fn mac_of(addr: u32) -> [u8; 6] {
    netd_common::mac_for_addr(addr.to_ne_bytes())
}

/// The Ethernet header the bridge would give a frame for the container
/// with MAC `d`.
#[inline(always)]
fn set_macs(ctx: &TcContext, d: [u8; 6], gateway: u32) -> Result<(), DropReason> {
    let s = mac_of(gateway);
    store_macs(ctx, d, s)
}

#[inline(always)]
pub fn store_macs(ctx: &TcContext, d: [u8; 6], s: [u8; 6]) -> Result<(), DropReason> {
    let eth = [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ];
    ctx.store(0, &eth, 0).map_err(|_| DropReason::RewriteFailed)
}

/// Decrements the TTL (and fixes the header checksum) as forwarding does;
/// false, with the packet unchanged, when the TTL runs out here.
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext) -> Result<bool, DropReason> {
    const TTL_OFF: usize = ETH_HLEN + 8;
    let ttl_proto: [u8; 2] = ctx.load(TTL_OFF).map_err(|_| DropReason::Truncated)?;
    if ttl_proto[0] <= 1 {
        return Ok(false);
    }
    let next = [ttl_proto[0] - 1, ttl_proto[1]];
    let (old, new) = (u16::from_ne_bytes(ttl_proto), u16::from_ne_bytes(next));
    ctx.l3_csum_replace(ETH_HLEN + 10, old as u64, new as u64, 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(TTL_OFF, &next, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    Ok(true)
}

/// Decrements the IPv6 hop limit as forwarding does (no header checksum);
/// false, with the packet unchanged, when it runs out here.
#[inline(always)]
pub fn decrement_hop_limit(ctx: &TcContext) -> Result<bool, DropReason> {
    const HOP_LIMIT_OFF: usize = ETH_HLEN + 7;
    let hops: u8 = ctx.load(HOP_LIMIT_OFF).map_err(|_| DropReason::Truncated)?;
    if hops <= 1 {
        return Ok(false);
    }
    ctx.store(HOP_LIMIT_OFF, &(hops - 1), 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    Ok(true)
}

/// Does the packet fit the MTU of device `ifindex` (GSO packets: each
/// segment)?
#[inline(always)]
pub fn fits_mtu(ctx: &TcContext, ifindex: u32) -> bool {
    let mut mtu: u32 = 0;
    // SAFETY: plain helper call on this program's skb.
    let rc = unsafe {
        bpf_check_mtu(
            ctx.skb.skb as *mut _,
            ifindex,
            &mut mtu,
            0,
            BPF_MTU_CHK_SEGS as u64,
        )
    };
    rc == 0
}

/// Rewrites the Ethernet header for the container with MAC `mac` behind
/// `gateway` and sends the packet out of the host end `ifindex` of its veth.
#[inline(always)]
pub fn to_container_veth(
    ctx: &TcContext,
    ifindex: u32,
    mac: [u8; 6],
    gateway: u32,
) -> Result<i32, DropReason> {
    to_veth(ctx, ifindex, mac, mac_of(gateway))
}

/// [`to_container_veth`] for IPv6: the bridge's MAC `gateway_mac` as source.
#[inline(always)]
pub fn to_container_veth6(
    ctx: &TcContext,
    ifindex: u32,
    mac: [u8; 6],
    gateway_mac: [u8; 6],
) -> Result<i32, DropReason> {
    to_veth(ctx, ifindex, mac, gateway_mac)
}

#[inline(always)]
fn to_veth(ctx: &TcContext, ifindex: u32, d: [u8; 6], s: [u8; 6]) -> Result<i32, DropReason> {
    store_macs(ctx, d, s)?;
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect(ifindex, 0) };
    Ok(TC_ACT_REDIRECT as i32)
}

/// Puts the packet into the netns behind host veth `ifindex`, as a packet
/// for that host (the host veth saw another host's MAC).
#[inline(always)]
pub fn into_peer(ctx: &TcContext, ifindex: u32) -> i32 {
    crate::counters::delivered(ctx, ifindex);
    let _ = ctx.change_type(PACKET_HOST);
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect_peer(ifindex, 0) };
    TC_ACT_REDIRECT as i32
}

/// The local container at `addr`, if any.
#[inline(always)]
pub fn endpoint_at(addr: u32) -> Option<EndpointRef> {
    // SAFETY: the value lives in the map.
    unsafe { ENDPOINT_BY_IP.get(&addr) }.copied()
}

/// The host veth of the container of `ep`'s network whose interface has
/// `mac`, when the MAC follows the address rule (`02:42:` + its IPv4
/// address; a runtime's own MAC, or an IPv6-only endpoint's, is not found
/// and the bridge carries the frame).
#[inline(always)]
pub fn link_peer(ep: &Endpoint, mac: [u8; 6]) -> Option<u32> {
    if mac[0] != 0x02 || mac[1] != 0x42 {
        return None;
    }
    let peer = endpoint_at(u32::from_ne_bytes([mac[2], mac[3], mac[4], mac[5]]))?;
    if peer.mac != mac {
        return None;
    }
    // SAFETY: the value lives in the map.
    let peer_ep = unsafe { ENDPOINTS.get(&peer.ifindex) }?;
    (peer_ep.net_id == ep.net_id).then_some(peer.ifindex)
}

/// Container to container on one network, from the sender's veth ingress:
/// the frame already carries the receiver's MAC (the bridge would not
/// touch it), so it goes as is.
#[inline(always)]
pub fn same_network_peer(ctx: &TcContext, dst: &EndpointRef) -> i32 {
    routing::shortcut(Shortcut::PeerSameNetwork);
    into_peer(ctx, dst.ifindex)
}

/// Delivers a packet for container `addr` straight into the container's
/// namespace (`bpf_redirect_peer`, from a TCX ingress), as the routed path
/// would have (TTL decremented, the bridge's MACs) but without the host
/// stack and the bridge. `None` (counted) when `addr` is no local container,
/// the TTL runs out or the packet is larger than the container's MTU: the
/// stack then forwards it, or answers with the ICMP error.
#[inline(always)]
pub fn to_container_peer(ctx: &TcContext, addr: u32) -> Result<Option<i32>, DropReason> {
    let Some(ep) = endpoint_at(addr) else {
        routing::fallback(Fallback::NoEndpoint);
        return Ok(None);
    };
    if !fits_mtu(ctx, ep.ifindex) {
        routing::fallback(Fallback::FragNeeded);
        return Ok(None);
    }
    if !decrement_ttl(ctx)? {
        routing::fallback(Fallback::TtlExpired);
        return Ok(None);
    }
    set_macs(ctx, ep.mac, ep.gateway)?;
    routing::shortcut(Shortcut::PeerRouted);
    Ok(Some(into_peer(ctx, ep.ifindex)))
}

/// The local container at IPv6 `addr`, if any.
#[inline(always)]
pub fn endpoint6_at(addr: Addr6) -> Option<EndpointRef6> {
    // SAFETY: the value lives in the map.
    unsafe { ENDPOINT6_BY_IP.get(&addr) }.copied()
}

/// [`to_container_peer`] for IPv6: hop limit decremented, the bridge's MAC
/// as source; `None` (counted) for no local container, a hop limit that
/// runs out or a packet larger than the container's MTU (the stack then
/// answers with Time Exceeded or Packet Too Big).
#[inline(always)]
pub fn to_container_peer6(ctx: &TcContext, addr: Addr6) -> Result<Option<i32>, DropReason> {
    let Some(ep) = endpoint6_at(addr) else {
        routing::fallback(Fallback::NoEndpoint);
        return Ok(None);
    };
    if !fits_mtu(ctx, ep.ifindex) {
        routing::fallback(Fallback::FragNeeded);
        return Ok(None);
    }
    if !decrement_hop_limit(ctx)? {
        routing::fallback(Fallback::TtlExpired);
        return Ok(None);
    }
    store_macs(ctx, ep.mac, ep.gateway_mac)?;
    routing::shortcut(Shortcut::PeerRouted);
    Ok(Some(into_peer(ctx, ep.ifindex)))
}
