//! Connection tracking of IPv6 flows that cross an uplink: `CT6_OUT` keyed
//! by the container's tuple as it leaves, `CT6_IN` by the reply tuple, as
//! `conntrack` does for IPv4 (the agent's collector expires both); flows
//! from containers to published ports in `CT6_LOCAL` (LRU, as `CT_LOCAL`).
use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use netd_common::{Addr6, CtEntry6, CtKey6};

use crate::{
    conntrack::now,
    maps::{CT6_IN, CT6_LOCAL, CT6_OUT},
};

#[inline(always)]
pub fn key6(saddr: Addr6, daddr: Addr6, sport: u16, dport: u16, proto: u8) -> CtKey6 {
    CtKey6 {
        saddr,
        daddr,
        sport,
        dport,
        proto,
        _pad: [0; 3],
    }
}

/// A fresh entry stamped now.
#[inline(always)]
pub fn entry6(addr: Addr6, port: u16, flags: u8, tcp_flags: u8) -> CtEntry6 {
    CtEntry6 {
        last_seen_ns: now(),
        addr,
        port,
        flags,
        tcp_flags,
        _pad: 0,
    }
}

/// Refreshes an entry seen in a packet.
#[inline(always)]
pub fn touch6(entry: *mut CtEntry6, tcp_flags: u8) {
    // SAFETY: the pointer comes from a map lookup of this program.
    unsafe {
        (*entry).last_seen_ns = now();
        if (*entry).tcp_flags & tcp_flags != tcp_flags {
            (*entry).tcp_flags |= tcp_flags;
        }
    }
}

#[inline(always)]
pub fn lookup_out6(k: &CtKey6) -> Option<*mut CtEntry6> {
    CT6_OUT.get_ptr_mut(k)
}

#[inline(always)]
pub fn lookup_in6(k: &CtKey6) -> Option<*mut CtEntry6> {
    CT6_IN.get_ptr_mut(k)
}

/// Claims the reply tuple `k` for a new flow; fails if another flow owns it.
#[inline(always)]
pub fn claim_in6(k: &CtKey6, entry: &CtEntry6) -> bool {
    CT6_IN.insert(k, entry, BPF_NOEXIST as u64).is_ok()
}

#[inline(always)]
pub fn put_out6(k: &CtKey6, entry: &CtEntry6) -> bool {
    CT6_OUT.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn put_in6(k: &CtKey6, entry: &CtEntry6) -> bool {
    CT6_IN.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn lookup_local6(k: &CtKey6) -> Option<*mut CtEntry6> {
    CT6_LOCAL.get_ptr_mut(k)
}

#[inline(always)]
pub fn put_local6(k: &CtKey6, entry: &CtEntry6) -> bool {
    CT6_LOCAL.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn remove_in6(k: &CtKey6) {
    let _ = CT6_IN.remove(k);
}

#[inline(always)]
pub fn remove_out6(k: &CtKey6) {
    let _ = CT6_OUT.remove(k);
}
