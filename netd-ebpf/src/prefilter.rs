//! `uplink_xdp`: the early drop on uplinks. Traffic from beyond the uplink
//! to a container subnet (IPv4 or IPv6) that is not a reply to a tracked
//! flow is dropped before the stack sees it (before an skb exists, in
//! native mode). Everything else, including ICMP errors, fragments and
//! packets the parser refuses, goes on to the TC programs, which judge it
//! in full.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use netd_common::DropReason;

use crate::{
    conntrack::{key, lookup_in},
    conntrack6::{key6, lookup_in6},
    drops::count_drop,
    events,
    maps::{NETWORKS, NETWORKS6},
    parse::{parse_frame, parse_l4, Ipv4, Ipv6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L3, L4},
    parse6::{parse_l4_6, Kind6, IPPROTO_ICMPV6},
};

#[xdp]
pub fn uplink_xdp(ctx: XdpContext) -> u32 {
    if prefilter(&ctx) {
        XDP_PASS
    } else {
        count_drop(DropReason::NotAReply);
        events::xdp_drop(&ctx);
        XDP_DROP
    }
}

/// True when the packet may go on.
#[inline(always)]
fn prefilter(ctx: &XdpContext) -> bool {
    match parse_frame(ctx) {
        L3::Ipv4(ip) => prefilter4(ctx, &ip),
        L3::Ipv6(ip) => prefilter6(ctx, &ip),
        _ => true,
    }
}

/// The reply tuple's ports of what may be a reply: TCP and UDP ports, an
/// echo reply's id. `Err(pass)`: nothing to look up, `pass` says whether
/// the packet goes on (ICMP errors and other ICMP do, echo requests and
/// other protocols do not).
#[inline(always)]
fn reply_ports(proto: u8, icmp: u8, l4: Option<L4>) -> Result<(u16, u16), bool> {
    match (proto, l4) {
        (IPPROTO_TCP | IPPROTO_UDP, Some(L4::Ports { sport, dport, .. })) => Ok((sport, dport)),
        (p, Some(L4::Echo { request: false, id })) if p == icmp => Ok((0, id)),
        (p, Some(L4::Echo { request: true, .. })) if p == icmp => Err(false),
        // Errors quote the flow they belong to: the TC program looks
        // inside them.
        (p, Some(_)) if p == icmp => Err(true),
        // Cut short: the TC program counts why.
        (IPPROTO_TCP | IPPROTO_UDP, None) => Err(true),
        (p, None) if p == icmp => Err(true),
        _ => Err(false),
    }
}

#[inline(always)]
fn prefilter4(ctx: &XdpContext, ip: &Ipv4) -> bool {
    if NETWORKS.get(&Key::new(32, ip.dst)).is_none() {
        return true;
    }
    if ip.later_fragment {
        return true;
    }
    match reply_ports(ip.proto, IPPROTO_ICMP, parse_l4(ctx, ip)) {
        Ok((sport, dport)) => lookup_in(&key(ip.src, ip.dst, sport, dport, ip.proto)).is_some(),
        Err(pass) => pass,
    }
}

#[inline(always)]
fn prefilter6(ctx: &XdpContext, ip: &Ipv6) -> bool {
    if NETWORKS6.get(&Key::new(128, ip.dst)).is_none() {
        return true;
    }
    if ip.later_fragment {
        return true;
    }
    let u = parse_l4_6(ctx, ip);
    let (sport, dport) = match (ip.proto, u.kind) {
        (IPPROTO_TCP | IPPROTO_UDP, Kind6::Ports) => (u.sport, u.dport),
        (_, Kind6::EchoReply) => (0, u.sport),
        (_, Kind6::EchoRequest) => return false,
        // Errors and other ICMPv6 go to TC, as does what is cut short
        // (it counts why).
        (IPPROTO_ICMPV6, _) | (_, Kind6::Refused) => return true,
        _ => return false,
    };
    lookup_in6(&key6(ip.src, ip.dst, sport, dport, ip.proto)).is_some()
}
