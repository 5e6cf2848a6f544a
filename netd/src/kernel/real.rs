//! The drivers on the kernel: the loaded eBPF object and its pins, an
//! rtnetlink connection, netns files, bound sockets. Each method is the
//! code the agent called before the seam existed.
use std::{
    any::Any,
    collections::{BTreeMap, HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use netd_common::{
    Counters, Endpoint, Endpoint6, NetworkInfo, NetworkInfo6, PublishKey, PublishKey6,
    PublishTarget, PublishTarget6, Uplink, Uplink6,
};
use nix::sys::socket::{
    bind, getsockname, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage,
};

use super::{
    ContainerNetns, DatapathDriver, DatapathStats, Drivers, EndpointPrograms, HeldPort, HostPorts,
    InterfaceState, LinkDriver, LinkRow, NetnsDriver,
};
use crate::{
    datapath::{
        overlay::Remote, CtStats, CtTimeouts, Datapath, DropCount, EndpointBlocks, HostRouting,
        MapFill, RoutingCounts, Sandbox, ENDPOINT_PROGRAM_NAMES, UPLINK_IN, UPLINK_OUT, UPLINK_XDP,
    },
    error::{AgentError, AgentResult},
    net::{ContainerNs, HostLinks},
    ports::{PortMapping, Proto},
};

/// The drivers of a running agent (the endpoint filter blocks set up in
/// the agent's netns with the programs `datapath` pinned).
pub fn real_kernel(mut datapath: Datapath, links: HostLinks) -> Result<Drivers> {
    let attacher = datapath.use_blocks()?;
    Ok(Drivers {
        datapath: Box::new(datapath),
        links: Arc::new(links),
        netns: Arc::new(RealNamespaces),
        ports: Arc::new(RealPorts),
        attacher,
    })
}

/// The netns file of a [`ContainerNs`] behind the seam.
fn netns_file(ns: &dyn ContainerNetns) -> Result<&std::fs::File> {
    Ok(&ns
        .as_any()
        .downcast_ref::<ContainerNs>()
        .ok_or_else(|| anyhow!("not a kernel network namespace"))?
        .file)
}

impl EndpointPrograms for EndpointBlocks {
    fn attach(&self, host_ifname: &str) -> Result<()> {
        EndpointBlocks::attach(self, host_ifname)
    }
}

impl Datapath {
    /// Host veths bound to the blocks (the holder left out), with how.
    fn bound_endpoints(&self) -> Result<Vec<(String, crate::datapath::Binding)>> {
        Ok(self
            .blocks()?
            .bound()?
            .into_iter()
            .filter_map(|(index, b)| crate::datapath::blocks_ifname(index).map(|n| (n, b)))
            .filter(|(name, _)| name != netd_common::programs::BLOCK_HOLDER)
            .collect())
    }

    /// What `host_ifname` lacks, its binding and the programs missing on
    /// the blocks given: a veth of an earlier netd filtered by its own TCX
    /// links lacks nothing those cover.
    fn endpoint_gaps(
        &self,
        host_ifname: &str,
        binding: crate::datapath::Binding,
        off_blocks: &[&'static str],
    ) -> Vec<&'static str> {
        let legacy = |p: &str| self.pins().link(host_ifname, p).exists();
        binding
            .missing()
            .into_iter()
            .chain(off_blocks.iter().copied())
            .filter(|p| !legacy(p))
            .fold(Vec::new(), |mut v, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            })
    }

    /// Host veths with endpoint links pinned by a netd before the blocks.
    fn legacy_linked_endpoints(&self) -> Result<Vec<String>> {
        Ok(self
            .pinned_links()?
            .iter()
            .filter_map(|pin| pinned_ifname(pin, &ENDPOINT_PROGRAM_NAMES))
            .map(str::to_string)
            .collect())
    }
}

/// A pin name `<ifname>_<program>` split for one of `programs`.
fn pinned_ifname<'a>(pin: &'a str, programs: &[&str]) -> Option<&'a str> {
    programs
        .iter()
        .find_map(|p| pin.strip_suffix(p).and_then(|s| s.strip_suffix('_')))
}

impl DatapathDriver for Datapath {
    fn upsert_network(&mut self, subnet: Ipv4Net, info: NetworkInfo) -> Result<()> {
        Datapath::upsert_network(self, subnet, info)
    }

    fn remove_network(&mut self, subnet: Ipv4Net) -> Result<()> {
        Datapath::remove_network(self, subnet)
    }

    fn network_subnets(&mut self) -> Result<Vec<Ipv4Net>> {
        Datapath::network_subnets(self)
    }

    fn remove_network_counters(&mut self, net_id: u32) -> Result<()> {
        Datapath::remove_network_counters(self, net_id)
    }

    fn set_endpoint(&mut self, ifindex: u32, ep: Endpoint) -> Result<()> {
        Datapath::set_endpoint(self, ifindex, ep)
    }

    fn attach_endpoint(&mut self, host_ifname: &str, ifindex: u32, ep: Endpoint) -> Result<()> {
        Datapath::attach_endpoint(self, host_ifname, ifindex, ep)
    }

    fn detach_endpoint(&mut self, host_ifname: &str, ifindex: Option<u32>) -> Result<()> {
        Datapath::detach_endpoint(self, host_ifname, ifindex)
    }

    fn remove_endpoint_entry(&mut self, ifindex: u32) -> Result<()> {
        Datapath::remove_endpoint_entry(self, ifindex)
    }

    fn endpoint_indexes(&mut self) -> Result<Vec<u32>> {
        Datapath::endpoint_indexes(self)
    }

    fn endpoint_addresses(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        Datapath::endpoint_addresses(self)
    }

    fn linked_endpoints(&self) -> Result<Vec<String>> {
        let mut out = self.legacy_linked_endpoints()?;
        out.extend(self.bound_endpoints()?.into_iter().map(|(name, _)| name));
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn missing_endpoint_programs(&self, host_ifname: &str) -> Result<Vec<&'static str>> {
        let blocks = self.blocks()?;
        let binding = match crate::datapath::blocks_ifindex(host_ifname) {
            Some(index) => blocks.binding(index)?,
            None => Default::default(),
        };
        Ok(self.endpoint_gaps(host_ifname, binding, &blocks.missing_programs()?))
    }

    fn missing_endpoint_programs_of(
        &self,
        host_ifnames: &[&str],
    ) -> Result<HashMap<String, Vec<&'static str>>> {
        let blocks = self.blocks()?;
        // One qdisc dump and one filter dump per block for the lot.
        let off_blocks = blocks.missing_programs()?;
        let bound: HashMap<u32, crate::datapath::Binding> = blocks.bound()?.into_iter().collect();
        Ok(host_ifnames
            .iter()
            .map(|name| {
                let binding = crate::datapath::blocks_ifindex(name)
                    .and_then(|i| bound.get(&i).copied())
                    .unwrap_or_default();
                (
                    name.to_string(),
                    self.endpoint_gaps(name, binding, &off_blocks),
                )
            })
            .collect())
    }

    fn upsert_network6(&mut self, subnet: Ipv6Net, info: NetworkInfo6) -> Result<()> {
        Datapath::upsert_network6(self, subnet, info)
    }

    fn remove_network6(&mut self, subnet: Ipv6Net) -> Result<()> {
        Datapath::remove_network6(self, subnet)
    }

    fn network6_subnets(&mut self) -> Result<Vec<Ipv6Net>> {
        Datapath::network6_subnets(self)
    }

    fn set_endpoint6(&mut self, ifindex: u32, ep: Endpoint6) -> Result<()> {
        Datapath::set_endpoint6(self, ifindex, ep)
    }

    fn endpoint6(&mut self, ifindex: u32) -> Result<Option<Endpoint6>> {
        Datapath::endpoint6(self, ifindex)
    }

    fn remove_endpoint6(&mut self, ifindex: u32) -> Result<()> {
        Datapath::remove_endpoint6(self, ifindex)
    }

    fn endpoint6_indexes(&mut self) -> Result<Vec<u32>> {
        Datapath::endpoint6_indexes(self)
    }

    fn flush_flows6_of(&mut self, addr: Ipv6Addr) -> Result<usize> {
        Datapath::flush_flows6_of(self, addr)
    }

    fn attach_uplink(
        &mut self,
        ifname: &str,
        ifindex: u32,
        uplink: Uplink,
        generic_xdp: bool,
    ) -> Result<()> {
        Datapath::attach_uplink(self, ifname, ifindex, uplink, generic_xdp)
    }

    fn detach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        Datapath::detach_uplink(self, ifname, ifindex)
    }

    fn unlink_uplink(&mut self, ifname: &str) -> Result<()> {
        for program in [UPLINK_IN, UPLINK_OUT, UPLINK_XDP] {
            self.unpin_link(&self.pins().link(ifname, program))?;
        }
        Ok(())
    }

    fn uplink_entries(&mut self) -> Result<Vec<(u32, Uplink)>> {
        Datapath::uplink_entries(self)
    }

    fn set_uplink6(&mut self, ifindex: u32, uplink: Option<Uplink6>) -> Result<()> {
        match uplink {
            Some(u) => Datapath::set_uplink6(self, ifindex, u),
            None => Datapath::remove_uplink6(self, ifindex),
        }
    }

    fn uplink6_entries(&mut self) -> Result<Vec<(u32, Uplink6)>> {
        Datapath::uplink6_entries(self)
    }

    fn linked_uplinks(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .pinned_links()?
            .iter()
            .filter_map(|pin| pinned_ifname(pin, &[UPLINK_IN, UPLINK_OUT, UPLINK_XDP]))
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn publish(&mut self, m: &PortMapping, target: Ipv4Addr) -> Result<()> {
        Datapath::publish(self, m, target)
    }

    fn unpublish(&mut self, m: &PortMapping) -> Result<()> {
        Datapath::unpublish(self, m)
    }

    fn published_entries(&mut self) -> Result<Vec<(PublishKey, PublishTarget)>> {
        Datapath::published_entries(self)
    }

    fn remove_published_key(&mut self, key: &PublishKey) -> Result<()> {
        Datapath::remove_published_key(self, key)
    }

    fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<()> {
        Datapath::set_host_addrs(self, addrs)
    }

    fn publish6(&mut self, m: &PortMapping, target: Ipv6Addr) -> Result<()> {
        Datapath::publish6(self, m, target)
    }

    fn unpublish6(&mut self, m: &PortMapping) -> Result<()> {
        Datapath::unpublish6(self, m)
    }

    fn published6_entries(&mut self) -> Result<Vec<(PublishKey6, PublishTarget6)>> {
        Datapath::published6_entries(self)
    }

    fn remove_published6_key(&mut self, key: &PublishKey6) -> Result<()> {
        Datapath::remove_published6_key(self, key)
    }

    fn set_host_addrs6(&mut self, addrs: &HashSet<Ipv6Addr>) -> Result<()> {
        Datapath::set_host_addrs6(self, addrs)
    }

    fn set_no_shortcut(&mut self, ifindexes: &HashSet<u32>) -> Result<()> {
        Datapath::set_no_shortcut(self, ifindexes)
    }

    fn flush_flows_of(&mut self, addr: Ipv4Addr) -> Result<usize> {
        Datapath::flush_flows_of(self, addr)
    }

    fn expire_flows(&mut self, timeouts: &CtTimeouts) -> Result<usize> {
        Datapath::expire_flows(self, timeouts)
    }

    fn attach_overlay_device(&mut self, ifindex: u32, local: Ipv4Addr) -> Result<()> {
        Datapath::attach_overlay_device(self, ifindex, local)
    }

    fn detach_overlay_device(&mut self) -> Result<()> {
        Datapath::detach_overlay_device(self)
    }

    fn register_overlay_network(&mut self, net_id: u32, vni: u32) -> Result<()> {
        Datapath::register_overlay_network(self, net_id, vni)
    }

    fn unregister_overlay_network(&mut self, net_id: u32) -> Result<()> {
        Datapath::unregister_overlay_network(self, net_id)
    }

    fn overlay_networks(&mut self) -> Result<Vec<(u32, u32)>> {
        Datapath::overlay_networks(self)
    }

    fn sync_remote_endpoints(
        &mut self,
        net_id: u32,
        vni: u32,
        want: &BTreeMap<Ipv4Addr, (Ipv4Addr, [u8; 6])>,
    ) -> Result<(usize, usize)> {
        Datapath::sync_remote_endpoints(self, net_id, vni, want)
    }

    fn remote_endpoints(&mut self) -> Result<Vec<Remote>> {
        Datapath::remote_endpoints(self)
    }

    fn attach_sock_programs(&mut self, cgroup: &Path) -> Result<()> {
        Datapath::attach_sock_programs(self, cgroup)
    }

    fn pin_root(&self) -> PathBuf {
        self.pins().root().to_path_buf()
    }

    fn remove_pins(&mut self) -> Result<()> {
        let root = self.pins().root();
        std::fs::remove_dir_all(root)
            .with_context(|| format!("failed to remove pins under {}", root.display()))
    }

    fn fill_sandbox(&mut self, sandbox: &mut Sandbox) -> Result<()> {
        sandbox.copy_from(self)
    }
}

impl DatapathStats for Datapath {
    fn drop_counts(&self) -> Result<Vec<DropCount>> {
        Datapath::drop_counts(self)
    }

    fn map_fill(&mut self) -> Result<Vec<MapFill>> {
        Datapath::map_fill(self)
    }

    fn routing_counts(&self) -> Result<RoutingCounts> {
        Datapath::routing_counts(self)
    }

    fn host_routing(&self) -> Result<HostRouting> {
        Datapath::host_routing(self)
    }

    fn ct_stats(&mut self) -> Result<CtStats> {
        Datapath::ct_stats(self)
    }

    fn ct_capacity(&mut self) -> Result<u32> {
        Datapath::ct_capacity(self)
    }

    fn nat_bindings(&mut self) -> Result<usize> {
        Datapath::nat_bindings(self)
    }

    fn events_suppressed(&self) -> Result<u64> {
        Datapath::events_suppressed(self)
    }

    /// Pinned links, and two per veth bound to the blocks (one per
    /// program, as the TCX links of a veth were counted).
    fn link_count(&self) -> Result<usize> {
        let bound: usize = self
            .bound_endpoints()?
            .iter()
            .map(|(_, b)| usize::from(b.ingress) + usize::from(b.egress))
            .sum();
        Ok(self.pinned_links()?.len() + bound)
    }

    fn endpoint_counters(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<Counters> {
        Datapath::endpoint_counters(self, ip, host_ifname)
    }

    fn network_counters(&self, net_id: u32) -> Result<Counters> {
        Datapath::network_counters(self, net_id)
    }
}

#[async_trait::async_trait]
impl LinkDriver for HostLinks {
    async fn index_of(&self, name: &str) -> Result<Option<u32>> {
        HostLinks::index_of(self, name).await
    }

    async fn kind(&self, index: u32) -> Result<Option<String>> {
        HostLinks::kind(self, index).await
    }

    async fn dump(&self) -> Result<Vec<LinkRow>> {
        HostLinks::dump(self).await
    }

    async fn link_names(&self) -> Result<Vec<(u32, String)>> {
        HostLinks::link_names(self).await
    }

    async fn ensure_bridge(
        &self,
        name: &str,
        owner: &str,
        mac: [u8; 6],
        mtu: u32,
        gateway: Option<Ipv4Net>,
    ) -> Result<u32> {
        HostLinks::ensure_bridge(self, name, owner, mac, mtu, gateway).await
    }

    async fn set_up(&self, index: u32) -> Result<()> {
        HostLinks::set_up(self, index).await
    }

    async fn delete(&self, index: u32) -> Result<()> {
        HostLinks::delete(self, index).await
    }

    async fn delete_by_name(&self, name: &str) -> Result<()> {
        HostLinks::delete_by_name(self, name).await
    }

    async fn create_veth(
        &self,
        host_name: &str,
        owner: &str,
        peer_name: &str,
        peer_netns: Option<&dyn ContainerNetns>,
        peer_mac: [u8; 6],
        mtu: u32,
        bridge_index: u32,
    ) -> Result<u32> {
        let at = match peer_netns {
            Some(ns) => Some(netns_file(ns)?.as_raw_fd()),
            None => None,
        };
        self.create_veth_at(host_name, owner, peer_name, at, peer_mac, mtu, bridge_index)
            .await
    }

    async fn set_master(&self, index: u32, bridge: u32) -> Result<()> {
        HostLinks::set_master(self, index, bridge).await
    }

    async fn default_route_interfaces(&self) -> Result<Vec<u32>> {
        HostLinks::default_route_interfaces(self).await
    }

    async fn primary_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>> {
        HostLinks::primary_ipv4(self, index).await
    }

    async fn all_ipv4(&self) -> Result<HashSet<Ipv4Addr>> {
        HostLinks::all_ipv4(self).await
    }

    async fn all_ipv6(&self) -> Result<HashSet<Ipv6Addr>> {
        HostLinks::all_ipv6(self).await
    }

    async fn route_prefixes(&self) -> Result<Vec<Ipv4Net>> {
        HostLinks::route_prefixes(self).await
    }

    fn enable_ipv6(&self, bridge: &str) -> Result<()> {
        crate::net::sysctl::enable_ipv6_forwarding()?;
        crate::net::sysctl::enable_ipv6_on(bridge)
    }

    async fn ensure_address6(&self, index: u32, addr: Ipv6Addr, prefix: u8) -> Result<()> {
        HostLinks::ensure_address6(self, index, addr, prefix).await
    }

    async fn route_prefixes6(&self) -> Result<Vec<Ipv6Net>> {
        HostLinks::route_prefixes6(self).await
    }

    async fn default_route_interfaces6(&self) -> Result<Vec<u32>> {
        HostLinks::default_route_interfaces6(self).await
    }

    async fn masquerade_ipv6(&self, index: u32) -> Result<Option<Ipv6Addr>> {
        HostLinks::masquerade_ipv6(self, index).await
    }

    async fn mtu_of(&self, index: u32) -> Result<u32> {
        HostLinks::mtu_of(self, index).await
    }

    async fn link_with_address(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        HostLinks::link_with_address(self, addr).await
    }

    async fn ensure_vxlan(&self, name: &str, local: Ipv4Addr, port: u16, mtu: u32) -> Result<u32> {
        HostLinks::ensure_vxlan(self, name, local, port, mtu).await
    }
}

/// Container namespaces as files.
pub struct RealNamespaces;

impl NetnsDriver for RealNamespaces {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ContainerNetns>> {
        Ok(Box::new(ContainerNs::open(path)?))
    }
}

#[async_trait::async_trait]
impl ContainerNetns for ContainerNs {
    async fn configure_endpoint(
        &self,
        ifname: &str,
        addr: Option<Ipv4Net>,
        default_gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        ContainerNs::configure_endpoint(self, ifname, addr, default_gateway).await
    }

    async fn set_default_route(&self, ifname: &str, gateway: Ipv4Addr) -> Result<()> {
        ContainerNs::set_default_route(self, ifname, gateway).await
    }

    async fn lo_up(&self) -> Result<()> {
        ContainerNs::lo_up(self).await
    }

    async fn delete_link(&self, ifname: &str) -> Result<()> {
        ContainerNs::delete_link(self, ifname).await
    }

    async fn interface_state(&self, ifname: &str) -> Result<Option<InterfaceState>> {
        ContainerNs::interface_state(self, ifname).await
    }

    async fn configure_ipv6(
        &self,
        ifname: &str,
        ip: Ipv6Addr,
        prefix: u8,
        default_gateway: Option<Ipv6Addr>,
    ) -> Result<()> {
        ContainerNs::configure_ipv6(self, ifname, ip, prefix, default_gateway).await
    }

    async fn set_default_route6(&self, ifname: &str, gateway: Ipv6Addr) -> Result<()> {
        ContainerNs::set_default_route6(self, ifname, gateway).await
    }

    async fn ipv6_state(&self, ifname: &str) -> Result<Option<(Vec<Ipv6Net>, Option<Ipv6Addr>)>> {
        ContainerNs::ipv6_state(self, ifname).await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Host ports held by bound sockets.
pub struct RealPorts;

impl HostPorts for RealPorts {
    fn hold(&self, m: &PortMapping, shared: bool) -> AgentResult<(HeldPort, u16)> {
        let (fd, port) = hold_port(m, shared)?;
        Ok((Box::new(fd), port))
    }
}

/// Binds a socket on the host port (0: the kernel picks a free one).
fn hold_port(m: &PortMapping, shared: bool) -> AgentResult<(OwnedFd, u16)> {
    let ty = match m.proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
        // No SCTP in this kernel: the published table alone guards it.
        Proto::Sctp => return Err(AgentError::Internal(anyhow!("no SCTP sockets"))),
    };
    let ip = m.host_addr();
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| AgentError::Internal(anyhow!("socket: {e}")))?;
    if shared {
        setsockopt(&fd, sockopt::ReuseAddr, &true)
            .map_err(|e| AgentError::Internal(anyhow!("SO_REUSEADDR: {e}")))?;
    }
    if ip.is_ipv6() {
        // `[::]` holds the IPv6 port only; 0.0.0.0 has its own holder.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)
            .map_err(|e| AgentError::Internal(anyhow!("IPV6_V6ONLY: {e}")))?;
    }
    let addr = SockaddrStorage::from(SocketAddr::new(ip, m.host_port));
    let shown = SocketAddr::new(ip, m.host_port);
    bind(fd.as_raw_fd(), &addr).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => AgentError::Conflict(format!(
            "host port {shown}/{} is already in use on the host",
            m.proto
        )),
        nix::errno::Errno::EADDRNOTAVAIL => {
            AgentError::Invalid(format!("{ip} is not an address of this host"))
        }
        e => AgentError::Internal(anyhow!("bind {shown}: {e}")),
    })?;
    let bound: SockaddrStorage = getsockname(fd.as_raw_fd())
        .map_err(|e| AgentError::Internal(anyhow!("getsockname: {e}")))?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .unwrap_or(m.host_port);
    Ok((fd, port))
}
