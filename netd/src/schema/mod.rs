//! The API's JSON, typed: request bodies and answers (networks,
//! containers, status, errors), defined once. The server answers with
//! these types, the CLI, netd-cni and the tests read them back with the
//! same types.
//!
//! Nothing here knows HTTP or the agent: the module uses only std, serde
//! and ipnet, so the test harness compiles these very files
//! (`tests/src/api.rs`). The field names are the wire contract
//! (Docker-like inspect shapes, which the Docker driver's users, netd-cni
//! and the tests read): rename nothing. New fields are added with
//! `#[serde(default)]` so that older answers still parse.
mod answers;
pub mod blank;
mod containers;
mod counters;
mod networks;
mod requests;
mod status;

pub use answers::{Created, ErrorBody, Problems, Pruned, Removed, ResolvConf};
pub use containers::{ContainerView, DockerView, EndpointView, PortView};
pub use counters::CountersView;
pub use networks::{IpamConfig, IpamView, NetworkContainer, NetworkView};
pub use requests::{ContainerAdd, Explain, NetworkConnect, NetworkCreate, NetworkDisconnect};
pub use status::{
    ClusterHost, ClusterStatus, ConntrackStatus, DnsStatus, EventsStatus, HostRoutingStatus,
    MapFill, OverlayDeviceStatus, OverlayStatus, ReconcileStatus, RemoteEndpointStatus, StatusView,
    UplinkStatus,
};

/// The API version prefix every route lives under.
pub const API_PREFIX: &str = "/v1";
