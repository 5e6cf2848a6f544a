//! Published ports: the lookup every hook shares, and the translation of
//! flows from containers to a published port (which never leave the host).
use aya_ebpf::programs::TcContext;
use netd_common::{DropReason, Endpoint, PublishKey, PublishTarget, CT_F_DNAT, CT_F_SNAT};

use crate::{
    conntrack::{entry, key, lookup_local, put_local, touch},
    maps::{HOST_ADDRS, PUBLISHED},
    nat::{rewrite_addr, rewrite_port},
    parse::Ipv4,
};

/// The target of `addr:port/proto`: an exact host address first, then a
/// port published on every host address.
#[inline(always)]
pub fn lookup(addr: u32, port: u16, proto: u8) -> Option<PublishTarget> {
    let exact = PublishKey { addr, port, proto, _pad: 0 };
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
/// its gateway), and remember both directions so the target's replies are
/// translated back and pass isolation.
#[inline(always)]
pub fn dnat_from_container(
    ctx: &TcContext,
    ip: &Ipv4,
    ep: &Endpoint,
    ports: (u16, u16, u8),
    target: PublishTarget,
) -> Result<(), DropReason> {
    let (sport, dport, tcp_flags) = ports;
    let hairpin = target.addr == ip.src;
    let src = if hairpin { ep.gateway } else { ip.src };
    let fwd = key(src, target.addr, sport, target.port, ip.proto);
    match lookup_local(&fwd) {
        Some(e) => touch(e, tcp_flags),
        None => {
            let mut back = entry(ip.dst, dport, CT_F_SNAT | CT_F_DNAT, 0);
            if hairpin {
                back.peer = ip.src;
            }
            if !put_local(&fwd, &entry(ip.dst, dport, CT_F_DNAT, tcp_flags))
                || !put_local(&fwd.reversed(), &back)
            {
                return Err(DropReason::CtInsert);
            }
        }
    }
    let bad = |_| DropReason::Malformed;
    rewrite_addr(ctx, ip, true, ip.dst, target.addr).map_err(bad)?;
    if target.port != dport {
        rewrite_port(ctx, ip, true, dport, target.port).map_err(bad)?;
    }
    if hairpin {
        rewrite_addr(ctx, ip, false, ip.src, ep.gateway).map_err(bad)?;
    }
    Ok(())
}

/// A published flow's reply leaving its target container: restore the
/// published address and port as source (and the hairpin peer as
/// destination). Returns false when the packet is not such a reply.
#[inline(always)]
pub fn reverse_from_target(ctx: &TcContext, ip: &Ipv4, ports: (u16, u16, u8)) -> Result<bool, DropReason> {
    let (sport, dport, tcp_flags) = ports;
    let Some(e) = lookup_local(&key(ip.src, ip.dst, sport, dport, ip.proto)) else {
        return Ok(false);
    };
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags, peer) = unsafe { ((*e).addr, (*e).port, (*e).flags, (*e).peer) };
    if flags & CT_F_SNAT == 0 {
        return Ok(false);
    }
    touch(e, tcp_flags);
    let bad = |_| DropReason::Malformed;
    rewrite_addr(ctx, ip, false, ip.src, addr).map_err(bad)?;
    if port != sport {
        rewrite_port(ctx, ip, false, sport, port).map_err(bad)?;
    }
    if peer != 0 {
        rewrite_addr(ctx, ip, true, ip.dst, peer).map_err(bad)?;
    }
    Ok(true)
}

/// Is this packet (about to enter a container) part of a published flow
/// that `dnat_from_container` let in?
#[inline(always)]
pub fn is_published_flow(ip: &Ipv4, ports: (u16, u16, u8)) -> bool {
    lookup_local(&key(ip.src, ip.dst, ports.0, ports.1, ip.proto)).is_some()
}
