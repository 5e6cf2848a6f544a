//! Request bodies of the API.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// `POST /v1/networks`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    /// Dual stack: an IPv6 subnet too (`subnet6`, or a /64 of the pool).
    #[serde(default)]
    pub ipv6: bool,
    /// `Some(false)`: no IPv4 on the network (IPv6-only).
    #[serde(default)]
    pub ipv4: Option<bool>,
    #[serde(default)]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default)]
    pub ip_range6: Option<Ipv6Net>,
    #[serde(default)]
    pub internal: bool,
    pub icc: Option<bool>,
    pub masquerade: Option<bool>,
    pub mtu: Option<u32>,
    pub bridge: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `bridge` (the default) or `overlay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// `POST /v1/containers`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ContainerAdd {
    pub name: String,
    pub netns: PathBuf,
    /// A network name or id, or `none`, `host`, `container:OTHER`.
    pub network: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// A static IPv6 address (the network must have IPv6).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Publish specs, as `docker run -p`.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Interface name inside the container (default: the next free `ethN`).
    #[serde(default)]
    pub ifname: Option<String>,
    /// MAC of the container interface (default: `02:42:` + the address).
    #[serde(default)]
    pub mac: Option<String>,
    /// Who asked for the container (`cni` for netd-cni); shown by inspect.
    /// A `cni` container's TCP host ports are held so that the runtime may
    /// listen on them itself (podman's conmon does), its UDP ports not.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /v1/networks/NAME/connect`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NetworkConnect {
    pub container: String,
    pub ip: Option<Ipv4Addr>,
    /// A static IPv6 address (the network must have IPv6).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Interface name inside the container (default: the next free `ethN`).
    #[serde(default)]
    pub ifname: Option<String>,
    /// MAC of the new interface (default: `02:42:` + the address).
    #[serde(default)]
    pub mac: Option<String>,
}

/// `POST /v1/networks/NAME/disconnect`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NetworkDisconnect {
    pub container: String,
    /// Also unpublish the container's ports when they lead to this network
    /// (refused otherwise).
    #[serde(default)]
    pub unpublish: bool,
}

/// Body of `POST /v1/explain`: each side a container name, an address,
/// `world` or `host`; no port means ICMP echo, a port without a protocol
/// means TCP.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Explain {
    pub src: String,
    pub dst: String,
    pub port: Option<u16>,
    pub proto: Option<String>,
}
