//! IPv6 at the uplinks, as `uplink` does for IPv4. `out` (uplink_out)
//! masquerades container flows of masquerading networks (NAT66: the source
//! becomes the uplink's global IPv6 address and a port or echo id from the
//! allocator both families share) and tracks routed ones
//! (`--masquerade=false`) so their replies may come back. `reverse`
//! (uplink_in) translates replies back, and ICMPv6 errors quoting a
//! container's packet (Packet Too Big included: path MTU discovery) inside
//! and out; it lets in the later fragments of a datagram whose first
//! fragment was let in, and drops everything else addressed to a container
//! subnet. With eBPF host routing what it let in goes straight into the
//! container.
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    Addr6, CtEntry6, CtKey6, DropReason, Uplink6, CT_F_DNAT, CT_F_REPLIED, CT_F_SNAT,
    NET_F_INTERNAL, NET_F_MASQUERADE,
};

use crate::{
    conntrack6::{entry6, key6, lookup_in6, lookup_out6, put_in6, put_out6, touch6},
    endpoint6::network6_of,
    fragments::{first_of6, leaving_source6, remember_first6, remember_leaving6},
    maps::UPLINKS6,
    nat::rewrite_port,
    nat6::{parse_quoted6, rewrite_addr6, rewrite_quoted_source6},
    parse::{parse_l3, ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP, L3},
    parse6::{parse_l4_6, Ipv6, Kind6, IPPROTO_ICMPV6},
    redirect::to_container_peer6,
    routing,
    snat::{port_for, NewFlow, V6},
    uplink::uplink_of,
};

/// The uplink's IPv6 masquerade entry, if it has a global address.
#[inline(always)]
fn uplink6_of(ctx: &TcContext) -> Option<&'static Uplink6> {
    // SAFETY: reading a field of the context; the value lives in the map.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { UPLINKS6.get(&ifindex) }.filter(|u| u.addr != [0; 4])
}

/// An IPv6 frame leaving an uplink (uplink_out): its own BPF function.
#[inline(never)]
pub fn leaving(ctx: &TcContext) -> Result<(), DropReason> {
    if uplink_of(ctx).is_none() {
        return Ok(());
    }
    match parse_l3(ctx) {
        L3::Ipv6(ip) => out(ctx, &ip),
        _ => Ok(()),
    }
}

/// First step of `uplink_out` for IPv6, a BPF function of its own (the
/// frame of [`leaving`] has no room for it): a later fragment of a
/// datagram whose first fragment [`out`] translated leaves with the
/// source that one got (a published port's reply as the published
/// address, whatever the network's masquerade setting). `None`: no such
/// fragment ([`leaving`] follows). Packets without extension headers are
/// no fragments: they are told apart without parsing.
#[inline(never)]
pub fn later_fragment_leaving(ctx: &TcContext) -> Option<Result<(), DropReason>> {
    let next: u8 = ctx.load(ETH_HLEN + 6).ok()?;
    if matches!(next, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6) {
        return None;
    }
    uplink_of(ctx)?;
    let L3::Ipv6(ip) = parse_l3(ctx) else {
        return None;
    };
    if !ip.later_fragment {
        return None;
    }
    let src = leaving_source6(&ip)?;
    Some(if src != ip.src {
        rewrite_addr6(ctx, &ip, false, ip.src, src)
    } else {
        Ok(())
    })
}

/// An IPv6 frame arriving at an uplink (uplink_in): its own BPF function.
#[inline(never)]
pub fn arriving(ctx: &TcContext) -> Result<i32, DropReason> {
    if uplink_of(ctx).is_none() {
        return Ok(TC_ACT_OK);
    }
    match parse_l3(ctx) {
        L3::Ipv6(ip) => reverse(ctx, &ip),
        // A chain the parser refuses could hide a container address the
        // stack would forward to.
        L3::Invalid(reason) if reason != DropReason::Malformed => Err(reason),
        _ => Ok(TC_ACT_OK),
    }
}

/// A container's IPv6 packet leaving an uplink.
#[inline(always)]
fn out(ctx: &TcContext, ip: &Ipv6) -> Result<(), DropReason> {
    let Some(net) = network6_of(ip.src) else {
        return Ok(());
    };
    if ip.src == net.gateway {
        return Ok(());
    }
    if net.flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::Internal);
    }
    let up = uplink6_of(ctx).filter(|_| net.flags & NET_F_MASQUERADE != 0);
    let u = parse_l4_6(ctx, ip);
    u.check()?;
    // Ports, or the echo id as source port; nothing to key others on
    // (later fragments, errors, other protocols): the address alone is
    // translated.
    let (sport, dport) = match u.kind {
        Kind6::Ports => (u.sport, u.dport),
        Kind6::EchoRequest => (u.sport, 0),
        _ => {
            // Later fragments of a datagram whose first was seen were
            // taken by `later_fragment_leaving`.
            if let Some(up) = up {
                rewrite_addr6(ctx, ip, false, ip.src, up.addr)?;
            }
            return Ok(());
        }
    };
    let out_key = key6(ip.src, ip.dst, sport, dport, ip.proto);
    let tracked = lookup_out6(&out_key);
    if let Some(e) = tracked {
        // SAFETY: map value pointer from this program's lookup.
        let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
        if flags & CT_F_DNAT != 0 {
            // A reply from a published port: it leaves as the published
            // address and port, whatever the network's masquerade setting.
            touch6(e, u.tcp_flags);
            remember_leaving6(ip, &addr);
            rewrite_addr6(ctx, ip, false, ip.src, addr)?;
            if port != sport {
                rewrite_port(ctx, ip, false, sport, port)?;
            }
            return Ok(());
        }
    }
    let Some(up) = up else {
        return track_routed(&out_key, u.tcp_flags);
    };
    let flow = NewFlow::<V6> {
        proto: ip.proto,
        src: ip.src,
        dst: ip.dst,
        sport,
        dport,
        out_key: &out_key,
        nat_addr: up.addr,
        ports: (up.port_min, up.port_max),
        tcp_flags: u.tcp_flags,
    };
    let (nat_port, _) = port_for(ctx, tracked, &flow)?;
    remember_leaving6(ip, &up.addr);
    rewrite_addr6(ctx, ip, false, ip.src, up.addr)?;
    if nat_port != sport {
        rewrite_port(ctx, ip, false, sport, nat_port)?;
    }
    Ok(())
}

/// A routed flow: remember it so its replies get in.
#[inline(always)]
fn track_routed(out_key: &CtKey6, tcp_flags: u8) -> Result<(), DropReason> {
    if let Some(e) = lookup_out6(out_key) {
        touch6(e, tcp_flags);
        return Ok(());
    }
    let entry = entry6(out_key.saddr, out_key.sport, 0, tcp_flags);
    if put_in6(
        &out_key.reversed(),
        &CtEntry6 {
            tcp_flags: 0,
            ..entry
        },
    ) && put_out6(out_key, &entry)
    {
        Ok(())
    } else {
        Err(DropReason::CtInsert)
    }
}

/// A packet let in for container `addr`: with eBPF host routing straight
/// into the container, else (and for every fallback) to the stack.
#[inline(always)]
pub fn deliver6(ctx: &TcContext, addr: Addr6) -> Result<i32, DropReason> {
    if !routing::enabled() {
        return Ok(TC_ACT_OK);
    }
    Ok(to_container_peer6(ctx, addr)?.unwrap_or(TC_ACT_OK))
}

/// An IPv6 packet arriving at an uplink.
#[inline(always)]
fn reverse(ctx: &TcContext, ip: &Ipv6) -> Result<i32, DropReason> {
    let to_container = network6_of(ip.dst).is_some();
    let refuse = if to_container {
        Err(DropReason::NotAReply)
    } else {
        Ok(TC_ACT_OK)
    };
    if ip.later_fragment {
        // Follows its first fragment into the container; one that
        // overtook its first is refused as one of no flow.
        return match first_of6(ip) {
            Some(addr) => {
                if addr != ip.dst {
                    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
                }
                deliver6(ctx, addr)
            }
            None => refuse,
        };
    }
    let u = parse_l4_6(ctx, ip);
    let (sport, dport) = match u.kind {
        Kind6::Ports => (u.sport, u.dport),
        Kind6::EchoReply => (0, u.sport),
        Kind6::Error => return reverse_error(ctx, ip, refuse),
        Kind6::Refused if to_container => return Err(u.reason()),
        Kind6::Refused | Kind6::EchoRequest | Kind6::Other => return refuse,
    };
    let Some(e) = lookup_in6(&key6(ip.src, ip.dst, sport, dport, ip.proto)) else {
        return refuse;
    };
    touch6(e, u.tcp_flags);
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
    if flags & CT_F_REPLIED == 0 {
        unsafe { (*e).flags |= CT_F_REPLIED };
    }
    if flags & CT_F_SNAT == 0 {
        // A reply to a routed (not masqueraded) flow.
        remember_first6(ip, ip.dst);
        return deliver6(ctx, ip.dst);
    }
    remember_first6(ip, addr);
    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
    if port != dport {
        rewrite_port(ctx, ip, true, dport, port)?;
    }
    // A first fragment goes where its later fragments follow it.
    deliver6(ctx, addr)
}

/// An ICMPv6 error about a packet a container sent: its flow is found by
/// the quoted packet (as it left: source the container or the uplink's
/// address, destination the remote end); a masqueraded flow's error gets
/// the destination and the quote translated back.
#[inline(always)]
fn reverse_error(
    ctx: &TcContext,
    ip: &Ipv6,
    refuse: Result<i32, DropReason>,
) -> Result<i32, DropReason> {
    let Some(q) = parse_quoted6(ctx, ip) else {
        return refuse;
    };
    if q.src != ip.dst {
        return refuse;
    }
    let k = if q.proto == IPPROTO_ICMPV6 {
        key6(q.dst, q.src, 0, q.sport, IPPROTO_ICMPV6)
    } else {
        key6(q.dst, q.src, q.dport, q.sport, q.proto)
    };
    let Some(e) = lookup_in6(&k) else {
        return refuse;
    };
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
    if flags & CT_F_SNAT == 0 {
        return deliver6(ctx, ip.dst);
    }
    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
    rewrite_quoted_source6(ctx, ip, &q, addr, port)?;
    deliver6(ctx, addr)
}
