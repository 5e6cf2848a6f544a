//! Counted drops: every program that drops says why.
use aya_ebpf::{bindings::TC_ACT_SHOT, macros::map, maps::PerCpuArray};
use netd_common::DropReason;

use crate::maps::DROPS;

/// The reason of the last drop counted on this CPU, for the events and
/// per-endpoint counters the hook's entry point records after its verdict.
#[map(name = "LAST_DROP")]
static LAST_DROP: PerCpuArray<u32> = PerCpuArray::pinned(1, 0);

/// Counts a drop.
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
    if let Some(last) = LAST_DROP.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *last = reason as u32 };
    }
}

/// The reason of the drop this CPU counted last.
#[inline(always)]
pub fn last_drop() -> u32 {
    LAST_DROP.get(0).copied().unwrap_or(0)
}

/// Counts the drop and returns the TC verdict that drops the packet.
#[inline(always)]
pub fn drop_packet(reason: DropReason) -> i32 {
    count_drop(reason);
    TC_ACT_SHOT as i32
}
