//! Datapath events for `netd monitor`, and the per-endpoint and per-network
//! counters. Events go through the `EVENTS` ring buffer only for the types
//! a monitor asked for (`EVENT_CONFIG[0].types`, written by the agent),
//! at most `rate` per second and CPU; what the limit holds back is counted
//! and reported with the next event sent.

pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_EVENT_CONFIG: &str = "EVENT_CONFIG";
pub const MAP_EVENT_RATE: &str = "EVENT_RATE";
pub const MAP_EP_COUNTERS: &str = "EP_COUNTERS";
pub const MAP_NET_COUNTERS: &str = "NET_COUNTERS";
/// Per-CPU scratch: the reason of the drop the running program counted.
pub const MAP_LAST_DROP: &str = "LAST_DROP";

/// Bytes of the `EVENTS` ring buffer (a power of two, page aligned).
pub const EVENTS_RING_BYTES: u32 = 1 << 18;
/// Default events per second and CPU.
pub const DEFAULT_EVENT_RATE: u32 = 1_000;

/// Event type bits of `EventConfig::types`.
pub const EVENT_DROP: u32 = 1 << 0;
pub const EVENT_FLOW: u32 = 1 << 1;
pub const EVENT_NAT: u32 = 1 << 2;
pub const EVENT_POLICY: u32 = 1 << 3;

/// `Event::reason` of a NAT event: which side was translated.
pub const NAT_SNAT: u8 = 1;
pub const NAT_DNAT: u8 = 2;

/// Where an event happened (`Event::hook`).
pub const HOOK_FROM_CONTAINER: u8 = 1;
pub const HOOK_TO_CONTAINER: u8 = 2;
pub const HOOK_UPLINK_XDP: u8 = 3;
pub const HOOK_UPLINK_IN: u8 = 4;
pub const HOOK_UPLINK_OUT: u8 = 5;
pub const HOOK_OVERLAY_IN: u8 = 6;

/// `EVENT_CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventConfig {
    /// `EVENT_*` bits monitors want; 0: no event is built at all.
    pub types: u32,
    /// Events per second and CPU.
    pub rate: u32,
}

/// `EVENT_RATE[0]`, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// Start of the current one-second window.
    pub window_ns: u64,
    /// Events sent in the window.
    pub sent: u32,
    /// Held back since the last event sent (reported with the next one).
    pub pending: u32,
    /// Held back in all.
    pub suppressed: u64,
}

/// One ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub ts_ns: u64,
    /// One `EVENT_*` bit.
    pub kind: u32,
    /// Device the hook runs on.
    pub ifindex: u32,
    pub hook: u8,
    /// `DropReason` of a drop event; `NAT_SNAT`/`NAT_DNAT` of a NAT event.
    pub reason: u8,
    pub proto: u8,
    pub _pad: u8,
    /// Events this CPU held back before this one.
    pub suppressed: u32,
    /// The packet as the hook saw it (ports network order; ICMP echo id as
    /// source port).
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// NAT and flow events: the translated address and port.
    pub xaddr: u32,
    pub xport: u16,
    pub _pad2: u16,
}

/// The `EP_COUNTERS` key of the endpoint behind host veth `ifindex` whose
/// IPv4 address (as the maps hold it, network order in a `u32`) is `ip`:
/// the address; on an IPv6-only network (`ip` 0) the ifindex shifted into
/// the last three address bytes, `0.a.b.c`, which no container address is
/// (0.0.0.0/8), so the two kinds never meet and IPv6-only endpoints do not
/// share one entry.
#[inline(always)]
pub const fn endpoint_counter_key(ip: u32, ifindex: u32) -> u32 {
    if ip != 0 {
        ip
    } else {
        u32::from_ne_bytes([
            0,
            ifindex as u8,
            (ifindex >> 8) as u8,
            (ifindex >> 16) as u8,
        ])
    }
}

/// Value of `EP_COUNTERS` (key: [`endpoint_counter_key`]) and `NET_COUNTERS`
/// (key: network datapath id), per CPU. "In" is toward the container.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Drops by `DropReason`, at the endpoint's veth hooks.
    pub drops: [u64; COUNTED_DROP_REASONS],
}

/// Drop reasons counted per endpoint (reason values below this).
pub const COUNTED_DROP_REASONS: usize = 16;

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::EventConfig {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Counters {}
}

#[cfg(test)]
mod counter_key_tests {
    use super::endpoint_counter_key;

    #[test]
    fn ipv6_only_keys_are_per_veth_and_no_address() {
        let v4 = u32::from_ne_bytes([10, 1, 0, 2]);
        assert_eq!(endpoint_counter_key(v4, 7), v4);
        let (a, b) = (endpoint_counter_key(0, 7), endpoint_counter_key(0, 8));
        assert_ne!(a, b);
        // First octet 0: never a container's IPv4 address.
        assert_eq!(a.to_ne_bytes()[0], 0);
        assert_eq!(a.to_ne_bytes(), [0, 7, 0, 0]);
        assert_eq!(
            endpoint_counter_key(0, 0x0001_0203).to_ne_bytes(),
            [0, 3, 2, 1]
        );
    }
}
