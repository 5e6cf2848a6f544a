//! Events for `netd monitor` through the `EVENTS` ring buffer. Nothing is
//! built unless a monitor asked for the type (`EVENT_CONFIG`, written by
//! the agent; all zero without monitors: one array lookup per drop); then
//! at most `rate` events per second leave each CPU, and what the limit
//! holds back is counted and reported with the next event sent.
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use netd_common::{
    DropReason, Event, EventConfig, RateState, EVENTS_RING_BYTES, EVENT_DROP, EVENT_FLOW,
    EVENT_NAT, HOOK_UPLINK_XDP,
};

use crate::{
    conntrack::now,
    drops::last_drop,
    packet::Packet,
    parse::{parse_frame, parse_l4, L3, L4},
};

/// The IPv4 addresses, protocol and ports of the packet, as the parser
/// reads them.
#[inline(always)]
fn describe<P: Packet>(p: &P, ev: &mut Event) {
    if let L3::Ipv4(ip) = parse_frame(p) {
        ev.saddr = ip.src;
        ev.daddr = ip.dst;
        ev.proto = ip.proto;
        match parse_l4(p, &ip) {
            Some(L4::Ports { sport, dport, .. }) => {
                ev.sport = sport;
                ev.dport = dport;
            }
            Some(L4::Echo { id, .. }) => ev.sport = id,
            _ => {}
        }
    }
}

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_RING_BYTES, 0);

#[map(name = "EVENT_CONFIG")]
pub static EVENT_CONFIG: Array<EventConfig> = Array::pinned(1, 0);

#[map(name = "EVENT_RATE")]
pub static EVENT_RATE: PerCpuArray<RateState> = PerCpuArray::pinned(1, 0);

const WINDOW_NS: u64 = 1_000_000_000;

/// The rate limit when a monitor wants `kind`, else None.
#[inline(always)]
fn wanted(kind: u32) -> Option<u32> {
    let c = EVENT_CONFIG.get(0)?;
    (c.types & kind != 0).then_some(c.rate)
}

/// Takes a slot of this CPU's window: Some(events held back before) when
/// the event may go, None (counted) when the limit holds it back.
#[inline(always)]
fn admit(rate: u32) -> Option<u32> {
    let s = EVENT_RATE.get_ptr_mut(0)?;
    let t = now();
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    unsafe {
        if t.wrapping_sub((*s).window_ns) > WINDOW_NS {
            (*s).window_ns = t;
            (*s).sent = 0;
        }
        if (*s).sent >= rate {
            (*s).pending += 1;
            (*s).suppressed += 1;
            return None;
        }
        (*s).sent += 1;
        let held = (*s).pending;
        (*s).pending = 0;
        Some(held)
    }
}

#[inline(always)]
fn send(ev: &Event) {
    if EVENTS.output::<Event>(ev, 0).is_err() {
        // The ring is full (no reader keeping up): counted as held back.
        if let Some(s) = EVENT_RATE.get_ptr_mut(0) {
            // SAFETY: per-CPU slot.
            unsafe {
                (*s).pending += 1;
                (*s).suppressed += 1;
            }
        }
    }
}

/// A drop event to fill in, when a monitor wants drops and the rate
/// limit lets one go.
#[inline(always)]
fn drop_event(ifindex: u32, hook: u8, reason: u32) -> Option<Event> {
    let held = admit(wanted(EVENT_DROP)?)?;
    Some(Event {
        ts_ns: now(),
        kind: EVENT_DROP,
        ifindex,
        hook,
        reason: reason as u8,
        suppressed: held,
        ..Event::default()
    })
}

/// The packet a TC program just dropped, as a drop event.
#[inline(always)]
pub fn tc_drop(ctx: &TcContext, hook: u8) {
    // SAFETY: reading a field of the context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(mut ev) = drop_event(ifindex, hook, last_drop()) else {
        return;
    };
    describe(ctx, &mut ev);
    send(&ev);
}

/// A packet the uplink prefilter dropped (not a reply), as a drop event.
#[inline(always)]
pub fn xdp_drop(ctx: &XdpContext) {
    // SAFETY: reading a field of the context.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let Some(mut ev) = drop_event(ifindex, HOOK_UPLINK_XDP, DropReason::NotAReply as u32) else {
        return;
    };
    describe(ctx, &mut ev);
    send(&ev);
}

/// A flow the program just started tracking (`nat`: 0, or `NAT_SNAT` /
/// `NAT_DNAT` with the translated address and port). Translated flows are
/// NAT events, which monitors of flows get too.
#[inline(always)]
pub fn new_flow(
    ctx: &TcContext,
    hook: u8,
    proto: u8,
    (saddr, sport): (u32, u16),
    (daddr, dport): (u32, u16),
    nat: u8,
    (xaddr, xport): (u32, u16),
) {
    let kind = if nat != 0 { EVENT_NAT } else { EVENT_FLOW };
    let Some(rate) = wanted(kind | EVENT_FLOW) else {
        return;
    };
    let Some(held) = admit(rate) else {
        return;
    };
    send(&Event {
        ts_ns: now(),
        kind,
        // SAFETY: reading a field of the context.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        hook,
        reason: nat,
        proto,
        suppressed: held,
        saddr,
        daddr,
        sport,
        dport,
        xaddr,
        xport,
        ..Event::default()
    });
}
