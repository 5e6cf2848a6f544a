//! `netd status`: the agent, its programs, map fill and drop counters.
use super::{views::counters_view, Agent};
use crate::{
    datapath::all_programs,
    error::AgentResult,
    schema::{
        ClusterHost, ClusterStatus, ConntrackStatus, EventsStatus, HostRoutingStatus, MapFill,
        OverlayDeviceStatus, OverlayStatus, ReconcileStatus, RemoteEndpointStatus, StatusView,
        UplinkStatus,
    },
};

impl Agent {
    pub fn status(&mut self) -> AgentResult<StatusView> {
        let drops = self
            .datapath
            .drop_counts()?
            .into_iter()
            .map(|d| (d.reason.to_string(), d.packets))
            .collect();
        let endpoints = self.datapath.endpoint_indexes()?.len();
        let networks = self.datapath.network_subnets()?.len();
        let links = self.datapath.link_count()?;
        let ct = self.datapath.ct_stats()?;
        let routing = self.datapath.routing_counts()?;
        let counts = |v: &[(&str, u64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        let fill = |entries, capacity| MapFill { entries, capacity };
        Ok(StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            git_revision: crate::GIT_REVISION.into(),
            map_layout_version: netd_common::MAP_LAYOUT_VERSION,
            pid: std::process::id(),
            run_dir: self.config.run_dir.clone(),
            source_hash: crate::SOURCE_HASH.into(),
            uptime_seconds: self.started.elapsed().as_secs(),
            state_dir: self.config.state_dir.clone(),
            bpffs: self.config.bpffs.clone(),
            map_layout: self.datapath.pin_root(),
            networks: self.networks.len(),
            containers: self.containers.len(),
            programs: all_programs().map(String::from).collect(),
            uplinks: self
                .uplinks
                .iter()
                .map(|(name, u)| {
                    let u = UplinkStatus {
                        ifindex: u.ifindex,
                        address: u.address,
                        address6: u.address6,
                    };
                    (name.clone(), u)
                })
                .collect(),
            snat_ports: format!("{}-{}", self.config.snat_ports.0, self.config.snat_ports.1),
            pinned_links: links,
            maps: [
                ("ENDPOINTS", fill(endpoints, netd_common::MAX_ENDPOINTS)),
                ("NETWORKS", fill(networks, netd_common::MAX_NETWORKS)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            conntrack: ConntrackStatus {
                flows: ct.entries,
                flows6: ct.entries6,
                capacity: ct.capacity,
                timeouts: self
                    .config
                    .ct_timeouts
                    .seconds()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
            drops,
            host_routing: HostRoutingStatus {
                mode: self.datapath.host_routing()?.as_str().into(),
                shortcuts: counts(&routing.shortcuts),
                fallbacks: counts(&routing.fallbacks),
            },
            events: self.events_status()?,
            network_counters: self
                .networks
                .values()
                .filter_map(|n| {
                    let c = self.datapath.network_counters(n.datapath_id).ok()?;
                    Some((n.name.clone(), counters_view(&c)))
                })
                .collect(),
            dns: self.dns.stats(),
            last_reconcile: ReconcileStatus {
                at: self.last_reconcile.clone(),
                repairs: self.repairs.clone(),
            },
            cluster: self.cluster_status(),
            overlay: OverlayStatus {
                device: self.overlay_device.map(|d| OverlayDeviceStatus {
                    ifindex: d.ifindex,
                    local: d.local,
                    port: d.port,
                    underlay_mtu: d.underlay_mtu,
                }),
                remote_endpoints: self.datapath_remotes(),
            },
        })
    }
}

impl Agent {
    /// Monitors connected, the event types the datapath builds (read back
    /// from its switch) and what the rate limit held back.
    fn events_status(&self) -> AgentResult<EventsStatus> {
        let (monitors, types) = self.monitor.state();
        Ok(EventsStatus {
            monitors,
            types: crate::monitor::type_names(types)
                .into_iter()
                .map(String::from)
                .collect(),
            suppressed: self.datapath.events_suppressed()?,
        })
    }
}

impl Agent {
    /// The cluster as this host sees it: the store's reachability, the
    /// hosts registered and the remote endpoints forwarded to (`None`
    /// without `--cluster-store`).
    fn cluster_status(&self) -> Option<ClusterStatus> {
        let cluster = self.cluster.as_ref()?;
        let session = cluster.session();
        let me = cluster.config.host_id.as_str();
        let hosts = self
            .cluster_view
            .hosts
            .values()
            .map(|h| ClusterHost {
                id: h.id.clone(),
                hostname: h.hostname.clone(),
                address: h.address,
                since: h.since.clone(),
                is_self: h.id == me,
            })
            .collect();
        let remote_endpoints = self
            .cluster_view
            .remote_endpoints(me)
            .map(|(e, addr)| RemoteEndpointStatus {
                network: self
                    .networks
                    .get(&e.network_id)
                    .map_or(e.network_id.clone(), |n| n.name.clone()),
                container: e.container.clone(),
                ip: e.ip,
                host: self
                    .cluster_view
                    .hosts
                    .get(&e.host)
                    .map_or(e.host.clone(), |h| h.hostname.clone()),
                host_address: addr,
            })
            .collect();
        Some(ClusterStatus {
            store: cluster.config.endpoints.clone(),
            reachable: session.connected,
            last_error: session.last_error,
            last_contact: session.last_contact,
            sessions: session.sessions,
            host_id: me.to_string(),
            hostname: cluster.config.hostname.clone(),
            advertise_address: cluster.config.advertise,
            lease: session.lease,
            revision: self.cluster_view.revision,
            overlay_networks: self.cluster_view.networks.len(),
            hosts,
            remote_endpoints,
            conflicts: self
                .cluster_conflicts
                .iter()
                .chain(&session.unpublished)
                .cloned()
                .collect(),
        })
    }
}
