//! Program names: the functions of `netd-ebpf` the agent loads, pins and
//! attaches by name. A root-free test checks that the embedded object has
//! every one of them.

/// Ingress of a container's host-side veth (on the shared ingress block).
pub const FROM_CONTAINER: &str = "from_container";
/// Egress of a container's host-side veth (on the shared egress block).
pub const TO_CONTAINER: &str = "to_container";
/// `from_container`'s IPv6 forwarding with eBPF host routing, a program
/// of its own that `from_container` enters by tail call (slot
/// [`TAIL_FORWARD6`] of `TAILS`) once the policy passed the packet: the
/// verifier judges it apart, where inline it multiplied every state of
/// the IPv6 parse and policy (765,000 of the verifier's 1,000,000
/// instructions for `from_container`, about 150,000 without it).
pub const FROM_CONTAINER_FORWARD6: &str = "from_container_forward6";
/// Slots of the `TAILS` program array: which program the agent puts where.
pub const TAIL_FORWARD6: u32 = 0;
/// Capacity of `TAILS`.
pub const MAX_TAILS: u32 = 4;
/// Every tail-called program and its slot.
pub const TAIL_PROGRAMS: [(&str, u32); 1] = [(FROM_CONTAINER_FORWARD6, TAIL_FORWARD6)];
/// TCX ingress of an uplink.
pub const UPLINK_IN: &str = "uplink_in";
/// TCX egress of an uplink.
pub const UPLINK_OUT: &str = "uplink_out";
/// TCX ingress of the overlay's VXLAN device.
pub const OVERLAY_IN: &str = "overlay_in";
/// XDP on an uplink.
pub const UPLINK_XDP: &str = "uplink_xdp";
/// cgroup `connect4`, `sendmsg4`, `recvmsg4`, `getpeername4`.
pub const SOCK_CONNECT4: &str = "sock_connect4";
pub const SOCK_SENDMSG4: &str = "sock_sendmsg4";
pub const SOCK_RECVMSG4: &str = "sock_recvmsg4";
pub const SOCK_GETPEERNAME4: &str = "sock_getpeername4";
/// cgroup `connect6`, `sendmsg6`, `recvmsg6`, `getpeername6`.
pub const SOCK_CONNECT6: &str = "sock_connect6";
pub const SOCK_SENDMSG6: &str = "sock_sendmsg6";
pub const SOCK_RECVMSG6: &str = "sock_recvmsg6";
pub const SOCK_GETPEERNAME6: &str = "sock_getpeername6";

/// The shared TC filter blocks the endpoint programs sit on: the `clsact`
/// qdisc of every container's host-side veth is bound to both
/// (`from_container` on the ingress block, `to_container` on the egress
/// one). Block indexes are per network namespace.
pub const ENDPOINT_INGRESS_BLOCK: u32 = 0x6e64_0001;
pub const ENDPOINT_EGRESS_BLOCK: u32 = 0x6e64_0002;
/// The down, port-less bridge whose qdisc keeps both blocks (and the
/// programs on them) alive while no container runs, and its owner mark.
pub const BLOCK_HOLDER: &str = "netd-blocks";
pub const BLOCK_HOLDER_OWNER: &str = "blocks";
