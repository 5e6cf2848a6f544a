//! Where a container's packet goes once the policy let it through, with
//! eBPF host routing: into the receiver's netns (same network), to the
//! uplink by the fib (the world, IPv4 and IPv6), or to the host stack (the
//! host itself, and every fallback, counted).
use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{DropReason, Endpoint, Endpoint6, Fallback, NetworkInfo, NetworkInfo6, Shortcut};

use crate::{
    fib,
    maps::HOST_ADDRS6,
    parse::Ipv4,
    parse6::Ipv6,
    policy::is_group_address,
    policy6::{is_link_local, is_multicast},
    publish::is_host_addr,
    redirect::{
        endpoint6_at, endpoint_at, into_peer, link_peer, mac_of, same_network_peer,
        to_container_peer, to_container_peer6,
    },
    routing::{self, fallback},
};

/// Is `addr` the broadcast address of `net`'s subnet?
#[inline(always)]
fn is_subnet_broadcast(addr: u32, net: &NetworkInfo) -> bool {
    if net.prefix_len >= 31 {
        return false;
    }
    let host_bits = u32::MAX >> net.prefix_len;
    u32::from_be(addr) & host_bits == host_bits
}

/// Delivers what `from_container`'s policy passed. `dst_net` is the netd
/// network holding the destination, if any.
#[inline(always)]
pub fn from_container(
    ctx: &TcContext,
    ep: &Endpoint,
    ip: &Ipv4,
    dst_net: Option<&NetworkInfo>,
) -> Result<i32, DropReason> {
    let Some(net) = dst_net else {
        if is_group_address(ip.dst) {
            return Ok(fallback(Fallback::GroupAddress));
        }
        if is_host_addr(ip.dst) {
            return Ok(TC_ACT_OK);
        }
        return fib::to_world(ctx, ip);
    };
    // Gateways are host addresses; the policy passes no other address of
    // another network.
    if ip.dst == net.gateway || net.net_id != ep.net_id {
        return Ok(TC_ACT_OK);
    }
    if is_subnet_broadcast(ip.dst, net) {
        return Ok(fallback(Fallback::GroupAddress));
    }
    let Some(dst) = endpoint_at(ip.dst) else {
        return Ok(fallback(Fallback::NoEndpoint));
    };
    let eth_dst: [u8; 6] = ctx.load(0).map_err(|_| DropReason::Truncated)?;
    if eth_dst[0] & 1 != 0 {
        return Ok(fallback(Fallback::GroupAddress));
    }
    if eth_dst == mac_of(ep.gateway) {
        // Sent to the gateway: the host would route it back onto the bridge.
        return Ok(to_container_peer(ctx, ip.dst)?.unwrap_or(TC_ACT_OK));
    }
    Ok(same_network_peer(ctx, &dst))
}

/// Delivers what the IPv6 policy passed, as [`from_container`] does for
/// IPv4: a container of the same network gets it in its netns (found by its
/// address, or for link-local traffic by its MAC), so neither the bridge
/// nor a host's FORWARD chain (br_netfilter) sees it; the world takes the
/// fib; multicast, the host's addresses (gateways included) and what no
/// endpoint here answers take the stack.
#[inline(always)]
pub fn from_container6(
    ctx: &TcContext,
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    ip: &Ipv6,
    dst_net: Option<&NetworkInfo6>,
) -> Result<i32, DropReason> {
    if is_multicast(ip.dst) {
        return Ok(fallback(Fallback::GroupAddress));
    }
    let eth_dst: [u8; 6] = ctx.load(0).map_err(|_| DropReason::Truncated)?;
    if eth_dst[0] & 1 != 0 {
        return Ok(fallback(Fallback::GroupAddress));
    }
    if is_link_local(ip.dst) || is_link_local(ip.src) {
        return Ok(match link_peer(ep, eth_dst) {
            Some(ifindex) => {
                routing::shortcut(Shortcut::PeerSameNetwork);
                into_peer(ctx, ifindex)
            }
            None => fallback(Fallback::NotIpv4),
        });
    }
    if let Some(net) = dst_net {
        // Gateways are host addresses; the policy passes no other address
        // of another network.
        if ip.dst == net.gateway || net.net_id != ep.net_id {
            return Ok(TC_ACT_OK);
        }
        let Some(dst) = endpoint6_at(ip.dst) else {
            return Ok(fallback(Fallback::NoEndpoint));
        };
        if ep6.is_some_and(|e| eth_dst == e.gateway_mac) {
            // Sent to the gateway: the host would route it back onto the bridge.
            return Ok(to_container_peer6(ctx, ip.dst)?.unwrap_or(TC_ACT_OK));
        }
        routing::shortcut(Shortcut::PeerSameNetwork);
        return Ok(into_peer(ctx, dst.ifindex));
    }
    // SAFETY: the value lives in the map.
    if unsafe { HOST_ADDRS6.get(&ip.dst) }.is_some() {
        return Ok(TC_ACT_OK);
    }
    fib::to_world6(ctx, ip)
}
