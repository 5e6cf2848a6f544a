//! Counted drops: every program that drops says why.
use aya_ebpf::bindings::TC_ACT_SHOT;
use netd_common::DropReason;

use crate::maps::DROPS;

/// Counts a drop.
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

/// Counts the drop and returns the TC verdict that drops the packet.
#[inline(always)]
pub fn drop_packet(reason: DropReason) -> i32 {
    count_drop(reason);
    TC_ACT_SHOT as i32
}
