//! Container to the world, IPv4 and IPv6: the kernel's fib
//! (`bpf_fib_lookup`, AF_INET or AF_INET6) picks the next hop (an uplink,
//! or any other routed device but a bridge), the program sends the packet
//! to it (`bpf_redirect` with the resolved
//! neighbour's MAC, or `bpf_redirect_neigh` with the next hop when the
//! neighbour is not resolved yet, so the kernel resolves it). The uplink's
//! egress program still runs on the way out (masquerade). What the fast
//! path cannot serve goes to the stack, counted.
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, bpf_redir_neigh, BPF_FIB_LKUP_RET_BLACKHOLE,
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE,
        TC_ACT_REDIRECT,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use netd_common::{DropReason, Fallback, Shortcut};

use crate::{
    maps::{NO_SHORTCUT, UPLINKS},
    parse::{Ipv4, ETH_HLEN},
    parse6::{Ipv6, IPPROTO_FRAGMENT, IPV6_HLEN},
    redirect::{decrement_hop_limit, decrement_ttl, fits_mtu, store_macs},
    routing::{fallback, shortcut},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// May the shortcut send to `ifindex`? Uplinks, and any device but a
/// bridge (or other master) the agent listed: a route onto another
/// runtime's bridge stays the host firewall's to judge.
#[inline(always)]
fn may_redirect(ifindex: u32) -> bool {
    // SAFETY: the values live in the maps.
    unsafe { UPLINKS.get(&ifindex).is_some() || NO_SHORTCUT.get(&ifindex).is_none() }
}

/// Routes a container's packet for a destination outside netd's networks
/// and the host. Returns the TC verdict.
#[inline(always)]
pub fn to_world(ctx: &TcContext, ip: &Ipv4) -> Result<i32, DropReason> {
    if ip.l4_off != ETH_HLEN + 20 {
        return Ok(fallback(Fallback::IpOptions));
    }
    let head: [u8; 4] = ctx.load(ETH_HLEN).map_err(|_| DropReason::Truncated)?;
    let ttl: u8 = ctx.load(ETH_HLEN + 8).map_err(|_| DropReason::Truncated)?;
    if ttl <= 1 {
        return Ok(fallback(Fallback::TtlExpired));
    }
    let mut p = params(
        ctx,
        AF_INET,
        ip.proto,
        u16::from_be_bytes([head[2], head[3]]),
    );
    p.__bindgen_anon_2.tos = head[1];
    p.__bindgen_anon_3.ipv4_src = ip.src;
    p.__bindgen_anon_4.ipv4_dst = ip.dst;
    send(ctx, &mut p)
}

/// [`to_world`] for IPv6. Extension headers (hop-by-hop options are every
/// router's to process) take the stack, but a lone fragment header (no
/// router's business: fragments are routed as any packet, their
/// translation at the uplink follows the first); so do packets whose hop
/// limit runs out here (it answers with Time Exceeded) and those larger
/// than the route's MTU (Packet Too Big).
#[inline(always)]
pub fn to_world6(ctx: &TcContext, ip: &Ipv6) -> Result<i32, DropReason> {
    if ip.l4_off != ETH_HLEN + IPV6_HLEN && !only_fragment_header(ctx, ip)? {
        return Ok(fallback(Fallback::IpOptions));
    }
    if ip.hop_limit <= 1 {
        return Ok(fallback(Fallback::TtlExpired));
    }
    let head: [u8; 6] = ctx.load(ETH_HLEN).map_err(|_| DropReason::Truncated)?;
    let len = (IPV6_HLEN as u16).saturating_add(u16::from_be_bytes([head[4], head[5]]));
    let mut p = params(ctx, AF_INET6, ip.proto, len);
    // Traffic class and flow label, without the version.
    p.__bindgen_anon_2.flowinfo = u32::from_ne_bytes([head[0] & 0x0f, head[1], head[2], head[3]]);
    p.__bindgen_anon_3.ipv6_src = ip.src;
    p.__bindgen_anon_4.ipv6_dst = ip.dst;
    send(ctx, &mut p)
}

/// Is a fragment header the only extension header of `ip`?
#[inline(always)]
fn only_fragment_header(ctx: &TcContext, ip: &Ipv6) -> Result<bool, DropReason> {
    if !(ip.first_fragment || ip.later_fragment) || ip.l4_off != ETH_HLEN + IPV6_HLEN + 8 {
        return Ok(false);
    }
    let next: u8 = ctx.load(ETH_HLEN + 6).map_err(|_| DropReason::Truncated)?;
    Ok(next == IPPROTO_FRAGMENT)
}

/// Lookup parameters of a packet arriving on this program's device; `len`
/// is the IP length (header included).
#[inline(always)]
fn params(ctx: &TcContext, family: u8, proto: u8, len: u16) -> FibParams {
    // SAFETY: reading fields of the context; the params are plain data.
    let (ifindex, gso_size) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).gso_size) };
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    p.family = family;
    p.l4_protocol = proto;
    // The IP length makes the fib check the route's MTU; a GSO packet is
    // checked per segment against the device's MTU instead (length 0).
    p.__bindgen_anon_1.tot_len = if gso_size == 0 { len } else { 0 };
    p.ifindex = ifindex;
    p
}

/// Looks the route up and sends the packet by it, or counts why not.
#[inline(always)]
fn send(ctx: &TcContext, p: &mut FibParams) -> Result<i32, DropReason> {
    let v6 = p.family == AF_INET6;
    // SAFETY: a valid params struct of the size given.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb as *mut _,
            p,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            if !may_redirect(p.ifindex) {
                return Ok(fallback(Fallback::ToBridge));
            }
            decrement(ctx, v6)?;
            store_macs(ctx, p.dmac, p.smac)?;
            shortcut(Shortcut::FibRedirect);
            // SAFETY: plain helper call; the verdict carries the redirect.
            unsafe { bpf_redirect(p.ifindex, 0) };
            Ok(TC_ACT_REDIRECT as i32)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            if !may_redirect(p.ifindex) {
                return Ok(fallback(Fallback::ToBridge));
            }
            // An IPv4 route via an IPv6 next hop: the stack's.
            if p.family != if v6 { AF_INET6 } else { AF_INET } {
                return Ok(fallback(Fallback::NoNeighbour));
            }
            // The fib checks the MTU only once the neighbour is known.
            if !fits_mtu(ctx, p.ifindex) {
                return Ok(fallback(Fallback::FragNeeded));
            }
            decrement(ctx, v6)?;
            let mut nh = bpf_redir_neigh {
                nh_family: u32::from(p.family),
                __bindgen_anon_1: unsafe { core::mem::zeroed() },
            };
            // SAFETY: the fib left the next hop in the destination, the
            // union member of its family.
            unsafe {
                if v6 {
                    nh.__bindgen_anon_1.ipv6_nh = p.__bindgen_anon_4.ipv6_dst;
                } else {
                    nh.__bindgen_anon_1.ipv4_nh = p.__bindgen_anon_4.ipv4_dst;
                }
            }
            shortcut(Shortcut::NeighRedirect);
            // SAFETY: a valid next hop of the size given.
            let v = unsafe {
                bpf_redirect_neigh(
                    p.ifindex,
                    &mut nh,
                    core::mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            };
            Ok(v as i32)
        }
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Ok(fallback(Fallback::FragNeeded)),
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Ok(fallback(Fallback::RouteRefused))
        }
        BPF_FIB_LKUP_RET_NOT_FWDED => Ok(fallback(Fallback::NotForwarded)),
        _ => Ok(fallback(Fallback::FibError)),
    }
}

/// TTL or hop limit, as the family has it (checked above to be > 1).
#[inline(always)]
fn decrement(ctx: &TcContext, v6: bool) -> Result<bool, DropReason> {
    if v6 {
        decrement_hop_limit(ctx)
    } else {
        decrement_ttl(ctx)
    }
}
