//! ARP for containers on other hosts: a container of an overlay network
//! asking for a remote endpoint's address gets the answer from its own
//! veth (the remote's MAC from `OVERLAY_REMOTES`), put straight back into
//! its namespace. Nothing else is answered: local peers answer for
//! themselves through the bridge, and only requests from the endpoint's own
//! address (no probes, no requests for other senders).
use aya_ebpf::programs::TcContext;
use netd_common::{Endpoint, Shortcut, NET_F_OVERLAY};

use crate::{redirect::into_peer, routing, tunnel::remote_at};

/// Ethernet header and an IPv4-over-Ethernet ARP message.
const ARP_FRAME_LEN: usize = 42;
const ETH_P_ARP: u16 = 0x0806;
const ARP_HRD_ETHER: u16 = 1;
const ARP_PRO_IPV4: u16 = 0x0800;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: [u8; 2] = [0x00, 0x02];

#[inline(always)]
fn be16(f: &[u8; ARP_FRAME_LEN], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

/// An IPv4-over-Ethernet ARP request? (Compared field by field: slice
/// comparisons would call `bcmp`, which BPF does not have.)
#[inline(always)]
fn is_ipv4_request(f: &[u8; ARP_FRAME_LEN]) -> bool {
    be16(f, 12) == ETH_P_ARP
        && be16(f, 14) == ARP_HRD_ETHER
        && be16(f, 16) == ARP_PRO_IPV4
        && f[18] == 6
        && f[19] == 4
        && be16(f, 20) == ARP_REQUEST
}

/// Answers an ARP request of `ep` for a remote endpoint of its overlay
/// network; `None` leaves the frame alone.
#[inline(always)]
pub fn answer_remote(ctx: &TcContext, ep: &Endpoint, ifindex: u32) -> Option<i32> {
    if ep.net_flags & NET_F_OVERLAY == 0 {
        return None;
    }
    let f: [u8; ARP_FRAME_LEN] = ctx.load(0).ok()?;
    if !is_ipv4_request(&f) {
        return None;
    }
    let spa = u32::from_ne_bytes([f[28], f[29], f[30], f[31]]);
    let tpa = u32::from_ne_bytes([f[38], f[39], f[40], f[41]]);
    if spa != ep.ip {
        return None;
    }
    let remote = remote_at(ep.net_id, tpa)?;
    let mut reply = f;
    for i in 0..6 {
        // Ethernet: to the asker, from the remote container.
        reply[i] = f[6 + i];
        reply[6 + i] = remote.mac[i];
        // ARP reply: sender = the remote, target = the asker.
        reply[22 + i] = remote.mac[i];
        reply[32 + i] = f[22 + i];
    }
    for i in 0..4 {
        reply[28 + i] = f[38 + i];
        reply[38 + i] = f[28 + i];
    }
    reply[20] = ARP_REPLY[0];
    reply[21] = ARP_REPLY[1];
    ctx.store(0, &reply, 0).ok()?;
    routing::shortcut(Shortcut::OverlayArpReply);
    Some(into_peer(ctx, ifindex))
}
