//! IPv6 at the uplinks. `out` (uplink_out) tracks container flows leaving
//! so their replies may come back; `reverse` (uplink_in) lets in replies
//! of tracked flows, ICMPv6 errors quoting them (Packet Too Big included)
//! and the later fragments of a datagram whose first fragment was let in,
//! and drops everything else addressed to a container subnet.
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{CtEntry6, CtKey6, DropReason, FragKey6, CT_F_REPLIED, NET_F_INTERNAL};

use crate::{
    conntrack6::{entry6, key6, lookup_in6, lookup_out6, put_in6, put_out6, touch6},
    endpoint6::network6_of,
    maps::FRAGMENTS6,
    packet::Packet,
    parse::{IPPROTO_TCP, IPPROTO_UDP},
    parse6::{addr6_at, parse_l4_6, Ipv6, Kind6, IPPROTO_ICMPV6, IPV6_HLEN},
};

/// A container's IPv6 packet leaving an uplink.
#[inline(always)]
pub fn out(ctx: &TcContext, ip: &Ipv6) -> Result<(), DropReason> {
    let Some(net) = network6_of(ip.src) else {
        return Ok(());
    };
    if ip.src == net.gateway {
        return Ok(());
    }
    if net.flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::Internal);
    }
    let u = parse_l4_6(ctx, ip);
    u.check()?;
    // Ports, or the echo id as source port; nothing to key others on.
    match u.kind {
        Kind6::Ports | Kind6::EchoRequest => track_routed(
            &key6(ip.src, ip.dst, u.sport, u.dport, ip.proto),
            u.tcp_flags,
        ),
        _ => Ok(()),
    }
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

#[inline(always)]
fn frag_key(ip: &Ipv6) -> FragKey6 {
    FragKey6 {
        saddr: ip.src,
        daddr: ip.dst,
        id: ip.frag_id,
        proto: ip.proto,
        _pad: [0; 3],
    }
}

/// An IPv6 packet arriving at an uplink.
#[inline(always)]
pub fn reverse(ctx: &TcContext, ip: &Ipv6) -> Result<i32, DropReason> {
    if network6_of(ip.dst).is_none() {
        return Ok(TC_ACT_OK);
    }
    if ip.later_fragment {
        // SAFETY: the value lives in the map.
        return match unsafe { FRAGMENTS6.get(&frag_key(ip)) } {
            Some(_) => Ok(TC_ACT_OK),
            None => Err(DropReason::NotAReply),
        };
    }
    let u = parse_l4_6(ctx, ip);
    let in_key = match u.kind {
        Kind6::Ports => {
            let k = key6(ip.src, ip.dst, u.sport, u.dport, ip.proto);
            let e = lookup_in6(&k).ok_or(DropReason::NotAReply)?;
            touch6(e, u.tcp_flags);
            e
        }
        Kind6::EchoReply => {
            let k = key6(ip.src, ip.dst, 0, u.sport, ip.proto);
            let e = lookup_in6(&k).ok_or(DropReason::NotAReply)?;
            touch6(e, 0);
            e
        }
        Kind6::Error => lookup_quoted(ctx, ip).ok_or(DropReason::NotAReply)?,
        Kind6::Refused => return Err(u.reason()),
        Kind6::EchoRequest | Kind6::Other => return Err(DropReason::NotAReply),
    };
    // SAFETY: map value pointer from this program's lookup.
    unsafe {
        if (*in_key).flags & CT_F_REPLIED == 0 {
            (*in_key).flags |= CT_F_REPLIED;
        }
    }
    if ip.first_fragment {
        let _ = FRAGMENTS6.insert(&frag_key(ip), &ip.dst, 0);
    }
    Ok(TC_ACT_OK)
}

/// The flow an ICMPv6 error quotes (the container's packet as it left:
/// source the container, destination the remote end), if tracked.
#[inline(always)]
fn lookup_quoted(ctx: &TcContext, ip: &Ipv6) -> Option<*mut CtEntry6> {
    let q_off = ip.l4_off + 8;
    let q: [u8; IPV6_HLEN] = ctx.read(q_off)?;
    let (src, dst) = (addr6_at(&q, 8), addr6_at(&q, 24));
    if q[0] >> 4 != 6 || src != ip.dst {
        return None;
    }
    let l4: [u8; 8] = ctx.read(q_off + IPV6_HLEN)?;
    let k = match q[6] {
        IPPROTO_TCP | IPPROTO_UDP => key6(
            dst,
            src,
            u16::from_ne_bytes([l4[2], l4[3]]),
            u16::from_ne_bytes([l4[0], l4[1]]),
            q[6],
        ),
        IPPROTO_ICMPV6 => key6(
            dst,
            src,
            0,
            u16::from_ne_bytes([l4[4], l4[5]]),
            IPPROTO_ICMPV6,
        ),
        _ => return None,
    };
    lookup_in6(&k)
}
