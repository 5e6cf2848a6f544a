//! `GET /v1/networks[/NAME]`: a network as Docker's `network inspect`
//! shows it.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::CountersView;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkView {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv4", default)]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    pub internal: bool,
    #[serde(rename = "IPAM")]
    pub ipam: IpamView,
    /// Container id → its endpoint on this network.
    pub containers: BTreeMap<String, NetworkContainer>,
    /// `null` when the datapath's counters cannot be read.
    pub counters: Option<CountersView>,
    /// Docker's bridge driver options (`com.docker.network.bridge.name`, …).
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `netd` or `docker`: who made the network and may remove it.
    pub owner: String,
}

impl NetworkView {
    /// The IPv4 pool (every netd network has one).
    pub fn ipv4(&self) -> Option<&IpamConfig> {
        self.ipam.config.iter().find(|c| c.subnet.addr().is_ipv4())
    }

    /// The IPv6 pool of a dual-stack network.
    pub fn ipv6(&self) -> Option<&IpamConfig> {
        self.ipam.config.iter().find(|c| c.subnet.addr().is_ipv6())
    }

    /// A driver option (`com.docker.network.bridge.enable_icc`, …).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamView {
    pub driver: String,
    /// One pool per address family: IPv4, then IPv6.
    pub config: Vec<IpamConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    #[serde(rename = "IPRange")]
    pub ip_range: Option<IpNet>,
}

/// One endpoint in [`NetworkView::containers`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    /// The address with the subnet's prefix length (`10.0.0.2/24`).
    /// "" on an IPv6-only network.
    #[serde(rename = "IPv4Address", with = "super::blank")]
    pub ipv4_address: Ipv4Net,
    /// `ADDR/PREFIX` on a dual-stack network, else "" (as Docker).
    #[serde(rename = "IPv6Address", default)]
    pub ipv6_address: String,
    pub mac_address: String,
    pub interface: String,
    pub host_interface: String,
}

impl IpamConfig {
    /// The IPv4 gateway (`None` for an IPv6 pool).
    pub fn gateway_v4(&self) -> Option<Ipv4Addr> {
        match self.gateway {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}
