//! Published ports: validation, host-port reservation and datapath entries.
//!
//! Each published (host address, port, protocol) is held by a socket bound
//! on the host, so a port a host process already uses is refused and no
//! host process can take a published port later. The datapath entry is one
//! map write, whatever the number of ports already published.
//!
//! Containers of runtimes that bind their published ports themselves
//! (netd-cni's: podman's conmon listens on each one after ADD) get a
//! holder bound with `SO_REUSEADDR` that never listens: plain binds by
//! others still fail, the runtime's listener (also `SO_REUSEADDR`, as Go
//! sets it) succeeds. Their UDP ports get no holder: the runtime's UDP
//! bind carries no `SO_REUSEADDR` and would fail against any.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tracing::warn;

use super::Agent;
use crate::{
    error::{conflict, invalid, AgentError, AgentResult},
    kernel::HeldPort,
    model::{Endpoint, Network},
    ports::{Families, PortMapping, Proto, PublishSpec},
};

/// Where a container's published ports lead: its addresses on its first
/// network (IPv4 mappings to the IPv4 one, IPv6 mappings to the IPv6 one;
/// no IPv4 one on an IPv6-only network).
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Target {
    pub(super) fn of(ep: &Endpoint) -> Self {
        Target {
            v4: ep.ip4(),
            v6: ep.ip6,
        }
    }
}

/// The families a container whose first network is `net` is published on.
pub(super) fn families_of(net: &Network) -> Families {
    Families {
        v4: net.has_ipv4(),
        v6: net.ipv6.is_some(),
    }
}

/// (host address or any, port, protocol) of a published port.
pub(super) type PortKey = (Option<IpAddr>, u16, Proto);

/// Sockets holding published host ports.
#[derive(Default)]
pub(super) struct Reservations {
    held: HashMap<PortKey, HeldPort>,
}

impl Reservations {
    pub(super) fn holds(&self, m: &PortMapping) -> bool {
        self.held.contains_key(&key_of(m))
    }

    /// The ports held (for tests).
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = &PortKey> {
        self.held.keys()
    }
}

fn key_of(m: &PortMapping) -> PortKey {
    (m.host_ip, m.host_port, m.proto)
}

/// Ports the kernel picks for IPv4 before one free on IPv6 too is given up.
const SAME_PORT_TRIES: usize = 16;

/// Is `next` the IPv6 twin of `m` whose host port netd picks: the same
/// container port and protocol (one spec without a host address, or two
/// that differ only in it)? Both get one port, as Docker gives them.
fn same_port_twin(m: &PortMapping, next: &PortMapping) -> bool {
    m.host_port == 0
        && next.host_port == 0
        && !m.is_ipv6()
        && next.is_ipv6()
        && m.container_port == next.container_port
        && m.proto == next.proto
}

/// How a published port is held on the host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// A plain bound socket: nobody else may bind the port.
    Exclusive,
    /// Bound with `SO_REUSEADDR`, never listening: the runtime may listen.
    SharedWithRuntime,
}

impl Hold {
    pub(super) fn for_runtime(runtime_binds: bool) -> Self {
        if runtime_binds {
            Hold::SharedWithRuntime
        } else {
            Hold::Exclusive
        }
    }

    /// Is `m` held by a socket at all?
    pub(super) fn holds(self, m: &PortMapping) -> bool {
        match m.proto {
            // No SCTP in this kernel: the published table alone guards it.
            Proto::Sctp => false,
            Proto::Udp => self == Hold::Exclusive,
            Proto::Tcp => true,
        }
    }
}

/// Why `m`, published on an IPv6 host address, is refused for a container
/// whose first network is `net` (which has no IPv6).
fn refuse_ipv6_port(net: &Network, m: &PortMapping) -> String {
    format!(
        "cannot publish {m}: the container has no IPv6 address (network {} is IPv4 only); \
         publish on an IPv4 host address, or attach the container to a network created \
         with --ipv6",
        net.name
    )
}

/// Why `m`, published on IPv4 host addresses, is refused for a container
/// whose first network `net` is IPv6-only.
fn refuse_ipv4_port(net: &Network, m: &PortMapping) -> String {
    format!(
        "cannot publish {m}: the container has no IPv4 address (network {} is IPv6-only); \
         publish without a host address or on an IPv6 one ([::]:{}:{}), or attach the \
         container to a network with IPv4 first",
        net.name, m.host_port, m.container_port
    )
}

/// Refuses `m` on a host address of a family the container has no address
/// of on its first network `net` (it would be silently unreachable).
pub(super) fn check_family(net: &Network, m: &PortMapping) -> AgentResult<()> {
    if m.is_ipv6() && net.ipv6.is_none() {
        return invalid(refuse_ipv6_port(net, m));
    }
    if !m.is_ipv6() && !net.has_ipv4() {
        return invalid(refuse_ipv4_port(net, m));
    }
    Ok(())
}

impl Agent {
    /// Parses and checks `specs` for a container whose first network is
    /// `net`, without touching anything: the mappings to realise.
    pub(super) fn plan_ports(
        &self,
        net: &Network,
        specs: &[String],
    ) -> AgentResult<Vec<PortMapping>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        if net.internal {
            return invalid(format!(
                "cannot publish ports of a container on internal network {}",
                net.name
            ));
        }
        let mut mappings = Vec::new();
        for spec in specs {
            let parsed: PublishSpec = spec.parse().map_err(AgentError::Invalid)?;
            // Without a host address: each family the container has an
            // address of (Docker 27/28 with the userland proxy off; IPv6
            // alone on an IPv6-only network, as Docker 28).
            let expanded = parsed.expand(families_of(net));
            for m in &expanded {
                check_family(net, m)?;
            }
            mappings.extend(expanded);
        }
        self.check_mappings(net, mappings)
    }

    /// Checks mappings for a container on `net` against what is published
    /// and against each other, without touching anything.
    pub(super) fn check_mappings(
        &self,
        net: &Network,
        mappings: Vec<PortMapping>,
    ) -> AgentResult<Vec<PortMapping>> {
        if mappings.is_empty() {
            return Ok(mappings);
        }
        if net.internal {
            return invalid(format!(
                "cannot publish ports of a container on internal network {}",
                net.name
            ));
        }
        let mut wanted: Vec<PortMapping> = Vec::new();
        for mut m in mappings {
            if m.proto == Proto::Sctp {
                if m.host_port == 0 {
                    m.host_port = m.container_port;
                } else if m.host_port != m.container_port {
                    return invalid(format!(
                        "SCTP ports are published as is: use {0}:{0}/sctp (its checksum covers the ports)",
                        m.container_port
                    ));
                }
            }
            if m.host_port != 0 {
                let claimed = self.claimed();
                let published = self
                    .containers
                    .values()
                    .flat_map(|c| c.ports.iter().map(move |p| (c.name.as_str(), p)))
                    .chain(claimed.ports().map(|p| ("a request in flight", p)))
                    .chain(wanted.iter().map(|p| ("(this request)", p)));
                let clash = published
                    .into_iter()
                    .find(|(_, p)| p.clashes(&m))
                    .map(|(owner, p)| {
                        format!(
                            "port {}/{} is already published by {owner}",
                            std::net::SocketAddr::new(p.host_addr(), p.host_port),
                            p.proto
                        )
                    });
                if let Some(clash) = clash {
                    return conflict(clash);
                }
            }
            wanted.push(m);
        }
        Ok(wanted)
    }

    /// Holds the host ports and writes the map entries; all or nothing.
    /// Host port 0 becomes the port the kernel picked.
    pub(super) fn realise_ports(
        &mut self,
        wanted: Vec<PortMapping>,
        target: Target,
        runtime_binds: bool,
    ) -> AgentResult<Vec<PortMapping>> {
        let hold = Hold::for_runtime(runtime_binds);
        let shared = hold == Hold::SharedWithRuntime;
        let mut wanted = wanted;
        // Twins first (nothing is published yet: an error leaves nothing).
        let mut held_first: HashMap<usize, HeldPort> = HashMap::new();
        for i in 1..wanted.len() {
            let (m, next) = (&wanted[i - 1], &wanted[i]);
            if hold.holds(m) && same_port_twin(m, next) {
                let (h4, h6, port) = self.hold_twins(m, next, shared)?;
                wanted[i - 1].host_port = port;
                wanted[i].host_port = port;
                held_first.extend([(i - 1, h4), (i, h6)]);
            }
        }
        let mut done: Vec<PortMapping> = Vec::new();
        let mut result = Ok(());
        for (i, mut m) in wanted.into_iter().enumerate() {
            let step = (|| {
                if m.host_port == 0 && !hold.holds(&m) {
                    return invalid(format!(
                        "give a host port for {}/{}: it is left to the runtime to bind",
                        m.container_port, m.proto
                    ));
                }
                if let Some(fd) = held_first.remove(&i) {
                    self.reservations.held.insert(key_of(&m), fd);
                } else if hold.holds(&m) {
                    let (fd, port) = self.ports.hold(&m, shared)?;
                    m.host_port = port;
                    self.reservations.held.insert(key_of(&m), fd);
                }
                self.publish_mapping(&m, target)?;
                Ok::<_, AgentError>(())
            })();
            match step {
                Ok(()) => done.push(m),
                Err(e) => {
                    self.reservations.held.remove(&key_of(&m));
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            self.unpublish(&done, None);
            return Err(e);
        }
        Ok(done)
    }

    /// Holds IPv4 mapping `v4` and its IPv6 twin `v6` (host port 0 both)
    /// on one port free on both families: the kernel picks one for IPv4,
    /// IPv6 must have it too. The IPv4 ports refused are kept until the
    /// end, so that the kernel picks others.
    fn hold_twins(
        &self,
        v4: &PortMapping,
        v6: &PortMapping,
        shared: bool,
    ) -> AgentResult<(HeldPort, HeldPort, u16)> {
        let mut refused = Vec::new();
        for _ in 0..SAME_PORT_TRIES {
            let (h4, port) = self.ports.hold(v4, shared)?;
            let on6 = PortMapping {
                host_port: port,
                ..v6.clone()
            };
            match self.ports.hold(&on6, shared) {
                Ok((h6, _)) => return Ok((h4, h6, port)),
                Err(AgentError::Conflict(_)) => refused.push(h4),
                Err(e) => return Err(e),
            }
        }
        conflict(format!(
            "no host port for {}/{} is free on both IPv4 and IPv6 ({SAME_PORT_TRIES} tried); give one",
            v4.container_port, v4.proto
        ))
    }

    /// The map entry of one mapping, to the target's address of its family.
    fn publish_mapping(&mut self, m: &PortMapping, target: Target) -> AgentResult<()> {
        if !m.is_ipv6() {
            return match target.v4 {
                Some(ip) => Ok(self.datapath.publish(m, ip)?),
                None => invalid(format!(
                    "cannot publish {m}: the container has no IPv4 address; publish on an \
                     IPv6 host address, or attach the container to a network with IPv4"
                )),
            };
        }
        match target.v6 {
            Some(ip6) => Ok(self.datapath.publish6(m, ip6)?),
            None => invalid(format!(
                "cannot publish {m}: the container has no IPv6 address; publish on an IPv4 \
                 host address, or attach the container to a network created with --ipv6"
            )),
        }
    }

    /// Removes the mappings (one map delete each), frees the host ports and
    /// forgets the flows of `target`.
    pub(super) fn unpublish(&mut self, ports: &[PortMapping], target: Option<Target>) {
        for m in ports {
            let removed = if m.is_ipv6() {
                self.datapath.unpublish6(m)
            } else {
                self.datapath.unpublish(m)
            };
            if let Err(e) = removed {
                warn!(error = %format!("{e:#}"), "unpublish failed");
            }
            self.reservations.held.remove(&key_of(m));
        }
        if let Some(t) = target {
            if let Some(ip) = t.v4 {
                if let Err(e) = self.datapath.flush_flows_of(ip) {
                    warn!(error = %format!("{e:#}"), "flow flush failed");
                }
            }
            if let Some(ip6) = t.v6 {
                if let Err(e) = self.datapath.flush_flows6_of(ip6) {
                    warn!(error = %format!("{e:#}"), "flow flush failed");
                }
            }
        }
    }

    /// At start: hold every stored port again and rewrite the map; drop
    /// entries no container owns.
    pub(super) fn restore_published(&mut self) -> anyhow::Result<()> {
        for c in self.containers.values().cloned().collect::<Vec<_>>() {
            let Some(target) = c.endpoints.first().map(Target::of) else {
                continue;
            };
            let hold = Hold::for_runtime(c.runtime_binds_ports());
            for m in &c.ports {
                if hold.holds(m) && !self.reservations.held.contains_key(&key_of(m)) {
                    match self.ports.hold(m, hold == Hold::SharedWithRuntime) {
                        Ok((fd, _)) => {
                            self.reservations.held.insert(key_of(m), fd);
                        }
                        // The runtime listens on its own port (conmon).
                        Err(e) if hold == Hold::SharedWithRuntime => {
                            tracing::debug!(container = %c.name, port = %m, error = %e, "published port held by its runtime")
                        }
                        Err(e) => {
                            warn!(container = %c.name, port = %m, error = %e, "published port is taken on the host")
                        }
                    }
                }
                match target.v4 {
                    Some(ip) if !m.is_ipv6() => self.datapath.publish(m, ip)?,
                    _ => {
                        if let Err(e) = self.publish_mapping(m, target) {
                            warn!(container = %c.name, port = %m, error = %e, "published port not restored");
                        }
                    }
                }
            }
        }
        self.remove_orphan_published()
    }

    /// Drops published entries no container owns (an unpublish that
    /// failed, a crash between the map write and the store).
    pub(super) fn remove_orphan_published(&mut self) -> anyhow::Result<()> {
        let owned6: std::collections::HashSet<_> = self
            .containers
            .values()
            .flat_map(|c| c.ports.iter())
            .filter(|m| m.is_ipv6())
            .map(crate::datapath::publish_key6)
            .collect();
        let owned: std::collections::HashSet<_> = self
            .containers
            .values()
            .flat_map(|c| c.ports.iter())
            .filter(|m| !m.is_ipv6())
            .map(|m| {
                (
                    m.host_v4().map(crate::datapath::addr_key).unwrap_or(0),
                    m.host_port.to_be(),
                    m.proto.number(),
                )
            })
            .collect();
        for (k, _) in self.datapath.published_entries()? {
            if !owned.contains(&(k.addr, k.port, k.proto)) {
                self.datapath.remove_published_key(&k)?;
                self.repaired(format!(
                    "removed orphan published port {}",
                    u16::from_be(k.port)
                ));
            }
        }
        for (k, _) in self.datapath.published6_entries()? {
            if !owned6.contains(&k) {
                self.datapath.remove_published6_key(&k)?;
                self.repaired(format!(
                    "removed orphan published IPv6 port {}",
                    u16::from_be(k.port)
                ));
            }
        }
        Ok(())
    }

    /// Keeps `HOST_ADDRS` and `HOST_ADDRS6` equal to the host's addresses.
    pub(super) async fn sync_host_addrs(&mut self) -> anyhow::Result<()> {
        let addrs = self.links.all_ipv4().await?;
        let addrs6 = self.links.all_ipv6().await?;
        let rows = self.links.dump().await?;
        self.apply_host_addrs(&addrs, &addrs6, &rows)
    }

    /// Writes `HOST_ADDRS` and `NO_SHORTCUT` from the host's addresses and
    /// links: the host's bridges and other master devices (netd's and
    /// other runtimes', e.g. docker0) that are no uplink, which eBPF host
    /// routing does not route onto (the host's firewall keeps judging that
    /// traffic).
    fn apply_host_addrs(
        &mut self,
        addrs: &std::collections::HashSet<Ipv4Addr>,
        addrs6: &std::collections::HashSet<Ipv6Addr>,
        rows: &[crate::net::LinkRow],
    ) -> anyhow::Result<()> {
        self.datapath.set_host_addrs(addrs)?;
        self.datapath.set_host_addrs6(addrs6)?;
        let uplinks: std::collections::HashSet<u32> =
            self.uplinks.values().map(|u| u.ifindex).collect();
        let bridges: std::collections::HashSet<&str> =
            self.networks.values().map(|n| n.bridge.as_str()).collect();
        let masters = rows
            .iter()
            .filter_map(|r| r.master)
            .chain(
                rows.iter()
                    .filter(|r| bridges.contains(r.name.as_str()))
                    .map(|r| r.index),
            )
            .filter(|i| !uplinks.contains(i))
            .collect();
        self.datapath.set_no_shortcut(&masters)
    }
}

impl super::SharedAgent {
    /// [`Agent::sync_host_addrs`] with the dumps made without the state.
    pub(super) async fn sync_host_addrs(&self, k: &super::endpoints::Kernel) -> anyhow::Result<()> {
        let addrs = k.links.all_ipv4().await?;
        let addrs6 = k.links.all_ipv6().await?;
        let rows = k.links.dump().await?;
        self.state().await.apply_host_addrs(&addrs, &addrs6, &rows)
    }
}
