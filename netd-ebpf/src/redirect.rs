//! Delivering a packet straight to a container's veth, past the host stack.
//!
//! Used where the host stack would refuse the packet: a translated reply
//! whose source is a host address (martian if routed), and hairpin flows.
//! The frame gets the addresses the bridge would have given it: the
//! container's MAC (`02:42:` + its address) and its gateway's (the bridge
//! carries `02:42:` + the gateway address).
use aya_ebpf::{bindings::TC_ACT_REDIRECT, helpers::bpf_redirect, programs::TcContext};

#[inline(always)]
fn mac_of(addr: u32) -> [u8; 6] {
    let b = addr.to_ne_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

/// Rewrites the Ethernet header for `container` behind `gateway` and sends
/// the packet out of the host end `ifindex` of its veth.
#[inline(always)]
pub fn to_container_veth(
    ctx: &TcContext,
    ifindex: u32,
    container: u32,
    gateway: u32,
) -> Result<i32, ()> {
    let d = mac_of(container);
    let s = mac_of(gateway);
    let eth = [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ];
    ctx.store(0, &eth, 0).map_err(|_| ())?;
    // SAFETY: plain helper call; the verdict carries the redirect.
    unsafe { bpf_redirect(ifindex, 0) };
    Ok(TC_ACT_REDIRECT as i32)
}
