//! Into the VXLAN tunnel: a container's packet for a container of the same
//! overlay network on another host leaves with the network's VNI toward
//! that host's tunnel address (`bpf_skb_set_tunnel_key`), redirected to the
//! host's one VXLAN device (external mode), which encapsulates it.
use aya_ebpf::{
    bindings::{bpf_tunnel_key, TC_ACT_REDIRECT},
    helpers::{bpf_redirect, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use netd_common::{
    DropReason, Endpoint, NetworkInfo, RemoteEndpoint, RemoteKey, Shortcut, NET_F_OVERLAY,
    TUNNEL_TTL,
};

use crate::{
    maps::{OVERLAY_CONFIG, OVERLAY_REMOTES},
    routing,
};

/// The container at `addr` of network `net_id` on another host, if any.
#[inline(always)]
pub fn remote_at(net_id: u32, addr: u32) -> Option<RemoteEndpoint> {
    // SAFETY: the value lives in the map.
    unsafe { OVERLAY_REMOTES.get(&RemoteKey { net_id, addr }) }.copied()
}

/// The remote endpoint a packet the policy passed goes to: the destination
/// is in the sender's own overlay network, not its gateway, and on another
/// host.
#[inline(always)]
pub fn remote_peer(
    ep: &Endpoint,
    dst: u32,
    dst_net: Option<&NetworkInfo>,
) -> Option<RemoteEndpoint> {
    if ep.net_flags & NET_F_OVERLAY == 0 || dst == ep.gateway {
        return None;
    }
    match dst_net {
        Some(net) if net.net_id == ep.net_id => remote_at(ep.net_id, dst),
        _ => None,
    }
}

/// Sends the frame to `remote` through the tunnel: the inner Ethernet
/// destination becomes the remote container's MAC, the tunnel key carries
/// the VNI, the remote host and this host's advertise address.
#[inline(always)]
pub fn to_remote(ctx: &TcContext, remote: &RemoteEndpoint) -> Result<i32, DropReason> {
    let Some(cfg) = OVERLAY_CONFIG.get(0).copied() else {
        return Err(DropReason::OverlayNoDevice);
    };
    if cfg.ifindex == 0 {
        return Err(DropReason::OverlayNoDevice);
    }
    ctx.store(0, &remote.mac, 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    // SAFETY: plain old data; every field the kernel reads is set below.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = remote.vni;
    // The helper takes addresses in host order.
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(remote.host);
    key.__bindgen_anon_3.local_ipv4 = u32::from_be(cfg.local);
    key.tunnel_ttl = TUNNEL_TTL;
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    // SAFETY: a valid key of `size` bytes for this program's skb.
    let rc = unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb as *mut _, &mut key, size, 0) };
    if rc != 0 {
        return Err(DropReason::OverlayNoDevice);
    }
    routing::shortcut(Shortcut::OverlayEncap);
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect(cfg.ifindex, 0) };
    Ok(TC_ACT_REDIRECT as i32)
}
