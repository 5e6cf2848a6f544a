//! What the API answers about networks and containers: the typed,
//! Docker-like inspect shapes of [`crate::schema`].
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use netd_common::Counters;

use super::Agent;
use crate::{
    error::AgentResult,
    model::{format_mac, Container, Endpoint, Mode, Network},
    schema::{
        ContainerView, CountersView, DockerView, EndpointView, IpamConfig, IpamView,
        NetworkContainer, NetworkView, PortView,
    },
};

/// `IPAM.Config` as Docker shows it: the IPv4 pool (none on an IPv6-only
/// network), then the IPv6 one.
fn ipam_config(net: &Network) -> Vec<IpamConfig> {
    let mut config = Vec::new();
    if net.has_ipv4() {
        config.push(IpamConfig {
            subnet: IpNet::V4(net.subnet),
            gateway: IpAddr::V4(net.gateway),
            ip_range: net.ip_range.map(IpNet::V4),
        });
    }
    if let Some(v6) = &net.ipv6 {
        config.push(IpamConfig {
            subnet: IpNet::V6(v6.subnet),
            gateway: IpAddr::V6(v6.gateway),
            ip_range: v6.ip_range.map(IpNet::V6),
        });
    }
    config
}

/// A network's `Containers[].IPv6Address`: ADDR/PREFIX, or "" (Docker's
/// empty value).
fn ipv6_address(net: &Network, ep: &Endpoint) -> String {
    match (ep.ip6, &net.ipv6) {
        (Some(ip), Some(v6)) => format!("{ip}/{}", v6.subnet.prefix_len()),
        _ => String::new(),
    }
}

/// The IPv4 prefix length Docker shows: 0 without IPv4.
fn v4_prefix(net: &Network) -> u8 {
    if net.has_ipv4() {
        net.subnet.prefix_len()
    } else {
        0
    }
}

impl Agent {
    pub fn network_view(&self, net: &Network) -> NetworkView {
        let mut view = self.network_summary(net);
        for c in self.containers.values() {
            for ep in c.endpoints.iter().filter(|e| e.network_id == net.id) {
                view.containers.insert(
                    c.id.clone(),
                    NetworkContainer {
                        name: c.name.clone(),
                        ipv4_address: Ipv4Net::new(ep.ip, net.subnet.prefix_len())
                            .unwrap_or(net.subnet),
                        // (0.0.0.0/32, shown "", on an IPv6-only network)
                        ipv6_address: ipv6_address(net, ep),
                        mac_address: format_mac(ep.mac()),
                        interface: ep.ifname.clone(),
                        host_interface: ep.host_ifname.clone(),
                    },
                );
            }
        }
        view
    }

    /// [`Self::network_view`] without its containers, as Docker lists
    /// networks (`GET /networks` leaves `Containers` empty since API 1.28):
    /// a list costs O(networks), not O(containers).
    pub fn network_summary(&self, net: &Network) -> NetworkView {
        let containers = std::collections::BTreeMap::new();
        let mut options = net.options.clone();
        let mut option = |k: &str, v: String| options.insert(k.into(), v);
        option("com.docker.network.bridge.name", net.bridge.clone());
        option("com.docker.network.bridge.enable_icc", net.icc.to_string());
        option(
            "com.docker.network.bridge.enable_ip_masquerade",
            net.masquerade.to_string(),
        );
        option("com.docker.network.driver.mtu", net.mtu.to_string());
        if net.is_default() {
            option("com.docker.network.bridge.default_bridge", "true".into());
        }
        if let Some(vni) = net.vni {
            option(
                "com.docker.network.driver.overlay.vxlanid_list",
                vni.to_string(),
            );
        }
        NetworkView {
            name: net.name.clone(),
            id: net.id.clone(),
            created: net.created.clone(),
            scope: if net.is_overlay() { "global" } else { "local" }.into(),
            driver: net.driver.as_str().into(),
            enable_ipv4: net.has_ipv4(),
            enable_ipv6: net.ipv6.is_some(),
            internal: net.internal,
            ipam: IpamView {
                driver: "default".into(),
                config: ipam_config(net),
            },
            containers,
            counters: self.network_counters(net.datapath_id),
            options,
            labels: net.labels.clone(),
            owner: net.owner.as_str().into(),
        }
    }

    pub fn container_view(&self, c: &Container) -> ContainerView {
        // A container:OTHER shares OTHER's endpoints.
        let owner = match &c.mode {
            Mode::Container(id) => self.containers.get(id).unwrap_or(c),
            _ => c,
        };
        let mut networks = std::collections::BTreeMap::new();
        for ep in &owner.endpoints {
            let Some(net) = self.networks.get(&ep.network_id) else {
                continue;
            };
            // The IPv6 side, when this endpoint has it.
            let v6 = net.ipv6.as_ref().filter(|_| ep.ip6.is_some());
            let carries = super::gateways::Carries::of(&owner.endpoints, ep);
            networks.insert(
                net.name.clone(),
                EndpointView {
                    network_id: net.id.clone(),
                    // 0.0.0.0 (shown "") and 0 on an IPv6-only network.
                    ip_address: ep.ip,
                    ip_prefix_len: v4_prefix(net),
                    prefix_len: v4_prefix(net),
                    gateway: net.gateway,
                    global_ipv6_address: ep.ip6.map(|ip| ip.to_string()).unwrap_or_default(),
                    global_ipv6_prefix_len: v6.map_or(0, |v6| v6.subnet.prefix_len()),
                    ipv6_gateway: v6.map(|v6| v6.gateway.to_string()).unwrap_or_default(),
                    mac_address: format_mac(ep.mac()),
                    interface: ep.ifname.clone(),
                    host_interface: ep.host_ifname.clone(),
                    aliases: ep.aliases.clone(),
                    default_route: carries.v4,
                    default_route6: carries.v6,
                    mtu: net.mtu,
                    // Keyed by the IPv4 address, or the veth without one.
                    counters: self.endpoint_counters(ep),
                },
            );
        }
        let mode = match &c.mode {
            Mode::Bridge => "bridge".to_string(),
            Mode::None => "none".to_string(),
            Mode::Host => "host".to_string(),
            Mode::Container(id) => format!(
                "container:{}",
                self.containers
                    .get(id)
                    .map(|o| o.name.as_str())
                    .unwrap_or(id)
            ),
        };
        let ports = owner
            .ports
            .iter()
            .map(|m| PortView {
                host_ip: m.host_addr(),
                host_port: m.host_port,
                container_port: m.container_port,
                protocol: m.proto.to_string(),
            })
            .collect();
        ContainerView {
            name: c.name.clone(),
            id: c.id.clone(),
            created: c.created.clone(),
            netns_path: c.netns.clone(),
            ports,
            mode,
            networks,
            dns: self.dns_servers(c),
            origin: c.origin.clone(),
            labels: c.labels.clone(),
            owner: c.owner().as_str().into(),
            docker: c.docker.as_ref().map(|d| DockerView {
                endpoint_id: c.id.clone(),
                sandbox_key: d.sandbox_key.clone(),
                joined: d.sandbox_key.is_some(),
            }),
        }
    }

    pub fn list_networks(&self) -> Vec<NetworkView> {
        let mut nets: Vec<_> = self.networks.values().collect();
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        nets.into_iter().map(|n| self.network_summary(n)).collect()
    }

    pub fn list_containers(&self) -> Vec<ContainerView> {
        let mut cs: Vec<_> = self.containers.values().collect();
        cs.sort_by(|a, b| a.name.cmp(&b.name));
        cs.into_iter().map(|c| self.container_view(c)).collect()
    }

    pub fn inspect_network(&self, key: &str) -> AgentResult<NetworkView> {
        Ok(self.network_view(self.find_network(key)?))
    }

    pub fn inspect_container(&self, key: &str) -> AgentResult<ContainerView> {
        Ok(self.container_view(self.find_container(key)?))
    }
}

impl Agent {
    /// An endpoint's datapath counters (`None` if the map cannot be read).
    fn endpoint_counters(&self, ep: &Endpoint) -> Option<CountersView> {
        self.datapath
            .endpoint_counters(ep.ip, &ep.host_ifname)
            .ok()
            .map(|c| counters_view(&c))
    }

    pub(super) fn network_counters(&self, net_id: u32) -> Option<CountersView> {
        self.datapath
            .network_counters(net_id)
            .ok()
            .map(|c| counters_view(&c))
    }
}

/// The datapath's counters as the API shows them: drop reasons by name,
/// those that counted nothing left out.
pub fn counters_view(c: &Counters) -> CountersView {
    let drops = netd_common::DropReason::ALL
        .into_iter()
        .filter_map(|r| {
            let n = c.drops.get(r as usize).copied().unwrap_or(0);
            (n > 0).then(|| (r.name().to_string(), n))
        })
        .collect();
    CountersView {
        packets_in: c.packets_in,
        bytes_in: c.bytes_in,
        packets_out: c.packets_out,
        bytes_out: c.bytes_out,
        drops,
    }
}
