//! Per-endpoint and per-network counters (per CPU): packets and bytes
//! toward ("in") and from ("out") a container, and drops by reason at its
//! veth. `EP_COUNTERS` is keyed by the container's address on the network
//! (unique across networks; an IPv6-only endpoint by its veth, see
//! `endpoint_counter_key`), `NET_COUNTERS` by the network's datapath id.
//! Entries are made on first use (no preallocation); the agent removes an
//! endpoint's entry with the endpoint.
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, TC_ACT_SHOT},
    macros::map,
    maps::PerCpuHashMap,
    programs::TcContext,
};
use netd_common::{
    endpoint_counter_key, Counters, COUNTED_DROP_REASONS, MAX_ENDPOINTS, MAX_NETWORKS,
};

use crate::{drops::last_drop, maps::ENDPOINTS};

#[map(name = "EP_COUNTERS")]
pub static EP_COUNTERS: PerCpuHashMap<u32, Counters> =
    PerCpuHashMap::pinned(MAX_ENDPOINTS, BPF_F_NO_PREALLOC);

#[map(name = "NET_COUNTERS")]
pub static NET_COUNTERS: PerCpuHashMap<u32, Counters> =
    PerCpuHashMap::pinned(MAX_NETWORKS, BPF_F_NO_PREALLOC);

/// Which way a packet crosses a container's veth.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Toward the container.
    In,
    /// From the container.
    Out,
}

#[inline(always)]
fn slot(map: &PerCpuHashMap<u32, Counters>, key: u32) -> Option<*mut Counters> {
    if let Some(p) = map.get_ptr_mut(&key) {
        return Some(p);
    }
    let _ = map.insert(&key, &Counters::default(), BPF_NOEXIST as u64);
    map.get_ptr_mut(&key)
}

/// `drop` of a packet that was not dropped.
const NO_DROP: u32 = u32::MAX;

/// Counts a packet, or its drop (`drop`: the reason, [`NO_DROP`] for
/// none). A plain value rather than an `Option` derived from the verdict:
/// the verdict may be a BPF subprogram's return value, and a test on it
/// repeated here would not tell the verifier which reason was read.
#[inline(always)]
fn add(c: *mut Counters, way: Way, bytes: u64, drop: u32) {
    // SAFETY: per-CPU value of this program's lookup.
    unsafe {
        if drop != NO_DROP {
            let i = drop as usize;
            if i < COUNTED_DROP_REASONS {
                (*c).drops[i] += 1;
            }
        } else if way == Way::In {
            (*c).packets_in += 1;
            (*c).bytes_in += bytes;
        } else {
            (*c).packets_out += 1;
            (*c).bytes_out += bytes;
        }
    }
}

/// Counts a packet of the container behind host veth `ifindex`.
#[inline(always)]
fn count(ifindex: u32, way: Way, bytes: u64, drop: u32) {
    // SAFETY: the value lives in the map.
    let Some(ep) = (unsafe { ENDPOINTS.get(&ifindex) }) else {
        return;
    };
    let (key, net_id) = (endpoint_counter_key(ep.ip, ifindex), ep.net_id);
    if let Some(c) = slot(&EP_COUNTERS, key) {
        add(c, way, bytes, drop);
    }
    if let Some(c) = slot(&NET_COUNTERS, net_id) {
        add(c, way, bytes, drop);
    }
}

/// After a veth program's verdict: the packet, or its drop and reason.
#[inline(always)]
pub fn at_veth(ctx: &TcContext, way: Way, verdict: i32) {
    // SAFETY: reading fields of the context.
    let (ifindex, len) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).len) };
    let drop = if verdict == TC_ACT_SHOT as i32 {
        last_drop()
    } else {
        NO_DROP
    };
    count(ifindex, way, u64::from(len), drop);
}

/// A packet delivered into the container behind `ifindex` past its veth's
/// egress program (`bpf_redirect_peer`).
#[inline(always)]
pub fn delivered(ctx: &TcContext, ifindex: u32) {
    // SAFETY: reading a field of the context.
    let len = unsafe { (*ctx.skb.skb).len };
    count(ifindex, Way::In, u64::from(len), NO_DROP);
}
