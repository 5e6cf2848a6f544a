//! Hermetic test harness for netd.
//!
//! Every [`Bed`] owns a private "host" network namespace with its own netd
//! agent (own state, run and bpffs directories under `/tmp/netd-test-<id>`),
//! plus the container namespaces a test creates. Dropping the bed kills the
//! agent, deletes every namespace (which removes every interface in them),
//! unmounts the bpffs and removes the directory — also when the test panics,
//! in which case the agent log and the CLI transcript are printed.
//!
//! Nothing here touches the real host's interfaces, routes, firewall or
//! sysctls: all addresses, links, routes and (with `NETD_TEST_FIREWALL`,
//! [`firewall`]) netfilter rules live in namespaces the bed created.

/// The API's request and answer types: the very files netd compiles
/// (`netd/src/schema/`), so that the tests read inspect and status with
/// the types the server writes them with.
#[path = "../../netd/src/schema/mod.rs"]
pub mod api;
pub mod bed;
pub mod capture;
pub mod cluster;
pub mod cmd;
pub mod cni;
pub mod docker;
pub mod echo_watch;
pub mod firewall;
pub mod host_client;
pub mod http;
pub mod long_udp;
pub mod names;
pub mod netns;
pub mod one_port;
pub mod ports;
pub mod runtimes;
pub mod traffic;
pub mod wait;
pub mod world;

pub use bed::{Bed, Ctr, Snapshot};
pub use firewall::Firewall;
pub use traffic::{
    blocked, blocked_both, dropped, icmp, no_icmp, no_tcp, no_udp, reach, reach_both, tcp, udp, Ep,
};
