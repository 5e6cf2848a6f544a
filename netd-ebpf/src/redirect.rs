//! Delivering a packet straight to a container's veth, past the host stack.
//!
//! Used where the host stack would refuse the packet: a translated reply
//! whose source is a host address (martian if routed), and hairpin flows.
//! The frame gets the addresses the bridge would have given it: the
//! container's MAC (from its endpoint entry: `02:42:` + its address unless
//! the runtime chose one) and its gateway's (the bridge carries `02:42:` +
//! the gateway address).
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};

use crate::{maps::ENDPOINT_BY_IP, parse::ETH_HLEN};

#[inline(always)]
fn mac_of(addr: u32) -> [u8; 6] {
    let b = addr.to_ne_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

/// The Ethernet header the bridge would give a frame for the container
/// with MAC `d`.
#[inline(always)]
fn set_macs(ctx: &TcContext, d: [u8; 6], gateway: u32) -> Result<(), ()> {
    let s = mac_of(gateway);
    let eth = [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ];
    ctx.store(0, &eth, 0).map_err(|_| ())
}

/// Rewrites the Ethernet header for the container with MAC `mac` behind
/// `gateway` and sends the packet out of the host end `ifindex` of its veth.
#[inline(always)]
pub fn to_container_veth(
    ctx: &TcContext,
    ifindex: u32,
    mac: [u8; 6],
    gateway: u32,
) -> Result<i32, ()> {
    set_macs(ctx, mac, gateway)?;
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect(ifindex, 0) };
    Ok(TC_ACT_REDIRECT as i32)
}

/// From an uplink's ingress, delivers a packet for container `addr` straight
/// into the container's namespace (`bpf_redirect_peer`), as the routed path
/// would have (TTL decremented) but without the host stack and the bridge.
/// `None` when `addr` is no local container or the TTL runs out (the stack
/// then answers with time exceeded).
#[inline(always)]
pub fn to_container_peer(ctx: &TcContext, addr: u32) -> Result<Option<i32>, ()> {
    // SAFETY: the value lives in the map.
    let Some(ep) = (unsafe { ENDPOINT_BY_IP.get(&addr) }).copied() else {
        return Ok(None);
    };
    const TTL_OFF: usize = ETH_HLEN + 8;
    let ttl_proto: [u8; 2] = ctx.load(TTL_OFF).map_err(|_| ())?;
    if ttl_proto[0] <= 1 {
        return Ok(None);
    }
    let next = [ttl_proto[0] - 1, ttl_proto[1]];
    let (old, new) = (u16::from_ne_bytes(ttl_proto), u16::from_ne_bytes(next));
    ctx.l3_csum_replace(ETH_HLEN + 10, old as u64, new as u64, 2)
        .map_err(|_| ())?;
    ctx.store(TTL_OFF, &next, 0).map_err(|_| ())?;
    set_macs(ctx, ep.mac, ep.gateway)?;
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect_peer(ep.ifindex, 0) };
    Ok(Some(TC_ACT_REDIRECT as i32))
}
