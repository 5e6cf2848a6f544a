//! Start-up: open the store and the datapath, then make the kernel match the
//! stored state (adopt what survived, recreate what is missing, remove what
//! nobody owns).
use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::{Agent, AgentConfig};
use crate::{
    api::types::NetworkCreate,
    datapath::{ensure_bpffs, Datapath},
    ipam,
    model::{DEFAULT_BRIDGE, DEFAULT_NETWORK},
    net::{sysctl, ContainerNs, HostLinks},
    store::{Store, StoreOp},
};

/// Prefix of every host-side veth netd creates.
pub(super) const HOST_VETH_PREFIX: &str = "nd";

impl Agent {
    pub async fn start(config: AgentConfig) -> Result<Self> {
        for dir in [&config.state_dir, &config.run_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            set_mode(dir, 0o700)?;
        }
        ensure_bpffs(&config.bpffs)?;
        sysctl::enable_ipv4_forwarding()?;
        let store = Store::open(&config.state_dir)?;
        let links = HostLinks::connect()?;
        let datapath = Datapath::load(&config.bpffs, config.ct_size)?;
        let networks: BTreeMap<_, _> = store
            .networks()?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let containers: BTreeMap<_, _> = store
            .containers()?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut agent = Agent {
            config,
            store,
            links,
            datapath,
            dns: crate::dns::NameService::new(),
            networks,
            containers,
            uplinks: BTreeMap::new(),
            reservations: Default::default(),
            started: std::time::Instant::now(),
            repairs: Vec::new(),
        };
        agent.reconcile().await?;
        if agent.config.default_bridge
            && !agent.networks.values().any(|n| n.name == DEFAULT_NETWORK)
        {
            agent.create_default_network().await?;
        }
        agent.sync_uplinks().await?;
        agent.sync_host_addrs().await?;
        agent.restore_published()?;
        agent.datapath.attach_sock_programs(&agent.config.cgroup)?;
        agent.state_changed();
        Ok(agent)
    }

    async fn create_default_network(&mut self) -> Result<()> {
        let taken = self.taken_subnets().await?;
        let preferred = ipam::default_bridge_subnet();
        let subnet = ipam::pick_subnet(&[preferred], &taken)
            .or_else(|| ipam::pick_subnet(&self.pools(), &taken))
            .context("no free subnet for the default network")?;
        let req = NetworkCreate {
            name: DEFAULT_NETWORK.into(),
            subnet: Some(subnet),
            bridge: Some(DEFAULT_BRIDGE.into()),
            ..Default::default()
        };
        self.create_network(req).await?;
        info!(%subnet, "created the default network");
        Ok(())
    }

    /// Brings the kernel in line with the stored state.
    async fn reconcile(&mut self) -> Result<()> {
        for net in self.networks.values().cloned().collect::<Vec<_>>() {
            self.realise_network(&net).await?;
        }
        let wanted: HashSet<_> = self.networks.values().map(|n| n.subnet).collect();
        for subnet in self.datapath.network_subnets()? {
            if !wanted.contains(&subnet) {
                self.datapath.remove_network(subnet)?;
                self.repaired(format!("removed stale datapath network {subnet}"));
            }
        }
        for container in self.containers.values().cloned().collect::<Vec<_>>() {
            if matches!(container.mode, crate::model::Mode::Bridge | crate::model::Mode::None)
                && !container.netns.exists()
            {
                warn!(container = %container.name, "network namespace is gone; releasing");
                self.release_container(&container.id).await?;
                self.repaired(format!("released container {} (netns gone)", container.name));
                continue;
            }
            for ep in &container.endpoints {
                if let Err(e) = self.restore_endpoint(&container, ep).await {
                    warn!(container = %container.name, error = %format!("{e:#}"), "failed to restore endpoint");
                }
            }
        }
        self.remove_orphans().await
    }

    async fn restore_endpoint(
        &mut self,
        container: &crate::model::Container,
        ep: &crate::model::Endpoint,
    ) -> Result<()> {
        let net = self
            .networks
            .get(&ep.network_id)
            .cloned()
            .context("endpoint on an unknown network")?;
        match self.links.index_of(&ep.host_ifname).await? {
            Some(ifindex) => self.publish_endpoint(&net, ep, ifindex),
            None => {
                let ns = ContainerNs::open(&container.netns)?;
                let _ = ns.delete_link(&ep.ifname).await;
                let first = container.endpoints.first().map(|e| &e.host_ifname) == Some(&ep.host_ifname);
                self.plumb_endpoint(&ns, &net, ep, first).await?;
                self.repaired(format!("recreated {} of {}", ep.ifname, container.name));
                Ok(())
            }
        }
    }

    /// Deletes host veths, pinned links and map entries nobody owns.
    async fn remove_orphans(&mut self) -> Result<()> {
        let owned: HashSet<String> = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.clone()))
            .collect();
        let mut owned_indexes = HashSet::new();
        for (index, name) in self.links.link_names().await? {
            if owned.contains(&name) {
                owned_indexes.insert(index);
            } else if name.starts_with(HOST_VETH_PREFIX) && name.len() == 13 {
                self.links.delete(index).await?;
                self.repaired(format!("deleted orphan veth {name}"));
            }
        }
        for pin in self.datapath.pinned_links()? {
            let owner = pin.split('_').next().unwrap_or_default();
            // Uplink links are adopted or removed by the uplink sync.
            let uplink_pin = [crate::datapath::UPLINK_IN, crate::datapath::UPLINK_OUT, crate::datapath::UPLINK_XDP]
                .iter()
                .any(|p| pin.ends_with(p));
            if !uplink_pin && !owned.contains(owner) {
                self.datapath.unpin_link(&self.datapath.pins().links().join(&pin))?;
                self.repaired(format!("unpinned orphan link {pin}"));
            }
        }
        for index in self.datapath.endpoint_indexes()? {
            if !owned_indexes.contains(&index) {
                self.datapath.remove_endpoint_entry(index)?;
                self.repaired(format!("removed orphan endpoint entry {index}"));
            }
        }
        Ok(())
    }

    pub(super) fn repaired(&mut self, what: String) {
        info!(repair = %what);
        self.repairs.push(what);
    }

    /// Removes a container from the store after its netns vanished.
    async fn release_container(&mut self, id: &str) -> Result<()> {
        if let Some(c) = self.containers.get(id).cloned() {
            self.unpublish(&c.ports, c.endpoints.first().map(|e| e.ip));
            for ep in &c.endpoints {
                let _ = self.links.delete_by_name(&ep.host_ifname).await;
                self.datapath.detach_endpoint(&ep.host_ifname, None)?;
            }
            self.store.apply(&[StoreOp::DeleteContainer(id)])?;
            self.containers.remove(id);
        }
        Ok(())
    }

    /// Subnets a new network must not overlap: netd's and the host's routes.
    pub(super) async fn taken_subnets(&self) -> Result<Vec<ipnet::Ipv4Net>> {
        let mut taken: Vec<_> = self.networks.values().map(|n| n.subnet).collect();
        taken.extend(self.links.route_prefixes().await?);
        Ok(taken)
    }

    pub(super) fn pools(&self) -> Vec<ipnet::Ipv4Net> {
        if self.config.default_pools.is_empty() {
            ipam::default_pools()
        } else {
            self.config.default_pools.clone()
        }
    }

    /// The links reachable from this agent's netns (for the API handle).
    pub fn links(&self) -> &HostLinks {
        &self.links
    }
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set mode of {}", path.display()))
}
