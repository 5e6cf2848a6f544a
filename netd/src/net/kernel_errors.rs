//! Kernel limits in the user's terms: a netlink or OS error whose raw text
//! ("Received a netlink error message Exchange full (os error 54)") says
//! nothing to a user becomes a sentence about what happened and what to do.
use crate::model::Network;

/// The most ports a Linux bridge holds (`BR_MAX_PORTS` - 1: port numbers
/// are 10 bits and 0 is reserved).
pub const BRIDGE_MAX_PORTS: usize = 1023;

const EPERM: i32 = 1;
const ENOMEM: i32 = 12;
const EEXIST: i32 = 17;
const ENOSPC: i32 = 28;
const EXFULL: i32 = 54;
const EADDRINUSE: i32 = 98;

/// The errno of the first netlink or OS error in `err`'s chain.
pub fn errno(err: &anyhow::Error) -> Option<i32> {
    err.chain().find_map(|cause| {
        if let Some(rtnetlink::Error::NetlinkError(msg)) = cause.downcast_ref::<rtnetlink::Error>()
        {
            return msg.code.map(|c| -c.get());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cause.downcast_ref::<nix::errno::Errno>().map(|e| *e as i32)
    })
}

/// Rewrites an error of attaching a container to `net` (veth, bridge port,
/// addresses, routes) when the kernel's answer is a known limit.
pub fn explain_plumbing(err: anyhow::Error, net: &Network) -> anyhow::Error {
    let sentence = match errno(&err) {
        Some(EXFULL) => format!(
            "network {} is full: its bridge {} already has {BRIDGE_MAX_PORTS} ports, the most \
             a Linux bridge holds; put further containers on another network \
             (`netd network create NAME`, then `--network NAME`)",
            net.name, net.bridge
        ),
        Some(ENOSPC | ENOMEM) => format!(
            "the kernel is out of memory or space for another interface on network {} \
             ({}); remove unused containers or raise the limits",
            net.name,
            raw(&err)
        ),
        Some(EEXIST) => format!(
            "an interface with a name netd needs already exists ({}); remove it or \
             restart the agent, which removes what it left behind",
            raw(&err)
        ),
        Some(EPERM) => format!(
            "the kernel refused ({}): the agent needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            raw(&err)
        ),
        Some(EADDRINUSE) => format!("an address is already in use ({})", raw(&err)),
        _ => return err,
    };
    anyhow::anyhow!(sentence)
}

fn raw(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_found_through_context() {
        let io = std::io::Error::from_raw_os_error(EXFULL);
        let e = anyhow::Error::new(io).context("failed to create nd0123");
        assert_eq!(errno(&e), Some(EXFULL));
        let e = anyhow::Error::new(nix::errno::Errno::ENOSPC).context("x");
        assert_eq!(errno(&e), Some(ENOSPC));
        assert_eq!(errno(&anyhow::anyhow!("plain")), None);
    }
}
