//! Published ports: the lookup every hook shares, and the translation of
//! flows from containers to a published port (which never leave the host).
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    DropReason, Endpoint, Fallback, PublishKey, PublishTarget, CT_F_DNAT, CT_F_SNAT,
};

use crate::{
    conntrack::{entry, key, lookup_local, put_local, touch},
    maps::{ENDPOINTS, HOST_ADDRS, PUBLISHED},
    nat::{rewrite_addr, rewrite_port},
    parse::Ipv4,
    redirect::{to_container_peer, to_container_veth},
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
/// so the target's replies are translated back and pass isolation.
/// Returns the TC verdict.
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
    rewrite_addr(ctx, ip, true, ip.dst, target.addr)?;
    if target.port != dport {
        rewrite_port(ctx, ip, true, dport, target.port)?;
    }
    if hairpin {
        rewrite_addr(ctx, ip, false, ip.src, ep.gateway)?;
        return to_container_veth(ctx, ifindex, ep.mac, ep.gateway);
    }
    if routing::enabled() {
        if ip.first_fragment {
            return Ok(routing::fallback(Fallback::Fragment));
        }
        // Routed to the target as the stack would, without its FORWARD hook.
        return Ok(to_container_peer(ctx, target.addr)?.unwrap_or(TC_ACT_OK));
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

/// Is this packet (about to enter a container) part of a published flow
/// that `dnat_from_container` let in?
#[inline(always)]
pub fn is_published_flow(ip: &Ipv4, ports: (u16, u16, u8)) -> bool {
    lookup_local(&key(ip.src, ip.dst, ports.0, ports.1, ip.proto)).is_some()
}
