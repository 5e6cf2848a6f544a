//! Programs on the host end of every container veth.
//!
//! `from_container` (TCX ingress) sees everything a container sends, before
//! the bridge or the host stack; `to_container` (TCX egress) sees everything
//! it is about to receive.
use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, maps::lpm_trie::Key, programs::TcContext};
use netd_common::{DropReason, Endpoint, NetworkInfo};

use crate::{
    drops::drop_packet,
    maps::{ENDPOINTS, NETWORKS},
    parse::{parse_l3, L3},
    policy::{self, Verdict},
};

#[inline(always)]
fn endpoint_of(ctx: &TcContext) -> Option<&'static Endpoint> {
    // SAFETY: reading a field of the context; the map value lives in the map.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { ENDPOINTS.get(&ifindex) }
}

#[inline(always)]
fn network_of(addr: u32) -> Option<&'static NetworkInfo> {
    NETWORKS.get(&Key::new(32, addr))
}

#[inline(always)]
fn verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop(reason) => drop_packet(reason),
    }
}

#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    let Some(ep) = endpoint_of(&ctx) else {
        return drop_packet(DropReason::UnknownEndpoint);
    };
    match parse_l3(&ctx) {
        L3::Ipv4(ip) => verdict(policy::from_container(ep, ip.src, ip.dst, network_of(ip.dst))),
        L3::Other => TC_ACT_OK,
        L3::Vlan => drop_packet(DropReason::VlanTagged),
        L3::Malformed => drop_packet(DropReason::Malformed),
    }
}

#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    let Some(ep) = endpoint_of(&ctx) else {
        return drop_packet(DropReason::UnknownEndpoint);
    };
    match parse_l3(&ctx) {
        L3::Ipv4(ip) => verdict(policy::to_container(ep, ip.src, network_of(ip.src))),
        // The host may send tagged or odd frames; only IPv4 is policed here.
        L3::Other | L3::Vlan => TC_ACT_OK,
        L3::Malformed => drop_packet(DropReason::Malformed),
    }
}
