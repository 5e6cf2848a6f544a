//! Host routing mode and counters: whether the programs deliver what the
//! policy let through (`--host-routing ebpf`) or leave it to the kernel
//! (`kernel`), and why a packet took the kernel's path anyway.
use aya_ebpf::bindings::TC_ACT_OK;
use netd_common::{routing::HOST_ROUTING_KERNEL, Fallback, Shortcut};

use crate::maps::{ROUTING, SETTINGS};

/// Do the programs forward (eBPF host routing)? A missing entry means the
/// default, eBPF.
#[inline(always)]
pub fn enabled() -> bool {
    SETTINGS
        .get(0)
        .is_none_or(|s| s.host_routing != HOST_ROUTING_KERNEL)
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(counter) = ROUTING.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn shortcut(s: Shortcut) {
    bump(s as u32);
}

/// Counts a fallback and returns the verdict that hands the packet on to
/// the kernel.
#[inline(always)]
pub fn fallback(f: Fallback) -> i32 {
    bump(f as u32);
    TC_ACT_OK
}
