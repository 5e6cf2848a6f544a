//! `overlay_in` (TCX ingress of the host's VXLAN device): packets out of
//! the tunnel, delivered to the local container they are for.
//!
//! The VNI names the network; the inner source must be a remote endpoint
//! of that network behind the outer source address (no other host can
//! speak for it); the inner destination must be a local container of that
//! same network, and the receiving side's policy (icc) is checked again
//! here, so a sender that does not play by the rules gains nothing. Then
//! the frame goes straight into the container's namespace.
use aya_ebpf::{
    bindings::bpf_tunnel_key, helpers::bpf_skb_get_tunnel_key, macros::classifier,
    maps::lpm_trie::Key, programs::TcContext,
};
use netd_common::{DropReason, Shortcut, HOOK_OVERLAY_IN};

use crate::{
    drops::drop_packet,
    events,
    maps::{ENDPOINTS, NETWORKS, OVERLAY_VNIS},
    parse::{parse_l3, L3},
    policy::{self, Verdict},
    redirect::{endpoint_at, into_peer},
    routing,
    tunnel::remote_at,
};

#[classifier]
pub fn overlay_in(ctx: TcContext) -> i32 {
    match decap(&ctx) {
        Ok(v) => v,
        Err(reason) => {
            let v = drop_packet(reason);
            events::tc_drop(&ctx, HOOK_OVERLAY_IN);
            v
        }
    }
}

/// (VNI, outer source address as network order bytes) of a packet that
/// came out of the tunnel.
#[inline(always)]
fn tunnel_of(ctx: &TcContext) -> Option<(u32, u32)> {
    // SAFETY: plain old data the helper fills.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    // SAFETY: a valid key of `size` bytes for this program's skb.
    let rc = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb as *mut _, &mut key, size, 0) };
    if rc != 0 {
        return None;
    }
    // SAFETY: an IPv4 tunnel (flags 0) fills the IPv4 member.
    let remote = unsafe { key.__bindgen_anon_1.remote_ipv4 };
    Some((key.tunnel_id, remote.to_be()))
}

#[inline(always)]
fn decap(ctx: &TcContext) -> Result<i32, DropReason> {
    let (vni, outer_src) = tunnel_of(ctx).ok_or(DropReason::OverlayUnknownVni)?;
    // SAFETY: the value lives in the map.
    let net_id = unsafe { OVERLAY_VNIS.get(&vni) }
        .ok_or(DropReason::OverlayUnknownVni)?
        .net_id;
    let ip = match parse_l3(ctx) {
        L3::Ipv4(ip) => ip,
        L3::Invalid(reason) => return Err(reason),
        _ => return Err(DropReason::OverlayNotIpv4),
    };
    match remote_at(net_id, ip.src) {
        Some(remote) if remote.host == outer_src => {}
        _ => return Err(DropReason::OverlayUnknownSource),
    }
    let dst = endpoint_at(ip.dst).ok_or(DropReason::OverlayNoEndpoint)?;
    // SAFETY: the value lives in the map.
    let ep = unsafe { ENDPOINTS.get(&dst.ifindex) }.ok_or(DropReason::OverlayNoEndpoint)?;
    if ep.net_id != net_id {
        return Err(DropReason::Isolation);
    }
    let src_net = NETWORKS.get(&Key::new(32, ip.src));
    if let Verdict::Drop(reason) = policy::to_container(ep, ip.src, src_net) {
        return Err(reason);
    }
    ctx.store(0, &dst.mac, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    routing::shortcut(Shortcut::OverlayDecap);
    Ok(into_peer(ctx, dst.ifindex))
}
