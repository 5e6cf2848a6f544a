//! Overlay networks on this host: creating and removing them in the
//! cluster store, claiming their addresses there, and making the local
//! state follow the store's (networks realised here, remote endpoints for
//! the datapath and the name service).
use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
};

use anyhow::Context;

use ipnet::Ipv4Net;
use netd_common::VXLAN_OVERHEAD;
use tracing::{info, warn};

use super::{validate_name, Agent};
use crate::{
    cluster::{
        self,
        desired::OverlayState,
        records::{AddressClaim, EndpointRecord, NetworkRecord},
        store::{Claimed, Created, Event},
        view::View,
        Cluster,
    },
    error::{conflict, invalid, AgentError, AgentResult},
    ipam,
    model::{mac_for, now, Container, Driver, Endpoint, Network, Owner},
    schema::NetworkCreate,
    store::StoreOp,
};

/// MTU of overlay networks created without `--mtu` where the VXLAN device
/// is not known: a 1500-byte underlay less the encapsulation.
pub const DEFAULT_OVERLAY_MTU: u32 = crate::model::DEFAULT_MTU - VXLAN_OVERHEAD;

/// Tries of a transaction that lost a race with another host.
const RACE_TRIES: usize = 16;

/// Subnets tried for overlay networks created without `--subnet`:
/// 10.0.0.0/24, 10.0.1.0/24, ... (as Docker's swarm pool), apart from the
/// bridge pools so that a host's local networks rarely clash with them.
pub fn overlay_pools() -> Vec<Ipv4Net> {
    (0..=255u8)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(10, 0, i, 0), 24).expect("valid prefix"))
        .collect()
}

/// The lowest VNI from [`cluster::FIRST_VNI`] no network has.
pub fn free_vni(taken: &HashSet<u32>) -> Option<u32> {
    (cluster::FIRST_VNI..=cluster::MAX_VNI).find(|v| !taken.contains(v))
}

fn unreachable(e: anyhow::Error) -> AgentError {
    AgentError::Conflict(format!(
        "{e:#}; overlay networks keep forwarding, but changes to them wait until the cluster store is back"
    ))
}

impl Agent {
    fn cluster(&self) -> AgentResult<&Cluster> {
        self.cluster.as_ref().ok_or_else(|| {
            AgentError::Invalid(
                "overlay networks need a cluster store: start the daemon with --cluster-store etcd://HOST:PORT"
                    .into(),
            )
        })
    }

    fn host_id(&self) -> &str {
        self.cluster
            .as_ref()
            .map(|c| c.config.host_id.as_str())
            .unwrap_or_default()
    }

    /// Why `mtu` cannot be an overlay network's MTU on this host (`None`:
    /// it can): VXLAN frames larger than the underlay carries are dropped
    /// on the way, silently.
    fn mtu_too_large(&self, mtu: u32) -> Option<String> {
        let dev = self.overlay_device?;
        (mtu > dev.network_mtu()).then(|| {
            format!(
                "mtu {mtu} is too large for an overlay network on this host: its underlay MTU is {} \
                 and VXLAN takes {VXLAN_OVERHEAD} bytes, so at most {}; give --mtu {} or less, \
                 or leave --mtu out",
                dev.underlay_mtu,
                dev.network_mtu(),
                dev.network_mtu()
            )
        })
    }

    /// `network create --driver overlay`: one transaction in the cluster
    /// store (name, VNI and a subnet no other overlay network overlaps),
    /// then realised here at once; the other hosts follow from their watch.
    pub(super) async fn create_overlay_network(
        &mut self,
        req: NetworkCreate,
    ) -> AgentResult<Network> {
        let cluster = self.cluster()?.clone();
        cluster.lease().map_err(AgentError::Conflict)?;
        validate_name("network", &req.name)?;
        if req.ipv6 || req.ipv4 == Some(false) || req.subnet6.is_some() {
            return invalid(
                "overlay networks carry IPv4 only: netd does not tunnel IPv6 between hosts yet; \
                 create it without --ipv6/--subnet6 (use a bridge network where containers need IPv6)",
            );
        }
        if req.bridge.is_some() {
            return invalid(
                "an overlay network has no bridge name to choose (--bridge is for bridge networks)",
            );
        }
        if self.networks.values().any(|n| n.name == req.name) {
            return conflict(format!("network with name {} already exists", req.name));
        }
        let mtu = req.mtu;
        if let Some(mtu) = mtu.filter(|m| !(68..=65_535 - VXLAN_OVERHEAD).contains(m)) {
            return invalid(format!(
                "mtu {mtu} is out of range for an overlay network (68-{})",
                65_535 - VXLAN_OVERHEAD
            ));
        }
        if let Some(reason) = mtu.and_then(|m| self.mtu_too_large(m)) {
            return invalid(reason);
        }
        let local_taken = self.taken_subnets().await?;
        let id = crate::model::new_id();
        for _ in 0..RACE_TRIES {
            let (seen, nets) = cluster.store.networks().await.map_err(unreachable)?;
            if nets.iter().any(|n| n.name == req.name) {
                return conflict(format!(
                    "network with name {} already exists in the cluster",
                    req.name
                ));
            }
            let cluster_subnets: Vec<Ipv4Net> = nets.iter().map(|n| n.subnet).collect();
            let subnet = match req.subnet {
                Some(subnet) => {
                    if let Some(n) = nets.iter().find(|n| ipam::overlaps(&n.subnet, &subnet)) {
                        return conflict(format!(
                            "subnet {subnet} overlaps overlay network {} ({})",
                            n.name, n.subnet
                        ));
                    }
                    if let Some(t) = local_taken.iter().find(|t| ipam::overlaps(t, &subnet)) {
                        return conflict(format!("subnet {subnet} overlaps {t} on this host"));
                    }
                    subnet
                }
                None => {
                    if req.gateway.is_some() || req.ip_range.is_some() {
                        return invalid("--gateway and --ip-range need --subnet");
                    }
                    let taken: Vec<Ipv4Net> = cluster_subnets
                        .iter()
                        .chain(&local_taken)
                        .copied()
                        .collect();
                    ipam::pick_subnet(&overlay_pools(), &taken).ok_or_else(|| {
                        AgentError::Conflict(
                            "the overlay address pool 10.0.0.0/16 is used up; give --subnet".into(),
                        )
                    })?
                }
            };
            let gateway = ipam::validate_network(&subnet, req.gateway, req.ip_range.as_ref())?;
            let vnis: HashSet<u32> = nets.iter().map(|n| n.vni).collect();
            let vni = free_vni(&vnis)
                .ok_or_else(|| AgentError::Conflict("no VXLAN network identifier left".into()))?;
            let record = NetworkRecord {
                id: id.clone(),
                name: req.name.clone(),
                vni,
                subnet,
                gateway,
                ip_range: req.ip_range,
                internal: req.internal,
                icc: req.icc.unwrap_or(true),
                masquerade: req.masquerade.unwrap_or(true),
                mtu,
                labels: req.labels.clone(),
                options: req.options.clone(),
                created: now(),
                created_by: cluster.config.hostname.clone(),
            };
            match cluster
                .store
                .create_network(&record, seen)
                .await
                .map_err(unreachable)?
            {
                Created::Done => {
                    info!(name = %record.name, %subnet, vni, "overlay network created in the cluster store");
                    self.cluster_view
                        .networks
                        .insert(record.id.clone(), record.clone());
                    self.follow_cluster_view().await;
                    return self
                        .networks
                        .get(&record.id)
                        .cloned()
                        .ok_or_else(|| AgentError::Internal(anyhow::anyhow!(
                            "overlay network {} was created in the cluster store but cannot be realised on this host (see the log)",
                            record.name
                        )));
                }
                Created::NameTaken => {
                    return conflict(format!(
                        "network with name {} already exists in the cluster",
                        req.name
                    ))
                }
                Created::Raced => continue,
            }
        }
        conflict("other hosts kept changing the overlay networks; try again")
    }

    /// Removes an overlay network from the cluster (refused while any host
    /// has a container on it), then here.
    pub(super) async fn remove_overlay_network(&mut self, net: &Network) -> AgentResult<()> {
        let cluster = self.cluster()?.clone();
        cluster.lease().map_err(AgentError::Conflict)?;
        let vni = net.vni.unwrap_or_default();
        if !cluster
            .store
            .remove_network(&net.id, &net.name, vni)
            .await
            .map_err(unreachable)?
        {
            let hosts: Vec<String> = self
                .cluster_view
                .endpoints
                .values()
                .filter(|e| e.network_id == net.id)
                .map(|e| {
                    let host = self
                        .cluster_view
                        .hosts
                        .get(&e.host)
                        .map_or(e.host.as_str(), |h| h.hostname.as_str());
                    format!("{} on {host}", e.container)
                })
                .collect();
            return conflict(format!(
                "overlay network {} has endpoints in the cluster ({}); disconnect or remove them first",
                net.name,
                if hosts.is_empty() {
                    "held by hosts that are down; they are given back once such a host has been \
                     away for --cluster-reclaim-after"
                        .to_string()
                } else {
                    hosts.join(", ")
                }
            ));
        }
        self.cluster_view.networks.remove(&net.id);
        Ok(())
    }

    /// Takes an address on overlay network `net` for `container` in the
    /// cluster store (`requested`, or the lowest free one) and publishes
    /// the endpoint on this host's lease: no two hosts ever get one address.
    pub(super) async fn claim_overlay_address(
        &mut self,
        container: &Container,
        net: &Network,
        requested: Option<Ipv4Addr>,
        aliases: &[String],
        mac: Option<[u8; 6]>,
    ) -> AgentResult<Ipv4Addr> {
        let cluster = self.cluster()?.clone();
        let lease = cluster.lease().map_err(AgentError::Conflict)?;
        let claim = AddressClaim {
            host: cluster.config.host_id.clone(),
            container_id: container.id.clone(),
        };
        let mut used: HashSet<Ipv4Addr> = HashSet::new();
        for attempt in 0..RACE_TRIES {
            if attempt == 0 || attempt % 4 == 0 {
                used.extend(
                    cluster
                        .store
                        .used_addresses(&net.id)
                        .await
                        .map_err(unreachable)?,
                );
            }
            used.insert(net.gateway);
            let ip = ipam::allocate(&net.subnet, net.ip_range.as_ref(), &used, requested)?;
            let record = EndpointRecord {
                network_id: net.id.clone(),
                host: claim.host.clone(),
                container_id: container.id.clone(),
                container: container.name.clone(),
                ip,
                mac: mac.unwrap_or_else(|| mac_for(ip)),
                aliases: aliases.to_vec(),
            };
            match cluster
                .store
                .claim_address(&record, &claim, lease)
                .await
                .map_err(unreachable)?
            {
                Claimed::Done => {
                    self.cluster_view
                        .addresses
                        .insert((net.id.clone(), ip), claim.clone());
                    self.cluster_view
                        .endpoints
                        .insert((net.id.clone(), ip), record);
                    return Ok(ip);
                }
                Claimed::NoNetwork => {
                    return conflict(format!(
                        "overlay network {} was removed from the cluster",
                        net.name
                    ))
                }
                Claimed::Taken if requested.is_some() => {
                    return conflict(format!(
                        "address {ip} is already in use on {} (another host)",
                        net.name
                    ))
                }
                Claimed::Taken => {
                    used.insert(ip);
                }
            }
        }
        conflict(format!(
            "other hosts kept taking the addresses of {}; try again",
            net.name
        ))
    }

    /// The address to give a new endpoint on `net`: on an overlay network
    /// one claimed in the cluster store now, else `requested` (chosen
    /// locally later).
    pub(super) async fn overlay_address(
        &mut self,
        container: &Container,
        net: &Network,
        requested: Option<Ipv4Addr>,
        aliases: &[String],
        mac: Option<[u8; 6]>,
    ) -> AgentResult<Option<Ipv4Addr>> {
        if !net.is_overlay() {
            return Ok(requested);
        }
        self.claim_overlay_address(container, net, requested, aliases, mac)
            .await
            .map(Some)
    }

    /// Undoes [`Agent::overlay_address`] after a failed attach.
    pub(super) async fn release_claim(
        &mut self,
        container_id: &str,
        net: &Network,
        ip: Option<Ipv4Addr>,
    ) {
        let Some(ip) = ip.filter(|_| net.is_overlay()) else {
            return;
        };
        let ep = Endpoint {
            network_id: net.id.clone(),
            ip,
            ifname: String::new(),
            host_ifname: String::new(),
            aliases: Vec::new(),
            mac: None,
            ip6: None,
        };
        self.release_overlay_addresses(container_id, &[ep]).await;
    }

    /// Gives the cluster store back the overlay addresses of `endpoints`
    /// (best effort: what cannot be released now is released by the next
    /// session's clean-up, which drops this host's claims no container
    /// holds).
    pub(super) async fn release_overlay_addresses(
        &mut self,
        container_id: &str,
        endpoints: &[Endpoint],
    ) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        for ep in endpoints {
            if !self
                .networks
                .get(&ep.network_id)
                .is_some_and(Network::is_overlay)
            {
                continue;
            }
            let claim = AddressClaim {
                host: cluster.config.host_id.clone(),
                container_id: container_id.to_string(),
            };
            self.cluster_view
                .addresses
                .remove(&(ep.network_id.clone(), ep.ip));
            self.cluster_view
                .endpoints
                .remove(&(ep.network_id.clone(), ep.ip));
            if let Err(e) = cluster
                .store
                .release_address(&ep.network_id, ep.ip, &claim)
                .await
            {
                warn!(ip = %ep.ip, error = %format!("{e:#}"), "overlay address not released now; the next cluster session does");
            }
        }
    }

    /// This host's overlay endpoints as the cluster store should hold them.
    pub fn own_overlay_endpoints(&self) -> Vec<(EndpointRecord, AddressClaim)> {
        let host = self.host_id().to_string();
        let mut out = Vec::new();
        for c in self.containers.values() {
            for ep in &c.endpoints {
                if !self
                    .networks
                    .get(&ep.network_id)
                    .is_some_and(Network::is_overlay)
                {
                    continue;
                }
                out.push((
                    EndpointRecord {
                        network_id: ep.network_id.clone(),
                        host: host.clone(),
                        container_id: c.id.clone(),
                        container: c.name.clone(),
                        ip: ep.ip,
                        mac: ep.mac(),
                        aliases: ep.aliases.clone(),
                    },
                    AddressClaim {
                        host: host.clone(),
                        container_id: c.id.clone(),
                    },
                ));
            }
        }
        out
    }

    /// A fresh snapshot of the store replaces the view.
    pub async fn cluster_synced(&mut self, view: View) {
        self.cluster_view = view;
        self.follow_cluster_view().await;
    }

    /// Changes from the watch.
    pub async fn cluster_events(&mut self, events: &[Event], revision: i64) {
        for ev in events {
            self.cluster_view.apply(ev.change());
        }
        if revision > 0 {
            self.cluster_view.revision = revision;
        }
        if !events.is_empty() {
            self.follow_cluster_view().await;
        }
    }

    /// Makes this host follow the view: overlay networks realised or
    /// removed, the view saved, the datapath's remote endpoints and the
    /// name service updated (without a cluster: only the last).
    pub(super) async fn follow_cluster_view(&mut self) {
        if self.cluster.is_none() {
            self.state_changed();
            return;
        }
        let records: Vec<NetworkRecord> = self.cluster_view.networks.values().cloned().collect();
        let mut conflicts = Vec::new();
        for record in &records {
            if let Err(e) = self.realise_overlay(record).await {
                conflicts.push(format!("{}: {e:#}", record.name));
            }
        }
        if self.cluster_view.revision > 0 {
            let gone: Vec<Network> = self
                .networks
                .values()
                .filter(|n| n.is_overlay() && !self.cluster_view.networks.contains_key(&n.id))
                .cloned()
                .collect();
            for net in gone {
                if !self.users_of(&net.id).is_empty() {
                    conflicts.push(format!(
                        "{}: removed from the cluster, but containers here still use it",
                        net.name
                    ));
                    continue;
                }
                if let Err(e) = self.store.apply(&[StoreOp::DeleteNetwork(&net.id)]) {
                    warn!(error = %format!("{e:#}"), "overlay network not removed");
                    continue;
                }
                self.networks.remove(&net.id);
                self.unrealise_network(&net).await;
                info!(name = %net.name, "overlay network removed (from the cluster store)");
            }
        }
        for c in &conflicts {
            warn!(conflict = %c, "overlay network not realised on this host");
        }
        self.cluster_conflicts = conflicts;
        match self.cluster_view.to_json() {
            Ok(bytes) => {
                if let Err(e) = self.store.put_cluster_view(&bytes) {
                    warn!(error = %format!("{e:#}"), "cluster view not saved");
                }
            }
            Err(e) => warn!(error = %e, "cluster view not saved"),
        }
        self.sync_overlay_datapath();
        self.state_changed();
    }

    /// Makes overlay network `record` a network of this host (bridge,
    /// datapath entry, local store) unless it is one already.
    async fn realise_overlay(&mut self, record: &NetworkRecord) -> anyhow::Result<()> {
        anyhow::ensure!(
            record.id.len() == 64 && record.id.bytes().all(|b| b.is_ascii_hexdigit()),
            "its id {:?} is not 64 hex digits",
            record.id
        );
        if let Some(local) = self.networks.get(&record.id) {
            anyhow::ensure!(
                local.is_overlay(),
                "a bridge network of this host has its id"
            );
            return Ok(());
        }
        if let Some(n) = self.networks.values().find(|n| n.name == record.name) {
            anyhow::bail!("this host has a network named {} already", n.name);
        }
        if let Some(reason) = record.mtu.and_then(|m| self.mtu_too_large(m)) {
            anyhow::bail!("{reason}");
        }
        if let Some(n) = self
            .networks
            .values()
            .find(|n| ipam::overlaps(&n.subnet, &record.subnet))
        {
            anyhow::bail!(
                "subnet {} overlaps network {} ({}) of this host",
                record.subnet,
                n.name,
                n.subnet
            );
        }
        let datapath_id = self
            .networks
            .values()
            .map(|n| n.datapath_id)
            .max()
            .unwrap_or(0)
            + 1;
        let network = Network {
            id: record.id.clone(),
            name: record.name.clone(),
            datapath_id,
            bridge: format!("br-{}", &record.id[..12.min(record.id.len())]),
            subnet: record.subnet,
            gateway: record.gateway,
            ip_range: record.ip_range,
            internal: record.internal,
            icc: record.icc,
            masquerade: record.masquerade,
            mtu: record.mtu.unwrap_or_else(|| {
                self.overlay_device
                    .map_or(DEFAULT_OVERLAY_MTU, |d| d.network_mtu())
            }),
            labels: record.labels.clone(),
            options: record.options.clone(),
            created: record.created.clone(),
            owner: Owner::Netd,
            ipv6: None,
            driver: Driver::Overlay,
            vni: Some(record.vni),
        };
        if let Err(e) = self.realise_network(&network).await {
            self.unrealise_network(&network).await;
            return Err(e);
        }
        if let Err(e) = self.store.apply(&[StoreOp::PutNetwork(&network)]) {
            self.unrealise_network(&network).await;
            return Err(e);
        }
        info!(name = %network.name, subnet = %network.subnet, vni = record.vni, "overlay network realised on this host");
        self.networks.insert(network.id.clone(), network);
        if let Err(e) = self.sync_host_addrs().await {
            warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        Ok(())
    }

    /// What the datapath must hold for overlay networks (see
    /// [`crate::cluster::desired`]).
    pub(super) fn overlay_state(&self) -> crate::cluster::desired::OverlayState {
        crate::cluster::desired::compute(
            self.cluster
                .as_ref()
                .map(|c| (c.config.host_id.as_str(), c.config.advertise)),
            &self.networks,
            &self.cluster_view,
        )
    }

    /// Makes the datapath hold the overlay state: each overlay network's
    /// VNI, exactly its remote endpoints, and no VNI of a network gone.
    fn sync_overlay_datapath(&mut self) {
        let state = self.overlay_state();
        if let Err(e) = self.apply_overlay_state(&state) {
            warn!(error = %format!("{e:#}"), "overlay datapath not in sync; retried at the next change");
        }
    }

    fn apply_overlay_state(&mut self, state: &OverlayState) -> anyhow::Result<()> {
        if self.overlay_device.is_none() {
            return Ok(());
        }
        let live: HashSet<u32> = state.networks.iter().map(|n| n.net_id).collect();
        for (_, net_id) in self.datapath.overlay_networks()? {
            if !live.contains(&net_id) {
                self.datapath.unregister_overlay_network(net_id)?;
            }
        }
        for net in &state.networks {
            self.datapath
                .register_overlay_network(net.net_id, net.vni)?;
            let want: BTreeMap<Ipv4Addr, (Ipv4Addr, [u8; 6])> = state
                .remotes
                .iter()
                .filter(|r| r.net_id == net.net_id)
                .map(|r| (r.ip, (r.host_addr, r.mac)))
                .collect();
            let (written, removed) = self
                .datapath
                .sync_remote_endpoints(net.net_id, net.vni, &want)?;
            if written + removed > 0 {
                tracing::debug!(
                    net_id = net.net_id,
                    written,
                    removed,
                    "remote endpoints synced"
                );
            }
        }
        Ok(())
    }

    /// With a cluster store: the VXLAN device, made or adopted (before the
    /// reconcile, which would take it for an orphan). Without: an old one
    /// is removed.
    pub(super) async fn setup_overlay_device(&mut self) -> anyhow::Result<()> {
        match &self.cluster {
            Some(c) => {
                let advertise = c.config.advertise;
                let dev = crate::datapath::overlay::ensure_device(
                    self.links.as_ref(),
                    self.datapath.as_mut(),
                    Some(advertise),
                    netd_common::VXLAN_PORT,
                )
                .await
                .context("cannot set up the overlay (VXLAN) device")?;
                info!(ifindex = dev.ifindex, local = %dev.local, underlay_mtu = dev.underlay_mtu, "overlay device ready");
                self.overlay_device = Some(dev);
            }
            None => {
                if let Err(e) = crate::datapath::overlay::remove_device(
                    self.links.as_ref(),
                    self.datapath.as_mut(),
                )
                .await
                {
                    warn!(error = %format!("{e:#}"), "old overlay device not removed");
                }
            }
        }
        Ok(())
    }

    /// The periodic sweep: a VXLAN device someone deleted is made again,
    /// and the overlay maps are brought back to the view.
    pub(super) async fn maintain_overlay(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        match self.links.index_of(netd_common::VXLAN_DEVICE).await {
            Ok(Some(_)) => {}
            Ok(None) => match self.setup_overlay_device().await {
                Ok(()) => self.repaired(format!(
                    "recreated overlay device {}",
                    netd_common::VXLAN_DEVICE
                )),
                Err(e) => warn!(error = %format!("{e:#}"), "overlay device not recreated"),
            },
            Err(e) => warn!(error = %format!("{e:#}"), "cannot look for the overlay device"),
        }
        self.sync_overlay_datapath();
    }

    /// Containers of overlay networks realised here that live on other
    /// (live) hosts, with their names: for `netd explain`.
    pub(super) fn remote_names(&self) -> Vec<(Ipv4Addr, crate::explain::RemoteName)> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        self.cluster_view
            .remote_endpoints(&cluster.config.host_id)
            .filter_map(|(e, host_address)| {
                let net = self
                    .networks
                    .get(&e.network_id)
                    .filter(|n| n.is_overlay())?;
                let host = self
                    .cluster_view
                    .hosts
                    .get(&e.host)
                    .map_or_else(|| e.host.clone(), |h| h.hostname.clone());
                let name = crate::explain::RemoteName {
                    container: e.container.clone(),
                    network: net.name.clone(),
                    host,
                    host_address,
                };
                Some((e.ip, name))
            })
            .collect()
    }

    /// Remote endpoints the datapath holds (for `netd status`).
    pub(super) fn datapath_remotes(&mut self) -> usize {
        self.datapath.remote_endpoints().map_or(0, |r| r.len())
    }
}
