//! `GET /v1/status` (`netd status --format json`): the agent, its
//! programs, map fill, drops, host routing, events, DNS and reconcile.
//! Every field defaults when absent, so that a status from an agent that
//! lacks a newer field still parses.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use super::CountersView;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusView {
    pub version: String,
    pub git_revision: String,
    pub map_layout_version: u32,
    pub pid: u32,
    pub run_dir: PathBuf,
    pub source_hash: String,
    pub uptime_seconds: u64,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    /// Where this layout version's pins are (`BPFFS/v1`).
    pub map_layout: PathBuf,
    pub networks: usize,
    pub containers: usize,
    /// Every program the agent loaded, by name.
    pub programs: Vec<String>,
    /// Uplink name → what masquerade uses on it.
    pub uplinks: BTreeMap<String, UplinkStatus>,
    /// `FIRST-LAST`, the source ports masquerade allocates.
    pub snat_ports: String,
    pub pinned_links: usize,
    /// Map name → its fill.
    pub maps: BTreeMap<String, MapFill>,
    pub conntrack: ConntrackStatus,
    /// Drop reason → packets.
    pub drops: BTreeMap<String, u64>,
    pub host_routing: HostRoutingStatus,
    pub events: EventsStatus,
    /// Network name → its counters.
    pub network_counters: BTreeMap<String, CountersView>,
    pub dns: DnsStatus,
    pub last_reconcile: ReconcileStatus,
    /// The cluster as this host sees it (`null` without `--cluster-store`).
    pub cluster: Option<ClusterStatus>,
    pub overlay: OverlayStatus,
}

/// The overlay datapath of this host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OverlayStatus {
    /// The VXLAN device (`null` without `--cluster-store`).
    pub device: Option<OverlayDeviceStatus>,
    /// Entries of `OVERLAY_REMOTES`.
    pub remote_endpoints: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayDeviceStatus {
    pub ifindex: u32,
    /// The outer source address (the advertise address).
    pub local: Ipv4Addr,
    /// The VXLAN UDP port.
    pub port: u16,
    /// MTU of the device that holds the advertise address.
    pub underlay_mtu: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UplinkStatus {
    pub ifindex: u32,
    /// The masquerade address (`null` while the uplink has none).
    pub address: Option<Ipv4Addr>,
    /// The IPv6 masquerade address (`null`: no IPv6 default route via the
    /// uplink, or no global address on it).
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapFill {
    pub entries: usize,
    pub capacity: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConntrackStatus {
    /// IPv4 flows tracked.
    pub flows: usize,
    /// IPv6 flows tracked (NAT66 and routed IPv6 flows).
    pub flows6: usize,
    /// Flows each family's map holds (`--ct-size`).
    pub capacity: u32,
    /// Flow kind (as `--ct-timeout` names it) → seconds.
    pub timeouts: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRoutingStatus {
    /// `ebpf` or `kernel`.
    pub mode: String,
    /// What the programs delivered themselves, by path.
    pub shortcuts: BTreeMap<String, u64>,
    /// What they left to the kernel, by reason.
    pub fallbacks: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsStatus {
    /// `netd monitor` clients connected.
    pub monitors: usize,
    /// The event types the datapath builds now.
    pub types: Vec<String>,
    /// Events the rate limit held back.
    pub suppressed: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsStatus {
    pub listeners: usize,
    pub container_listeners: usize,
    pub container_listeners_bound: usize,
    pub upstreams: Vec<String>,
    pub queries: u64,
    pub answered: u64,
    pub forwarded: u64,
    pub upstream_failures: u64,
    pub rate_limited: u64,
    pub malformed: u64,
}

impl DnsStatus {
    /// The counters, by name (as `netd status` lists them).
    pub fn counts(&self) -> [(&'static str, u64); 9] {
        [
            ("listeners", self.listeners as u64),
            ("container_listeners", self.container_listeners as u64),
            (
                "container_listeners_bound",
                self.container_listeners_bound as u64,
            ),
            ("queries", self.queries),
            ("answered", self.answered),
            ("forwarded", self.forwarded),
            ("upstream_failures", self.upstream_failures),
            ("rate_limited", self.rate_limited),
            ("malformed", self.malformed),
        ]
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconcileStatus {
    /// When the last reconcile pass ran (RFC 3339; `null` before the first).
    pub at: Option<String>,
    /// What reconciles repaired, most recent last.
    pub repairs: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The store's endpoints (`http://HOST:PORT`).
    pub store: Vec<String>,
    pub reachable: bool,
    pub last_error: Option<String>,
    /// When the store was last reached (RFC 3339).
    pub last_contact: Option<String>,
    /// Sessions started (registrations).
    pub sessions: u64,
    pub host_id: String,
    pub hostname: String,
    /// The tunnel address other hosts send to.
    pub advertise_address: Ipv4Addr,
    /// The lease this host's keys are on (0: none yet).
    pub lease: i64,
    /// The store revision the view is at.
    pub revision: i64,
    pub overlay_networks: usize,
    pub hosts: Vec<ClusterHost>,
    /// Containers of overlay networks on other hosts, forwarded to.
    pub remote_endpoints: Vec<RemoteEndpointStatus>,
    pub conflicts: Vec<String>,
}

/// One host of [`ClusterStatus::hosts`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHost {
    pub id: String,
    pub hostname: String,
    pub address: Ipv4Addr,
    /// When its registration started (RFC 3339).
    pub since: String,
    /// Is it this host?
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// One entry of [`ClusterStatus::remote_endpoints`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpointStatus {
    /// Network name (its id when unknown here).
    pub network: String,
    pub container: String,
    pub ip: Ipv4Addr,
    /// Host name (its id when unknown).
    pub host: String,
    pub host_address: Ipv4Addr,
}
