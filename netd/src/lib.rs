//! netd: Docker-style container networking with an eBPF datapath.
//!
//! - `model`: networks, containers and endpoints as stored.
//! - `ipam`, `ipam6`: subnet pools and address allocation (IPv4, IPv6).
//! - `store`: the embedded transactional store (redb).
//! - `cluster`: overlay networks shared through etcd.
//! - `net`: rtnetlink work (bridges, veths, container netns).
//! - `datapath`: loading, pinning and feeding the eBPF programs.
//! - `kernel`: the seam between the agent and the kernel (datapath, host
//!   links, container netns, host ports), with an in-memory fake for tests.
//! - `agent`: the operations behind the API, one file per concern.
//! - `schema`: the API's request and answer types (no HTTP, no agent).
//! - `api`: the versioned HTTP/JSON API on a Unix socket, and its client.
//! - `docker`: the Docker remote network driver on its own Unix socket.
//! - `cli`: the `netd` command line.
//! - `cni`: the `netd-cni` CNI plugin, a client of the same API.
pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod error;
pub mod explain;
pub mod fault;
pub mod ipam;
pub mod ipam6;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod net;
pub mod ports;
pub mod schema;
pub mod store;

/// The git revision netd was built from (`unknown` outside a checkout).
pub const GIT_REVISION: &str = env!("NETD_GIT_REVISION");

/// The hash of every file netd is built from (`netd/source_hash.rs`); the
/// test harness refuses a binary whose hash is not that of its sources.
pub const SOURCE_HASH: &str = env!("NETD_SOURCE_HASH");
