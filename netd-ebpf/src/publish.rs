//! Published ports: the lookup every hook shares, and the translation of
//! flows from containers to a published port (which never leave the host).
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{DropReason, Endpoint, PublishKey, PublishTarget, CT_F_DNAT, CT_F_SNAT};

use crate::{
    conntrack::{entry, key, lookup_local, put_local, touch},
    drops::drop_packet,
    fragments,
    maps::{ENDPOINTS, HOST_ADDRS, PUBLISHED},
    nat::{rewrite_addr, rewrite_port},
    parse::{parse_l3, parse_l4, Ipv4, ETH_HLEN, ETH_P_IP, L3},
    publish6::NOT_PUBLISHED,
    redirect::{endpoint_at, to_container_peer, to_container_veth},
    routing,
};

/// The target of `addr:port/proto`: an exact host address first, then a
/// port published on every host address.
#[inline(always)]
pub fn lookup(addr: u32, port: u16, proto: u8) -> Option<PublishTarget> {
    let exact = PublishKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    if let Some(t) = unsafe { PUBLISHED.get(&exact) } {
        return Some(*t);
    }
    let any = PublishKey { addr: 0, ..exact };
    unsafe { PUBLISHED.get(&any) }.copied()
}

#[inline(always)]
pub fn is_host_addr(addr: u32) -> bool {
    unsafe { HOST_ADDRS.get(&addr) }.is_some()
}

/// A container's packet to a host address's published port: rewrite the
/// destination to the target (and, for a hairpin to itself, the source to
/// its gateway, delivering it straight back), and remember both directions
/// so the target's replies are translated back and pass isolation. A
/// first fragment goes where whole datagrams go, its later fragments
/// follow it there ([`later_fragment`]). Returns the TC verdict.
#[inline(always)]
pub fn dnat_from_container(
    ctx: &TcContext,
    ip: &Ipv4,
    ep: &Endpoint,
    ifindex: u32,
    ports: (u16, u16, u8),
    target: PublishTarget,
) -> Result<i32, DropReason> {
    let (sport, dport, tcp_flags) = ports;
    let hairpin = target.addr == ip.src;
    let src = if hairpin { ep.gateway } else { ip.src };
    let fwd = key(src, target.addr, sport, target.port, ip.proto);
    match lookup_local(&fwd) {
        Some(e) => touch(e, tcp_flags),
        None => {
            let mut back = entry(ip.dst, dport, CT_F_SNAT | CT_F_DNAT, 0);
            back.ifindex = ifindex;
            if hairpin {
                back.peer = ip.src;
            }
            if !put_local(&fwd, &entry(ip.dst, dport, CT_F_DNAT, tcp_flags))
                || !put_local(&fwd.reversed(), &back)
            {
                return Err(DropReason::CtInsert);
            }
            crate::events::new_flow(
                ctx,
                netd_common::HOOK_FROM_CONTAINER,
                ip.proto,
                (ip.src, sport),
                (ip.dst, dport),
                netd_common::NAT_DNAT,
                (target.addr, target.port),
            );
        }
    }
    fragments::remember_first(ip, target.addr);
    if !hairpin {
        // The target lets its later fragments in (`to_container`).
        fragments::remember_published(ip, src, target.addr);
    }
    rewrite_addr(ctx, ip, true, ip.dst, target.addr)?;
    if target.port != dport {
        rewrite_port(ctx, ip, true, dport, target.port)?;
    }
    to_target(ctx, ip, ep, ifindex, target.addr)
}

/// A packet whose destination is already the target `addr`: for a
/// hairpin (`addr` is the sender) the source becomes its gateway and it
/// goes straight back out of its veth; with eBPF host routing it is
/// routed to the target as the stack would, without its FORWARD hook;
/// else the stack routes it.
#[inline(always)]
fn to_target(
    ctx: &TcContext,
    ip: &Ipv4,
    ep: &Endpoint,
    ifindex: u32,
    addr: u32,
) -> Result<i32, DropReason> {
    if addr == ip.src {
        rewrite_addr(ctx, ip, false, ip.src, ep.gateway)?;
        return to_container_veth(ctx, ifindex, ep.mac, ep.gateway);
    }
    if routing::enabled() {
        return Ok(to_container_peer(ctx, addr)?.unwrap_or(TC_ACT_OK));
    }
    Ok(TC_ACT_OK)
}

/// A published flow's reply leaving its target container: restore the
/// published address and port as source (and the hairpin peer as
/// destination) and deliver it to the client's veth. Returns the TC
/// verdict, or `None` when the packet is not such a reply.
#[inline(always)]
pub fn reverse_from_target(
    ctx: &TcContext,
    ip: &Ipv4,
    ports: (u16, u16, u8),
) -> Result<Option<i32>, DropReason> {
    let (sport, dport, tcp_flags) = ports;
    let Some(e) = lookup_local(&key(ip.src, ip.dst, sport, dport, ip.proto)) else {
        return Ok(None);
    };
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags, peer, ifindex) =
        unsafe { ((*e).addr, (*e).port, (*e).flags, (*e).peer, (*e).ifindex) };
    if flags & CT_F_SNAT == 0 {
        return Ok(None);
    }
    touch(e, tcp_flags);
    // Its later fragments: the address it leaves with.
    fragments::remember_first(ip, addr);
    rewrite_addr(ctx, ip, false, ip.src, addr)?;
    if port != sport {
        rewrite_port(ctx, ip, false, sport, port)?;
    }
    if peer != 0 {
        rewrite_addr(ctx, ip, true, ip.dst, peer)?;
    }
    // SAFETY: the value lives in the map.
    let Some(client_ep) = (unsafe { ENDPOINTS.get(&ifindex) }) else {
        return Err(DropReason::UnknownEndpoint);
    };
    to_container_veth(ctx, ifindex, client_ep.mac, client_ep.gateway).map(Some)
}

/// First IPv4 step of `from_container` (after `publish6::at_veth`, before
/// the hook's own work; a BPF function of its own, the hook's frame has
/// no room for it): a later fragment of a published flow a container
/// sends ([`later_fragment`]). Other packets are told apart without
/// parsing. `NOT_PUBLISHED`: not such a fragment.
#[inline(never)]
pub fn later_fragment_at_veth(ctx: &TcContext) -> i32 {
    if !is_later_fragment(ctx) {
        return NOT_PUBLISHED;
    }
    // SAFETY: reading a field of the context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: the value lives in the map.
    let Some(ep) = (unsafe { ENDPOINTS.get(&ifindex) }) else {
        return NOT_PUBLISHED;
    };
    let L3::Ipv4(ip) = parse_l3(ctx) else {
        return NOT_PUBLISHED;
    };
    if ip.src != ep.ip || !ip.later_fragment {
        return NOT_PUBLISHED;
    }
    match later_fragment(ctx, &ip, ep) {
        Ok(Some(verdict)) => verdict,
        Ok(None) => NOT_PUBLISHED,
        Err(reason) => drop_packet(reason),
    }
}

/// An untagged IPv4 frame with a fragment offset (a later fragment).
#[inline(always)]
fn is_later_fragment(ctx: &TcContext) -> bool {
    // SAFETY: reading a field of the context.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0
        || ctx.load::<[u8; 2]>(12).ok() != Some(ETH_P_IP.to_be_bytes())
    {
        return false;
    }
    ctx.load::<[u8; 2]>(ETH_HLEN + 6)
        .is_ok_and(|f| u16::from_be_bytes(f) & 0x1fff != 0)
}

/// A later fragment container `ep` (behind host veth `ifindex`) sends, of
/// a datagram whose first fragment was translated here: to a published
/// port (`FRAGMENTS` holds the target, a container address) it follows
/// its first to the target, the source becoming the gateway for a
/// hairpin; a published flow's reply (`FRAGMENTS` holds the published
/// host address) leaves as that address to the client's veth (for a
/// hairpin, sent to the gateway, to the target itself). `None`: no such
/// first fragment (the policy judges it).
#[inline(always)]
fn later_fragment(ctx: &TcContext, ip: &Ipv4, ep: &Endpoint) -> Result<Option<i32>, DropReason> {
    let Some(addr) = fragments::first_of(ip) else {
        return Ok(None);
    };
    if !is_host_addr(addr) {
        rewrite_addr(ctx, ip, true, ip.dst, addr)?;
        // SAFETY: reading a field of the context.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        return to_target(ctx, ip, ep, ifindex, addr).map(Some);
    }
    rewrite_addr(ctx, ip, false, ip.src, addr)?;
    let client = if ip.dst == ep.gateway {
        rewrite_addr(ctx, ip, true, ip.dst, ip.src)?;
        ip.src
    } else {
        ip.dst
    };
    let Some(c) = endpoint_at(client) else {
        return Err(DropReason::UnknownEndpoint);
    };
    to_container_veth(ctx, c.ifindex, c.mac, c.gateway).map(Some)
}

/// Is this packet (about to enter a container) part of a published flow
/// that `dnat_from_container` let in: by its ports, or a later fragment
/// (none) by its first's (`fragments::published_later`)? This hook sees
/// such flows when the kernel forwards them; eBPF host routing delivers
/// them past it.
#[inline(always)]
pub fn is_published_flow(ctx: &TcContext, ip: &Ipv4) -> bool {
    match parse_l4(ctx, ip).and_then(|l4| l4.ports()) {
        Some((sport, dport, _)) => {
            lookup_local(&key(ip.src, ip.dst, sport, dport, ip.proto)).is_some()
        }
        None => fragments::published_later(ip),
    }
}
