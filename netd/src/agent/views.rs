//! The JSON the API answers with: Docker-like shapes for inspect.
use serde_json::{json, Map, Value};

use super::Agent;
use crate::{
    error::AgentResult,
    model::{format_mac, Container, Endpoint, Mode, Network},
};

/// `IPAM.Config` as Docker shows it: the IPv4 entry, then the IPv6 one.
fn ipam_config(net: &Network) -> Vec<Value> {
    let mut config = vec![json!({
        "Subnet": net.subnet.to_string(),
        "Gateway": net.gateway.to_string(),
        "IPRange": net.ip_range.map(|r| r.to_string()),
    })];
    if let Some(v6) = &net.ipv6 {
        config.push(json!({
            "Subnet": v6.subnet.to_string(),
            "Gateway": v6.gateway.to_string(),
            "IPRange": v6.ip_range.map(|r| r.to_string()),
        }));
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

impl Agent {
    pub fn network_view(&self, net: &Network) -> Value {
        let mut containers = Map::new();
        for c in self.containers.values() {
            for ep in c.endpoints.iter().filter(|e| e.network_id == net.id) {
                containers.insert(
                    c.id.clone(),
                    json!({
                        "Name": c.name,
                        "IPv4Address": format!("{}/{}", ep.ip, net.subnet.prefix_len()),
                        "IPv6Address": ipv6_address(net, ep),
                        "MacAddress": format_mac(ep.mac()),
                        "Interface": ep.ifname,
                        "HostInterface": ep.host_ifname,
                    }),
                );
            }
        }
        let mut options = Map::new();
        for (k, v) in &net.options {
            options.insert(k.clone(), json!(v));
        }
        options.insert("com.docker.network.bridge.name".into(), json!(net.bridge));
        options.insert(
            "com.docker.network.bridge.enable_icc".into(),
            json!(net.icc.to_string()),
        );
        options.insert(
            "com.docker.network.bridge.enable_ip_masquerade".into(),
            json!(net.masquerade.to_string()),
        );
        options.insert(
            "com.docker.network.driver.mtu".into(),
            json!(net.mtu.to_string()),
        );
        if net.is_default() {
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                json!("true"),
            );
        }
        if let Some(vni) = net.vni {
            options.insert(
                "com.docker.network.driver.overlay.vxlanid_list".into(),
                json!(vni.to_string()),
            );
        }
        json!({
            "Name": net.name,
            "Id": net.id,
            "Created": net.created,
            "Scope": if net.is_overlay() { "global" } else { "local" },
            "Driver": net.driver.as_str(),
            "EnableIPv4": true,
            "EnableIPv6": net.ipv6.is_some(),
            "Internal": net.internal,
            "IPAM": {
                "Driver": "default",
                "Config": ipam_config(net),
            },
            "Containers": containers,
            "Counters": self.network_counters(net.datapath_id),
            "Options": options,
            "Labels": net.labels,
            "Owner": net.owner.as_str(),
        })
    }

    pub fn container_view(&self, c: &Container) -> Value {
        // A container:OTHER shares OTHER's endpoints.
        let owner = match &c.mode {
            Mode::Container(id) => self.containers.get(id).unwrap_or(c),
            _ => c,
        };
        let mut networks = Map::new();
        for (i, ep) in owner.endpoints.iter().enumerate() {
            let Some(net) = self.networks.get(&ep.network_id) else {
                continue;
            };
            // The IPv6 side, when this endpoint has it.
            let v6 = net.ipv6.as_ref().filter(|_| ep.ip6.is_some());
            networks.insert(
                net.name.clone(),
                json!({
                    "NetworkID": net.id,
                    "IPAddress": ep.ip.to_string(),
                    "IPPrefixLen": net.subnet.prefix_len(),
                    "PrefixLen": net.subnet.prefix_len(),
                    "Gateway": net.gateway.to_string(),
                    "GlobalIPv6Address": ep.ip6.map(|ip| ip.to_string()).unwrap_or_default(),
                    "GlobalIPv6PrefixLen": v6.map_or(0, |v6| v6.subnet.prefix_len()),
                    "IPv6Gateway": v6.map(|v6| v6.gateway.to_string()).unwrap_or_default(),
                    "MacAddress": format_mac(ep.mac()),
                    "Interface": ep.ifname,
                    "HostInterface": ep.host_ifname,
                    "Aliases": ep.aliases,
                    "DefaultRoute": i == 0,
                    "MTU": net.mtu,
                    "Counters": self.endpoint_counters(ep.ip),
                }),
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
        let ports: Vec<Value> = owner
            .ports
            .iter()
            .map(|m| {
                json!({
                    "HostIp": m.host_addr().to_string(),
                    "HostPort": m.host_port,
                    "ContainerPort": m.container_port,
                    "Protocol": m.proto.to_string(),
                })
            })
            .collect();
        let mut view = json!({
            "Name": c.name,
            "Id": c.id,
            "Created": c.created,
            "NetnsPath": c.netns,
            "Ports": ports,
            "Mode": mode,
            "Networks": networks,
            "Dns": self.dns_servers(c),
            "Origin": c.origin,
            "Labels": c.labels,
            "Owner": c.owner().as_str(),
        });
        if let Some(d) = &c.docker {
            view["Docker"] = json!({
                "EndpointID": c.id,
                "SandboxKey": d.sandbox_key,
                "Joined": d.sandbox_key.is_some(),
            });
        }
        view
    }

    pub fn list_networks(&self) -> Vec<Value> {
        let mut nets: Vec<_> = self.networks.values().collect();
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        nets.into_iter().map(|n| self.network_view(n)).collect()
    }

    pub fn list_containers(&self) -> Vec<Value> {
        let mut cs: Vec<_> = self.containers.values().collect();
        cs.sort_by(|a, b| a.name.cmp(&b.name));
        cs.into_iter().map(|c| self.container_view(c)).collect()
    }

    pub fn inspect_network(&self, key: &str) -> AgentResult<Value> {
        Ok(self.network_view(self.find_network(key)?))
    }

    pub fn inspect_container(&self, key: &str) -> AgentResult<Value> {
        Ok(self.container_view(self.find_container(key)?))
    }
}

impl Agent {
    /// An endpoint's datapath counters (null if the map cannot be read).
    fn endpoint_counters(&self, ip: std::net::Ipv4Addr) -> Value {
        self.datapath
            .endpoint_counters(ip)
            .map(|c| crate::datapath::counters_json(&c))
            .unwrap_or(Value::Null)
    }

    fn network_counters(&self, net_id: u32) -> Value {
        self.datapath
            .network_counters(net_id)
            .map(|c| crate::datapath::counters_json(&c))
            .unwrap_or(Value::Null)
    }
}
