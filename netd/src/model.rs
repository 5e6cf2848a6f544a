//! What the agent stores: networks, containers and their endpoints.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "netd0";
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// Id the eBPF maps know the network by (never 0, never reused while
    /// the network exists).
    pub datapath_id: u32,
    pub bridge: String,
    /// [`NO_IPV4`] (and gateway 0.0.0.0) on an IPv6-only network.
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub icc: bool,
    pub masquerade: bool,
    pub mtu: u32,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created: String,
    /// Who made the network and may remove it.
    #[serde(default)]
    pub owner: Owner,
    /// The IPv6 side of a dual-stack network (`--ipv6`); `None` (and
    /// absent in state stored before IPv6 existed): IPv4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Config>,
    /// `bridge`: this host only; `overlay`: every host of the cluster.
    #[serde(default)]
    pub driver: Driver,
    /// The VXLAN network identifier of an overlay network (the same on
    /// every host; given by the cluster store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// A network's IPv6 subnet, gateway (on the bridge) and allocation range.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ipv6Config {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv6Net>,
}

/// How far a network reaches.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A bridge on this host.
    #[default]
    Bridge,
    /// Spans every host of the cluster (`--cluster-store`): defined in the
    /// cluster store, realised on each host, VXLAN between hosts.
    Overlay,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Overlay => "overlay",
        }
    }

    pub fn parse(s: &str) -> Result<Driver, String> {
        match s {
            "bridge" => Ok(Driver::Bridge),
            "overlay" => Ok(Driver::Overlay),
            other => Err(format!(
                "unknown network driver {other:?} (bridge or overlay)"
            )),
        }
    }
}

/// Who manages a network or container: netd's own API, or dockerd through
/// the remote network driver (then only Docker may change it).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    #[default]
    Netd,
    Docker,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Netd => "netd",
            Owner::Docker => "docker",
        }
    }
}

/// The IPv4 subnet of an IPv6-only network (`--ipv4=false`): it holds no
/// usable address, so no allocation, route or map entry ever comes of it.
pub const NO_IPV4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 32);

impl Network {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// False for an IPv6-only network.
    pub fn has_ipv4(&self) -> bool {
        self.subnet != NO_IPV4
    }

    /// The bridge's MAC: `02:42:` + the IPv4 gateway, or + the last four
    /// bytes of the IPv6 gateway on an IPv6-only network.
    pub fn bridge_mac(&self) -> [u8; 6] {
        match &self.ipv6 {
            Some(v6) if !self.has_ipv4() => mac_for6(v6.gateway),
            _ => mac_for(self.gateway),
        }
    }

    pub fn is_overlay(&self) -> bool {
        self.driver == Driver::Overlay
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Endpoints on netd networks (the usual case).
    Bridge,
    /// Only `lo`.
    None,
    /// The host's own stack: netd does nothing.
    Host,
    /// Shares the netns and endpoints of another container (by id).
    Container(String),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub netns: PathBuf,
    pub mode: Mode,
    /// In connect order; the first one carries the default route.
    pub endpoints: Vec<Endpoint>,
    /// Published ports, all leading to the first endpoint's address.
    #[serde(default)]
    pub ports: Vec<crate::ports::PortMapping>,
    pub created: String,
    /// Who asked for it (`cni` for netd-cni); `None` for the CLI/API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Set for a Docker endpoint (one per Docker endpoint, its only
    /// endpoint; `id` is Docker's endpoint id). Docker owns its netns: netd
    /// never opens it, so `netns` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerEndpoint>,
}

/// Origin of containers made by netd-cni.
pub const ORIGIN_CNI: &str = "cni";
/// Origin of Docker endpoints (made by the Docker driver).
pub const ORIGIN_DOCKER: &str = "docker";

/// What netd keeps of a Docker endpoint beyond a container's fields.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// The sandbox Docker joined the endpoint to (a path in dockerd's mount
    /// namespace, never opened); `None` before Join and after Leave. While
    /// set, the veth pair exists and its container end is Docker's.
    pub sandbox_key: Option<String>,
}

impl Container {
    /// Are its TCP host ports held so that the runtime may listen on them
    /// (and its UDP ports left to the runtime)? Podman's conmon binds
    /// every published port itself after the CNI ADD.
    pub fn runtime_binds_ports(&self) -> bool {
        self.origin.as_deref() == Some(ORIGIN_CNI)
    }

    pub fn is_docker(&self) -> bool {
        self.docker.is_some()
    }

    pub fn owner(&self) -> Owner {
        if self.is_docker() {
            Owner::Docker
        } else {
            Owner::Netd
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub ip: Ipv4Addr,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Host end of the veth.
    pub host_ifname: String,
    pub aliases: Vec<String>,
    /// A MAC given on add/connect; `None`: derived from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
    /// The IPv6 address on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
}

impl Endpoint {
    /// The MAC of the container interface: given, else derived from the
    /// IPv4 address (the IPv6 one on an IPv6-only network).
    pub fn mac(&self) -> [u8; 6] {
        self.mac.unwrap_or_else(|| match (self.ip4(), self.ip6) {
            (None, Some(ip6)) => mac_for6(ip6),
            _ => mac_for(self.ip),
        })
    }

    /// The IPv4 address; `None` on an IPv6-only network (`ip` is 0.0.0.0).
    pub fn ip4(&self) -> Option<Ipv4Addr> {
        (!self.ip.is_unspecified()).then_some(self.ip)
    }
}

/// `02:42:` followed by the four address bytes, as Docker does (the
/// programs' rule: `netd_common::mac_for_addr`).
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    netd_common::mac_for_addr(ip.octets())
}

/// `02:42:` followed by the last four bytes of an IPv6 address: the MAC of
/// an endpoint (and bridge) on an IPv6-only network. Unique on a network
/// whose addresses differ in their last 32 bits (netd allocates from the
/// start of the subnet; a clash with a static `--ip6` is refused).
pub fn mac_for6(ip: Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[12], o[13], o[14], o[15]]
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); only unicast addresses.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    let ok = parts.len() == 6
        && parts
            .iter()
            .zip(mac.iter_mut())
            .all(|(p, b)| p.len() == 2 && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok());
    if !ok {
        return Err(format!(
            "invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"
        ));
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(format!("MAC address {s} is not a unicast address"));
    }
    Ok(mac)
}

/// An optional MAC of an API request, parsed.
pub fn requested_mac(s: Option<&str>) -> crate::error::AgentResult<Option<[u8; 6]>> {
    s.map(parse_mac)
        .transpose()
        .map_err(crate::error::AgentError::Invalid)
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A 64-hex-digit random id, like Docker's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}
