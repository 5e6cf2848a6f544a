//! Connection tracking for flows that cross an uplink.
//!
//! Each flow has two entries: `CT_OUT` keyed by the container's tuple as it
//! leaves, `CT_IN` keyed by the reply tuple as it comes back. Entries record
//! when they were last used and which TCP flags each direction sent; the
//! agent's collector expires them (closed flows fast, established slowly).
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
};
use netd_common::{CtEntry, CtKey};

use crate::maps::{CT_IN, CT_LOCAL, CT_OUT};

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn key(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> CtKey {
    CtKey {
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
pub fn entry(addr: u32, port: u16, flags: u8, tcp_flags: u8) -> CtEntry {
    CtEntry {
        last_seen_ns: now(),
        addr,
        port,
        flags,
        tcp_flags,
        peer: 0,
        ifindex: 0,
    }
}

/// Refreshes an entry seen in a packet.
#[inline(always)]
pub fn touch(entry: *mut CtEntry, tcp_flags: u8) {
    // SAFETY: the pointer comes from a map lookup of this program.
    unsafe {
        (*entry).last_seen_ns = now();
        if (*entry).tcp_flags & tcp_flags != tcp_flags {
            (*entry).tcp_flags |= tcp_flags;
        }
    }
}

#[inline(always)]
pub fn lookup_out(k: &CtKey) -> Option<*mut CtEntry> {
    CT_OUT.get_ptr_mut(k)
}

#[inline(always)]
pub fn lookup_in(k: &CtKey) -> Option<*mut CtEntry> {
    CT_IN.get_ptr_mut(k)
}

/// Claims the reply tuple `k` for a new flow; fails if another flow owns it.
#[inline(always)]
pub fn claim_in(k: &CtKey, entry: &CtEntry) -> bool {
    CT_IN.insert(k, entry, BPF_NOEXIST as u64).is_ok()
}

#[inline(always)]
pub fn put_out(k: &CtKey, entry: &CtEntry) -> bool {
    CT_OUT.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn put_in(k: &CtKey, entry: &CtEntry) -> bool {
    CT_IN.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn lookup_local(k: &CtKey) -> Option<*mut CtEntry> {
    CT_LOCAL.get_ptr_mut(k)
}

#[inline(always)]
pub fn put_local(k: &CtKey, entry: &CtEntry) -> bool {
    CT_LOCAL.insert(k, entry, BPF_ANY as u64).is_ok()
}

#[inline(always)]
pub fn remove_out(k: &CtKey) {
    let _ = CT_OUT.remove(k);
}

#[inline(always)]
pub fn remove_in(k: &CtKey) {
    let _ = CT_IN.remove(k);
}
