//! Programs on the host end of every container veth.
//!
//! `from_container` (TCX ingress) sees everything a container sends, before
//! the bridge or the host stack; `to_container` (TCX egress) sees everything
//! it is about to receive.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use netd_common::{
    DropReason, Endpoint, Fallback, NetworkInfo, HOOK_FROM_CONTAINER, HOOK_TO_CONTAINER,
    NET_F_INTERNAL,
};

use crate::{
    arp,
    counters::{self, Way},
    drops::drop_packet,
    endpoint6, events, forward,
    maps::{ENDPOINTS, NETWORKS},
    parse::{parse_l3, parse_l4, Ipv4, L3},
    policy::{self, Verdict},
    publish, publish6, routing, tunnel,
};

#[inline(always)]
fn ifindex_of(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context.
    unsafe { (*ctx.skb.skb).ifindex }
}

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

/// Each step is a BPF function of its own, called one after the other
/// (their stack frames never add up): IPv6 published flows first
/// (`publish6::at_veth`), later IPv4 fragments of published flows
/// (`publish::later_fragment_at_veth`), then the rest.
#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    let v = match publish6::at_veth(&ctx) {
        publish6::NOT_PUBLISHED => match publish::later_fragment_at_veth(&ctx) {
            publish6::NOT_PUBLISHED => from_container_verdict(&ctx),
            v => v,
        },
        v => v,
    };
    from_container_counted(&ctx, v)
}

/// The counters and the drop event of `from_container`'s verdict `v`: a
/// step of its own (the classifier's frame stays small).
#[inline(never)]
fn from_container_counted(ctx: &TcContext, v: i32) -> i32 {
    counters::at_veth(ctx, Way::Out, v);
    if v == TC_ACT_SHOT as i32 {
        events::tc_drop(ctx, HOOK_FROM_CONTAINER);
    }
    v
}

#[inline(never)]
fn from_container_verdict(ctx: &TcContext) -> i32 {
    let Some(ep) = endpoint_of(ctx) else {
        return drop_packet(DropReason::UnknownEndpoint);
    };
    match parse_l3(ctx) {
        L3::Ipv4(ip) => match from_container_v4(ctx, ep, &ip) {
            Ok(verdict) => verdict,
            Err(reason) => drop_packet(reason),
        },
        L3::Ipv6(ip) => match endpoint6::from_container(ctx, ep, &ip) {
            Ok(verdict) => verdict,
            Err(reason) => drop_packet(reason),
        },
        L3::Other => match arp::answer_remote(ctx, ep, ifindex_of(ctx)) {
            Some(verdict) => verdict,
            None if routing::enabled() => routing::fallback(Fallback::NotIpv4),
            None => TC_ACT_OK,
        },
        L3::Vlan => drop_packet(DropReason::VlanTagged),
        L3::Invalid(reason) => drop_packet(reason),
    }
}

/// What a container sends: replies of published flows it serves are
/// translated back, flows to published ports are translated to their
/// target, everything else meets the isolation policy.
#[inline(always)]
fn from_container_v4(ctx: &TcContext, ep: &Endpoint, ip: &Ipv4) -> Result<i32, DropReason> {
    if ip.src == ep.ip {
        if let Some(ports) = parse_l4(ctx, ip).and_then(|l4| l4.ports()) {
            if let Some(verdict) = publish::reverse_from_target(ctx, ip, ports)? {
                return Ok(verdict);
            }
            if publish::is_host_addr(ip.dst) {
                if let Some(target) = publish::lookup(ip.dst, ports.1, ip.proto) {
                    if ep.net_flags & NET_F_INTERNAL != 0 && ip.dst != ep.gateway {
                        return Err(DropReason::Internal);
                    }
                    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
                    return publish::dnat_from_container(ctx, ip, ep, ifindex, ports, target);
                }
            }
        }
    }
    let dst_net = network_of(ip.dst);
    match policy::from_container(ep, ip.src, ip.dst, dst_net) {
        // A container of the same overlay network on another host: into
        // the tunnel, whoever forwards the rest.
        Verdict::Pass => match tunnel::remote_peer(ep, ip.dst, dst_net) {
            Some(remote) => tunnel::to_remote(ctx, &remote),
            None if routing::enabled() => forward::from_container(ctx, ep, ip, dst_net),
            None => Ok(TC_ACT_OK),
        },
        Verdict::Drop(reason) => Err(reason),
    }
}

/// The IPv6 forwarding of `from_container` (eBPF host routing), which it
/// enters by tail call once the policy passed the packet
/// (`endpoint6::forward`); counted as `from_container`'s verdicts are.
#[classifier]
pub fn from_container_forward6(ctx: TcContext) -> i32 {
    let v = forward6_verdict(&ctx);
    from_container_counted(&ctx, v)
}

/// A step of its own, as `from_container_verdict` is: the two frames never
/// add up.
#[inline(never)]
fn forward6_verdict(ctx: &TcContext) -> i32 {
    match endpoint6::forward(ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason),
    }
}

#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    let v = to_container_verdict(&ctx);
    counters::at_veth(&ctx, Way::In, v);
    if v == TC_ACT_SHOT as i32 {
        events::tc_drop(&ctx, HOOK_TO_CONTAINER);
    }
    v
}

#[inline(always)]
fn to_container_verdict(ctx: &TcContext) -> i32 {
    let Some(ep) = endpoint_of(ctx) else {
        return drop_packet(DropReason::UnknownEndpoint);
    };
    match parse_l3(ctx) {
        L3::Ipv4(ip) => match policy::to_container(ep, ip.src, network_of(ip.src)) {
            // A flow to a published port crosses networks by design.
            Verdict::Drop(DropReason::Isolation | DropReason::Icc)
                if publish::is_published_flow(ctx, &ip) =>
            {
                TC_ACT_OK
            }
            v => verdict(v),
        },
        L3::Ipv6(ip) => match endpoint6::to_container(ctx, ep, &ip) {
            Ok(verdict) => verdict,
            Err(reason) => drop_packet(reason),
        },
        // The host may send tagged or odd frames; only IP is policed here.
        L3::Other | L3::Vlan => TC_ACT_OK,
        L3::Invalid(reason) => drop_packet(reason),
    }
}
