//! What the cluster store holds, one JSON value per key (see `keys`).
use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A record as the store holds it (JSON).
pub fn value<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// An overlay network as every host sees it (`networks/<id>`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub icc: bool,
    pub masquerade: bool,
    /// `None`: each host's underlay MTU less the encapsulation.
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: String,
    /// The host that created it (for people).
    pub created_by: String,
}

/// A host of the cluster (`hosts/<id>`, on the host's lease: it goes when
/// the host stops renewing it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    pub hostname: String,
    /// Its tunnel (underlay) address: where VXLAN packets for its
    /// endpoints go.
    pub address: Ipv4Addr,
    /// When this registration started (RFC 3339).
    pub since: String,
}

/// An address taken on an overlay network (`addresses/<net>/<ip>`); kept
/// until the endpoint is removed, whatever happens to the host's lease, so
/// an address is never given twice.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressClaim {
    pub host: String,
    pub container_id: String,
}

/// A container's endpoint on an overlay network (`endpoints/<net>/<ip>`,
/// on its host's lease).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointRecord {
    pub network_id: String,
    pub host: String,
    pub container_id: String,
    pub container: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    #[serde(default)]
    pub aliases: Vec<String>,
}
