//! rtnetlink work: bridges and veths in the agent's netns, and the container
//! side of each veth inside the container's netns. No shelling out.
pub mod container_ns;
pub mod ipv6;
pub mod kernel_errors;
pub mod links;
pub mod rtnl_sync;
pub mod sysctl;
pub mod vxlan;

pub use container_ns::ContainerNs;
pub use links::{HostLinks, LinkRow};
