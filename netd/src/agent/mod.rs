//! The agent: stored state, the kernel objects that realise it, and the
//! operations the API exposes. One file per concern:
//! `start` (restore and reconcile at start-up), `networks`, `containers`,
//! `endpoints` (the kernel steps of attaching a container to a network),
//! `views` (the JSON the API returns), `status`, `docker` (what the
//! Docker driver asks for).
mod check;
mod claims;
mod containers;
mod docker;
mod endpoints;
mod explain;
mod follow;
mod gateways;
mod ipv6;
pub mod lock;
mod metrics;
mod names;
mod networks;
mod overlay;
mod publish;
mod reset;
mod shared;
mod start;
mod status;
#[cfg(test)]
mod tests;
mod uplinks;
mod views;

pub use follow::follow_cluster;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use ipnet::Ipv4Net;

pub use shared::SharedAgent;

use crate::{
    error::{AgentError, AgentResult},
    kernel::{DatapathDriver, EndpointPrograms, HostPorts, LinkDriver, NetnsDriver},
    model::{Container, Network},
    store::Store,
};

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub bpffs: PathBuf,
    /// Where the name service forwards names it does not know (from the
    /// host's resolv.conf unless `--dns-upstream` is given).
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// Candidate subnets for new networks; empty means the built-in pools.
    pub default_pools: Vec<Ipv4Net>,
    /// Pools of IPv6 subnets; empty means the host's ULA prefix.
    pub default_pools_v6: Vec<ipnet::Ipv6Net>,
    /// The default network gets an IPv6 subnet too.
    pub ipv6: bool,
    pub default_bridge: bool,
    /// Uplink devices; empty means those of the default route(s).
    pub uplinks: Vec<String>,
    /// Source ports masquerade may allocate (host order, inclusive).
    pub snat_ports: (u16, u16),
    /// Capacity of each conntrack map.
    pub ct_size: u32,
    pub ct_timeouts: crate::datapath::CtTimeouts,
    /// Who forwards: the programs or the kernel.
    pub host_routing: crate::datapath::HostRouting,
    /// cgroup2 directory the host-socket programs attach to.
    pub cgroup: PathBuf,
    /// Group that may use the API socket (mode 0660, run dir 0750); none:
    /// root only.
    pub socket_group: Option<nix::unistd::Gid>,
    /// The cluster store (`--cluster-store`); none: one host only.
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

pub struct Agent {
    config: AgentConfig,
    /// Held for the agent's lifetime: no other agent shares its dirs.
    _lock: lock::AgentLock,
    store: Arc<Store>,
    /// The kernel, through the seam (`crate::kernel`).
    links: Arc<dyn LinkDriver>,
    datapath: Box<dyn DatapathDriver>,
    netns: Arc<dyn NetnsDriver>,
    ports: Arc<dyn HostPorts>,
    /// Attaches endpoint programs without the state (see `shared`).
    attacher: Arc<dyn EndpointPrograms>,
    /// What phased operations in flight have taken (see `claims`).
    claims: Arc<std::sync::Mutex<claims::Claims>>,
    dns: crate::dns::NameService,
    networks: BTreeMap<String, Network>,
    containers: BTreeMap<String, Container>,
    uplinks: BTreeMap<String, uplinks::UplinkState>,
    reservations: publish::Reservations,
    started: Instant,
    /// What reconciles repaired (most recent last), for `netd status`.
    repairs: Vec<String>,
    last_reconcile: Option<String>,
    /// Reconcile passes and repairs since start (for `/metrics`).
    reconcile_runs: u64,
    /// The `netd monitor` hub (event ring buffer and switch).
    monitor: std::sync::Arc<crate::monitor::Hub>,
    repairs_total: u64,
    /// The cluster store, with `--cluster-store`.
    cluster: Option<crate::cluster::Cluster>,
    /// The last known state of the cluster store (kept while it is away).
    cluster_view: crate::cluster::view::View,
    /// Overlay networks this host could not realise, and why.
    cluster_conflicts: Vec<String>,
    /// The VXLAN device (with `--cluster-store`).
    overlay_device: Option<crate::datapath::overlay::OverlayDevice>,
}

impl Agent {
    /// Applies what a config reload may change while running: the DNS
    /// upstreams (the name service forwards to them from the next query on)
    /// and the conntrack timeouts (used by the next expiry sweep).
    pub fn apply_live(
        &mut self,
        dns_upstreams: Vec<std::net::SocketAddr>,
        ct_timeouts: crate::datapath::CtTimeouts,
    ) {
        self.config.dns_upstreams = dns_upstreams;
        self.config.ct_timeouts = ct_timeouts;
        self.state_changed();
    }

    /// A network by exact name, full id, or unique id prefix.
    fn find_network(&self, key: &str) -> AgentResult<&Network> {
        find(&self.networks, key, |n| &n.name)
            .ok_or_else(|| AgentError::NotFound(format!("network {key} not found")))
    }

    /// The claims of the phased operations in flight.
    fn claimed(&self) -> std::sync::MutexGuard<'_, claims::Claims> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find_container(&self, key: &str) -> AgentResult<&Container> {
        find(&self.containers, key, |c| &c.name)
            .ok_or_else(|| AgentError::NotFound(format!("container {key} not found")))
    }
}

fn find<'a, T>(
    items: &'a BTreeMap<String, T>,
    key: &str,
    name: impl Fn(&T) -> &String,
) -> Option<&'a T> {
    if key.is_empty() {
        return None;
    }
    if let Some(item) = items.values().find(|v| name(v) == key) {
        return Some(item);
    }
    if let Some(item) = items.get(key) {
        return Some(item);
    }
    let mut prefixed = items.iter().filter(|(id, _)| id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some((_, item)), None) => Some(item),
        _ => None,
    }
}

/// A veth end the agent makes and changes itself: an endpoint's host end
/// (`nd…`).
pub fn is_own_veth_name(name: &str) -> bool {
    start::is_host_veth_name(name)
}

/// Names as Docker accepts them: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64.
fn validate_name(kind: &str, name: &str) -> AgentResult<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        crate::error::invalid(format!(
            "invalid {kind} name {name:?}: use letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64)"
        ))
    }
}

impl Agent {
    /// The monitor hub, for the API's streams.
    pub fn monitor_hub(&self) -> std::sync::Arc<crate::monitor::Hub> {
        self.monitor.clone()
    }

    /// The names monitors show for veths, addresses and uplinks.
    fn monitor_names(&self) -> crate::monitor::Names {
        let mut names = crate::monitor::Names::default();
        for c in self.containers.values() {
            for ep in &c.endpoints {
                let Some(net) = self.networks.get(&ep.network_id) else {
                    continue;
                };
                names
                    .addrs
                    .insert(ep.ip, (c.name.clone(), net.name.clone()));
            }
        }
        // By address, not a scan per endpoint: this runs on every change.
        for (index, ip) in self.datapath.endpoint_addresses().unwrap_or_default() {
            if let Some(owner) = names.addrs.get(&ip) {
                names.veths.insert(index, owner.clone());
            }
        }
        for (name, u) in &self.uplinks {
            names.uplinks.insert(u.ifindex, name.clone());
        }
        names
    }
}

impl Agent {
    /// The name of the container `key` names (name, id or id prefix).
    pub fn container_name(&self, key: &str) -> AgentResult<String> {
        self.find_container(key).map(|c| c.name.clone())
    }

    pub fn network_name(&self, key: &str) -> AgentResult<String> {
        self.find_network(key).map(|n| n.name.clone())
    }
}
