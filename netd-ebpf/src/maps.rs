//! The maps the programs share with the agent, pinned by name so that they
//! outlive the agent (the agent chooses the pin directory).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray},
};
use netd_common::{
    drop_reason::DROP_REASON_SLOTS, routing::ROUTING_SLOTS, Addr6, CtEntry, CtEntry6, CtKey,
    CtKey6, Endpoint, Endpoint6, EndpointRef, EndpointRef6, FragKey6, NetworkInfo, NetworkInfo6,
    OverlayConfig, OverlayNet, PublishKey, PublishKey6, PublishTarget, PublishTarget6,
    RemoteEndpoint, RemoteKey, Settings, Uplink, Uplink6, DEFAULT_CT_SIZE, MAX_ENDPOINTS,
    MAX_FRAGMENTED, MAX_HOST_ADDRS, MAX_NETWORKS, MAX_NO_SHORTCUT, MAX_OVERLAY_NETWORKS,
    MAX_PUBLISHED, MAX_REMOTE_ENDPOINTS, MAX_UPLINKS,
};

/// Host-side veth ifindex -> the endpoint behind it.
#[map(name = "ENDPOINTS")]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Container address -> its veth and gateway (for delivery past the stack).
#[map(name = "ENDPOINT_BY_IP")]
pub static ENDPOINT_BY_IP: HashMap<u32, EndpointRef> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Subnet (LPM) -> the netd network it belongs to.
#[map(name = "NETWORKS")]
pub static NETWORKS: LpmTrie<u32, NetworkInfo> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// Per-CPU drop counters indexed by `DropReason`.
#[map(name = "DROPS")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_REASON_SLOTS, 0);

/// Uplink ifindex -> its masquerade address and SNAT port range.
#[map(name = "UPLINKS")]
pub static UPLINKS: HashMap<u32, Uplink> = HashMap::pinned(MAX_UPLINKS, 0);

/// Container flows leaving an uplink: original tuple -> NAT source.
#[map(name = "CT_OUT")]
pub static CT_OUT: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// Replies arriving at an uplink: reply tuple -> the container's address.
#[map(name = "CT_IN")]
pub static CT_IN: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// Published ports: (host address or 0, port, protocol) -> container target.
#[map(name = "PUBLISHED")]
pub static PUBLISHED: HashMap<PublishKey, PublishTarget> = HashMap::pinned(MAX_PUBLISHED, 0);

/// The host's own IPv4 addresses (value unused).
#[map(name = "HOST_ADDRS")]
pub static HOST_ADDRS: HashMap<u32, u32> = HashMap::pinned(MAX_HOST_ADDRS, 0);

/// Flows from containers (or the host) to published ports that stay inside
/// the host, keyed by the translated tuple in both directions.
#[map(name = "CT_LOCAL")]
pub static CT_LOCAL: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// Datapath-wide settings (`SETTINGS[0]`), written by the agent.
#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// Per-CPU counters of host routing, indexed by `Shortcut` and `Fallback`.
#[map(name = "ROUTING")]
pub static ROUTING: PerCpuArray<u64> = PerCpuArray::pinned(ROUTING_SLOTS, 0);

/// Bridges and other master devices that are no uplink (ifindex, value
/// unused): the fib shortcut does not send to them.
#[map(name = "NO_SHORTCUT")]
pub static NO_SHORTCUT: HashMap<u32, u32> = HashMap::pinned(MAX_NO_SHORTCUT, 0);

/// Containers of overlay networks on other hosts: (local network id,
/// address) -> their host's tunnel address, the VNI and their MAC.
#[map(name = "OVERLAY_REMOTES")]
pub static OVERLAY_REMOTES: HashMap<RemoteKey, RemoteEndpoint> =
    HashMap::pinned(MAX_REMOTE_ENDPOINTS, 0);

/// VNI -> the local overlay network it carries.
#[map(name = "OVERLAY_VNIS")]
pub static OVERLAY_VNIS: HashMap<u32, OverlayNet> = HashMap::pinned(MAX_OVERLAY_NETWORKS, 0);

/// `OVERLAY_CONFIG[0]`: the VXLAN device and the outer source address.
#[map(name = "OVERLAY_CONFIG")]
pub static OVERLAY_CONFIG: Array<OverlayConfig> = Array::pinned(1, 0);
/// IPv6 subnet (LPM) -> the netd network it belongs to.
#[map(name = "NETWORKS6")]
pub static NETWORKS6: LpmTrie<Addr6, NetworkInfo6> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// Host-side veth ifindex -> the endpoint's IPv6 address (none: the
/// endpoint has no IPv6).
#[map(name = "ENDPOINT6")]
pub static ENDPOINT6: HashMap<u32, Endpoint6> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Container IPv6 address -> its veth (for delivery past the stack).
#[map(name = "ENDPOINT6_BY_IP")]
pub static ENDPOINT6_BY_IP: HashMap<Addr6, EndpointRef6> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// The host's own IPv6 addresses (value unused).
#[map(name = "HOST_ADDRS6")]
pub static HOST_ADDRS6: HashMap<Addr6, u32> = HashMap::pinned(MAX_HOST_ADDRS, 0);

/// Uplink ifindex -> its IPv6 masquerade address and SNAT port range.
#[map(name = "UPLINKS6")]
pub static UPLINKS6: HashMap<u32, Uplink6> = HashMap::pinned(MAX_UPLINKS, 0);

/// IPv6 container flows leaving an uplink: original tuple -> NAT source.
#[map(name = "CT6_OUT")]
pub static CT6_OUT: LruHashMap<CtKey6, CtEntry6> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// IPv6 replies arriving at an uplink: reply tuple -> the container.
#[map(name = "CT6_IN")]
pub static CT6_IN: LruHashMap<CtKey6, CtEntry6> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// IPv6 flows from containers to published ports (they never leave the
/// host), both directions, as `CT_LOCAL` for IPv4.
#[map(name = "CT6_LOCAL")]
pub static CT6_LOCAL: LruHashMap<CtKey6, CtEntry6> = LruHashMap::pinned(DEFAULT_CT_SIZE, 0);

/// First IPv6 fragment let in (at an uplink, or from a container to a
/// published port) -> the container it was for.
#[map(name = "FRAGMENTS6")]
pub static FRAGMENTS6: LruHashMap<FragKey6, Addr6> = LruHashMap::pinned(MAX_FRAGMENTED, 0);

/// IPv6 published ports: (host IPv6 address or any, port, protocol) ->
/// the container's IPv6 address and port.
#[map(name = "PUBLISHED6")]
pub static PUBLISHED6: HashMap<PublishKey6, PublishTarget6> = HashMap::pinned(MAX_PUBLISHED, 0);

/// Programs the hooks enter by tail call, by `netd_common::programs`
/// slot (the agent fills it before it attaches the hooks).
#[map(name = "TAILS")]
pub static TAILS: ProgramArray = ProgramArray::pinned(netd_common::programs::MAX_TAILS, 0);
