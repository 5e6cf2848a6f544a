//! Programs on the host's uplinks.
//!
//! `uplink_out` (TCX egress) masquerades container flows: the source becomes
//! the uplink's address and a port (or ICMP echo id) allocated per
//! destination. Flows of networks with masquerade off leave untouched but
//! are tracked, so their replies may come back. `uplink_in` (TCX ingress)
//! reverse-translates replies (and ICMP errors quoting them) and drops
//! anything else addressed to a container subnet.
use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, maps::lpm_trie::Key, programs::TcContext};
use netd_common::{
    CtEntry, CtKey, DropReason, NetworkInfo, PublishTarget, Uplink, CT_F_DNAT, CT_F_REPLIED,
    CT_F_SNAT, HOOK_UPLINK_IN, HOOK_UPLINK_OUT, NAT_DNAT, NAT_SNAT, NET_F_INTERNAL,
    NET_F_MASQUERADE,
};

use crate::{
    conntrack::{entry, key, lookup_in, lookup_out, put_in, put_out, touch},
    drops::drop_packet,
    events, fragments,
    maps::{NETWORKS, UPLINKS},
    nat::{parse_quoted, rewrite_addr, rewrite_port, rewrite_quoted_source},
    parse::{parse_l3, parse_l4, Ipv4, ETH_P_IPV6, IPPROTO_ICMP, L3, L4},
    publish::{self, is_host_addr},
    publish6,
    redirect::to_container_peer,
    routing,
    snat::{port_for, NewFlow, V4},
    uplink6,
};

#[inline(always)]
pub fn uplink_of(ctx: &TcContext) -> Option<&'static Uplink> {
    // SAFETY: reading a field of the context; the value lives in the map.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { UPLINKS.get(&ifindex) }
}

#[inline(always)]
fn network_of(addr: u32) -> Option<&'static NetworkInfo> {
    NETWORKS.get(&Key::new(32, addr))
}

#[inline(always)]
fn verdict(result: Result<(), DropReason>) -> i32 {
    match result {
        Ok(()) => TC_ACT_OK,
        Err(reason) => drop_packet(reason),
    }
}

/// Each family's path is a BPF function of its own (`masquerade` and
/// `uplink6::leaving`, `reverse` and `uplink6::arriving`): inlined into
/// one frame, the two exceed the verifier's 512 bytes of stack.
#[classifier]
pub fn uplink_out(ctx: TcContext) -> i32 {
    if is_ipv6(&ctx) {
        let r = match uplink6::later_fragment_leaving(&ctx) {
            Some(r) => r,
            None => uplink6::leaving(&ctx),
        };
        return verdict(r);
    }
    verdict(masquerade(&ctx))
}

#[classifier]
pub fn uplink_in(ctx: TcContext) -> i32 {
    // Each step is a BPF function of its own, called one after the other
    // (their stack frames never add up): new flows to a published IPv6
    // port first, then the family's reverse translation.
    let r = if is_ipv6(&ctx) {
        match publish6::at_uplink_ingress(&ctx) {
            publish6::NOT_PUBLISHED => uplink6::arriving(&ctx),
            publish6::TRANSLATED => return publish6::deliver_translated(&ctx),
            v => return v,
        }
    } else {
        arriving4(&ctx)
    };
    match r {
        Ok(v) => v,
        Err(reason) => drop_packet(reason),
    }
}

/// An IPv4 frame arriving at an uplink: its own BPF function.
#[inline(never)]
fn arriving4(ctx: &TcContext) -> Result<i32, DropReason> {
    reverse(ctx)
}

/// An untagged IPv6 frame?
#[inline(always)]
pub fn is_ipv6(ctx: &TcContext) -> bool {
    // SAFETY: reading a field of the context.
    let tagged = unsafe { (*ctx.skb.skb).vlan_present } != 0;
    !tagged && ctx.load::<[u8; 2]>(12).ok() == Some(ETH_P_IPV6.to_be_bytes())
}

/// A packet for container `addr` (translated or not): with eBPF host
/// routing, deliver it straight into the container, else (and for every
/// fallback) let the stack route it.
#[inline(always)]
fn deliver(ctx: &TcContext, addr: u32) -> Result<i32, DropReason> {
    if !routing::enabled() {
        return Ok(TC_ACT_OK);
    }
    match to_container_peer(ctx, addr) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Ok(TC_ACT_OK),
        Err(reason) => Err(reason),
    }
}

/// The conntrack key fields of a packet leaving a container: ports, or the
/// echo id as source port, or nothing for protocols without ports.
#[inline(always)]
fn out_ports(l4: &L4) -> Option<(u16, u16, u8)> {
    match *l4 {
        L4::Ports {
            sport,
            dport,
            tcp_flags,
        } => Some((sport, dport, tcp_flags)),
        L4::Echo { request: true, id } => Some((id, 0, 0)),
        _ => None,
    }
}

#[inline(never)]
fn masquerade(ctx: &TcContext) -> Result<(), DropReason> {
    let Some(up) = uplink_of(ctx) else {
        return Ok(());
    };
    let ip = match parse_l3(ctx) {
        L3::Ipv4(ip) => ip,
        // Taken by `uplink6::leaving`.
        _ => return Ok(()),
    };
    let Some(net) = network_of(ip.src) else {
        return Ok(());
    };
    if ip.src == net.gateway {
        return Ok(());
    }
    if net.flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::Internal);
    }
    let masq = net.flags & NET_F_MASQUERADE != 0 && up.addr != 0;
    let l4 = parse_l4(ctx, &ip).ok_or(DropReason::Malformed)?;
    let Some((sport, dport, tcp_flags)) = out_ports(&l4) else {
        // Nothing to key a flow on (later fragments, ICMP errors, other
        // protocols): the address alone is translated, a later fragment's
        // as its first's was (a published port's reply leaves as the
        // published address, whatever the network's masquerade setting).
        let first = if ip.later_fragment {
            fragments::leaving_source(&ip)
        } else {
            None
        };
        match first.or(if masq { Some(up.addr) } else { None }) {
            Some(src) if src != ip.src => rewrite_addr(ctx, &ip, false, ip.src, src)?,
            _ => {}
        }
        return Ok(());
    };
    let out_key = key(ip.src, ip.dst, sport, dport, ip.proto);
    let tracked = lookup_out(&out_key);
    if let Some(e) = tracked {
        // SAFETY: map value pointer from this program's lookup.
        let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
        if flags & CT_F_DNAT != 0 {
            // A reply from a published port: it leaves as the published
            // address and port, whatever the network's masquerade setting.
            touch(e, tcp_flags);
            fragments::remember_leaving(&ip, addr);
            rewrite_addr(ctx, &ip, false, ip.src, addr)?;
            if port != sport {
                rewrite_port(ctx, &ip, false, sport, port)?;
            }
            return Ok(());
        }
    }
    if !masq {
        return track_routed(ctx, &out_key, tcp_flags);
    }
    let flow = NewFlow::<V4> {
        proto: ip.proto,
        src: ip.src,
        dst: ip.dst,
        sport,
        dport,
        out_key: &out_key,
        nat_addr: up.addr,
        ports: (up.port_min, up.port_max),
        tcp_flags,
    };
    let (nat_port, new) = port_for(ctx, tracked, &flow)?;
    if new {
        events::new_flow(
            ctx,
            HOOK_UPLINK_OUT,
            ip.proto,
            (ip.src, sport),
            (ip.dst, dport),
            NAT_SNAT,
            (up.addr, nat_port),
        );
    }
    fragments::remember_leaving(&ip, up.addr);
    rewrite_addr(ctx, &ip, false, ip.src, up.addr)?;
    if nat_port != sport {
        rewrite_port(ctx, &ip, false, sport, nat_port)?;
    }
    Ok(())
}

/// A routed (not masqueraded) flow: remember it so its replies get in.
#[inline(always)]
fn track_routed(ctx: &TcContext, out_key: &CtKey, tcp_flags: u8) -> Result<(), DropReason> {
    if let Some(e) = lookup_out(out_key) {
        touch(e, tcp_flags);
        return Ok(());
    }
    let entry = entry(out_key.saddr, out_key.sport, 0, tcp_flags);
    if put_in(
        &out_key.reversed(),
        &CtEntry {
            tcp_flags: 0,
            ..entry
        },
    ) && put_out(out_key, &entry)
    {
        events::new_flow(
            ctx,
            HOOK_UPLINK_OUT,
            out_key.proto,
            (out_key.saddr, out_key.sport),
            (out_key.daddr, out_key.dport),
            0,
            (0, 0),
        );
        Ok(())
    } else {
        Err(DropReason::CtInsert)
    }
}

#[inline(never)]
fn reverse(ctx: &TcContext) -> Result<i32, DropReason> {
    if uplink_of(ctx).is_none() {
        return Ok(TC_ACT_OK);
    }
    let ip = match parse_l3(ctx) {
        L3::Ipv4(ip) => ip,
        // IPv6 is taken by `uplink6::arriving`.
        _ => return Ok(TC_ACT_OK),
    };
    let to_container = network_of(ip.dst).is_some();
    let refuse = if to_container {
        Err(DropReason::NotAReply)
    } else {
        Ok(TC_ACT_OK)
    };
    if ip.later_fragment {
        // Follows its first fragment into the container; one that
        // overtook its first is refused as one of no flow.
        return match fragments::translate_later(ctx, &ip)? {
            Some(dst) => deliver(ctx, dst),
            None => refuse,
        };
    }
    let Some(l4) = parse_l4(ctx, &ip) else {
        return refuse;
    };
    let (sport, dport, tcp_flags) = match l4 {
        L4::Ports {
            sport,
            dport,
            tcp_flags,
        } => (sport, dport, tcp_flags),
        L4::Echo { request: false, id } => (0, id, 0),
        L4::IcmpError => return reverse_icmp_error(ctx, &ip, refuse),
        L4::Echo { request: true, .. } | L4::Other => return refuse,
    };
    let in_key = key(ip.src, ip.dst, sport, dport, ip.proto);
    let Some(e) = lookup_in(&in_key) else {
        if !to_container && is_host_addr(ip.dst) {
            if let Some(target) = publish::lookup(ip.dst, dport, ip.proto) {
                return dnat_from_world(ctx, &ip, &in_key, target, tcp_flags);
            }
        }
        return refuse;
    };
    touch(e, tcp_flags);
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
    if flags & CT_F_REPLIED == 0 {
        unsafe { (*e).flags |= CT_F_REPLIED };
    }
    if flags & CT_F_SNAT == 0 {
        // A reply to a routed (not masqueraded) flow: its later
        // fragments are let in after it.
        fragments::remember_first(&ip, ip.dst);
        return deliver(ctx, ip.dst);
    }
    fragments::remember_first(&ip, addr);
    rewrite_addr(ctx, &ip, true, ip.dst, addr)?;
    if port != dport {
        rewrite_port(ctx, &ip, true, dport, port)?;
    }
    // A first fragment goes where its later fragments follow it.
    deliver(ctx, addr)
}

/// A new flow from beyond the uplink to a published port: translate the
/// destination to the target and track both directions (the client's
/// address is kept: the container sees who connected).
#[inline(always)]
fn dnat_from_world(
    ctx: &TcContext,
    ip: &Ipv4,
    in_key: &CtKey,
    target: PublishTarget,
    tcp_flags: u8,
) -> Result<i32, DropReason> {
    let inbound = entry(
        target.addr,
        target.port,
        CT_F_SNAT | CT_F_DNAT | CT_F_REPLIED,
        tcp_flags,
    );
    let out_key = key(target.addr, ip.src, target.port, in_key.sport, ip.proto);
    if !put_in(in_key, &inbound)
        || !put_out(
            &out_key,
            &entry(ip.dst, in_key.dport, CT_F_SNAT | CT_F_DNAT, 0),
        )
    {
        return Err(DropReason::CtInsert);
    }
    events::new_flow(
        ctx,
        HOOK_UPLINK_IN,
        ip.proto,
        (ip.src, in_key.sport),
        (ip.dst, in_key.dport),
        NAT_DNAT,
        (target.addr, target.port),
    );
    fragments::remember_first(ip, target.addr);
    rewrite_addr(ctx, ip, true, ip.dst, target.addr)?;
    if target.port != in_key.dport {
        rewrite_port(ctx, ip, true, in_key.dport, target.port)?;
    }
    deliver(ctx, target.addr)
}

/// An ICMP error about a packet a container sent: find its flow by the
/// quoted header, then translate the outer destination and the quote.
#[inline(always)]
fn reverse_icmp_error(
    ctx: &TcContext,
    ip: &Ipv4,
    refuse: Result<i32, DropReason>,
) -> Result<i32, DropReason> {
    let Some(q) = parse_quoted(ctx, ip) else {
        return refuse;
    };
    let in_key = if q.proto == IPPROTO_ICMP {
        key(q.dst, q.src, 0, q.sport, IPPROTO_ICMP)
    } else {
        key(q.dst, q.src, q.dport, q.sport, q.proto)
    };
    let Some(e) = lookup_in(&in_key) else {
        return refuse;
    };
    // SAFETY: map value pointer from this program's lookup.
    let (addr, port, flags) = unsafe { ((*e).addr, (*e).port, (*e).flags) };
    if flags & CT_F_SNAT == 0 {
        return deliver(ctx, ip.dst);
    }
    rewrite_addr(ctx, ip, true, ip.dst, addr)?;
    rewrite_quoted_source(ctx, ip.l4_off + 2, &q, addr, port)?;
    deliver(ctx, addr)
}
