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
