//! An in-memory kernel for unit tests of the agent: host links, container
//! namespaces, the datapath's maps and pins, held host ports, all in one
//! [`State`] that tests read, change (drift) and compare. The attacher
//! (`EndpointPrograms`) pins under the same names as the datapath.
//!
//! Fault injection: every call that changes something is one step, some
//! calls several (attaching an endpoint writes its entry, then attaches
//! two programs, as the real driver does). [`Fake::fail_at`] makes step N
//! from now fail, leaving the steps before it done, as a kernel error
//! half-way would.
use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::{anyhow, bail, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use netd_common::{
    Counters, Endpoint, Endpoint6, NetworkInfo, NetworkInfo6, PublishKey, PublishKey6,
    PublishTarget, PublishTarget6, Uplink, Uplink6,
};

use super::{
    ContainerNetns, DatapathDriver, DatapathStats, Drivers, EndpointPrograms, HeldPort, HostPorts,
    InterfaceState, LinkDriver, LinkRow, NetnsDriver,
};
use crate::{
    datapath::{
        overlay::Remote, CtStats, CtTimeouts, DropCount, HostRouting, MapFill, RoutingCounts,
        Sandbox, ENDPOINT_PROGRAM_NAMES, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
        UPLINK_XDP,
    },
    error::{AgentError, AgentResult},
    ports::PortMapping,
};

/// The first ifindex the fake hands out (1 is the host's `lo`).
const FIRST_INDEX: u32 = 10;
/// Where port 0 holds start.
const FIRST_EPHEMERAL: u16 = 40_000;

/// What a link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Bridge,
    /// A veth whose peer is `peer` inside the netns `netns`, or in the
    /// host netns when `None`.
    Veth {
        peer: String,
        netns: Option<PathBuf>,
    },
    /// Anything else (an uplink, another runtime's device).
    Other(String),
}

/// One link of the host netns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub kind: Kind,
    pub up: bool,
    pub master: Option<u32>,
    /// netd's owner mark.
    pub owner: Option<String>,
    pub addrs: Vec<Ipv4Net>,
    pub addrs6: Vec<Ipv6Net>,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// An interface inside a container netns (the peer of a host veth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub up: bool,
    pub addrs: Vec<Ipv4Net>,
    pub addrs6: Vec<Ipv6Net>,
    pub mac: [u8; 6],
    /// The host end's name.
    pub host_end: String,
}

/// A container network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Netns {
    pub lo_up: bool,
    pub ifaces: BTreeMap<String, Iface>,
    /// (interface, gateway) of the default route.
    pub default_route: Option<(String, Ipv4Addr)>,
    pub default_route6: Option<(String, Ipv6Addr)>,
}

/// Everything the fake kernel holds; two states compare equal when the
/// kernel is the same (ifindexes included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub links: BTreeMap<u32, Link>,
    /// Host routes other than the connected routes of links' addresses.
    pub routes: Vec<Ipv4Net>,
    pub routes6: Vec<Ipv6Net>,
    /// Links the default route leaves by.
    pub default_route: Vec<u32>,
    /// Links the IPv6 default route leaves by.
    pub default_route6: Vec<u32>,
    pub namespaces: BTreeMap<PathBuf, Netns>,
    // The datapath.
    pub networks: BTreeMap<Ipv4Net, NetworkInfo>,
    pub endpoints: BTreeMap<u32, Endpoint>,
    pub networks6: BTreeMap<Ipv6Net, NetworkInfo6>,
    pub endpoints6: BTreeMap<u32, Endpoint6>,
    /// Container address (map key) -> host ifindex.
    pub endpoint_by_ip: BTreeMap<u32, u32>,
    /// Pinned program links: `<ifname>_<program>`.
    pub pins: BTreeSet<String>,
    pub uplinks: BTreeMap<u32, Uplink>,
    pub uplinks6: BTreeMap<u32, Uplink6>,
    /// (address key, port in network order, protocol) -> target.
    pub published: BTreeMap<(u32, u16, u8), PublishTarget>,
    pub host_addrs: BTreeSet<Ipv4Addr>,
    pub published6: Vec<(PublishKey6, PublishTarget6)>,
    pub host_addrs6: BTreeSet<Ipv6Addr>,
    pub no_shortcut: BTreeSet<u32>,
    pub sock_programs: bool,
    /// The VXLAN device the programs send to: (ifindex, local address).
    pub overlay_device: Option<(u32, Ipv4Addr)>,
    /// VNI -> local network id.
    pub vnis: BTreeMap<u32, u32>,
    /// (network id, address) -> remote endpoint.
    pub remotes: BTreeMap<(u32, Ipv4Addr), Remote>,
    /// Host ports held for published ports: (address, port, protocol).
    pub held_ports: BTreeSet<(IpAddr, u16, u8)>,
    /// Host ports some other host process uses.
    pub busy_ports: BTreeSet<(IpAddr, u16, u8)>,
}

impl State {
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|(_, l)| l.name == name)
            .map(|(i, _)| *i)
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    pub fn link_mut(&mut self, name: &str) -> Option<&mut Link> {
        self.links.values_mut().find(|l| l.name == name)
    }

    /// Deletes `ifname` inside the netns at `path`, as the kernel does: its
    /// routes go, and the host end of its veth.
    pub fn delete_in_netns(&mut self, path: &Path, ifname: &str) {
        let host_end = self
            .namespaces
            .get(path)
            .and_then(|ns| ns.ifaces.get(ifname))
            .map(|i| i.host_end.clone());
        if let Some(index) = host_end.and_then(|h| self.index_of(&h)) {
            self.delete_index(index);
        }
    }

    /// Deletes a link; a veth takes its peer along.
    pub fn delete_index(&mut self, index: u32) {
        let Some(link) = self.links.remove(&index) else {
            return;
        };
        for l in self.links.values_mut() {
            if l.master == Some(index) {
                l.master = None;
            }
        }
        self.default_route.retain(|i| *i != index);
        if let Kind::Veth { peer, netns } = link.kind {
            match netns {
                Some(path) => {
                    if let Some(ns) = self.namespaces.get_mut(&path) {
                        ns.ifaces.remove(&peer);
                        if ns.default_route.as_ref().is_some_and(|(i, _)| *i == peer) {
                            ns.default_route = None;
                        }
                        if ns.default_route6.as_ref().is_some_and(|(i, _)| *i == peer) {
                            ns.default_route6 = None;
                        }
                    }
                }
                None => {
                    if let Some(i) = self.index_of(&peer) {
                        self.links.remove(&i);
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    state: State,
    next_index: u32,
    /// Steps taken since the fault was armed.
    steps: u64,
    fail_at: Option<u64>,
    /// Every step taken, by name (for messages).
    log: Vec<String>,
}

impl Inner {
    /// One step of a change: fails when it is the armed one.
    fn step(&mut self, what: impl Into<String>) -> Result<()> {
        let what = what.into();
        self.steps += 1;
        self.log.push(what.clone());
        if self.fail_at == Some(self.steps) {
            self.fail_at = None;
            bail!("injected failure at step {} ({what})", self.steps);
        }
        Ok(())
    }

    fn new_index(&mut self) -> u32 {
        self.next_index = self.next_index.max(FIRST_INDEX) + 1;
        while self.state.links.contains_key(&self.next_index) {
            self.next_index += 1;
        }
        self.next_index
    }
}

/// The fake kernel, shared by its drivers and the test.
#[derive(Clone, Default)]
pub struct Fake {
    inner: Arc<Mutex<Inner>>,
}

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    /// The five drivers, all on this fake.
    pub fn kernel(&self) -> Drivers {
        Drivers {
            datapath: Box::new(self.clone()),
            links: Arc::new(self.clone()),
            netns: Arc::new(self.clone()),
            ports: Arc::new(self.clone()),
            attacher: Arc::new(self.clone()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the kernel as it is now.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// Changes the kernel behind the agent's back (drift, other software).
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock().state)
    }

    /// One step of a change (see [`Inner::step`]), then `change` on the
    /// state when the step did not fail.
    fn step_then(&self, what: impl Into<String>, change: impl FnOnce(&mut State)) -> Result<()> {
        let mut inner = self.lock();
        inner.step(what)?;
        change(&mut inner.state);
        Ok(())
    }

    /// Makes the `n`th change from now fail (1: the next one).
    pub fn fail_at(&self, n: u64) {
        let mut inner = self.lock();
        inner.steps = 0;
        inner.log.clear();
        inner.fail_at = Some(n);
    }

    /// Starts counting steps from zero, with no fault armed.
    pub fn count_steps(&self) {
        let mut inner = self.lock();
        inner.steps = 0;
        inner.log.clear();
        inner.fail_at = None;
    }

    /// The steps taken since `fail_at` or `count_steps`.
    pub fn steps(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Is a fault still armed (the operation did not reach it)?
    pub fn armed(&self) -> bool {
        self.lock().fail_at.is_some()
    }

    /// A new, empty container netns at `path` (lo up, as runtimes leave it).
    pub fn add_netns(&self, path: &Path) {
        self.with(|s| {
            s.namespaces.insert(
                path.to_path_buf(),
                Netns {
                    lo_up: true,
                    ..Default::default()
                },
            )
        });
    }

    /// The netns at `path` goes (its container ended): its interfaces go,
    /// and with them the host ends of their veths.
    pub fn remove_netns(&self, path: &Path) {
        self.with(|s| {
            if let Some(ns) = s.namespaces.remove(path) {
                for iface in ns.ifaces.values() {
                    if let Some(i) = s.index_of(&iface.host_end) {
                        s.links.remove(&i);
                    }
                }
            }
        });
    }

    /// A link that is not netd's (an uplink, another runtime's device),
    /// with an address; returns its ifindex.
    pub fn add_host_link(&self, name: &str, kind: &str, addr: Option<Ipv4Net>) -> u32 {
        let mut inner = self.lock();
        let index = inner.new_index();
        inner.state.links.insert(
            index,
            Link {
                name: name.to_string(),
                kind: Kind::Other(kind.to_string()),
                up: true,
                master: None,
                owner: None,
                addrs: addr.into_iter().collect(),
                addrs6: Vec::new(),
                mac: [2, 0, 0, 0, 0, index as u8],
                mtu: 1500,
            },
        );
        index
    }
}

fn endpoint_pin(host_ifname: &str, program: &str) -> String {
    format!("{host_ifname}_{program}")
}

/// The endpoint programs attached outside the datapath: the same pins.
impl EndpointPrograms for Fake {
    fn attach(&self, host_ifname: &str) -> Result<()> {
        let mut inner = self.lock();
        for program in ENDPOINT_PROGRAM_NAMES {
            let step = inner.step(format!("attach {program} to {host_ifname}"));
            let missing = inner.state.index_of(host_ifname).is_none();
            if step.is_err() || missing {
                for p in ENDPOINT_PROGRAM_NAMES {
                    inner.state.pins.remove(&endpoint_pin(host_ifname, p));
                }
                step?;
                bail!("failed to attach {program} to {host_ifname}: no such device");
            }
            inner.state.pins.insert(endpoint_pin(host_ifname, program));
        }
        Ok(())
    }
}

impl DatapathDriver for Fake {
    fn set_endpoint(&mut self, ifindex: u32, ep: Endpoint) -> Result<()> {
        self.step_then(format!("endpoint entry {ifindex}"), |s| {
            s.endpoint_by_ip.insert(ep.ip, ifindex);
            s.endpoints.insert(ifindex, ep);
        })
    }

    fn upsert_network(&mut self, subnet: Ipv4Net, info: NetworkInfo) -> Result<()> {
        self.step_then(format!("upsert network {subnet}"), |s| {
            s.networks.insert(subnet, info);
        })
    }

    fn remove_network(&mut self, subnet: Ipv4Net) -> Result<()> {
        self.step_then(format!("remove network {subnet}"), |s| {
            s.networks.remove(&subnet);
        })
    }

    fn network_subnets(&mut self) -> Result<Vec<Ipv4Net>> {
        Ok(self.lock().state.networks.keys().copied().collect())
    }

    fn remove_network_counters(&mut self, _net_id: u32) -> Result<()> {
        self.lock().step("remove network counters")
    }

    fn attach_endpoint(&mut self, host_ifname: &str, ifindex: u32, ep: Endpoint) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("endpoint entry {host_ifname}"))?;
        inner.state.endpoint_by_ip.insert(ep.ip, ifindex);
        inner.state.endpoints.insert(ifindex, ep);
        for program in ENDPOINT_PROGRAM_NAMES {
            inner.step(format!("attach {program} to {host_ifname}"))?;
            if inner.state.index_of(host_ifname) != Some(ifindex) {
                bail!("failed to attach {program} to {host_ifname}: no such device");
            }
            inner.state.pins.insert(endpoint_pin(host_ifname, program));
        }
        Ok(())
    }

    fn detach_endpoint(&mut self, host_ifname: &str, ifindex: Option<u32>) -> Result<()> {
        {
            let mut inner = self.lock();
            inner.step(format!("detach {host_ifname}"))?;
            for program in ENDPOINT_PROGRAM_NAMES {
                inner.state.pins.remove(&endpoint_pin(host_ifname, program));
            }
        }
        match ifindex {
            Some(index) => self.remove_endpoint_entry(index),
            None => Ok(()),
        }
    }

    fn remove_endpoint_entry(&mut self, ifindex: u32) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("remove endpoint entry {ifindex}"))?;
        // Its IPv6 entry goes with it, as in the real datapath.
        inner.state.endpoints6.remove(&ifindex);
        if let Some(ep) = inner.state.endpoints.remove(&ifindex) {
            if inner.state.endpoint_by_ip.get(&ep.ip) == Some(&ifindex) {
                inner.state.endpoint_by_ip.remove(&ep.ip);
            }
        }
        Ok(())
    }

    fn endpoint_indexes(&mut self) -> Result<Vec<u32>> {
        Ok(self.lock().state.endpoints.keys().copied().collect())
    }

    fn endpoint_addresses(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        Ok(self
            .lock()
            .state
            .endpoints
            .iter()
            .map(|(i, e)| (*i, Ipv4Addr::from(e.ip.to_ne_bytes())))
            .collect())
    }

    fn linked_endpoints(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut out: Vec<String> = inner
            .state
            .pins
            .iter()
            .filter_map(|p| {
                [FROM_CONTAINER, TO_CONTAINER]
                    .iter()
                    .find_map(|prog| p.strip_suffix(prog)?.strip_suffix('_'))
            })
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn missing_endpoint_programs(&self, host_ifname: &str) -> Result<Vec<&'static str>> {
        let inner = self.lock();
        Ok(ENDPOINT_PROGRAM_NAMES
            .into_iter()
            .filter(|p| !inner.state.pins.contains(&endpoint_pin(host_ifname, p)))
            .collect())
    }

    fn upsert_network6(&mut self, subnet: Ipv6Net, info: NetworkInfo6) -> Result<()> {
        self.step_then(format!("upsert network {subnet}"), |s| {
            s.networks6.insert(subnet, info);
        })
    }

    fn remove_network6(&mut self, subnet: Ipv6Net) -> Result<()> {
        self.step_then(format!("remove network {subnet}"), |s| {
            s.networks6.remove(&subnet);
        })
    }

    fn network6_subnets(&mut self) -> Result<Vec<Ipv6Net>> {
        Ok(self.lock().state.networks6.keys().copied().collect())
    }

    fn set_endpoint6(&mut self, ifindex: u32, ep: Endpoint6) -> Result<()> {
        self.step_then(format!("endpoint6 entry {ifindex}"), |s| {
            s.endpoints6.insert(ifindex, ep);
        })
    }

    fn endpoint6(&mut self, ifindex: u32) -> Result<Option<Endpoint6>> {
        Ok(self.lock().state.endpoints6.get(&ifindex).copied())
    }

    fn remove_endpoint6(&mut self, ifindex: u32) -> Result<()> {
        self.step_then(format!("remove endpoint6 entry {ifindex}"), |s| {
            s.endpoints6.remove(&ifindex);
        })
    }

    fn endpoint6_indexes(&mut self) -> Result<Vec<u32>> {
        Ok(self.lock().state.endpoints6.keys().copied().collect())
    }

    fn flush_flows6_of(&mut self, _addr: Ipv6Addr) -> Result<usize> {
        self.lock().step("flush flows6")?;
        Ok(0)
    }

    fn attach_uplink(
        &mut self,
        ifname: &str,
        ifindex: u32,
        uplink: Uplink,
        _generic_xdp: bool,
    ) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("uplink entry {ifname}"))?;
        inner.state.uplinks.insert(ifindex, uplink);
        for program in [UPLINK_IN, UPLINK_OUT, UPLINK_XDP] {
            inner.step(format!("attach {program} to {ifname}"))?;
            inner.state.pins.insert(endpoint_pin(ifname, program));
        }
        Ok(())
    }

    fn detach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        self.unlink_uplink(ifname)?;
        self.step_then(format!("remove uplink entry {ifindex}"), |s| {
            s.uplinks.remove(&ifindex);
            s.uplinks6.remove(&ifindex);
        })
    }

    fn set_uplink6(&mut self, ifindex: u32, uplink: Option<Uplink6>) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("uplink6 entry {ifindex}"))?;
        match uplink {
            Some(u) => inner.state.uplinks6.insert(ifindex, u),
            None => inner.state.uplinks6.remove(&ifindex),
        };
        Ok(())
    }

    fn uplink6_entries(&mut self) -> Result<Vec<(u32, Uplink6)>> {
        Ok(self
            .lock()
            .state
            .uplinks6
            .iter()
            .map(|(i, u)| (*i, *u))
            .collect())
    }

    fn unlink_uplink(&mut self, ifname: &str) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("unlink uplink {ifname}"))?;
        for program in [UPLINK_IN, UPLINK_OUT, UPLINK_XDP] {
            inner.state.pins.remove(&endpoint_pin(ifname, program));
        }
        Ok(())
    }

    fn uplink_entries(&mut self) -> Result<Vec<(u32, Uplink)>> {
        Ok(self
            .lock()
            .state
            .uplinks
            .iter()
            .map(|(i, u)| (*i, *u))
            .collect())
    }

    fn linked_uplinks(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut out: Vec<String> = inner
            .state
            .pins
            .iter()
            .filter_map(|p| {
                [UPLINK_IN, UPLINK_OUT, UPLINK_XDP]
                    .iter()
                    .find_map(|prog| p.strip_suffix(prog)?.strip_suffix('_'))
            })
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn publish(&mut self, m: &PortMapping, target: Ipv4Addr) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("publish {m}"))?;
        inner.state.published.insert(
            publish_key(m),
            PublishTarget {
                addr: crate::datapath::addr_key(target),
                port: m.container_port.to_be(),
                _pad: 0,
            },
        );
        Ok(())
    }

    fn unpublish(&mut self, m: &PortMapping) -> Result<()> {
        self.step_then(format!("unpublish {m}"), |s| {
            s.published.remove(&publish_key(m));
        })
    }

    fn published_entries(&mut self) -> Result<Vec<(PublishKey, PublishTarget)>> {
        Ok(self
            .lock()
            .state
            .published
            .iter()
            .map(|((addr, port, proto), t)| {
                (
                    PublishKey {
                        addr: *addr,
                        port: *port,
                        proto: *proto,
                        _pad: 0,
                    },
                    *t,
                )
            })
            .collect())
    }

    fn remove_published_key(&mut self, key: &PublishKey) -> Result<()> {
        let mut inner = self.lock();
        inner.step("remove published key")?;
        inner
            .state
            .published
            .remove(&(key.addr, key.port, key.proto));
        Ok(())
    }

    fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<()> {
        self.step_then("set host addresses", |s| {
            s.host_addrs = addrs.iter().copied().collect();
        })
    }

    fn publish6(&mut self, m: &PortMapping, target: Ipv6Addr) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("publish {m}"))?;
        let key = crate::datapath::publish_key6(m);
        let value = PublishTarget6 {
            addr: crate::datapath::addr6_key(target),
            port: m.container_port.to_be(),
            _pad: 0,
        };
        inner.state.published6.retain(|(k, _)| *k != key);
        inner.state.published6.push((key, value));
        Ok(())
    }

    fn unpublish6(&mut self, m: &PortMapping) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("unpublish {m}"))?;
        let key = crate::datapath::publish_key6(m);
        inner.state.published6.retain(|(k, _)| *k != key);
        Ok(())
    }

    fn published6_entries(&mut self) -> Result<Vec<(PublishKey6, PublishTarget6)>> {
        Ok(self.lock().state.published6.clone())
    }

    fn remove_published6_key(&mut self, key: &PublishKey6) -> Result<()> {
        self.step_then("remove published IPv6 key", |s| {
            s.published6.retain(|(k, _)| k != key);
        })
    }

    fn set_host_addrs6(&mut self, addrs: &HashSet<Ipv6Addr>) -> Result<()> {
        self.step_then("set host IPv6 addresses", |s| {
            s.host_addrs6 = addrs.iter().copied().collect();
        })
    }

    fn set_no_shortcut(&mut self, ifindexes: &HashSet<u32>) -> Result<()> {
        self.step_then("set no-shortcut devices", |s| {
            s.no_shortcut = ifindexes.iter().copied().collect();
        })
    }

    fn flush_flows_of(&mut self, _addr: Ipv4Addr) -> Result<usize> {
        self.lock().step("flush flows")?;
        Ok(0)
    }

    fn expire_flows(&mut self, _timeouts: &CtTimeouts) -> Result<usize> {
        Ok(0)
    }

    fn attach_overlay_device(&mut self, ifindex: u32, local: Ipv4Addr) -> Result<()> {
        let mut inner = self.lock();
        inner.step("attach overlay_in")?;
        inner
            .state
            .pins
            .insert(endpoint_pin(netd_common::VXLAN_DEVICE, "overlay_in"));
        inner.step("overlay device entry")?;
        inner.state.overlay_device = Some((ifindex, local));
        Ok(())
    }

    fn detach_overlay_device(&mut self) -> Result<()> {
        let mut inner = self.lock();
        inner.step("detach overlay device")?;
        inner.state.overlay_device = None;
        inner
            .state
            .pins
            .remove(&endpoint_pin(netd_common::VXLAN_DEVICE, "overlay_in"));
        Ok(())
    }

    fn register_overlay_network(&mut self, net_id: u32, vni: u32) -> Result<()> {
        let mut inner = self.lock();
        if let Some(other) = inner.state.vnis.get(&vni).filter(|n| **n != net_id) {
            bail!("VNI {vni} is bound to network {other}");
        }
        if inner.state.vnis.get(&vni) != Some(&net_id) {
            inner.step(format!("bind VNI {vni}"))?;
            inner.state.vnis.insert(vni, net_id);
        }
        Ok(())
    }

    fn unregister_overlay_network(&mut self, net_id: u32) -> Result<()> {
        self.step_then(format!("unbind VNIs of {net_id}"), |s| {
            s.vnis.retain(|_, n| *n != net_id);
        })
    }

    fn overlay_networks(&mut self) -> Result<Vec<(u32, u32)>> {
        Ok(self
            .lock()
            .state
            .vnis
            .iter()
            .map(|(v, n)| (*v, *n))
            .collect())
    }

    fn sync_remote_endpoints(
        &mut self,
        net_id: u32,
        vni: u32,
        want: &BTreeMap<Ipv4Addr, (Ipv4Addr, [u8; 6])>,
    ) -> Result<(usize, usize)> {
        let mut inner = self.lock();
        let doomed: Vec<(u32, Ipv4Addr)> = inner
            .state
            .remotes
            .keys()
            .filter(|(n, ip)| *n == net_id && !want.contains_key(ip))
            .copied()
            .collect();
        for key in &doomed {
            inner.step(format!("remove remote {}", key.1))?;
            inner.state.remotes.remove(key);
        }
        let mut written = 0;
        for (ip, (host, mac)) in want {
            let remote = Remote {
                net_id,
                vni,
                ip: *ip,
                host: *host,
                mac: *mac,
            };
            if inner.state.remotes.get(&(net_id, *ip)) != Some(&remote) {
                inner.step(format!("remote {ip}"))?;
                inner.state.remotes.insert((net_id, *ip), remote);
                written += 1;
            }
        }
        Ok((written, doomed.len()))
    }

    fn remote_endpoints(&mut self) -> Result<Vec<Remote>> {
        Ok(self.lock().state.remotes.values().copied().collect())
    }

    fn attach_sock_programs(&mut self, _cgroup: &Path) -> Result<()> {
        self.step_then("attach socket programs", |s| {
            s.sock_programs = true;
        })
    }

    fn pin_root(&self) -> PathBuf {
        PathBuf::from("/fake/bpffs/v1")
    }

    fn remove_pins(&mut self) -> Result<()> {
        self.step_then("remove pins", |s| {
            s.pins.clear();
            s.sock_programs = false;
        })
    }

    fn fill_sandbox(&mut self, _sandbox: &mut Sandbox) -> Result<()> {
        bail!("the in-memory kernel has no datapath to explain")
    }
}

fn publish_key(m: &PortMapping) -> (u32, u16, u8) {
    (
        m.host_v4().map(crate::datapath::addr_key).unwrap_or(0),
        m.host_port.to_be(),
        m.proto.number(),
    )
}

impl DatapathStats for Fake {
    fn drop_counts(&self) -> Result<Vec<DropCount>> {
        Ok(Vec::new())
    }

    fn map_fill(&mut self) -> Result<Vec<MapFill>> {
        Ok(Vec::new())
    }

    fn routing_counts(&self) -> Result<RoutingCounts> {
        Ok(RoutingCounts::default())
    }

    fn host_routing(&self) -> Result<HostRouting> {
        Ok(HostRouting::default())
    }

    fn ct_stats(&mut self) -> Result<CtStats> {
        Ok(CtStats::default())
    }

    fn ct_capacity(&mut self) -> Result<u32> {
        Ok(1)
    }

    fn nat_bindings(&mut self) -> Result<usize> {
        Ok(0)
    }

    fn events_suppressed(&self) -> Result<u64> {
        Ok(0)
    }

    fn link_count(&self) -> Result<usize> {
        Ok(self.lock().state.pins.len())
    }

    fn endpoint_counters(&self, _ip: Ipv4Addr, _host_ifname: &str) -> Result<Counters> {
        Ok(Counters::default())
    }

    fn network_counters(&self, _net_id: u32) -> Result<Counters> {
        Ok(Counters::default())
    }
}

#[async_trait::async_trait]
impl LinkDriver for Fake {
    async fn index_of(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.lock().state.index_of(name))
    }

    async fn kind(&self, index: u32) -> Result<Option<String>> {
        Ok(self.lock().state.links.get(&index).map(|l| match &l.kind {
            Kind::Bridge => "bridge".to_string(),
            Kind::Veth { .. } => "veth".to_string(),
            Kind::Other(k) => k.clone(),
        }))
    }

    async fn dump(&self) -> Result<Vec<LinkRow>> {
        Ok(self
            .lock()
            .state
            .links
            .iter()
            .map(|(index, l)| LinkRow {
                index: *index,
                name: l.name.clone(),
                up: l.up,
                master: l.master,
                owner: l.owner.clone(),
            })
            .collect())
    }

    async fn link_names(&self) -> Result<Vec<(u32, String)>> {
        Ok(self
            .lock()
            .state
            .links
            .iter()
            .map(|(i, l)| (*i, l.name.clone()))
            .collect())
    }

    async fn ensure_bridge(
        &self,
        name: &str,
        owner: &str,
        mac: [u8; 6],
        mtu: u32,
        gateway: Option<Ipv4Net>,
    ) -> Result<u32> {
        let mut inner = self.lock();
        let index = match inner.state.index_of(name) {
            Some(i) => i,
            None => {
                inner.step(format!("create bridge {name}"))?;
                let index = inner.new_index();
                inner.state.links.insert(
                    index,
                    Link {
                        name: name.to_string(),
                        kind: Kind::Bridge,
                        up: false,
                        master: None,
                        owner: None,
                        addrs: Vec::new(),
                        addrs6: Vec::new(),
                        mac,
                        mtu,
                    },
                );
                inner.step(format!("mark {name}"))?;
                if let Some(l) = inner.state.links.get_mut(&index) {
                    l.owner = Some(owner.to_string());
                }
                index
            }
        };
        if let Some(net) = gateway.filter(|n| !inner.state.links[&index].addrs.contains(n)) {
            inner.step(format!("address {net} on {name}"))?;
            if let Some(l) = inner.state.links.get_mut(&index) {
                l.addrs.push(net);
            }
        }
        inner.step(format!("up {name}"))?;
        if let Some(l) = inner.state.links.get_mut(&index) {
            l.up = true;
        }
        Ok(index)
    }

    async fn set_up(&self, index: u32) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("up {index}"))?;
        match inner.state.links.get_mut(&index) {
            Some(l) => {
                l.up = true;
                Ok(())
            }
            None => bail!("failed to bring up link {index}: no such device"),
        }
    }

    async fn delete(&self, index: u32) -> Result<()> {
        self.step_then(format!("delete {index}"), |s| {
            s.delete_index(index);
        })
    }

    async fn delete_by_name(&self, name: &str) -> Result<()> {
        let mut inner = self.lock();
        if let Some(index) = inner.state.index_of(name) {
            inner.step(format!("delete {name}"))?;
            inner.state.delete_index(index);
        }
        Ok(())
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
        let netns = match peer_netns {
            Some(ns) => Some(
                ns.as_any()
                    .downcast_ref::<FakeNs>()
                    .ok_or_else(|| anyhow!("not a fake network namespace"))?
                    .path
                    .clone(),
            ),
            None => None,
        };
        let mut inner = self.lock();
        inner.step(format!("create veth {host_name}"))?;
        if inner.state.index_of(host_name).is_some() {
            bail!("failed to create {host_name}: File exists");
        }
        if !inner.state.links.contains_key(&bridge_index) {
            bail!("failed to create {host_name}: no bridge {bridge_index}");
        }
        match &netns {
            Some(path) => {
                let Some(ns) = inner.state.namespaces.get_mut(path) else {
                    bail!("netns {} is gone", path.display());
                };
                if ns.ifaces.contains_key(peer_name) {
                    bail!("failed to create {host_name}: {peer_name} exists in the netns");
                }
                ns.ifaces.insert(
                    peer_name.to_string(),
                    Iface {
                        up: false,
                        addrs: Vec::new(),
                        addrs6: Vec::new(),
                        mac: peer_mac,
                        host_end: host_name.to_string(),
                    },
                );
            }
            None => {
                if inner.state.index_of(peer_name).is_some() {
                    bail!("failed to create {host_name}: {peer_name} exists");
                }
                let index = inner.new_index();
                inner.state.links.insert(
                    index,
                    Link {
                        name: peer_name.to_string(),
                        kind: Kind::Veth {
                            peer: host_name.to_string(),
                            netns: None,
                        },
                        up: false,
                        master: None,
                        owner: None,
                        addrs: Vec::new(),
                        addrs6: Vec::new(),
                        mac: peer_mac,
                        mtu,
                    },
                );
            }
        }
        let index = inner.new_index();
        inner.state.links.insert(
            index,
            Link {
                name: host_name.to_string(),
                kind: Kind::Veth {
                    peer: peer_name.to_string(),
                    netns,
                },
                up: false,
                master: Some(bridge_index),
                owner: None,
                addrs: Vec::new(),
                addrs6: Vec::new(),
                mac: [0x02, 0, 0, 0, 0, index as u8],
                mtu,
            },
        );
        inner.step(format!("mark {host_name}"))?;
        if let Some(l) = inner.state.links.get_mut(&index) {
            l.owner = Some(owner.to_string());
        }
        Ok(index)
    }

    async fn set_master(&self, index: u32, bridge: u32) -> Result<()> {
        let mut inner = self.lock();
        inner.step(format!("master of {index}"))?;
        match inner.state.links.get_mut(&index) {
            Some(l) => {
                l.master = Some(bridge);
                Ok(())
            }
            None => bail!("failed to put a veth back on its bridge: no such device"),
        }
    }

    async fn default_route_interfaces(&self) -> Result<Vec<u32>> {
        Ok(self.lock().state.default_route.clone())
    }

    async fn primary_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .lock()
            .state
            .links
            .get(&index)
            .and_then(|l| l.addrs.first().map(|a| a.addr())))
    }

    async fn all_ipv6(&self) -> Result<HashSet<Ipv6Addr>> {
        Ok(HashSet::new())
    }

    async fn all_ipv4(&self) -> Result<HashSet<Ipv4Addr>> {
        Ok(self
            .lock()
            .state
            .links
            .values()
            .flat_map(|l| l.addrs.iter().map(|a| a.addr()))
            .collect())
    }

    async fn route_prefixes(&self) -> Result<Vec<Ipv4Net>> {
        let inner = self.lock();
        let mut out: Vec<Ipv4Net> = inner
            .state
            .routes
            .iter()
            .filter(|r| r.prefix_len() != 0)
            .copied()
            .collect();
        // Connected routes of links that are up, as the kernel has them.
        for l in inner.state.links.values().filter(|l| l.up) {
            out.extend(l.addrs.iter().map(Ipv4Net::trunc));
        }
        Ok(out)
    }

    fn enable_ipv6(&self, bridge: &str) -> Result<()> {
        self.lock().step(format!("enable IPv6 on {bridge}"))
    }

    async fn ensure_address6(&self, index: u32, addr: Ipv6Addr, prefix: u8) -> Result<()> {
        let net = Ipv6Net::new(addr, prefix)?;
        let mut inner = self.lock();
        let Some(link) = inner.state.links.get(&index) else {
            bail!("no link {index}");
        };
        if link.addrs6.contains(&net) {
            return Ok(());
        }
        inner.step(format!("address {net} on {index}"))?;
        if let Some(l) = inner.state.links.get_mut(&index) {
            l.addrs6.push(net);
        }
        Ok(())
    }

    async fn mtu_of(&self, index: u32) -> Result<u32> {
        match self.lock().state.links.get(&index) {
            Some(l) => Ok(l.mtu),
            None => bail!("link {index} is gone"),
        }
    }

    async fn link_with_address(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        Ok(self
            .lock()
            .state
            .links
            .iter()
            .find(|(_, l)| l.addrs.iter().any(|a| a.addr() == addr))
            .map(|(i, _)| *i))
    }

    async fn ensure_vxlan(
        &self,
        name: &str,
        _local: Ipv4Addr,
        _port: u16,
        mtu: u32,
    ) -> Result<u32> {
        let mut inner = self.lock();
        if let Some(index) = inner.state.index_of(name) {
            return Ok(index);
        }
        inner.step(format!("create vxlan {name}"))?;
        let index = inner.new_index();
        inner.state.links.insert(
            index,
            Link {
                name: name.to_string(),
                kind: Kind::Other("vxlan".into()),
                up: false,
                master: None,
                owner: Some(crate::net::vxlan::VXLAN_OWNER.to_string()),
                addrs: Vec::new(),
                addrs6: Vec::new(),
                mac: [2, 0, 0, 0, 0, index as u8],
                mtu,
            },
        );
        Ok(index)
    }

    async fn default_route_interfaces6(&self) -> Result<Vec<u32>> {
        Ok(self.lock().state.default_route6.clone())
    }

    async fn masquerade_ipv6(&self, index: u32) -> Result<Option<Ipv6Addr>> {
        let inner = self.lock();
        let addrs = inner.state.links.get(&index).map(|l| l.addrs6.clone());
        Ok(addrs.and_then(|a| crate::net::ipv6::pick_masquerade_ipv6(&a)))
    }

    async fn route_prefixes6(&self) -> Result<Vec<Ipv6Net>> {
        let inner = self.lock();
        let mut out = inner.state.routes6.clone();
        for l in inner.state.links.values().filter(|l| l.up) {
            out.extend(l.addrs6.iter().map(Ipv6Net::trunc));
        }
        Ok(out)
    }
}

/// An open fake netns: its path in the fake.
pub struct FakeNs {
    fake: Fake,
    path: PathBuf,
}

impl NetnsDriver for Fake {
    fn exists(&self, path: &Path) -> bool {
        self.lock().state.namespaces.contains_key(path)
    }

    fn open(&self, path: &Path) -> Result<Box<dyn ContainerNetns>> {
        if !self.exists(path) {
            bail!("network namespace {} cannot be opened", path.display());
        }
        Ok(Box::new(FakeNs {
            fake: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

impl FakeNs {
    /// Runs `f` on this netns (gone: an error).
    fn with<R>(&self, step: String, f: impl FnOnce(&mut Netns) -> Result<R>) -> Result<R> {
        let mut inner = self.fake.lock();
        inner.step(step)?;
        match inner.state.namespaces.get_mut(&self.path) {
            Some(ns) => f(ns),
            None => bail!("network namespace {} is gone", self.path.display()),
        }
    }
}

#[async_trait::async_trait]
impl ContainerNetns for FakeNs {
    async fn configure_endpoint(
        &self,
        ifname: &str,
        addr: Option<Ipv4Net>,
        default_gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let iface = |ns: &mut Netns| -> Result<()> {
            if !ns.ifaces.contains_key(ifname) {
                bail!("{ifname} did not appear in the container namespace");
            }
            Ok(())
        };
        if let Some(net) = addr {
            self.with(format!("address {net} on {ifname}"), |ns| {
                iface(ns)?;
                if let Some(i) = ns.ifaces.get_mut(ifname) {
                    i.addrs.push(net);
                }
                Ok(())
            })?;
        }
        self.with(format!("up {ifname}"), |ns| {
            iface(ns)?;
            if let Some(i) = ns.ifaces.get_mut(ifname) {
                i.up = true;
            }
            Ok(())
        })?;
        self.lo_up().await?;
        if let Some(gw) = default_gateway {
            self.with(format!("default route via {gw}"), |ns| {
                if ns.default_route.is_some() {
                    bail!("failed to add default route via {gw}: File exists");
                }
                ns.default_route = Some((ifname.to_string(), gw));
                Ok(())
            })?;
        }
        Ok(())
    }

    async fn set_default_route(&self, ifname: &str, gateway: Ipv4Addr) -> Result<()> {
        self.with(format!("default route via {gateway}"), |ns| {
            if !ns.ifaces.contains_key(ifname) {
                bail!("{ifname} is missing in the container namespace");
            }
            ns.default_route = Some((ifname.to_string(), gateway));
            Ok(())
        })
    }

    async fn lo_up(&self) -> Result<()> {
        self.with("lo up".into(), |ns| {
            ns.lo_up = true;
            Ok(())
        })
    }

    async fn delete_link(&self, ifname: &str) -> Result<()> {
        self.with(format!("delete {ifname} in the netns"), |_| Ok(()))?;
        self.fake.lock().state.delete_in_netns(&self.path, ifname);
        Ok(())
    }

    async fn interface_state(&self, ifname: &str) -> Result<Option<InterfaceState>> {
        let inner = self.fake.lock();
        let Some(ns) = inner.state.namespaces.get(&self.path) else {
            bail!("network namespace {} is gone", self.path.display());
        };
        Ok(ns.ifaces.get(ifname).map(|i| InterfaceState {
            up: i.up,
            addrs: i.addrs.clone(),
            default_gateway: ns
                .default_route
                .as_ref()
                .filter(|(oif, _)| oif == ifname)
                .map(|(_, gw)| *gw),
        }))
    }

    async fn configure_ipv6(
        &self,
        ifname: &str,
        ip: Ipv6Addr,
        prefix: u8,
        default_gateway: Option<Ipv6Addr>,
    ) -> Result<()> {
        let net = Ipv6Net::new(ip, prefix)?;
        self.with(format!("address {net} on {ifname}"), |ns| {
            let Some(i) = ns.ifaces.get_mut(ifname) else {
                bail!("{ifname} is missing in the container namespace");
            };
            if !i.addrs6.contains(&net) {
                i.addrs6.push(net);
            }
            Ok(())
        })?;
        if let Some(gw) = default_gateway {
            self.set_default_route6(ifname, gw).await?;
        }
        Ok(())
    }

    async fn set_default_route6(&self, ifname: &str, gateway: Ipv6Addr) -> Result<()> {
        self.with(format!("IPv6 default route via {gateway}"), |ns| {
            if !ns.ifaces.contains_key(ifname) {
                bail!("{ifname} is missing in the container namespace");
            }
            ns.default_route6 = Some((ifname.to_string(), gateway));
            Ok(())
        })
    }

    async fn ipv6_state(&self, ifname: &str) -> Result<Option<(Vec<Ipv6Net>, Option<Ipv6Addr>)>> {
        let inner = self.fake.lock();
        let Some(ns) = inner.state.namespaces.get(&self.path) else {
            bail!("network namespace {} is gone", self.path.display());
        };
        Ok(ns.ifaces.get(ifname).map(|i| {
            let gw = ns
                .default_route6
                .as_ref()
                .filter(|(oif, _)| oif == ifname)
                .map(|(_, gw)| *gw);
            (i.addrs6.clone(), gw)
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A held fake port: dropping it frees the port.
struct FakeHold {
    fake: Fake,
    key: (IpAddr, u16, u8),
}

impl Drop for FakeHold {
    fn drop(&mut self) {
        self.fake.lock().state.held_ports.remove(&self.key);
    }
}

impl HostPorts for Fake {
    fn hold(&self, m: &PortMapping, _shared: bool) -> AgentResult<(HeldPort, u16)> {
        let mut inner = self.lock();
        inner
            .step(format!("hold {m}"))
            .map_err(AgentError::Internal)?;
        let proto = m.proto.number();
        let ip = m.host_addr();
        // A wildcard covers every address of its family.
        let taken = |s: &State, port: u16| {
            s.held_ports.iter().chain(&s.busy_ports).any(|(a, p, pr)| {
                *p == port
                    && *pr == proto
                    && a.is_ipv4() == ip.is_ipv4()
                    && (*a == ip || a.is_unspecified() || ip.is_unspecified())
            })
        };
        let port = if m.host_port == 0 {
            (FIRST_EPHEMERAL..=u16::MAX)
                .find(|p| !taken(&inner.state, *p))
                .ok_or_else(|| AgentError::Conflict("no free host port".into()))?
        } else {
            if taken(&inner.state, m.host_port) {
                return Err(AgentError::Conflict(format!(
                    "host port {}/{} is already in use on the host",
                    std::net::SocketAddr::new(ip, m.host_port),
                    m.proto
                )));
            }
            m.host_port
        };
        let key = (ip, port, proto);
        inner.state.held_ports.insert(key);
        drop(inner);
        Ok((
            Box::new(FakeHold {
                fake: self.clone(),
                key,
            }),
            port,
        ))
    }
}
