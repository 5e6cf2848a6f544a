//! Network operations: create, remove, prune, connect, disconnect.
use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use tracing::info;

use super::{validate_name, Agent};
use crate::{
    error::{conflict, invalid, AgentError, AgentResult},
    ipam,
    model::{
        new_id, now, requested_mac, Container, Driver, Endpoint, Mode, Network, Owner, DEFAULT_MTU,
    },
    net::ContainerNs,
    schema::{NetworkConnect, NetworkCreate, NetworkDisconnect},
    store::StoreOp,
};

/// Docker's bridge driver options, accepted with `--opt` as the flags they
/// mirror (a flag given too wins).
const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
const OPT_MTU: &str = "com.docker.network.driver.mtu";

fn apply_docker_options(mut req: NetworkCreate) -> AgentResult<NetworkCreate> {
    let flag = |key: &str, value: &str| -> AgentResult<bool> {
        value.parse().map_err(|_| {
            AgentError::Invalid(format!("option {key} must be true or false, not {value:?}"))
        })
    };
    if let Some(v) = req.options.get(OPT_BRIDGE_NAME) {
        req.bridge.get_or_insert_with(|| v.clone());
    }
    if let Some(v) = req.options.get(OPT_ICC) {
        let v = flag(OPT_ICC, v)?;
        req.icc.get_or_insert(v);
    }
    if let Some(v) = req.options.get(OPT_MASQUERADE) {
        let v = flag(OPT_MASQUERADE, v)?;
        req.masquerade.get_or_insert(v);
    }
    if let Some(v) = req.options.get(OPT_MTU) {
        let v = v.parse().map_err(|_| {
            AgentError::Invalid(format!("option {OPT_MTU} must be a number, not {v:?}"))
        })?;
        req.mtu.get_or_insert(v);
    }
    for key in [OPT_BRIDGE_NAME, OPT_ICC, OPT_MASQUERADE, OPT_MTU] {
        req.options.remove(key);
    }
    Ok(req)
}

/// netd's API leaves Docker's networks to Docker (`what` says how).
pub(super) fn refuse_docker_network(net: &Network, what: &str) -> AgentResult<()> {
    if net.owner == Owner::Docker {
        return invalid(format!(
            "network {} belongs to Docker (driver netd); {what}",
            net.name
        ));
    }
    Ok(())
}

const MIN_MTU: u32 = 68;
const MAX_MTU: u32 = 65_535;

/// An interface name the kernel accepts inside a container.
fn validate_ifname(name: &str) -> AgentResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && !matches!(name, "." | ".." | "lo")
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "invalid interface name {name:?} (1-15 characters, no '/', ':' or spaces, not lo)"
        ))
    }
}

impl Agent {
    pub async fn create_network(&mut self, req: NetworkCreate) -> AgentResult<Network> {
        self.create_network_as(req, None, Owner::Netd).await
    }

    /// Creates a network with a given id (Docker's) or a new one, owned by
    /// `owner`.
    pub(super) async fn create_network_as(
        &mut self,
        req: NetworkCreate,
        id: Option<String>,
        owner: Owner,
    ) -> AgentResult<Network> {
        let req = apply_docker_options(req)?;
        let driver = match req.driver.as_deref() {
            None => Driver::Bridge,
            Some(d) => Driver::parse(d).map_err(AgentError::Invalid)?,
        };
        if driver == Driver::Overlay {
            if owner != Owner::Netd || id.is_some() {
                return invalid(
                    "overlay networks are made with `netd network create --driver overlay`",
                );
            }
            return self.create_overlay_network(req).await;
        }
        validate_name("network", &req.name)?;
        if matches!(req.name.as_str(), "none" | "host") || req.name.starts_with("container:") {
            return invalid(format!("{} is a reserved network name", req.name));
        }
        if self.networks.values().any(|n| n.name == req.name) {
            return conflict(format!("network with name {} already exists", req.name));
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return invalid(format!("mtu {mtu} is out of range ({MIN_MTU}-{MAX_MTU})"));
        }
        let taken = self.taken_subnets().await?;
        let subnet = match req.subnet {
            Some(subnet) => {
                let clash = self
                    .networks
                    .values()
                    .find(|n| ipam::overlaps(&n.subnet, &subnet))
                    .map(|n| format!("network {} ({})", n.name, n.subnet))
                    .or_else(|| {
                        taken
                            .iter()
                            .find(|t| ipam::overlaps(t, &subnet))
                            .map(|t| format!("a host route to {t}"))
                    });
                if let Some(clash) = clash {
                    return conflict(format!("subnet {subnet} overlaps {clash}"));
                }
                subnet
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return invalid("--gateway and --ip-range need --subnet");
                }
                ipam::pick_subnet(&self.pools(), &taken).ok_or_else(|| {
                    AgentError::Conflict(
                        "all default address pools are in use; give --subnet".into(),
                    )
                })?
            }
        };
        let gateway = ipam::validate_network(&subnet, req.gateway, req.ip_range.as_ref())?;
        let ipv6 = self.plan_ipv6(&req).await?;
        let id = id.unwrap_or_else(new_id);
        let bridge = req
            .bridge
            .clone()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return invalid(format!("invalid bridge name {bridge:?} (1-15 characters)"));
        }
        if self.networks.values().any(|n| n.bridge == bridge) {
            return conflict(format!("bridge {bridge} is used by another network"));
        }
        if self.links.index_of(&bridge).await?.is_some() && !self.adoptable_default(&req, &bridge) {
            return conflict(format!("an interface named {bridge} already exists"));
        }
        let datapath_id = self
            .networks
            .values()
            .map(|n| n.datapath_id)
            .max()
            .unwrap_or(0)
            + 1;
        let network = Network {
            id,
            name: req.name,
            datapath_id,
            bridge,
            subnet,
            gateway,
            ip_range: req.ip_range,
            internal: req.internal,
            icc: req.icc.unwrap_or(true),
            masquerade: req.masquerade.unwrap_or(true),
            mtu,
            labels: req.labels,
            options: req.options,
            created: now(),
            owner,
            ipv6,
            driver: Driver::Bridge,
            vni: None,
        };
        if let Err(e) = self.realise_network(&network).await {
            self.unrealise_network(&network).await;
            return Err(e
                .context(format!("failed to create network {}", network.name))
                .into());
        }
        if let Err(e) = self.store.apply(&[StoreOp::PutNetwork(&network)]) {
            self.unrealise_network(&network).await;
            return Err(e.into());
        }
        info!(name = %network.name, %subnet, bridge = %network.bridge, "network created");
        self.networks.insert(network.id.clone(), network.clone());
        if let Err(e) = self.sync_host_addrs().await {
            tracing::warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        self.state_changed();
        Ok(network)
    }

    /// The default bridge left behind by an earlier agent is adopted.
    fn adoptable_default(&self, req: &NetworkCreate, bridge: &str) -> bool {
        req.name == crate::model::DEFAULT_NETWORK && bridge == crate::model::DEFAULT_BRIDGE
    }

    pub(super) async fn unrealise_network(&mut self, net: &Network) {
        if net.is_overlay() {
            let _ = self.datapath.unregister_overlay_network(net.datapath_id);
        }
        let _ = self.datapath.remove_network(net.subnet);
        if let Some(v6) = &net.ipv6 {
            let _ = self.datapath.remove_network6(v6.subnet);
        }
        let _ = self.datapath.remove_network_counters(net.datapath_id);
        let _ = self.links.delete_by_name(&net.bridge).await;
    }

    pub(super) fn users_of(&self, net_id: &str) -> Vec<&Container> {
        self.containers
            .values()
            .filter(|c| c.endpoints.iter().any(|e| e.network_id == net_id))
            .collect()
    }

    pub async fn remove_network(&mut self, key: &str) -> AgentResult<String> {
        let net = self.find_network(key)?.clone();
        refuse_docker_network(&net, "remove it with `docker network rm`")?;
        self.remove_network_as(net).await
    }

    /// Removes `net` for its owner (netd's API or the Docker driver).
    pub(super) async fn remove_network_as(&mut self, net: Network) -> AgentResult<String> {
        if net.is_default() {
            return invalid(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            ));
        }
        let users: Vec<String> = self
            .users_of(&net.id)
            .iter()
            .map(|c| c.name.clone())
            .collect();
        if !users.is_empty() {
            return conflict(format!(
                "network {} has active endpoints ({}); disconnect or remove them first",
                net.name,
                users.join(", ")
            ));
        }
        if net.is_overlay() {
            self.remove_overlay_network(&net).await?;
        }
        self.store.apply(&[StoreOp::DeleteNetwork(&net.id)])?;
        self.networks.remove(&net.id);
        self.unrealise_network(&net).await;
        if net.is_overlay() {
            self.follow_cluster_view().await;
        }
        self.state_changed();
        info!(name = %net.name, "network removed");
        Ok(net.name)
    }

    /// Removes every user-defined network no container uses.
    pub async fn prune_networks(&mut self) -> AgentResult<Vec<String>> {
        let unused: Vec<String> = self
            .networks
            .values()
            .filter(|n| {
                // Overlay networks are the cluster's: `network rm` them.
                !n.is_default()
                    && !n.is_overlay()
                    && n.owner == Owner::Netd
                    && self.users_of(&n.id).is_empty()
            })
            .map(|n| n.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in unused {
            removed.push(self.remove_network(&id).await?);
        }
        Ok(removed)
    }

    pub async fn connect(&mut self, net_key: &str, req: NetworkConnect) -> AgentResult<Container> {
        let net = self.find_network(net_key)?.clone();
        let container = self.find_container(&req.container)?.clone();
        refuse_docker_network(&net, "connect containers with `docker network connect`")?;
        super::containers::refuse_docker_container(&container)?;
        if container.mode != Mode::Bridge {
            return invalid(format!(
                "container {} uses network mode {:?} and cannot be connected to networks",
                container.name, container.mode
            ));
        }
        if container.endpoints.iter().any(|e| e.network_id == net.id) {
            return conflict(format!(
                "container {} is already connected to network {}",
                container.name, net.name
            ));
        }
        let mac = requested_mac(req.mac.as_deref())?;
        let ns = ContainerNs::open(&container.netns)
            .map_err(|e| AgentError::Invalid(format!("{e:#}")))?;
        let ip = self
            .overlay_address(&container, &net, req.ip, &req.aliases, mac)
            .await?;
        let ep = match self.new_endpoint(
            &container,
            &net,
            (ip, req.ip6),
            req.aliases,
            req.ifname,
            mac,
        ) {
            Ok(ep) => ep,
            Err(e) => {
                self.release_claim(&container.id, &net, ip).await;
                return Err(e);
            }
        };
        let default_route = container.endpoints.is_empty();
        if let Err(e) = self
            .plumb_endpoint(&container.id, &ns, &net, &ep, default_route)
            .await
            .with_context(|| format!("failed to connect {} to {}", container.name, net.name))
        {
            self.release_claim(&container.id, &net, ip).await;
            return Err(e.into());
        }
        let mut updated = container;
        updated.endpoints.push(ep.clone());
        if let Err(e) = self.store.apply(&[StoreOp::PutContainer(&updated)]) {
            let _ = self.unplumb_endpoint(&ep).await;
            self.release_claim(&updated.id, &net, ip).await;
            return Err(e.into());
        }
        if net.is_overlay() {
            self.follow_cluster_view().await;
        }
        self.containers.insert(updated.id.clone(), updated.clone());
        self.state_changed();
        Ok(updated)
    }

    pub async fn disconnect(
        &mut self,
        net_key: &str,
        req: NetworkDisconnect,
    ) -> AgentResult<Container> {
        let net = self.find_network(net_key)?.clone();
        let mut container = self.find_container(&req.container)?.clone();
        super::containers::refuse_docker_container(&container)?;
        let Some(pos) = container
            .endpoints
            .iter()
            .position(|e| e.network_id == net.id)
        else {
            return conflict(format!(
                "container {} is not connected to network {}",
                container.name, net.name
            ));
        };
        if pos == 0 && !container.ports.is_empty() {
            if !req.unpublish {
                return conflict(format!(
                    "container {} publishes ports on network {}; remove the container to unpublish them",
                    container.name, net.name
                ));
            }
            let ports = std::mem::take(&mut container.ports);
            self.unpublish(&ports, Some(container.endpoints[pos].ip));
        }
        let ep = container.endpoints.remove(pos);
        self.unplumb_endpoint(&ep).await?;
        crate::fault::point("disconnect:unplumbed");
        self.release_overlay_addresses(&container.id, std::slice::from_ref(&ep))
            .await;
        // As Docker does: the next network takes over the default route.
        if pos == 0 {
            if let Some(next) = container.endpoints.first() {
                let gateway = self.networks.get(&next.network_id).map(|n| n.gateway);
                if let (Some(gw), Ok(ns)) = (gateway, ContainerNs::open(&container.netns)) {
                    if let Err(e) = ns.set_default_route(&next.ifname, gw).await {
                        tracing::warn!(error = %format!("{e:#}"), "default route not moved");
                    }
                }
            }
        }
        if ep.ip6.is_some() && container.endpoints[..pos].iter().all(|e| e.ip6.is_none()) {
            self.move_default_route6(&container).await;
        }
        self.store.apply(&[StoreOp::PutContainer(&container)])?;
        self.containers
            .insert(container.id.clone(), container.clone());
        if net.is_overlay() {
            self.follow_cluster_view().await;
        }
        self.state_changed();
        Ok(container)
    }

    /// Picks the address, interface names and aliases of a new endpoint.
    pub(super) fn new_endpoint(
        &self,
        container: &Container,
        net: &Network,
        (ip, ip6): (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
        aliases: Vec<String>,
        ifname: Option<String>,
        mac: Option<[u8; 6]>,
    ) -> AgentResult<Endpoint> {
        let used = self.used_addresses(net);
        let ip = ipam::allocate(&net.subnet, net.ip_range.as_ref(), &used, ip)?;
        let ip6 = self.allocate_ip6(net, ip6)?;
        let in_use: HashSet<&str> = container
            .endpoints
            .iter()
            .map(|e| e.ifname.as_str())
            .collect();
        let ifname = match ifname {
            Some(name) => {
                validate_ifname(&name)?;
                if in_use.contains(name.as_str()) {
                    return conflict(format!(
                        "container {} already has an interface {name}",
                        container.name
                    ));
                }
                name
            }
            None => (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !in_use.contains(n.as_str()))
                .expect("an unbounded range has a free name"),
        };
        for alias in &aliases {
            validate_name("alias", alias)?;
        }
        Ok(Endpoint {
            network_id: net.id.clone(),
            ip,
            ifname,
            host_ifname: format!("{}{}", super::start::HOST_VETH_PREFIX, &new_id()[..11]),
            aliases,
            mac,
            ip6,
        })
    }

    /// Addresses taken on `net` (its gateway included).
    pub(super) fn used_addresses(&self, net: &Network) -> HashSet<std::net::Ipv4Addr> {
        let mut used: HashSet<_> = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network_id == net.id)
            .map(|e| e.ip)
            .collect();
        used.insert(net.gateway);
        used
    }

    pub fn network_names(&self) -> BTreeMap<String, String> {
        self.networks
            .values()
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect()
    }
}
