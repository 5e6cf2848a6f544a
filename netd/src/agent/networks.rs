//! Network operations: create, remove, prune, connect, disconnect.
use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
};

use anyhow::Context;
use tracing::info;

use super::{
    claims::{self, Claim, ClaimGuard, NetworkClaim},
    endpoints::Kernel,
    validate_name, Agent, SharedAgent,
};
use crate::{
    error::{conflict, invalid, AgentError, AgentResult},
    ipam,
    model::{
        mac_for6, new_id, now, requested_mac, Container, Driver, Endpoint, Mode, Network, Owner,
        DEFAULT_MTU, NO_IPV4,
    },
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
    /// `owner` (exclusive: the state is held throughout).
    pub(super) async fn create_network_as(
        &mut self,
        req: NetworkCreate,
        id: Option<String>,
        owner: Owner,
    ) -> AgentResult<Network> {
        let req = apply_docker_options(req)?;
        if is_overlay(&req)? {
            if owner != Owner::Netd || id.is_some() {
                return invalid(
                    "overlay networks are made with `netd network create --driver overlay`",
                );
            }
            return self.create_overlay_network(req).await;
        }
        let routes = host_routes(self.links.as_ref(), req.ipv6).await?;
        let adoptable = self.adoptable_default(&req);
        let (network, _claim) = self.plan_network(req, id, owner, &routes)?;
        if self.links.index_of(&network.bridge).await?.is_some() && !adoptable {
            return conflict(format!(
                "an interface named {} already exists",
                network.bridge
            ));
        }
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
        info!(name = %network.name, subnet = %network.subnet, bridge = %network.bridge, "network created");
        self.networks.insert(network.id.clone(), network.clone());
        if let Err(e) = self.sync_host_addrs().await {
            tracing::warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        self.state_changed();
        Ok(network)
    }

    /// Checks a create against the state, the claims in flight and the
    /// host's `routes`, and claims its name, subnet, bridge and datapath id.
    fn plan_network(
        &mut self,
        req: NetworkCreate,
        id: Option<String>,
        owner: Owner,
        (routes, routes6): &(Vec<ipnet::Ipv4Net>, Vec<ipnet::Ipv6Net>),
    ) -> AgentResult<(Network, ClaimGuard)> {
        let req = apply_docker_options(req)?;
        validate_name("network", &req.name)?;
        if matches!(req.name.as_str(), "none" | "host") || req.name.starts_with("container:") {
            return invalid(format!("{} is a reserved network name", req.name));
        }
        if self.networks.values().any(|n| n.name == req.name)
            || self.claimed().networks().any(|n| n.name == req.name)
        {
            return conflict(format!("network with name {} already exists", req.name));
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return invalid(format!("mtu {mtu} is out of range ({MIN_MTU}-{MAX_MTU})"));
        }
        let (subnet, gateway) = if req.ipv4 == Some(false) {
            if req.subnet.is_some() || req.gateway.is_some() || req.ip_range.is_some() {
                return invalid(
                    "an IPv6-only network (--ipv4=false) takes no IPv4 --subnet, --gateway or --ip-range",
                );
            }
            (NO_IPV4, Ipv4Addr::UNSPECIFIED)
        } else {
            self.plan_subnet(&req, routes)?
        };
        let ipv6 = self.plan_ipv6(&req, routes6)?;
        let id = id.unwrap_or_else(new_id);
        let bridge = req
            .bridge
            .clone()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return invalid(format!("invalid bridge name {bridge:?} (1-15 characters)"));
        }
        if self.networks.values().any(|n| n.bridge == bridge)
            || self.claimed().networks().any(|n| n.bridge == bridge)
        {
            return conflict(format!("bridge {bridge} is used by another network"));
        }
        let datapath_id = self
            .networks
            .values()
            .map(|n| n.datapath_id)
            .chain(self.claimed().networks().map(|n| n.datapath_id))
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
        let claim = claims::take(&self.claims, network_claim(&network));
        Ok((network, claim))
    }

    /// The IPv4 subnet and gateway of a create: the one asked for, checked
    /// against networks, claims and the host's `routes`, or one picked
    /// from the default pools.
    fn plan_subnet(
        &self,
        req: &NetworkCreate,
        routes: &[ipnet::Ipv4Net],
    ) -> AgentResult<(ipnet::Ipv4Net, Ipv4Addr)> {
        let subnet = match req.subnet {
            Some(subnet) => {
                let clash = self
                    .networks
                    .values()
                    .find(|n| n.has_ipv4() && ipam::overlaps(&n.subnet, &subnet))
                    .map(|n| format!("network {} ({})", n.name, n.subnet))
                    .or_else(|| {
                        self.claimed()
                            .subnet_clash(&subnet)
                            .map(|n| format!("network {} ({})", n.name, n.subnet))
                    })
                    .or_else(|| {
                        routes
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
                let mut taken: Vec<_> = self.networks.values().map(|n| n.subnet).collect();
                taken.extend(self.claimed().networks().map(|n| n.subnet));
                taken.extend_from_slice(routes);
                ipam::pick_subnet(&self.pools(), &taken).ok_or_else(|| {
                    AgentError::Conflict(
                        "all default address pools are in use; give --subnet".into(),
                    )
                })?
            }
        };
        let gateway = ipam::validate_network(&subnet, req.gateway, req.ip_range.as_ref())?;
        Ok((subnet, gateway))
    }

    /// The default bridge left behind by an earlier agent is adopted.
    fn adoptable_default(&self, req: &NetworkCreate) -> bool {
        req.name == crate::model::DEFAULT_NETWORK
            && req.bridge.as_deref() == Some(crate::model::DEFAULT_BRIDGE)
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

    /// Names of the containers on `net_id`, with a placeholder for
    /// operations in flight that attach to it.
    fn user_names(&self, net_id: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .users_of(net_id)
            .iter()
            .map(|c| c.name.clone())
            .collect();
        if self.claimed().network_in_use(net_id) {
            users.push("a container being attached".into());
        }
        users
    }

    /// Removes `net` for its owner (netd's API or the Docker driver).
    pub(super) async fn remove_network_as(&mut self, net: Network) -> AgentResult<String> {
        if net.is_default() {
            return invalid(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            ));
        }
        let users = self.user_names(&net.id);
        refuse_in_use(&net, &users)?;
        if net.is_overlay() {
            self.remove_overlay_network(&net).await?;
        }
        self.store.apply(&[StoreOp::DeleteNetwork(&net.id)])?;
        self.networks.remove(&net.id);
        self.unrealise_network(&net).await;
        if net.is_overlay() {
            self.follow_cluster_view().await;
        }
        // The gateway address went with the bridge.
        if let Err(e) = self.sync_host_addrs().await {
            tracing::warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        self.state_changed();
        info!(name = %net.name, "network removed");
        Ok(net.name)
    }

    pub async fn remove_network(&mut self, key: &str) -> AgentResult<String> {
        let net = self.find_network(key)?.clone();
        refuse_docker_network(&net, "remove it with `docker network rm`")?;
        self.remove_network_as(net).await
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
        let ip = self.allocate_ip(net, ip)?;
        let ip6 = self.allocate_ip6(net, ip6)?;
        if let (None, false, Some(ip6)) = (mac, net.has_ipv4(), ip6) {
            self.refuse_mac_clash6(net, ip6)?;
        }
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

    /// The IPv4 address of a new endpoint on `net` (0.0.0.0 on an
    /// IPv6-only network, where `requested` is refused).
    pub(super) fn allocate_ip(
        &self,
        net: &Network,
        requested: Option<Ipv4Addr>,
    ) -> AgentResult<Ipv4Addr> {
        if !net.has_ipv4() {
            if let Some(ip) = requested {
                return invalid(format!(
                    "network {} is IPv6-only (--ipv4=false): it has no IPv4 address {ip}",
                    net.name
                ));
            }
            return Ok(Ipv4Addr::UNSPECIFIED);
        }
        let used = self.used_addresses(net);
        ipam::allocate(&net.subnet, net.ip_range.as_ref(), &used, requested)
    }

    /// On an IPv6-only network the MAC comes from the IPv6 address's last
    /// 32 bits: two addresses that share them need a `--mac-address`.
    fn refuse_mac_clash6(&self, net: &Network, ip6: std::net::Ipv6Addr) -> AgentResult<()> {
        let mac = mac_for6(ip6);
        let clash = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .find(|e| e.network_id == net.id && e.mac() == mac);
        match clash {
            Some(e) => conflict(format!(
                "{ip6} would get the MAC of {} on IPv6-only network {} (02:42 + its last 32 bits); give another --ip6 or a --mac-address",
                e.ip6.map(|ip| ip.to_string()).unwrap_or_default(),
                net.name
            )),
            None => Ok(()),
        }
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
        used.extend(self.claimed().addresses_on(&net.id));
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

/// The host's route prefixes a new network must not overlap: IPv4, and
/// IPv6 when the network asks for it.
async fn host_routes(
    links: &dyn crate::kernel::LinkDriver,
    ipv6: bool,
) -> anyhow::Result<(Vec<ipnet::Ipv4Net>, Vec<ipnet::Ipv6Net>)> {
    let v6 = if ipv6 {
        links.route_prefixes6().await?
    } else {
        Vec::new()
    };
    Ok((links.route_prefixes().await?, v6))
}

/// Does a create ask for an overlay network (`--driver overlay`)?
fn is_overlay(req: &NetworkCreate) -> AgentResult<bool> {
    let driver = match req.driver.as_deref() {
        None => Driver::Bridge,
        Some(d) => Driver::parse(d).map_err(AgentError::Invalid)?,
    };
    if driver == Driver::Overlay && req.ipv4 == Some(false) {
        return invalid("overlay networks carry IPv4: drop --ipv4=false");
    }
    Ok(driver == Driver::Overlay)
}

fn refuse_in_use(net: &Network, users: &[String]) -> AgentResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    conflict(format!(
        "network {} has active endpoints ({}); disconnect or remove them first",
        net.name,
        users.join(", ")
    ))
}

fn network_claim(net: &Network) -> Claim {
    Claim {
        network: Some(NetworkClaim {
            name: net.name.clone(),
            subnet: net.subnet,
            subnet6: net.ipv6.as_ref().map(|v6| v6.subnet),
            bridge: net.bridge.clone(),
            datapath_id: net.datapath_id,
        }),
        ..Default::default()
    }
}

impl SharedAgent {
    /// Creates a network; its bridge is made without the state held.
    pub async fn create_network(&self, req: NetworkCreate) -> AgentResult<Network> {
        if is_overlay(&req)? {
            // The cluster store decides: one request at a time.
            return self.lock().await.create_network(req).await;
        }
        let _op = self.phased().await;
        let links = self.state().await.links.clone();
        let routes = host_routes(links.as_ref(), req.ipv6).await?;
        let adoptable = {
            let state = self.state().await;
            state.adoptable_default(&req)
        };
        let (network, claim, k) = {
            let mut state = self.state().await;
            let (network, claim) = state.plan_network(req, None, Owner::Netd, &routes)?;
            (network, claim, state.kernel())
        };
        if k.links.index_of(&network.bridge).await?.is_some() && !adoptable {
            return conflict(format!(
                "an interface named {} already exists",
                network.bridge
            ));
        }
        let realised = async {
            super::endpoints::realise_bridge(k.links.as_ref(), &network).await?;
            self.state().await.publish_network(&network)?;
            crate::fault::point("network-create:datapath");
            k.store.apply(&[StoreOp::PutNetwork(&network)])
        }
        .await;
        if let Err(e) = realised {
            self.unrealise(&k, &network).await;
            return Err(e
                .context(format!("failed to create network {}", network.name))
                .into());
        }
        info!(name = %network.name, subnet = %network.subnet, bridge = %network.bridge, "network created");
        {
            let mut state = self.state().await;
            state.networks.insert(network.id.clone(), network.clone());
            drop(claim);
            state.state_changed();
        }
        if let Err(e) = self.sync_host_addrs(&k).await {
            tracing::warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        Ok(network)
    }

    async fn unrealise(&self, k: &Kernel, net: &Network) {
        {
            let mut state = self.state().await;
            let _ = state.datapath.remove_network(net.subnet);
            let _ = state.datapath.remove_network_counters(net.datapath_id);
            if let Some(v6) = &net.ipv6 {
                let _ = state.datapath.remove_network6(v6.subnet);
            }
        }
        let _ = k.links.delete_by_name(&net.bridge).await;
    }

    pub async fn remove_network(&self, key: &str) -> AgentResult<String> {
        if self.state().await.find_network(key)?.is_overlay() {
            return self.lock().await.remove_network(key).await;
        }
        let _op = self.phased().await;
        self.remove_network_phased(key).await
    }

    /// Removes a network of netd's (inside a phased operation): it leaves
    /// the state at once, its subnet, bridge and id stay claimed until its
    /// bridge and entry are gone.
    async fn remove_network_phased(&self, key: &str) -> AgentResult<String> {
        let (net, _claim, k) = {
            let mut state = self.state().await;
            let net = state.find_network(key)?.clone();
            refuse_docker_network(&net, "remove it with `docker network rm`")?;
            if net.is_overlay() {
                return invalid(format!(
                    "network {} is an overlay network: remove it with `netd network rm`",
                    net.name
                ));
            }
            if net.is_default() {
                return invalid(format!(
                    "{} is a pre-defined network and cannot be removed",
                    net.name
                ));
            }
            refuse_in_use(&net, &state.user_names(&net.id))?;
            state.networks.remove(&net.id);
            let claim = claims::take(&state.claims, network_claim(&net));
            (net, claim, state.kernel())
        };
        if let Err(e) = k.store.apply(&[StoreOp::DeleteNetwork(&net.id)]) {
            self.state()
                .await
                .networks
                .insert(net.id.clone(), net.clone());
            return Err(e.into());
        }
        self.unrealise(&k, &net).await;
        // The gateway address went with the bridge.
        if let Err(e) = self.sync_host_addrs(&k).await {
            tracing::warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        self.state().await.state_changed();
        info!(name = %net.name, "network removed");
        Ok(net.name)
    }

    /// Removes every user-defined network no container uses.
    pub async fn prune_networks(&self) -> AgentResult<Vec<String>> {
        let _op = self.phased().await;
        let unused: Vec<String> = {
            let state = self.state().await;
            state
                .networks
                .values()
                .filter(|n| {
                    // Overlay networks are the cluster's: `network rm` them.
                    !n.is_default()
                        && !n.is_overlay()
                        && n.owner == Owner::Netd
                        && state.user_names(&n.id).is_empty()
                })
                .map(|n| n.id.clone())
                .collect()
        };
        let mut removed = Vec::new();
        for id in unused {
            match self.remove_network_phased(&id).await {
                Ok(name) => removed.push(name),
                // Removed, or taken into use, meanwhile.
                Err(AgentError::NotFound(_) | AgentError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    pub async fn connect(&self, net_key: &str, req: NetworkConnect) -> AgentResult<Container> {
        let (_op, _turn, id) = self.phased_on_container(&req.container).await?;
        let (container, net, ep, carries, claim, k) = {
            let mut state = self.state().await;
            let net = state.find_network(net_key)?.clone();
            let container = state.find_container(&id)?.clone();
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
            // On an overlay network the cluster store hands out the address
            // (the state is held meanwhile: the store decides one at a time).
            let ip = state
                .overlay_address(&container, &net, req.ip, &req.aliases, mac)
                .await?;
            let ep = match state.new_endpoint(
                &container,
                &net,
                (ip, req.ip6),
                req.aliases,
                req.ifname,
                mac,
            ) {
                Ok(ep) => ep,
                Err(e) => {
                    state.release_claim(&container.id, &net, ip).await;
                    return Err(e);
                }
            };
            // Docker 28: each family's default route by the first
            // endpoint that has the family.
            let carries = state.carries_default_routes(&container.id, &ep);
            let claim = claims::take(
                &state.claims,
                Claim {
                    addresses: vec![(net.id.clone(), ep.ip)],
                    addresses6: ep.ip6.map(|ip| (net.id.clone(), ip)).into_iter().collect(),
                    uses_networks: vec![net.id.clone()],
                    ..Default::default()
                },
            );
            (container, net, ep, carries, claim, state.kernel())
        };
        let mut updated = container.clone();
        updated.endpoints.push(ep.clone());
        let attached = async {
            let ns = k
                .netns
                .open(&container.netns)
                .map_err(|e| AgentError::Invalid(format!("{e:#}")))?;
            self.plumb(&k, &container.id, ns.as_ref(), &net, &ep, carries)
                .await
                .with_context(|| format!("failed to connect {} to {}", container.name, net.name))?;
            if let Err(e) = k
                .store
                .apply_grouped(&[StoreOp::PutContainer(&updated)])
                .await
            {
                let _ = self.unplumb(&k, &ep).await;
                return Err(AgentError::from(e));
            }
            Ok(())
        }
        .await;
        let mut state = self.state().await;
        if let Err(e) = attached {
            state
                .release_overlay_addresses(&container.id, std::slice::from_ref(&ep))
                .await;
            return Err(e);
        }
        state.containers.insert(updated.id.clone(), updated.clone());
        drop(claim);
        if net.is_overlay() {
            state.follow_cluster_view().await;
        }
        state.state_changed();
        Ok(updated)
    }

    pub async fn disconnect(
        &self,
        net_key: &str,
        req: NetworkDisconnect,
    ) -> AgentResult<Container> {
        let (_op, _turn, id) = self.phased_on_container(&req.container).await?;
        let (container, ep, moves, overlay, k) = {
            let mut state = self.state().await;
            let net = state.find_network(net_key)?.clone();
            let mut container = state.find_container(&id)?.clone();
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
                state.unpublish(
                    &ports,
                    Some(super::publish::Target::of(&container.endpoints[pos])),
                );
            }
            let carried =
                super::gateways::Carries::of(&container.endpoints, &container.endpoints[pos]);
            let ep = container.endpoints.remove(pos);
            // As Docker does: the next network with the family takes over
            // each default route the leaver carried.
            let moves = state.default_route_moves(&container, carried);
            (container, ep, moves, net.is_overlay(), state.kernel())
        };
        self.unplumb(&k, &ep).await?;
        crate::fault::point("disconnect:unplumbed");
        self.state()
            .await
            .release_overlay_addresses(&container.id, std::slice::from_ref(&ep))
            .await;
        super::gateways::apply_moves(k.netns.as_ref(), &container, moves).await;
        k.store
            .apply_grouped(&[StoreOp::PutContainer(&container)])
            .await?;
        let mut state = self.state().await;
        state
            .containers
            .insert(container.id.clone(), container.clone());
        if overlay {
            state.follow_cluster_view().await;
        }
        state.state_changed();
        Ok(container)
    }
}
