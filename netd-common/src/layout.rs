//! Every map the programs pin, once: name, key and value sizes and the
//! capacity the object declares. The agent's layout check walks
//! [`MAPS`] before it adopts pins, and a root-free test holds the embedded
//! object to it, so a map added, resized or renamed on one side only fails
//! a test instead of corrupting a reused pin.
use core::mem::size_of;

use crate::{drop_reason::DROP_REASON_SLOTS, routing::ROUTING_SLOTS, *};

/// One pinned map as this build lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    /// Bytes of a key (an LPM trie's includes its prefix length; 0 for a
    /// ring buffer).
    pub key_size: u32,
    /// Bytes of a value (per CPU for per-CPU maps; 0 for a ring buffer).
    pub value_size: u32,
    /// Capacity in the object (bytes for a ring buffer). The agent
    /// resizes the conntrack maps at load (`--ct-size`).
    pub max_entries: u32,
}

const fn spec<K, V>(name: &'static str, max_entries: u32) -> MapSpec {
    MapSpec {
        name,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
    }
}

/// The key of an LPM trie over IPv4: prefix length, then the address.
type LpmV4 = [u32; 2];
/// The same over IPv6.
type LpmV6 = [u32; 5];

/// Every map of the object.
pub const MAPS: &[MapSpec] = &[
    spec::<u32, Endpoint>(MAP_ENDPOINTS, MAX_ENDPOINTS),
    spec::<u32, EndpointRef>(MAP_ENDPOINT_BY_IP, MAX_ENDPOINTS),
    spec::<LpmV4, NetworkInfo>(MAP_NETWORKS, MAX_NETWORKS),
    spec::<u32, u64>(MAP_DROPS, DROP_REASON_SLOTS),
    spec::<u32, Uplink>(MAP_UPLINKS, MAX_UPLINKS),
    spec::<CtKey, CtEntry>(MAP_CT_OUT, DEFAULT_CT_SIZE),
    spec::<CtKey, CtEntry>(MAP_CT_IN, DEFAULT_CT_SIZE),
    spec::<CtKey, CtEntry>(MAP_CT_LOCAL, DEFAULT_CT_SIZE),
    spec::<PublishKey, PublishTarget>(MAP_PUBLISHED, MAX_PUBLISHED),
    spec::<u32, u32>(MAP_HOST_ADDRS, MAX_HOST_ADDRS),
    spec::<u32, SockConfig>(MAP_SOCK_CONFIG, 1),
    spec::<SockOriginKey, PublishTarget>(MAP_SOCK_ORIGIN, MAX_SOCK_ORIGINS),
    spec::<FragKey, u32>(MAP_FRAGMENTS, MAX_FRAGMENTED),
    spec::<u32, Settings>(MAP_SETTINGS, 1),
    spec::<u32, u64>(MAP_ROUTING, ROUTING_SLOTS),
    spec::<(), ()>(MAP_EVENTS, EVENTS_RING_BYTES),
    spec::<u32, EventConfig>(MAP_EVENT_CONFIG, 1),
    spec::<u32, RateState>(MAP_EVENT_RATE, 1),
    spec::<u32, u32>(MAP_LAST_DROP, 1),
    spec::<u32, Counters>(MAP_EP_COUNTERS, MAX_ENDPOINTS),
    spec::<u32, Counters>(MAP_NET_COUNTERS, MAX_NETWORKS),
    spec::<u32, u32>(MAP_NO_SHORTCUT, MAX_NO_SHORTCUT),
    spec::<RemoteKey, RemoteEndpoint>(MAP_OVERLAY_REMOTES, MAX_REMOTE_ENDPOINTS),
    spec::<u32, OverlayNet>(MAP_OVERLAY_VNIS, MAX_OVERLAY_NETWORKS),
    spec::<u32, OverlayConfig>(MAP_OVERLAY_CONFIG, 1),
    spec::<LpmV6, NetworkInfo6>(MAP_NETWORKS6, MAX_NETWORKS),
    spec::<u32, Endpoint6>(MAP_ENDPOINT6, MAX_ENDPOINTS),
    spec::<Addr6, EndpointRef6>(MAP_ENDPOINT6_BY_IP, MAX_ENDPOINTS),
    spec::<Addr6, u32>(MAP_HOST_ADDRS6, MAX_HOST_ADDRS),
    spec::<u32, Uplink6>(MAP_UPLINKS6, MAX_UPLINKS),
    spec::<CtKey6, CtEntry6>(MAP_CT6_OUT, DEFAULT_CT_SIZE),
    spec::<CtKey6, CtEntry6>(MAP_CT6_IN, DEFAULT_CT_SIZE),
    spec::<CtKey6, CtEntry6>(MAP_CT6_LOCAL, DEFAULT_CT_SIZE),
    spec::<FragKey6, Addr6>(MAP_FRAGMENTS6, MAX_FRAGMENTED),
    spec::<PublishKey6, PublishTarget6>(MAP_PUBLISHED6, MAX_PUBLISHED),
    spec::<SockOriginKey6, PublishTarget6>(MAP_SOCK_ORIGIN6, MAX_SOCK_ORIGINS),
    spec::<u32, u32>(MAP_TAILS, crate::programs::MAX_TAILS),
];

/// The spec of map `name`.
pub fn map_spec(name: &str) -> Option<&'static MapSpec> {
    MAPS.iter().find(|m| m.name == name)
}
