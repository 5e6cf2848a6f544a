//! IPv6 at the host end of container veths: the facts `policy6` judges,
//! gathered from the packet and the endpoint's maps. What passes goes, with
//! eBPF host routing, into a container of the same network or to the world
//! by the fib (`forward::from_container6`);
//! neighbour solicitations the programs can answer are answered (`nd`); the
//! rest goes on to the bridge and the host stack (counted as the `not-ipv4`
//! fallback).
use aya_ebpf::{bindings::TC_ACT_OK, maps::lpm_trie::Key, programs::TcContext};
use netd_common::{
    programs::TAIL_FORWARD6, Addr6, DropReason, Endpoint, Endpoint6, Fallback, NetworkInfo6,
};

use crate::{
    forward,
    maps::{ENDPOINT6, ENDPOINTS, NETWORKS6, TAILS},
    nd,
    parse::{parse_l3, L3},
    parse6::{parse_l4_6, Ipv6, Upper6},
    policy::Verdict,
    policy6::{eui64_link_local, from_container6, to_container6, Facts6},
    publish6,
    redirect::mac_of,
    routing,
};

const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOUR_SOLICIT: u8 = 135;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const MLD_QUERY: u8 = 130;
const MLD_REPORT: u8 = 131;
const MLD_DONE: u8 = 132;
const MLD2_REPORT: u8 = 143;

#[inline(always)]
pub fn network6_of(addr: Addr6) -> Option<&'static NetworkInfo6> {
    NETWORKS6.get(&Key::new(128, addr))
}

#[inline(always)]
fn endpoint6_of(ctx: &TcContext) -> Option<&'static Endpoint6> {
    // SAFETY: reading a field of the context; the value lives in the map.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { ENDPOINT6.get(&ifindex) }
}

/// The upper-layer header of the packet, which must be there (in a first
/// fragment too).
#[inline(always)]
fn upper(ctx: &TcContext, ip: &Ipv6) -> Result<Upper6, DropReason> {
    let upper = parse_l4_6(ctx, ip);
    upper.check()?;
    Ok(upper)
}

/// The packet's facts; `peer_mac_at` is where the MAC of the frame's other
/// end sits (0: destination, leaving a container; 6: source, entering).
#[inline(always)]
fn facts(
    ctx: &TcContext,
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    ip: &Ipv6,
    upper: &Upper6,
    peer_mac_at: usize,
) -> Facts6 {
    let (link_control, router_message) = match upper.icmp(ip) {
        Some(ND_ROUTER_SOLICIT | ND_NEIGHBOUR_SOLICIT | ND_NEIGHBOUR_ADVERT) => {
            (ip.hop_limit == 255, false)
        }
        Some(MLD_QUERY | MLD_REPORT | MLD_DONE | MLD2_REPORT) => (ip.hop_limit == 1, false),
        Some(ND_ROUTER_ADVERT | ND_REDIRECT) => (false, true),
        _ => (false, false),
    };
    let gateway_mac = ep6.map_or(mac_of(ep.gateway), |e| e.gateway_mac);
    let peer_mac: [u8; 6] = ctx.load(peer_mac_at).unwrap_or_default();
    Facts6 {
        src: ip.src,
        dst: ip.dst,
        link_control,
        router_message,
        via_gateway: peer_mac == gateway_mac,
        gateway_ll: eui64_link_local(gateway_mac),
    }
}

#[inline(always)]
fn pass() -> i32 {
    if routing::enabled() {
        routing::fallback(Fallback::NotIpv4)
    } else {
        TC_ACT_OK
    }
}

/// What a container sends over IPv6 (published flows were taken before,
/// `publish6::at_veth`).
#[inline(always)]
pub fn from_container(ctx: &TcContext, ep: &Endpoint, ip: &Ipv6) -> Result<i32, DropReason> {
    let ep6 = endpoint6_of(ctx);
    let u = upper(ctx, ip)?;
    let f = facts(ctx, ep, ep6, ip, &u, 0);
    let dst_net = network6_of(ip.dst);
    match from_container6(ep, ep6, &f, dst_net) {
        Verdict::Pass if f.link_control => {
            // SAFETY: reading a field of the context.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            nd::answer(ctx, ep, ep6, ip, ifindex).unwrap_or_else(|| Ok(pass()))
        }
        Verdict::Pass if routing::enabled() => Ok(forward_by_tail_call(ctx)),
        Verdict::Pass => Ok(pass()),
        Verdict::Drop(reason) => Err(reason),
    }
}

/// Hands a packet the policy passed to `from_container_forward6` (a tail
/// call: it does not come back). Were the slot empty, which the agent
/// never leaves it while the hooks are attached, the stack forwards the
/// packet, counted as IPv6 is without host routing.
#[inline(always)]
fn forward_by_tail_call(ctx: &TcContext) -> i32 {
    // SAFETY: the slot holds a classifier of the same kind, or nothing.
    unsafe { TAILS.tail_call(ctx, TAIL_FORWARD6) };
    pass()
}

/// The forwarding half of [`from_container`] with eBPF host routing, in
/// program `from_container_forward6`: the packet passed the policy there.
/// What that found is looked up again, so the verifier judges this program
/// from a fresh start instead of once per state of the parse and policy.
#[inline(always)]
pub fn forward(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: reading a field of the context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: the value lives in the map.
    let Some(ep) = (unsafe { ENDPOINTS.get(&ifindex) }) else {
        return Err(DropReason::UnknownEndpoint);
    };
    let L3::Ipv6(ip) = parse_l3(ctx) else {
        return Err(DropReason::Malformed);
    };
    let dst_net = network6_of(ip.dst);
    forward::from_container6(ctx, ep, endpoint6_of(ctx), &ip, dst_net)
}

/// What a container receives over IPv6.
#[inline(always)]
pub fn to_container(ctx: &TcContext, ep: &Endpoint, ip: &Ipv6) -> Result<i32, DropReason> {
    let ep6 = endpoint6_of(ctx);
    let u = upper(ctx, ip)?;
    let f = facts(ctx, ep, ep6, ip, &u, 6);
    match to_container6(ep, ep6, &f, network6_of(ip.src)) {
        Verdict::Pass => Ok(TC_ACT_OK),
        // A flow to a published port crosses networks by design.
        Verdict::Drop(DropReason::Isolation | DropReason::Icc)
            if publish6::is_published_flow6(ip, &u) =>
        {
            Ok(TC_ACT_OK)
        }
        Verdict::Drop(reason) => Err(reason),
    }
}
