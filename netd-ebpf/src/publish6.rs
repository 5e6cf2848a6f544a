//! Published ports over IPv6: the lookup and new flows from beyond an
//! uplink (the destination becomes the container's IPv6 address and port,
//! the client's address is kept), tracked in `CT6_IN`/`CT6_OUT` with
//! `CT_F_SNAT | CT_F_DNAT` so that `uplink6` translates their next packets
//! and their replies as the IPv4 rule does. Host processes reach published
//! ports through `sock` (`connect6`, ...). Not yet: containers to a
//! published IPv6 port through a host address (hairpin).
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    Addr6, DropReason, PublishKey6, PublishTarget6, CT_F_DNAT, CT_F_REPLIED, CT_F_SNAT,
};

use crate::{
    conntrack6::{entry6, key6, lookup_in6, put_in6, put_out6},
    drops::drop_packet,
    maps::{HOST_ADDRS6, PUBLISHED6, UPLINKS},
    nat::rewrite_port,
    nat6::{rewrite_addr6, IP6_DST_OFF},
    parse::{ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP},
    parse6::{addr6_at, parse_l4_6, Ipv6, Kind6, IPV6_HLEN},
    redirect::to_container_peer6,
    routing,
};

/// What the entry points return when the packet is no published flow's
/// (the hook's own work follows).
pub const NOT_PUBLISHED: i32 = -1;

const ETH_P_IPV6: u16 = 0x86dd;

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

/// The IPv6 packet of a TC hook if it may be a published flow's: no VLAN
/// tag, TCP or UDP right after the fixed header. Packets with extension
/// headers (fragments included) are no published flow's: the hook's own
/// parse and policy judge them.
#[inline(always)]
fn ipv6_of(ctx: &TcContext) -> Option<Ipv6> {
    // SAFETY: reading a field of the context the kernel handed us.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        return None;
    }
    let ethertype: [u8; 2] = ctx.load(12).ok()?;
    if u16::from_be_bytes(ethertype) != ETH_P_IPV6 {
        return None;
    }
    let h: [u8; IPV6_HLEN] = ctx.load(ETH_HLEN).ok()?;
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = ETH_HLEN + IPV6_HLEN + payload_len;
    if h[0] >> 4 != 6 || !(h[6] == IPPROTO_TCP || h[6] == IPPROTO_UDP) || end > ctx.len() as usize {
        return None;
    }
    Some(Ipv6 {
        src: addr6_at(&h, 8),
        dst: addr6_at(&h, 24),
        proto: h[6],
        l4_off: ETH_HLEN + IPV6_HLEN,
        hop_limit: h[7],
        later_fragment: false,
        first_fragment: false,
        frag_id: 0,
        end,
    })
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
    let Some(ip) = ipv6_of(ctx) else {
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
/// translated to its target. `None`: not ours (no such port, or a tracked
/// flow of another kind, e.g. a masqueraded flow's reply).
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
    rewrite_addr6(ctx, ip, true, ip.dst, addr)?;
    if port != u.dport {
        rewrite_port(ctx, ip, true, u.dport, port)?;
    }
    Ok(Some(TRANSLATED))
}
