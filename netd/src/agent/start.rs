//! Start-up: open the store and the datapath, then make the kernel match the
//! stored state (adopt what survived, recreate what is missing, remove what
//! nobody owns).
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::{
    lock::{AgentLock, Claim},
    Agent, AgentConfig,
};
use crate::{
    datapath::{ensure_bpffs, Datapath},
    ipam,
    kernel::{real_kernel, Drivers, LinkRow},
    model::{DEFAULT_BRIDGE, DEFAULT_NETWORK},
    net::{sysctl, HostLinks},
    schema::NetworkCreate,
    store::{Store, StoreOp},
};

/// Prefix of every host-side veth netd creates.
pub(super) const HOST_VETH_PREFIX: &str = "nd";
/// Prefix of the container end of a Docker endpoint's veth while it is in
/// the agent's netns (before Docker moves it, after Docker gives it back).
pub(super) const DOCKER_PEER_PREFIX: &str = "nc";
/// Length of a host veth name: the prefix and 11 hex digits.
pub(super) const HOST_VETH_LEN: usize = 13;
/// Owner mark (`netd:pool`) of the spare veths an earlier netd kept ready
/// (its `--veth-pool`, since removed). The host end was named
/// [`LEGACY_SPARE_PREFIX`] and 11 hex digits, the unmarked peer `np` and
/// 11 hex digits (it goes with its host end). An upgraded host keeps them
/// if that agent crashed: the start-up reconcile deletes them and their
/// pinned links as orphans (so does `netd reset`, with every marked link
/// and every pin).
const LEGACY_POOL_OWNER: &str = "pool";
/// Prefix of the host end of an earlier netd's spare veth.
const LEGACY_SPARE_PREFIX: &str = "ns";

impl Agent {
    pub async fn start(config: AgentConfig) -> Result<Self> {
        // Before anything else: a second agent must change nothing.
        let mut lock = AgentLock::acquire(&[
            Claim {
                flag: "--state-dir",
                dir: &config.state_dir,
            },
            Claim {
                flag: "--run-dir",
                dir: &config.run_dir,
            },
            Claim {
                flag: "--bpffs",
                dir: &config.bpffs,
            },
        ])?;
        set_mode(&config.state_dir, 0o700)?;
        match config.socket_group {
            None => set_mode(&config.run_dir, 0o700)?,
            Some(gid) => {
                nix::unistd::chown(&config.run_dir, None, Some(gid)).with_context(|| {
                    format!("failed to give {} to group {gid}", config.run_dir.display())
                })?;
                set_mode(&config.run_dir, 0o750)?;
            }
        }
        ensure_bpffs(&config.bpffs)?;
        lock.relock("--bpffs", &config.bpffs)?;
        sysctl::enable_ipv4_forwarding()?;
        let store = Store::open(&config.state_dir)?;
        let links = HostLinks::connect()?;
        let mut datapath = Datapath::load(&config.bpffs, config.ct_size)?;
        // Before any program of this agent is attached; programs of an
        // earlier agent share the map and follow at once.
        datapath.set_host_routing(config.host_routing)?;
        let monitor = crate::monitor::Hub::start(datapath.take_event_maps()?)?;
        let cluster = match &config.cluster {
            Some(settings) => {
                let cfg = settings
                    .resolve(&config.state_dir)
                    .context("cannot join the cluster")?;
                info!(host = %cfg.host_id, advertise = %cfg.advertise, store = %cfg.endpoints.join(","), "cluster member");
                Some(crate::cluster::Cluster {
                    store: std::sync::Arc::new(
                        crate::cluster::etcd::Etcd::connect(&cfg.endpoints).await?,
                    ),
                    config: cfg,
                    session: Default::default(),
                })
            }
            None => None,
        };
        let kernel = real_kernel(datapath, links)?;
        Self::open(
            config,
            lock,
            store,
            kernel,
            monitor,
            crate::dns::NameService::new(),
            cluster,
        )
        .await
    }

    /// Restores the stored state and brings the kernel (through `kernel`)
    /// in line with it: what `start` does once the directories are locked,
    /// the datapath is loaded and the cluster store (if any) reached.
    pub(super) async fn open(
        config: AgentConfig,
        lock: AgentLock,
        store: Store,
        kernel: Drivers,
        monitor: std::sync::Arc<crate::monitor::Hub>,
        dns: crate::dns::NameService,
        cluster: Option<crate::cluster::Cluster>,
    ) -> Result<Self> {
        // What this host last knew of the cluster: it keeps forwarding
        // with it until the store answers.
        let cluster_view = match store.cluster_view()? {
            Some(bytes) if cluster.is_some() => crate::cluster::view::View::from_json(&bytes)
                .unwrap_or_else(|e| {
                    warn!(error = %e, "saved cluster view unreadable; starting without it");
                    Default::default()
                }),
            _ => Default::default(),
        };
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
            _lock: lock,
            store: std::sync::Arc::new(store),
            links: kernel.links,
            datapath: kernel.datapath,
            netns: kernel.netns,
            ports: kernel.ports,
            attacher: kernel.attacher,
            claims: Default::default(),
            dns,
            networks,
            containers,
            uplinks: BTreeMap::new(),
            reservations: Default::default(),
            last_reconcile: None,
            started: std::time::Instant::now(),
            repairs: Vec::new(),
            reconcile_runs: 0,
            monitor,
            repairs_total: 0,
            cluster,
            cluster_view,
            cluster_conflicts: Vec::new(),
            overlay_device: None,
        };
        agent.setup_overlay_device().await?;
        agent.reconcile(true).await?;
        if agent.config.default_bridge
            && !agent.networks.values().any(|n| n.name == DEFAULT_NETWORK)
        {
            agent.create_default_network().await?;
        } else if agent.config.ipv6 {
            agent.default_network_ipv6().await?;
        }
        agent.sync_uplinks().await?;
        agent.sync_host_addrs().await?;
        agent.restore_published()?;
        agent.follow_cluster_view().await;
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
            ipv6: self.config.ipv6,
            ..Default::default()
        };
        self.create_network(req).await?;
        info!(%subnet, "created the default network");
        Ok(())
    }

    /// Brings the kernel in line with the stored state: at start (with
    /// `upgrade`, every endpoint's links get this agent's programs) and from
    /// the periodic sweep (only what is missing is put back).
    pub(super) async fn reconcile(&mut self, upgrade: bool) -> Result<()> {
        // One dump of the host's links serves the whole pass unless the
        // pass changes links (a dump costs O(links), and a sweep runs every
        // 2 s with the state held).
        let mut links = self.links.by_name().await?;
        let mut changed = false;
        for net in self.networks.values().cloned().collect::<Vec<_>>() {
            match links.get(&net.bridge) {
                Some(bridge) if bridge.up && !upgrade => {
                    self.publish_network(&net)?;
                }
                found => {
                    changed = true;
                    if found.is_none() {
                        self.repaired(format!(
                            "recreated bridge {} of network {}",
                            net.bridge, net.name
                        ));
                    }
                    self.realise_network(&net).await?;
                }
            }
        }
        // Bridges may have been recreated: look again.
        if changed {
            links = self.links.by_name().await?;
        }
        let repairs_at = self.repairs_total;
        let wanted: HashSet<_> = self.networks.values().map(|n| n.subnet).collect();
        for subnet in self.datapath.network_subnets()? {
            if !wanted.contains(&subnet) {
                self.datapath.remove_network(subnet)?;
                self.repaired(format!("removed stale datapath network {subnet}"));
            }
        }
        let entries: HashSet<u32> = self.datapath.endpoint_indexes()?.into_iter().collect();
        // What every endpoint's veth lacks, from one look at the kernel (a
        // question per endpoint made the sweep quadratic in containers).
        let host_ifnames: Vec<&str> = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.as_str()))
            .collect();
        let gaps = self.datapath.missing_endpoint_programs_of(&host_ifnames)?;
        for container in self.containers.values().cloned().collect::<Vec<_>>() {
            if let Some(docker) = &container.docker {
                // Docker's sandbox is not netd's to open or repair: a
                // joined endpoint whose veth is gone lost its sandbox (the
                // container ended, or Docker removed it while the agent was
                // down); one not joined has no veth to check yet.
                let Some(ep) = container.endpoints.first() else {
                    continue;
                };
                let joined = docker.sandbox_key.is_some();
                let veth = links.contains_key(&ep.host_ifname);
                // At start only: a container end back in this netns while
                // joined means Docker removed the container while the agent
                // was down (its Leave failed, it took the interface back).
                // Right after a Join the end is here too, so the periodic
                // sweep leaves that to Docker's Leave.
                let given_back = upgrade && links.contains_key(&ep.ifname);
                if joined && (!veth || given_back) {
                    self.release_container(&container.id).await?;
                    self.repaired(format!(
                        "released Docker endpoint {} ({})",
                        container.name,
                        if veth {
                            "Docker took its interface back while the agent was down"
                        } else {
                            "its veth is gone"
                        }
                    ));
                    continue;
                }
                if !veth {
                    continue;
                }
            } else if matches!(
                container.mode,
                crate::model::Mode::Bridge | crate::model::Mode::None
            ) && !self.netns.exists(&container.netns)
            {
                warn!(container = %container.name, "network namespace is gone; releasing");
                self.release_container(&container.id).await?;
                self.repaired(format!(
                    "released container {} (netns gone)",
                    container.name
                ));
                continue;
            }
            for ep in &container.endpoints {
                if let Err(e) = self
                    .restore_endpoint(&container, ep, upgrade, &entries, &links, &gaps)
                    .await
                {
                    warn!(container = %container.name, error = %format!("{e:#}"), "failed to restore endpoint");
                }
            }
        }
        // The endpoints' repairs changed links: look again.
        let rows: Vec<LinkRow> = if self.repairs_total == repairs_at {
            links.into_values().collect()
        } else {
            self.links.dump().await?
        };
        self.remove_orphans(&rows).await?;
        self.remove_stale6()?;
        self.last_reconcile = Some(crate::model::now());
        self.reconcile_runs += 1;
        Ok(())
    }

    async fn restore_endpoint(
        &mut self,
        container: &crate::model::Container,
        ep: &crate::model::Endpoint,
        upgrade: bool,
        entries: &HashSet<u32>,
        links: &HashMap<String, LinkRow>,
        gaps: &HashMap<String, Vec<&'static str>>,
    ) -> Result<()> {
        let net = self
            .networks
            .get(&ep.network_id)
            .cloned()
            .context("endpoint on an unknown network")?;
        match links.get(&ep.host_ifname) {
            Some(veth) => {
                let ifindex = veth.index;
                let bridge = links.get(&net.bridge).map(|b| b.index);
                if bridge.is_some() && veth.master != bridge {
                    self.links
                        .set_master(ifindex, bridge.unwrap_or_default())
                        .await?;
                    self.links.set_up(ifindex).await?;
                    self.repaired(format!(
                        "put {} of {} back on {}",
                        ep.ifname, container.name, net.bridge
                    ));
                }
                let whole = entries.contains(&ifindex)
                    // An IPv6 entry exactly when the endpoint has IPv6.
                    && (ep.ip6.is_some() && net.ipv6.is_some())
                        == self.datapath.endpoint6(ifindex)?.is_some()
                    && gaps.get(&ep.host_ifname).is_none_or(|g| g.is_empty());
                if upgrade || !whole {
                    self.publish_endpoint(&net, ep, ifindex)?;
                }
                if !whole {
                    self.repaired(format!(
                        "re-attached programs of {} ({})",
                        container.name, ep.ifname
                    ));
                }
                Ok(())
            }
            None => {
                let ns = self.netns.open(&container.netns)?;
                let _ = ns.delete_link(&ep.ifname).await;
                self.plumb_endpoint(&container.id, ns.as_ref(), &net, ep)
                    .await?;
                self.repaired(format!("recreated {} of {}", ep.ifname, container.name));
                Ok(())
            }
        }
    }

    /// Deletes links, pinned links and map entries that carry netd's mark
    /// but that no stored object owns.
    /// `rows`: the host's links as they are now.
    async fn remove_orphans(&mut self, rows: &[LinkRow]) -> Result<()> {
        let mut owners: HashSet<&str> = self.networks.keys().map(String::as_str).collect();
        owners.extend(self.containers.keys().map(String::as_str));
        let owned_veths: HashSet<String> = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.clone()))
            .collect();
        let bridges: HashSet<&str> = self.networks.values().map(|n| n.bridge.as_str()).collect();
        let mut doomed = Vec::new();
        for row in rows {
            let owned = owned_veths.contains(&row.name) || bridges.contains(row.name.as_str());
            if self.overlay_device.is_some() && crate::datapath::overlay::is_device_row(row) {
                continue;
            }
            if crate::datapath::is_holder_row(row) {
                continue;
            }
            let known = match &row.owner {
                Some(owner) if owner == LEGACY_POOL_OWNER => false,
                Some(owner) => owners.contains(owner.as_str()) && owned,
                // A veth whose creation was cut short before it got its mark.
                None => !(is_host_veth_name(&row.name) || is_legacy_spare_name(&row.name)) || owned,
            };
            if !known {
                doomed.push((row.index, row.name.clone()));
            }
        }
        for (index, name) in doomed.clone() {
            self.links.delete(index).await?;
            self.repaired(format!("deleted orphan link {name}"));
        }
        let live_indexes: HashSet<u32> = rows
            .iter()
            .filter(|r| owned_veths.contains(&r.name) && !doomed.iter().any(|(i, _)| *i == r.index))
            .map(|r| r.index)
            .collect();
        for veth in self.datapath.linked_endpoints()? {
            // Endpoint links only: uplink and cgroup links have their owners.
            if (is_host_veth_name(&veth) && !owned_veths.contains(&veth))
                || is_legacy_spare_name(&veth)
            {
                self.datapath.detach_endpoint(&veth, None)?;
                self.repaired(format!("unpinned orphan links of {veth}"));
            }
        }
        for index in self.datapath.endpoint_indexes()? {
            if !live_indexes.contains(&index) {
                self.datapath.remove_endpoint_entry(index)?;
                self.repaired(format!("removed orphan endpoint entry {index}"));
            }
        }
        self.remove_orphan_published()
    }

    pub(super) fn repaired(&mut self, what: String) {
        info!(repair = %what);
        self.repairs.push(what);
        self.repairs_total += 1;
        // Keep the most recent repairs only.
        if self.repairs.len() > 100 {
            self.repairs.remove(0);
        }
    }

    /// Removes a container from the store after its netns vanished.
    async fn release_container(&mut self, id: &str) -> Result<()> {
        if let Some(c) = self.containers.get(id).cloned() {
            self.unpublish(
                &c.ports,
                c.endpoints.first().map(super::publish::Target::of),
            );
            for ep in &c.endpoints {
                let _ = self.links.delete_by_name(&ep.host_ifname).await;
                self.datapath.detach_endpoint(&ep.host_ifname, None)?;
            }
            self.store.apply(&[StoreOp::DeleteContainer(id)])?;
            self.containers.remove(id);
            self.release_overlay_addresses(&c.id, &c.endpoints).await;
            // Its names go, and its DNS listener (which holds the netns).
            self.state_changed();
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
}

/// `nd` and 11 hex digits: the host end of a veth netd made.
pub(super) fn is_host_veth_name(name: &str) -> bool {
    is_veth_name(name, HOST_VETH_PREFIX)
}

/// `ns` and 11 hex digits: the host end of an earlier netd's spare veth
/// (see [`LEGACY_POOL_OWNER`]).
fn is_legacy_spare_name(name: &str) -> bool {
    is_veth_name(name, LEGACY_SPARE_PREFIX)
}

/// `prefix` and 11 hex digits.
fn is_veth_name(name: &str, prefix: &str) -> bool {
    name.len() == HOST_VETH_LEN
        && name
            .strip_prefix(prefix)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names() {
        assert!(is_host_veth_name("nd0123456789a"));
        assert!(!is_host_veth_name("nd0123456789"));
        assert!(!is_host_veth_name("nd0123456789g"));
        assert!(is_legacy_spare_name("ns0123456789a"));
        assert!(!is_legacy_spare_name("np0123456789a"));
        assert!(!is_legacy_spare_name("nd0123456789a"));
        assert!(super::super::is_own_veth_name("nd0123456789a"));
        assert!(!super::super::is_own_veth_name("ns0123456789a"));
        assert!(!super::super::is_own_veth_name("eth0"));
    }
}
