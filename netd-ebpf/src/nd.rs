//! IPv6 neighbour discovery answered at the container's veth, as ARP is
//! for remote containers (`arp`): a neighbour solicitation for the
//! container's gateway, or for another container of its network on this
//! host (its address, or the link-local address of its MAC), gets its
//! advertisement straight back into the container's netns.
//!
//! Without it the solicitation goes to the bridge, which floods it to the
//! other ports; with br_netfilter and `bridge-nf-call-ip6tables=1` (every
//! host running Docker) that flood passes ip6tables' FORWARD chain, and a
//! FORWARD policy of DROP starves the containers of their neighbours, while
//! ARP, which is no IP, passes. Everything else (duplicate address
//! detection, targets this host does not know, solicitations behind
//! extension headers or with a forged hop limit) goes on as before.
use aya_ebpf::{helpers::bpf_skb_change_tail, programs::TcContext};
use netd_common::{
    addr6_from_octets, proto::IPPROTO_ICMPV6, Addr6, DropReason, Endpoint, Endpoint6, Shortcut,
};

use crate::{
    csum,
    maps::ENDPOINTS,
    parse::ETH_HLEN,
    parse6::Ipv6,
    policy6::{eui64_link_local, is_link_local},
    redirect::{endpoint6_at, into_peer, link_peer, mac_of},
    routing,
};

const IPV6_HLEN: usize = 40;
const ND_NEIGHBOUR_SOLICIT: u8 = 135;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
/// Type, code, checksum, reserved, target address.
const NS_LEN: usize = 24;
/// The advertisement: [`NS_LEN`] bytes and the target link-layer address
/// option (type 2, length 1 = 8 bytes).
const NA_LEN: usize = NS_LEN + 8;
const OPT_TARGET_LL: u8 = 2;
/// The whole reply frame: Ethernet, IPv6, advertisement.
const FRAME_LEN: usize = ETH_HLEN + IPV6_HLEN + NA_LEN;
/// Where the IPv6 source address starts in the frame.
const SRC_AT: usize = ETH_HLEN + 8;
const ICMP_AT: usize = ETH_HLEN + IPV6_HLEN;

/// Advertisement flags (RFC 4861 4.4): router, solicited, override.
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// The MAC an EUI-64 link-local address was made from, if it is one.
#[inline(always)]
fn eui64_mac(a: Addr6) -> Option<[u8; 6]> {
    let (w2, w3) = (a[2].to_ne_bytes(), a[3].to_ne_bytes());
    (is_link_local(a) && w2[3] == 0xff && w3[0] == 0xfe).then_some([
        w2[0] ^ 0x02,
        w2[1],
        w2[2],
        w3[1],
        w3[2],
        w3[3],
    ])
}

/// Who answers a solicitation for `target` from container `ep` (on host
/// veth `ifindex`): its gateway (the bridge, at its address or its
/// link-local one) or a container of its network (at its address, or at
/// the link-local address of its MAC); the MAC and the advertisement
/// flags.
#[inline(always)]
fn owner_of(
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    ifindex: u32,
    target: Addr6,
) -> Option<([u8; 6], u8)> {
    let gateway_mac = ep6.map_or(mac_of(ep.gateway), |e| e.gateway_mac);
    if ep6.is_some_and(|e| e.gateway == target) || target == eui64_link_local(gateway_mac) {
        return Some((gateway_mac, NA_ROUTER | NA_SOLICITED | NA_OVERRIDE));
    }
    let (peer, mac) = match eui64_mac(target) {
        Some(mac) => (link_peer(ep, mac)?, mac),
        None => {
            let peer = endpoint6_at(target)?;
            // SAFETY: the value lives in the map.
            let peer_ep = unsafe { ENDPOINTS.get(&peer.ifindex) }?;
            if peer_ep.net_id != ep.net_id {
                return None;
            }
            (peer.ifindex, peer.mac)
        }
    };
    (peer != ifindex).then_some((mac, NA_SOLICITED | NA_OVERRIDE))
}

/// Sum of the 16-bit words of an address, as the checksum adds them.
#[inline(always)]
fn sum_addr(a: Addr6) -> u64 {
    let mut sum = 0u64;
    for w in a {
        sum += u64::from(w & 0xffff) + u64::from(w >> 16);
    }
    sum
}

/// Sum of the 16-bit words of `b`.
#[inline(always)]
fn sum_bytes<const N: usize>(b: &[u8; N]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 1 < N {
        sum += u64::from(u16::from_ne_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    sum
}

/// Writes the advertisement over the packet (already [`FRAME_LEN`] long):
/// from `target` at `mac` to `asker` at `asker_mac`, hop limit 255, ICMPv6
/// checksum set. Written piece by piece: the programs' stack has no room
/// for the whole frame.
#[inline(always)]
fn write_advertisement(
    ctx: &TcContext,
    asker_mac: [u8; 6],
    asker: Addr6,
    target: Addr6,
    mac: [u8; 6],
    flags: u8,
) -> Result<(), DropReason> {
    let m = mac;
    let a = asker_mac;
    let eth = [
        a[0], a[1], a[2], a[3], a[4], a[5], m[0], m[1], m[2], m[3], m[4], m[5], 0x86, 0xdd,
    ];
    // Version 6, no traffic class or flow label, payload, next header,
    // hop limit.
    let ip = [0x60, 0, 0, 0, 0, NA_LEN as u8, IPPROTO_ICMPV6, 255];
    let opt = [OPT_TARGET_LL, 1, m[0], m[1], m[2], m[3], m[4], m[5]];
    // Pseudo header (both addresses, the length and next header), then
    // the message: type and code, flags, target, option.
    let mut head = [ND_NEIGHBOUR_ADVERT, 0, 0, 0, flags, 0, 0, 0];
    let sum = sum_addr(target)
        + sum_addr(asker)
        + u64::from(u16::from_ne_bytes([0, NA_LEN as u8]))
        + u64::from(u16::from_ne_bytes([0, IPPROTO_ICMPV6]))
        + sum_bytes(&head)
        + sum_addr(target)
        + sum_bytes(&opt);
    let check = (!csum::fold(sum)).to_ne_bytes();
    head[2] = check[0];
    head[3] = check[1];
    let fail = |_| DropReason::RewriteFailed;
    ctx.store(0, &eth, 0).map_err(fail)?;
    ctx.store(ETH_HLEN, &ip, 0).map_err(fail)?;
    ctx.store(SRC_AT, &target, 0).map_err(fail)?;
    ctx.store(SRC_AT + 16, &asker, 0).map_err(fail)?;
    ctx.store(ICMP_AT, &head, 0).map_err(fail)?;
    ctx.store(ICMP_AT + 8, &target, 0).map_err(fail)?;
    ctx.store(ICMP_AT + NS_LEN, &opt, 0).map_err(fail)
}

/// Answers a neighbour solicitation container `ep` sent (policy already
/// passed it) when its gateway or a container of its network owns the
/// target; `None` leaves the packet alone.
#[inline(always)]
pub fn answer(
    ctx: &TcContext,
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    ip: &Ipv6,
    ifindex: u32,
) -> Option<Result<i32, DropReason>> {
    if ip.proto != IPPROTO_ICMPV6
        || ip.l4_off != ICMP_AT
        || ip.hop_limit != 255
        || ip.end < ICMP_AT + NS_LEN
        || ip.src == [0; 4]
    {
        return None;
    }
    let ns: [u8; NS_LEN] = ctx.load(ICMP_AT).ok()?;
    if ns[0] != ND_NEIGHBOUR_SOLICIT || ns[1] != 0 {
        return None;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&ns[8..24]);
    let target = addr6_from_octets(t);
    let (mac, flags) = owner_of(ep, ep6, ifindex, target)?;
    let asker_mac: [u8; 6] = ctx.load(6).ok()?;
    // SAFETY: plain helper call on this program's skb; on failure the
    // packet is unchanged.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb as *mut _, FRAME_LEN as u32, 0) } != 0 {
        return None;
    }
    if let Err(reason) = write_advertisement(ctx, asker_mac, ip.src, target, mac, flags) {
        return Some(Err(reason));
    }
    routing::shortcut(Shortcut::NdReply);
    Some(Ok(into_peer(ctx, ifindex)))
}
