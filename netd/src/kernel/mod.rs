//! The seam between the agent and the kernel.
//!
//! The agent decides (what to create, what to roll back, what drifted,
//! what is an orphan); the drivers here do. Five of them:
//! - [`DatapathDriver`]: the eBPF maps and the program links (pins) the
//!   agent feeds, and the counters it reads;
//! - [`EndpointPrograms`]: the endpoint programs bound to a veth away
//!   from the agent's state (the shared filter blocks; adds run it on
//!   a blocking thread);
//! - [`LinkDriver`]: bridges, veths, addresses and
//!   routes in the agent's own netns;
//! - [`NetnsDriver`] and [`ContainerNetns`]: a container's netns, the
//!   interface inside it, its address and routes;
//! - [`HostPorts`]: the sockets that hold published host ports.
//!
//! `real` implements them on today's code (aya, rtnetlink, sockets); the
//! in-memory `fake` (tests only) implements them with fault injection, so
//! the agent's logic is tested without root or namespaces. Pin names,
//! netlink attributes and file descriptors stay behind the seam.
mod real;

#[cfg(test)]
pub mod fake;

use std::{
    any::Any,
    collections::{BTreeMap, HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Result;
use ipnet::{Ipv4Net, Ipv6Net};
use netd_common::{
    Counters, Endpoint, Endpoint6, NetworkInfo, NetworkInfo6, PublishKey, PublishKey6,
    PublishTarget, PublishTarget6, Uplink, Uplink6,
};

use crate::{
    datapath::{
        overlay::Remote, CtStats, CtTimeouts, DropCount, HostRouting, MapFill, RoutingCounts,
        Sandbox,
    },
    error::AgentResult,
    ports::PortMapping,
};

pub use crate::net::{container_ns::InterfaceState, LinkRow};
pub use real::{real_kernel, RealNamespaces, RealPorts};

/// The drivers an agent works through.
pub struct Drivers {
    pub datapath: Box<dyn DatapathDriver>,
    pub links: Arc<dyn LinkDriver>,
    pub netns: Arc<dyn NetnsDriver>,
    pub ports: Arc<dyn HostPorts>,
    pub attacher: Arc<dyn EndpointPrograms>,
}

/// The endpoint programs on a veth, attached without the datapath's
/// handles (callers run [`Self::attach`] on a blocking thread). The real
/// one binds the veth's `clsact` qdisc to the shared filter blocks that
/// carry the programs, as [`DatapathDriver::attach_endpoint`] does.
pub trait EndpointPrograms: Send + Sync {
    /// Attaches both endpoint programs to `host_ifname` and pins the
    /// links. Blocks. On failure nothing stays pinned.
    fn attach(&self, host_ifname: &str) -> Result<()>;
}

/// The maps and program links the agent keeps in sync with its state.
pub trait DatapathDriver: DatapathStats + Send + Sync {
    // Networks.
    fn upsert_network(&mut self, subnet: Ipv4Net, info: NetworkInfo) -> Result<()>;
    fn remove_network(&mut self, subnet: Ipv4Net) -> Result<()>;
    /// Every subnet in the networks map.
    fn network_subnets(&mut self) -> Result<Vec<Ipv4Net>>;
    fn remove_network_counters(&mut self, net_id: u32) -> Result<()>;

    // Endpoints (host ends of container veths).
    /// Writes the endpoint entry of `ifindex` only (its programs come from
    /// [`EndpointPrograms`]).
    fn set_endpoint(&mut self, ifindex: u32, ep: Endpoint) -> Result<()>;
    /// Writes the endpoint entry, then attaches (or adopts and upgrades)
    /// the endpoint programs on `host_ifname`.
    fn attach_endpoint(&mut self, host_ifname: &str, ifindex: u32, ep: Endpoint) -> Result<()>;
    /// Detaches the endpoint programs of `host_ifname` and, given its
    /// ifindex, removes its entry.
    fn detach_endpoint(&mut self, host_ifname: &str, ifindex: Option<u32>) -> Result<()>;
    fn remove_endpoint_entry(&mut self, ifindex: u32) -> Result<()>;
    /// Every ifindex in the endpoints map.
    fn endpoint_indexes(&mut self) -> Result<Vec<u32>>;
    /// Host ifindex -> container address, from the endpoints map.
    fn endpoint_addresses(&self) -> Result<Vec<(u32, Ipv4Addr)>>;
    /// Host ifnames that have at least one endpoint program link.
    fn linked_endpoints(&self) -> Result<Vec<String>>;
    /// The endpoint programs not attached to `host_ifname`.
    fn missing_endpoint_programs(&self, host_ifname: &str) -> Result<Vec<&'static str>>;
    /// [`Self::missing_endpoint_programs`] of each of `host_ifnames` (a
    /// sweep's question about every endpoint), from one look at the
    /// kernel where the driver can.
    fn missing_endpoint_programs_of(
        &self,
        host_ifnames: &[&str],
    ) -> Result<HashMap<String, Vec<&'static str>>> {
        host_ifnames
            .iter()
            .map(|n| Ok((n.to_string(), self.missing_endpoint_programs(n)?)))
            .collect()
    }

    // The IPv6 side of networks and endpoints.
    fn upsert_network6(&mut self, subnet: Ipv6Net, info: NetworkInfo6) -> Result<()>;
    fn remove_network6(&mut self, subnet: Ipv6Net) -> Result<()>;
    fn network6_subnets(&mut self) -> Result<Vec<Ipv6Net>>;
    /// Writes the IPv6 entry of a host ifindex (after its IPv4 one).
    fn set_endpoint6(&mut self, ifindex: u32, ep: Endpoint6) -> Result<()>;
    fn endpoint6(&mut self, ifindex: u32) -> Result<Option<Endpoint6>>;
    fn remove_endpoint6(&mut self, ifindex: u32) -> Result<()>;
    fn endpoint6_indexes(&mut self) -> Result<Vec<u32>>;
    fn flush_flows6_of(&mut self, addr: Ipv6Addr) -> Result<usize>;

    // Uplinks.
    /// Attaches (or adopts) the uplink programs and writes the entry.
    fn attach_uplink(
        &mut self,
        ifname: &str,
        ifindex: u32,
        uplink: Uplink,
        generic_xdp: bool,
    ) -> Result<()>;
    /// Detaches the uplink programs of `ifname` and removes the entry of
    /// `ifindex`.
    fn detach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<()>;
    /// Detaches the uplink programs of `ifname` only.
    fn unlink_uplink(&mut self, ifname: &str) -> Result<()>;
    fn uplink_entries(&mut self) -> Result<Vec<(u32, Uplink)>>;
    /// Interface names that have at least one uplink program link.
    fn linked_uplinks(&self) -> Result<Vec<String>>;
    /// Writes (`Some`) or removes the IPv6 masquerade entry of an uplink
    /// (`detach_uplink` removes it too).
    fn set_uplink6(&mut self, ifindex: u32, uplink: Option<Uplink6>) -> Result<()>;
    fn uplink6_entries(&mut self) -> Result<Vec<(u32, Uplink6)>>;

    // Published ports, host addresses, flows.
    fn publish(&mut self, m: &PortMapping, target: Ipv4Addr) -> Result<()>;
    fn unpublish(&mut self, m: &PortMapping) -> Result<()>;
    fn published_entries(&mut self) -> Result<Vec<(PublishKey, PublishTarget)>>;
    fn remove_published_key(&mut self, key: &PublishKey) -> Result<()>;
    fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<()>;
    // The same over IPv6 (`PUBLISHED6`, `HOST_ADDRS6`).
    fn publish6(&mut self, m: &PortMapping, target: Ipv6Addr) -> Result<()>;
    fn unpublish6(&mut self, m: &PortMapping) -> Result<()>;
    fn published6_entries(&mut self) -> Result<Vec<(PublishKey6, PublishTarget6)>>;
    fn remove_published6_key(&mut self, key: &PublishKey6) -> Result<()>;
    fn set_host_addrs6(&mut self, addrs: &HashSet<Ipv6Addr>) -> Result<()>;
    fn set_no_shortcut(&mut self, ifindexes: &HashSet<u32>) -> Result<()>;
    /// Drops every tracked flow to or from `addr`; how many went.
    fn flush_flows_of(&mut self, addr: Ipv4Addr) -> Result<usize>;
    /// Expires idle flows; how many went.
    fn expire_flows(&mut self, timeouts: &CtTimeouts) -> Result<usize>;

    // Overlay networks.
    /// Attaches the overlay program to the VXLAN device `ifindex` and
    /// points the programs at it (`local`: the outer source address).
    fn attach_overlay_device(&mut self, ifindex: u32, local: Ipv4Addr) -> Result<()>;
    /// Stops encapsulation and detaches the overlay program.
    fn detach_overlay_device(&mut self) -> Result<()>;
    /// Binds `vni` to the local network `net_id`.
    fn register_overlay_network(&mut self, net_id: u32, vni: u32) -> Result<()>;
    fn unregister_overlay_network(&mut self, net_id: u32) -> Result<()>;
    /// (vni, net_id) of every bound VNI.
    fn overlay_networks(&mut self) -> Result<Vec<(u32, u32)>>;
    /// Makes the remote endpoints of `net_id` exactly `want` (address ->
    /// (host, MAC)); returns how many were written and how many removed.
    fn sync_remote_endpoints(
        &mut self,
        net_id: u32,
        vni: u32,
        want: &BTreeMap<Ipv4Addr, (Ipv4Addr, [u8; 6])>,
    ) -> Result<(usize, usize)>;
    fn remote_endpoints(&mut self) -> Result<Vec<Remote>>;

    // Host-wide.
    /// Attaches the host-socket programs to the cgroup2 directory.
    fn attach_sock_programs(&mut self, cgroup: &Path) -> Result<()>;
    /// Where the pins live (shown by `netd status`).
    fn pin_root(&self) -> PathBuf;
    /// Removes every pin (which detaches every program): `netd reset`.
    fn remove_pins(&mut self) -> Result<()>;
    /// Fills an `explain` sandbox from the live maps.
    fn fill_sandbox(&mut self, sandbox: &mut Sandbox) -> Result<()>;
}

/// What the datapath counts, for status, metrics and views.
pub trait DatapathStats {
    fn drop_counts(&self) -> Result<Vec<DropCount>>;
    fn map_fill(&mut self) -> Result<Vec<MapFill>>;
    fn routing_counts(&self) -> Result<RoutingCounts>;
    fn host_routing(&self) -> Result<HostRouting>;
    fn ct_stats(&mut self) -> Result<CtStats>;
    fn ct_capacity(&mut self) -> Result<u32>;
    fn nat_bindings(&mut self) -> Result<usize>;
    fn events_suppressed(&self) -> Result<u64>;
    /// The number of program links pinned.
    fn link_count(&self) -> Result<usize>;
    /// The counters of the endpoint at `ip` (0.0.0.0: IPv6-only) behind
    /// host veth `host_ifname`.
    fn endpoint_counters(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<Counters>;
    fn network_counters(&self, net_id: u32) -> Result<Counters>;
}

/// Links, addresses and routes in the agent's own netns.
#[async_trait::async_trait]
pub trait LinkDriver: Send + Sync {
    /// The ifindex of `name`, if such a link exists.
    async fn index_of(&self, name: &str) -> Result<Option<u32>>;
    /// The kind of a link (`veth`, `bridge`, ...), if it has one.
    async fn kind(&self, index: u32) -> Result<Option<String>>;
    /// Every link, with netd's owner mark where it has one.
    async fn dump(&self) -> Result<Vec<LinkRow>>;
    /// The dump keyed by link name.
    async fn by_name(&self) -> Result<HashMap<String, LinkRow>> {
        Ok(self
            .dump()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect())
    }
    /// Links marked as netd's: (index, name, owner id).
    async fn owned_links(&self) -> Result<Vec<(u32, String, String)>> {
        Ok(self
            .dump()
            .await?
            .into_iter()
            .filter_map(|r| r.owner.map(|o| (r.index, r.name, o)))
            .collect())
    }
    /// (ifindex, name) of every link.
    async fn link_names(&self) -> Result<Vec<(u32, String)>>;
    /// Creates (or adopts) a bridge marked as `owner`'s with the gateway
    /// address on it, up.
    async fn ensure_bridge(
        &self,
        name: &str,
        owner: &str,
        mac: [u8; 6],
        mtu: u32,
        gateway: Option<Ipv4Net>,
    ) -> Result<u32>;
    async fn set_up(&self, index: u32) -> Result<()>;
    /// Deletes a link (a veth takes its peer along); one already gone is
    /// not an error.
    async fn delete(&self, index: u32) -> Result<()>;
    async fn delete_by_name(&self, name: &str) -> Result<()>;
    /// Creates a veth pair marked as `owner`'s: the host end `host_name`
    /// on the bridge `bridge_index` (down), the peer `peer_name` with
    /// `peer_mac` born in `peer_netns` or, when `None`, here too (for a
    /// runtime that moves it itself, as Docker does). Returns the host
    /// end's ifindex.
    #[allow(clippy::too_many_arguments)]
    async fn create_veth(
        &self,
        host_name: &str,
        owner: &str,
        peer_name: &str,
        peer_netns: Option<&dyn ContainerNetns>,
        peer_mac: [u8; 6],
        mtu: u32,
        bridge_index: u32,
    ) -> Result<u32>;
    async fn set_master(&self, index: u32, bridge: u32) -> Result<()>;
    /// Output interfaces of the IPv4 default route(s).
    async fn default_route_interfaces(&self) -> Result<Vec<u32>>;
    /// The primary (first global) IPv4 address of a link.
    async fn primary_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>>;
    /// Every IPv4 address except loopback ones.
    async fn all_ipv4(&self) -> Result<HashSet<Ipv4Addr>>;
    /// Every global or unique local IPv6 address.
    async fn all_ipv6(&self) -> Result<HashSet<Ipv6Addr>>;
    /// IPv4 destinations of the main table, default route excluded.
    async fn route_prefixes(&self) -> Result<Vec<Ipv4Net>>;
    /// Turns IPv6 forwarding on, and IPv6 on the bridge `bridge`.
    fn enable_ipv6(&self, bridge: &str) -> Result<()>;
    /// Puts `addr/prefix` on a link (no duplicate address detection).
    async fn ensure_address6(&self, index: u32, addr: Ipv6Addr, prefix: u8) -> Result<()>;
    /// IPv6 destinations a network could clash with (link-local and
    /// multicast ones left out).
    async fn route_prefixes6(&self) -> Result<Vec<Ipv6Net>>;
    /// Links the IPv6 default routes leave by.
    async fn default_route_interfaces6(&self) -> Result<Vec<u32>>;
    /// The address IPv6 masquerade uses on a link (a global one before a
    /// unique local one).
    async fn masquerade_ipv6(&self, index: u32) -> Result<Option<Ipv6Addr>>;
    async fn mtu_of(&self, index: u32) -> Result<u32>;
    /// The link that holds the IPv4 address `addr`.
    async fn link_with_address(&self, addr: Ipv4Addr) -> Result<Option<u32>>;
    /// Creates (or adopts) the VXLAN device `name` (external mode, UDP
    /// `port`, outer source `local`), marked as the overlay's, down;
    /// returns its ifindex.
    async fn ensure_vxlan(&self, name: &str, local: Ipv4Addr, port: u16, mtu: u32) -> Result<u32>;
}

/// Opens container network namespaces.
pub trait NetnsDriver: Send + Sync {
    /// Does a netns file exist at `path`?
    fn exists(&self, path: &Path) -> bool;
    /// Opens the netns at `path` (e.g. /run/netns/x or /proc/PID/ns/net).
    fn open(&self, path: &Path) -> Result<Box<dyn ContainerNetns>>;
}

/// One open container netns.
#[async_trait::async_trait]
pub trait ContainerNetns: Send + Sync {
    /// Addresses `ifname` (born here by [`LinkDriver::create_veth`]; no
    /// IPv4 address on an IPv6-only network), brings it and `lo` up, adds
    /// the default route when asked.
    async fn configure_endpoint(
        &self,
        ifname: &str,
        addr: Option<Ipv4Net>,
        default_gateway: Option<Ipv4Addr>,
    ) -> Result<()>;
    /// Points the default route at `gateway` through `ifname`.
    async fn set_default_route(&self, ifname: &str, gateway: Ipv4Addr) -> Result<()>;
    async fn lo_up(&self) -> Result<()>;
    /// Deletes `ifname` (its veth peer goes with it).
    async fn delete_link(&self, ifname: &str) -> Result<()>;
    /// What the kernel shows of `ifname`; `None` when it is missing.
    async fn interface_state(&self, ifname: &str) -> Result<Option<InterfaceState>>;
    /// The IPv6 side of an endpoint, after `configure_endpoint`: IPv6 on
    /// for `ifname`, its address, the default route when asked.
    async fn configure_ipv6(
        &self,
        ifname: &str,
        ip: Ipv6Addr,
        prefix: u8,
        default_gateway: Option<Ipv6Addr>,
    ) -> Result<()>;
    /// Points the IPv6 default route at `gateway` through `ifname`.
    async fn set_default_route6(&self, ifname: &str, gateway: Ipv6Addr) -> Result<()>;
    /// The global IPv6 addresses of `ifname` and the IPv6 default gateway
    /// through it (`None` when it is missing).
    async fn ipv6_state(&self, ifname: &str) -> Result<Option<(Vec<Ipv6Net>, Option<Ipv6Addr>)>>;
    /// For the [`LinkDriver`] of the same kind (the real one needs the
    /// netns file).
    fn as_any(&self) -> &dyn Any;
}

/// A held host port: dropping it frees the port.
pub type HeldPort = Box<dyn Any + Send + Sync>;

/// The sockets that hold published host ports.
pub trait HostPorts: Send + Sync {
    /// Holds `m`'s host port (0: one the kernel picks), with
    /// `SO_REUSEADDR` when `shared` (the runtime listens on it too).
    /// Returns the hold and the port.
    fn hold(&self, m: &PortMapping, shared: bool) -> AgentResult<(HeldPort, u16)>;
}
