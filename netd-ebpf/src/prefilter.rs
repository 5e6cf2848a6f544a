//! `uplink_xdp`: the early drop on uplinks. Traffic from beyond the uplink
//! to a container subnet that is not a reply to a tracked flow is dropped
//! before the stack sees it (before an skb exists, in native mode).
//! Everything else, including ICMP errors and fragments, goes on to the TC
//! programs, which judge it in full.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use netd_common::DropReason;

use crate::{
    conntrack::{key, lookup_in},
    drops::count_drop,
    events,
    maps::NETWORKS,
    parse::{ETH_HLEN, ETH_P_IP, ICMP_ECHO_REPLY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    if start + off + N > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked above.
    Some(unsafe { *((start + off) as *const [u8; N]) })
}

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
    let Some(eth) = bytes::<14>(ctx, 0) else {
        return true;
    };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        return true;
    }
    let Some(ip) = bytes::<20>(ctx, ETH_HLEN) else {
        return true;
    };
    let dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    if NETWORKS.get(&Key::new(32, dst)).is_none() {
        return true;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if frag != 0 || ihl < 20 || ihl > 60 {
        return true;
    }
    let src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let l4 = ETH_HLEN + ihl;
    let (sport, dport) = match ip[9] {
        IPPROTO_TCP | IPPROTO_UDP => {
            let Some(p) = bytes::<4>(ctx, l4) else {
                return true;
            };
            (
                u16::from_ne_bytes([p[0], p[1]]),
                u16::from_ne_bytes([p[2], p[3]]),
            )
        }
        IPPROTO_ICMP => {
            let Some(h) = bytes::<8>(ctx, l4) else {
                return true;
            };
            if h[0] != ICMP_ECHO_REPLY {
                // Errors quote the flow they belong to: the TC program
                // looks inside them.
                return h[0] != 8;
            }
            (0, u16::from_ne_bytes([h[4], h[5]]))
        }
        _ => return false,
    };
    lookup_in(&key(src, dst, sport, dport, ip[9])).is_some()
}
