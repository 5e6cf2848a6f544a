//! `netd status`: the agent, its programs, map fill and drop counters.
use serde_json::{json, Map, Value};

use super::Agent;
use crate::{
    datapath::{PROGRAMS, SOCK_PROGRAMS, UPLINK_XDP},
    error::AgentResult,
};

impl Agent {
    pub fn status(&mut self) -> AgentResult<Value> {
        let mut drops = Map::new();
        for d in self.datapath.drop_counts()? {
            drops.insert(d.reason.to_string(), json!(d.packets));
        }
        let endpoints = self.datapath.endpoint_indexes()?.len();
        let networks = self.datapath.network_subnets()?.len();
        let links = self.datapath.pinned_links()?.len();
        let ct = self.datapath.ct_stats()?;
        let routing = self.datapath.routing_counts()?;
        let counts = |v: &[(&str, u64)]| -> Map<String, Value> {
            v.iter().map(|(k, n)| (k.to_string(), json!(n))).collect()
        };
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "git_revision": crate::GIT_REVISION,
            "map_layout_version": netd_common::MAP_LAYOUT_VERSION,
            "pid": std::process::id(),
            "run_dir": self.config.run_dir,
            "source_hash": crate::SOURCE_HASH,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "state_dir": self.config.state_dir,
            "bpffs": self.config.bpffs,
            "map_layout": self.datapath.pins().root(),
            "networks": self.networks.len(),
            "containers": self.containers.len(),
            "programs": PROGRAMS.iter().chain([&UPLINK_XDP]).chain(SOCK_PROGRAMS.iter()).collect::<Vec<_>>(),
            "uplinks": self.uplinks,
            "snat_ports": format!("{}-{}", self.config.snat_ports.0, self.config.snat_ports.1),
            "pinned_links": links,
            "maps": {
                "ENDPOINTS": { "entries": endpoints, "capacity": netd_common::MAX_ENDPOINTS },
                "NETWORKS": { "entries": networks, "capacity": netd_common::MAX_NETWORKS },
            },
            "conntrack": { "flows": ct.entries, "capacity": ct.capacity, "timeouts": self.config.ct_timeouts.seconds() },
            "drops": drops,
            "host_routing": {
                "mode": self.datapath.host_routing()?.as_str(),
                "shortcuts": counts(&routing.shortcuts),
                "fallbacks": counts(&routing.fallbacks),
            },
            "events": self.events_status()?,
            "network_counters": self.networks_counters(),
            "dns": self.dns.stats(),
            "last_reconcile": { "at": self.last_reconcile, "repairs": self.repairs },
            "cluster": self.cluster_status(),
            "overlay": {
                "device": self.overlay_device.map(|d| json!({
                    "ifindex": d.ifindex, "local": d.local.to_string(),
                    "port": d.port, "underlay_mtu": d.underlay_mtu,
                })),
                "remote_endpoints": self.datapath_remotes(),
            },
        }))
    }
}

impl Agent {
    /// Monitors connected, the event types the datapath builds (read back
    /// from its switch) and what the rate limit held back.
    fn events_status(&self) -> AgentResult<Value> {
        let (monitors, types) = self.monitor.state();
        Ok(json!({
            "monitors": monitors,
            "types": crate::monitor::type_names(types),
            "suppressed": self.datapath.events_suppressed()?,
        }))
    }

    /// Per-network counters, by network name.
    fn networks_counters(&self) -> Value {
        let mut out = Map::new();
        for n in self.networks.values() {
            if let Ok(c) = self.datapath.network_counters(n.datapath_id) {
                out.insert(n.name.clone(), crate::datapath::counters_json(&c));
            }
        }
        Value::Object(out)
    }
}

impl Agent {
    /// The cluster as this host sees it: the store's reachability, the
    /// hosts registered and the remote endpoints forwarded to (null
    /// without `--cluster-store`).
    fn cluster_status(&self) -> Value {
        let Some(cluster) = &self.cluster else {
            return Value::Null;
        };
        let session = cluster.session();
        let me = cluster.config.host_id.as_str();
        let hosts: Vec<Value> = self
            .cluster_view
            .hosts
            .values()
            .map(|h| {
                json!({
                    "id": h.id,
                    "hostname": h.hostname,
                    "address": h.address.to_string(),
                    "since": h.since,
                    "self": h.id == me,
                })
            })
            .collect();
        let remote: Vec<Value> = self
            .cluster_view
            .remote_endpoints(me)
            .map(|(e, addr)| {
                json!({
                    "network": self.networks.get(&e.network_id).map_or(e.network_id.as_str(), |n| n.name.as_str()),
                    "container": e.container,
                    "ip": e.ip.to_string(),
                    "host": self.cluster_view.hosts.get(&e.host).map_or(e.host.as_str(), |h| h.hostname.as_str()),
                    "host_address": addr.to_string(),
                })
            })
            .collect();
        json!({
            "store": cluster.config.endpoints,
            "reachable": session.connected,
            "last_error": session.last_error,
            "last_contact": session.last_contact,
            "sessions": session.sessions,
            "host_id": me,
            "hostname": cluster.config.hostname,
            "advertise_address": cluster.config.advertise.to_string(),
            "lease": session.lease,
            "revision": self.cluster_view.revision,
            "overlay_networks": self.cluster_view.networks.len(),
            "hosts": hosts,
            "remote_endpoints": remote,
            "conflicts": self.cluster_conflicts,
        })
    }
}
