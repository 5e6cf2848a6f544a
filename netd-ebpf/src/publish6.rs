//! Published ports over IPv6: the lookup, new flows from beyond an uplink
//! (the destination becomes the container's IPv6 address and port, the
//! client's address is kept), tracked in `CT6_IN`/`CT6_OUT` with
//! `CT_F_SNAT | CT_F_DNAT` so that `uplink6` translates their next packets
//! and their replies as the IPv4 rule does, and flows from containers to a
//! published port through a host address (`CT6_LOCAL`, as `publish` does
//! for IPv4: the target sees the client container's address, or its
//! gateway's for a hairpin to itself). Host processes reach published
//! ports through `sock` (`connect6`, ...). The upper-layer header may sit
//! behind extension headers (`Ipv6::l4_off`); a fragmented datagram's
//! first fragment is translated by its ports and its later fragments
//! follow it by (source, destination, id) (`FRAGMENTS6`).
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    Addr6, DropReason, Endpoint, Endpoint6, PublishKey6, PublishTarget6, CT_F_DNAT, CT_F_HAIRPIN,
    CT_F_REPLIED, CT_F_SNAT, NET_F_INTERNAL,
};

use crate::{
    conntrack6::{entry6, key6, lookup_in6, lookup_local6, put_in6, put_local6, put_out6, touch6},
    drops::drop_packet,
    fragments::{first_of6, published_later6, remember_first6, remember_published6},
    maps::{ENDPOINT6, ENDPOINTS, HOST_ADDRS6, PUBLISHED6, UPLINKS},
    nat::rewrite_port,
    nat6::{rewrite_addr6, IP6_DST_OFF},
    parse::{parse_l3, L3},
    parse6::{parse_l4_6, Ipv6, Kind6, Upper6},
    redirect::{endpoint6_at, to_container_peer6, to_container_veth6},
    routing,
    uplink::is_ipv6,
    uplink6::deliver6,
};

/// What the entry points return when the packet is no published flow's
/// (the hook's own work follows).
pub const NOT_PUBLISHED: i32 = -1;

/// The target of `[addr]:port/proto`: an exact host address first, then a
/// port published on every host IPv6 address.
#[inline(always)]
pub fn lookup6(addr: Addr6, port: u16, proto: u8) -> Option<PublishTarget6> {
    let exact = PublishKey6 {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: the values live in the map.
    if let Some(t) = unsafe { PUBLISHED6.get(&exact) } {
        return Some(*t);
    }
    let any = PublishKey6 {
        addr: [0; 4],
        ..exact
    };
    unsafe { PUBLISHED6.get(&any) }.copied()
}

#[inline(always)]
pub fn is_host_addr6(addr: Addr6) -> bool {
    // SAFETY: the value lives in the map.
    unsafe { HOST_ADDRS6.get(&addr) }.is_some()
}

/// What [`at_uplink_ingress`] returns for a packet it translated: the
/// hook delivers it next ([`deliver_translated`]).
pub const TRANSLATED: i32 = -2;

/// A packet [`at_uplink_ingress`] translated, for the container its
/// destination now is: straight into the container with eBPF host
/// routing, else the stack. A BPF subprogram of its own, called after
/// `at_uplink_ingress` returned (their frames never add up).
#[inline(never)]
pub fn deliver_translated(ctx: &TcContext) -> i32 {
    if !routing::enabled() {
        return TC_ACT_OK;
    }
    let Ok(dst) = ctx.load::<Addr6>(IP6_DST_OFF) else {
        return drop_packet(DropReason::Truncated);
    };
    match to_container_peer6(ctx, dst) {
        Ok(Some(v)) => v,
        Ok(None) => TC_ACT_OK,
        Err(reason) => drop_packet(reason),
    }
}

#[inline(always)]
fn ifindex_of(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the context.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// First step of `uplink_in`: [`from_world`]. A BPF subprogram of its
/// own, called before the hook's own work (another subprogram), so that
/// the two stack frames never add up.
#[inline(never)]
pub fn at_uplink_ingress(ctx: &TcContext) -> i32 {
    // SAFETY: the value lives in the map.
    if unsafe { UPLINKS.get(&ifindex_of(ctx)) }.is_none() {
        return NOT_PUBLISHED;
    }
    let L3::Ipv6(ip) = parse_l3(ctx) else {
        // Not IPv6, or refused by the parser: `uplink6` counts why.
        return NOT_PUBLISHED;
    };
    match from_world(ctx, &ip) {
        Ok(Some(v)) => v,
        Ok(None) => NOT_PUBLISHED,
        Err(reason) => drop_packet(reason),
    }
}

/// At an uplink's ingress: a packet for a host IPv6 address that belongs
/// to a published flow (tracked, or new to a published port) is
/// translated to its target. `None`: not ours (no such port, a later
/// fragment (`uplink6` translates it as its first), or a tracked flow of
/// another kind, e.g. a masqueraded flow's reply). A first fragment is
/// delivered as any packet, its later fragments follow it there.
#[inline(always)]
fn from_world(ctx: &TcContext, ip: &Ipv6) -> Result<Option<i32>, DropReason> {
    if !is_host_addr6(ip.dst) {
        return Ok(None);
    }
    let u = parse_l4_6(ctx, ip);
    if u.kind != Kind6::Ports {
        return Ok(None);
    }
    let in_key = key6(ip.src, ip.dst, u.sport, u.dport, ip.proto);
    if lookup_in6(&in_key).is_some() {
        // A tracked flow (this one's next packets included): `uplink6`
        // translates it.
        return Ok(None);
    }
    let Some(target) = lookup6(ip.dst, u.dport, ip.proto) else {
        return Ok(None);
    };
    let inbound = entry6(
        target.addr,
        target.port,
        CT_F_SNAT | CT_F_DNAT | CT_F_REPLIED,
        u.tcp_flags,
    );
    let out_key = key6(target.addr, ip.src, target.port, u.sport, ip.proto);
    let outbound = entry6(ip.dst, u.dport, CT_F_SNAT | CT_F_DNAT, 0);
    if !put_in6(&in_key, &inbound) || !put_out6(&out_key, &outbound) {
        return Err(DropReason::CtInsert);
    }
    let (addr, port) = (target.addr, target.port);
    remember_first6(ip, addr);
    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
    if port != u.dport {
        rewrite_port(ctx, ip, true, u.dport, port)?;
    }
    Ok(Some(TRANSLATED))
}

/// First step of `from_container` (the veth's ingress): an IPv6 packet a
/// container sends that belongs to a published flow. A reply of one it
/// serves is translated back ([`reverse_from_target`]), a flow to a
/// published port on a host address is translated to its target
/// ([`find_target`], [`translate_to_target`]), and the later fragments of
/// either follow their first ([`later_fragment`]). A BPF subprogram of its
/// own, called before the hook's own work (another subprogram), so that
/// the two stack frames never add up; each step is one too, called one
/// after the other (the verifier sums the frames of nested calls). What it
/// does not take (including what the parser refuses) the hook judges and
/// counts.
#[inline(never)]
pub fn at_veth(ctx: &TcContext) -> i32 {
    if !is_ipv6(ctx) {
        return NOT_PUBLISHED;
    }
    // SAFETY: the value lives in the map.
    let Some(ep6) = (unsafe { ENDPOINT6.get(&ifindex_of(ctx)) }) else {
        return NOT_PUBLISHED;
    };
    let mut ip = Ipv6::default();
    if !parse_into(ctx, &mut ip) || ip.src != ep6.ip {
        return NOT_PUBLISHED;
    }
    if ip.later_fragment {
        return later_fragment(ctx, &ip);
    }
    let u = parse_l4_6(ctx, &ip);
    if u.kind != Kind6::Ports {
        return NOT_PUBLISHED;
    }
    let v = reverse_from_target(ctx, &ip, &u);
    if v != NOT_PUBLISHED {
        return v;
    }
    let mut found = Found::default();
    match find_target(ctx, &ip, &u, &mut found) {
        FOUND => translate_to_target(ctx, &ip, &found),
        v => v,
    }
}

/// A published port's target and the port the packet was sent to.
#[derive(Clone, Copy, Default)]
struct Found {
    target: PublishTarget6,
    dport: u16,
}

/// What a step's pointer argument points to, read as a whole: LLVM would
/// otherwise pass the fields it reads as arguments of their own, more
/// than a BPF function takes.
#[inline(always)]
fn arg<T: Copy>(p: &T) -> T {
    // SAFETY: a valid reference.
    unsafe { core::ptr::read_volatile(p) }
}

/// What [`find_target`] returns when the packet goes to `target`.
const FOUND: i32 = -3;

/// The packet's IPv6 header and chain, if it parses.
#[inline(never)]
fn parse_into(ctx: &TcContext, out: &mut Ipv6) -> bool {
    match parse_l3(ctx) {
        L3::Ipv6(ip) => {
            *out = ip;
            true
        }
        _ => false,
    }
}

/// The endpoint entries of the veth the packet came in by.
#[inline(always)]
fn endpoints_of(ctx: &TcContext) -> Option<(&'static Endpoint, &'static Endpoint6)> {
    let ifindex = ifindex_of(ctx);
    // SAFETY: the values live in the maps.
    unsafe { Some((ENDPOINTS.get(&ifindex)?, ENDPOINT6.get(&ifindex)?)) }
}

/// The verdict of a step: the packet's, or its drop counted.
#[inline(always)]
fn verdict(r: Result<i32, DropReason>) -> i32 {
    r.unwrap_or_else(drop_packet)
}

/// A container's packet to a host address's published port: its target
/// (in `found`, [`FOUND`]), with both directions of the flow remembered
/// so the target's replies are translated back and pass isolation (the
/// target sees the client's address, or for a hairpin to itself its
/// gateway's). A container of an internal network is refused but through
/// its own gateway (the IPv4 rule). `NOT_PUBLISHED`: no published port.
#[inline(never)]
fn find_target(ctx: &TcContext, ip: &Ipv6, u: &Upper6, found: &mut Found) -> i32 {
    let u = arg(u);
    if !is_host_addr6(ip.dst) {
        return NOT_PUBLISHED;
    }
    let Some(t) = lookup6(ip.dst, u.dport, ip.proto) else {
        return NOT_PUBLISHED;
    };
    let Some((ep, ep6)) = endpoints_of(ctx) else {
        return NOT_PUBLISHED;
    };
    if ep.net_flags & NET_F_INTERNAL != 0 && ip.dst != ep6.gateway {
        return drop_packet(DropReason::Internal);
    }
    let hairpin = t.addr == ip.src;
    let src = if hairpin { ep6.gateway } else { ip.src };
    let fwd = key6(src, t.addr, u.sport, t.port, ip.proto);
    if let Some(e) = lookup_local6(&fwd) {
        touch6(e, u.tcp_flags);
    } else {
        if !put_local6(&fwd, &entry6(ip.dst, u.dport, CT_F_DNAT, u.tcp_flags)) {
            return drop_packet(DropReason::CtInsert);
        }
        let flags = CT_F_SNAT | CT_F_DNAT | if hairpin { CT_F_HAIRPIN } else { 0 };
        if !put_local6(&fwd.reversed(), &entry6(ip.dst, u.dport, flags, 0)) {
            return drop_packet(DropReason::CtInsert);
        }
    }
    remember_first6(ip, t.addr);
    if !hairpin {
        // The target lets its later fragments in (`is_published_flow6`).
        remember_published6(ip, ip.src, t.addr);
    }
    *found = Found {
        target: t,
        dport: u.dport,
    };
    FOUND
}

/// The packet [`find_target`] found a target for: the destination becomes
/// the target (and, for a hairpin, the source the gateway, delivering it
/// straight back on its veth). With eBPF host routing a flow from another
/// container goes straight into the target, past the host's FORWARD chain
/// (a first fragment too: its later fragments follow it there); else the
/// stack routes it.
#[inline(never)]
fn translate_to_target(ctx: &TcContext, ip: &Ipv6, found: &Found) -> i32 {
    let found = arg(found);
    verdict(translate(ctx, ip, found.dport, &found.target))
}

#[inline(always)]
fn translate(
    ctx: &TcContext,
    ip: &Ipv6,
    dport: u16,
    target: &PublishTarget6,
) -> Result<i32, DropReason> {
    rewrite_addr6(ctx, ip, true, ip.dst, target.addr)?;
    if target.port != dport {
        rewrite_port(ctx, ip, true, dport, target.port)?;
    }
    if target.addr == ip.src {
        return to_self_as_gateway(ctx, ip);
    }
    deliver6(ctx, target.addr)
}

/// A hairpin (destination already the container itself): the source
/// becomes its gateway, and it goes back out of its own veth.
#[inline(always)]
fn to_self_as_gateway(ctx: &TcContext, ip: &Ipv6) -> Result<i32, DropReason> {
    let Some((ep, ep6)) = endpoints_of(ctx) else {
        return Err(DropReason::UnknownEndpoint);
    };
    rewrite_addr6(ctx, ip, false, ip.src, ep6.gateway)?;
    to_container_veth6(ctx, ifindex_of(ctx), ep.mac, ep6.gateway_mac)
}

/// A published flow's reply leaving its target container: the published
/// address and port become its source (and, for a hairpin, the target
/// itself its destination), and it goes to the client's veth.
/// `NOT_PUBLISHED`: not such a reply.
#[inline(never)]
fn reverse_from_target(ctx: &TcContext, ip: &Ipv6, u: &Upper6) -> i32 {
    let u = arg(u);
    let Some(e) = lookup_local6(&key6(ip.src, ip.dst, u.sport, u.dport, ip.proto)) else {
        return NOT_PUBLISHED;
    };
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
    if flags & CT_F_SNAT == 0 {
        return NOT_PUBLISHED;
    }
    touch6(e, u.tcp_flags);
    // Its later fragments: the address it leaves with.
    remember_first6(ip, addr);
    verdict(reverse(
        ctx,
        ip,
        u.sport,
        (addr, port),
        flags & CT_F_HAIRPIN != 0,
    ))
}

#[inline(always)]
fn reverse(
    ctx: &TcContext,
    ip: &Ipv6,
    sport: u16,
    (addr, port): (Addr6, u16),
    hairpin: bool,
) -> Result<i32, DropReason> {
    rewrite_addr6(ctx, ip, false, ip.src, addr)?;
    if port != sport {
        rewrite_port(ctx, ip, false, sport, port)?;
    }
    to_client(ctx, ip, hairpin)
}

/// A translated reply (source already rewritten) to its client: a
/// hairpin's destination, the gateway, becomes the target itself (the
/// packet's original source `ip.src`); then out of the client's veth.
#[inline(always)]
fn to_client(ctx: &TcContext, ip: &Ipv6, hairpin: bool) -> Result<i32, DropReason> {
    let client = if hairpin {
        rewrite_addr6(ctx, ip, true, ip.dst, ip.src)?;
        ip.src
    } else {
        ip.dst
    };
    let Some(c) = endpoint6_at(client) else {
        return Err(DropReason::UnknownEndpoint);
    };
    to_container_veth6(ctx, c.ifindex, c.mac, c.gateway_mac)
}

/// A later fragment a container sends, of a datagram whose first fragment
/// was translated here: to a published port (`FRAGMENTS6` holds the
/// target, a container address) it follows its first to the target, the
/// source becoming the gateway for a hairpin; a published flow's reply
/// (`FRAGMENTS6` holds the published host address) leaves as that address
/// to the client. `NOT_PUBLISHED`: no such first fragment (the policy
/// judges it).
#[inline(never)]
fn later_fragment(ctx: &TcContext, ip: &Ipv6) -> i32 {
    let Some(addr) = first_of6(ip) else {
        return NOT_PUBLISHED;
    };
    verdict(follow_first(ctx, ip, addr))
}

#[inline(always)]
fn follow_first(ctx: &TcContext, ip: &Ipv6, addr: Addr6) -> Result<i32, DropReason> {
    if is_host_addr6(addr) {
        // A reply: its source becomes the published address.
        let Some((_, ep6)) = endpoints_of(ctx) else {
            return Err(DropReason::UnknownEndpoint);
        };
        let hairpin = ip.dst == ep6.gateway;
        rewrite_addr6(ctx, ip, false, ip.src, addr)?;
        return to_client(ctx, ip, hairpin);
    }
    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
    if addr == ip.src {
        return to_self_as_gateway(ctx, ip);
    }
    deliver6(ctx, addr)
}

/// Is this packet (about to enter a container) part of a published flow
/// that [`at_veth`] let in: by its ports, or a later fragment (none) by
/// its first's (`fragments::published_later6`)? This hook sees such flows
/// when the kernel forwards them; eBPF host routing delivers them past it.
#[inline(always)]
pub fn is_published_flow6(ip: &Ipv6, u: &Upper6) -> bool {
    if u.kind != Kind6::Ports {
        return published_later6(ip);
    }
    lookup_local6(&key6(ip.src, ip.dst, u.sport, u.dport, ip.proto)).is_some()
}
