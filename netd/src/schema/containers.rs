//! `GET /v1/containers[/NAME]`: a container with its endpoints and
//! published ports.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use super::CountersView;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerView {
    pub name: String,
    pub id: String,
    pub created: String,
    pub netns_path: PathBuf,
    pub ports: Vec<PortView>,
    /// `bridge`, `none`, `host` or `container:OTHER`.
    pub mode: String,
    /// Network name → the container's endpoint on it.
    pub networks: BTreeMap<String, EndpointView>,
    /// The name servers its resolv.conf should list.
    pub dns: Vec<IpAddr>,
    /// Who asked for it (`cni`, `docker`); `null` for the CLI/API.
    pub origin: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `netd` or `docker`.
    pub owner: String,
    /// Only for a Docker endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerView>,
}

impl ContainerView {
    /// Its endpoint on network `name`.
    pub fn network(&self, name: &str) -> Option<&EndpointView> {
        self.networks.get(name)
    }
}

/// One network of a container ([`ContainerView::networks`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointView {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// "" on an IPv6-only network (as Docker), like `Gateway`.
    #[serde(rename = "IPAddress", with = "super::blank")]
    pub ip_address: Ipv4Addr,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// Same as `IPPrefixLen` (both names are read by Docker tooling).
    pub prefix_len: u8,
    #[serde(with = "super::blank")]
    pub gateway: Ipv4Addr,
    /// The IPv6 address on a dual-stack network, else "" (as Docker).
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    /// Its prefix length (0 without IPv6).
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    /// The network's IPv6 gateway, else "".
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
    pub mac_address: String,
    pub interface: String,
    pub host_interface: String,
    pub aliases: Vec<String>,
    /// Does the container's IPv4 default route leave by it (its first
    /// network with IPv4, as Docker 28 picks the IPv4 gateway)?
    pub default_route: bool,
    /// Does its IPv6 default route leave by it (its first network with
    /// IPv6)?
    #[serde(rename = "DefaultRoute6", default)]
    pub default_route6: bool,
    #[serde(rename = "MTU")]
    pub mtu: u32,
    /// `null` when the datapath's counters cannot be read.
    pub counters: Option<CountersView>,
}

/// One published port, as `docker port` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortView {
    /// `0.0.0.0` (or `::`) for every host address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl PortView {
    /// `HOST_IP:PORT`, an IPv6 address in brackets (as `docker port`
    /// shows `[::]:8080`).
    pub fn host(&self) -> String {
        std::net::SocketAddr::new(self.host_ip, self.host_port).to_string()
    }

    /// `80/tcp`, as `netd port` and Docker name a container port.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// What a Docker endpoint adds ([`ContainerView::docker`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerView {
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The sandbox Docker joined the endpoint to, if any.
    pub sandbox_key: Option<String>,
    pub joined: bool,
}
