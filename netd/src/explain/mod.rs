//! `netd explain SRC DST[:PORT][/PROTO]`: the datapath's own verdict for a
//! packet. The agent resolves both sides to addresses, builds the packet
//! (`packet`) and walks it through the loaded programs with
//! BPF_PROG_TEST_RUN on a private copy of the maps (`walk`,
//! `datapath::Sandbox`): live conntrack and counters are never touched.
pub mod packet;
mod walk;

pub use walk::{walk, Delivery, EndpointName, RemoteName, Start, Step, Topology, UplinkName, Walk};
