//! Header parsing with bounds checks the verifier accepts.
use aya_ebpf::programs::TcContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_MIN_HLEN: usize = 20;

/// What the L2/L3 parser found.
pub enum L3 {
    Ipv4(Ipv4),
    /// A VLAN tag, in the frame or in the skb's offloaded tag.
    Vlan,
    /// Any other ethertype (ARP, IPv6, ...): not policed by netd.
    Other,
    /// Too short or inconsistent to be trusted.
    Malformed,
}

/// The fields of an IPv4 header the isolation policy uses (L3 only, so
/// IP options and fragments need no special case).
pub struct Ipv4 {
    pub src: u32,
    pub dst: u32,
}

#[inline(always)]
fn ptr_at<T>(ctx: &TcContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

/// Makes sure `len` bytes are in the linear part of the skb.
#[inline(always)]
fn ensure_linear(ctx: &TcContext, len: usize) -> bool {
    if ctx.data() + len <= ctx.data_end() {
        return true;
    }
    if ctx.pull_data(len as u32).is_err() {
        return false;
    }
    ctx.data() + len <= ctx.data_end()
}

#[inline(always)]
pub fn parse_l3(ctx: &TcContext) -> L3 {
    // SAFETY: reading a field of the context the kernel handed us.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        return L3::Vlan;
    }
    if !ensure_linear(ctx, ETH_HLEN) {
        return L3::Malformed;
    }
    let Some(proto) = ptr_at::<[u8; 2]>(ctx, 12) else {
        return L3::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let ethertype = u16::from_be_bytes(unsafe { *proto });
    match ethertype {
        ETH_P_IP => {}
        ETH_P_8021Q | ETH_P_8021AD => return L3::Vlan,
        _ => return L3::Other,
    }
    if !ensure_linear(ctx, ETH_HLEN + IPV4_MIN_HLEN) {
        return L3::Malformed;
    }
    let Some(ip) = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, ETH_HLEN) else {
        return L3::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    parse_ipv4_header(ip, ctx.len() as usize - ETH_HLEN)
}

/// Validates a fixed IPv4 header; `l3_len` is what the frame holds past L2.
#[inline(always)]
pub fn parse_ipv4_header(ip: &[u8; IPV4_MIN_HLEN], l3_len: usize) -> L3 {
    let version = ip[0] >> 4;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if version != 4 || ihl < IPV4_MIN_HLEN || total_len < ihl || total_len > l3_len {
        return L3::Malformed;
    }
    L3::Ipv4(Ipv4 {
        src: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
    })
}
