//! The few per-netns sysctls the agent owns: forwarding in its own netns,
//! `disable_ipv6` of the interfaces it makes (bridges, container ends, and
//! the host ends of container veths, which are bridge ports only).
use anyhow::{Context, Result};

/// Turns on IPv4 forwarding in the agent's network namespace.
pub fn enable_ipv4_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
        .context("failed to enable net.ipv4.ip_forward")
}

const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// Turns on IPv6 forwarding in the agent's network namespace (as Docker
/// does once an IPv6 network exists).
pub fn enable_ipv6_forwarding() -> Result<()> {
    write_ipv6("all", "forwarding", "1")
}

/// Lets `ifname` (in the calling thread's network namespace) carry IPv6:
/// `disable_ipv6` 0, written only when it is not already.
pub fn enable_ipv6_on(ifname: &str) -> Result<()> {
    write_ipv6(ifname, "disable_ipv6", "0")
}

/// Turns IPv6 off on the bridge port `ifname` (the host end of a container
/// veth, still down) in the calling thread's netns: a port carries frames,
/// not addresses, and IPv6 on it would give each of them a link-local
/// address, duplicate address detection, MLD reports and routes in the
/// host's tables (thousands with a thousand containers, each route and
/// address dump the slower). Frames are bridged alike. Nothing to do on a
/// kernel without IPv6.
pub fn disable_ipv6_on_port(ifname: &str) -> Result<()> {
    write_ipv6_if_any(ifname, "disable_ipv6", "1")
}

/// Turns duplicate address detection off on netd's bridge `ifname`,
/// before it is up: while the link-local address the kernel gives it is
/// tentative (a second), the host sends no neighbour solicitation on it,
/// so its first IPv6 packets to a new network's containers waited that
/// long. The gateway addresses go on without DAD already, and the
/// link-local one derives from a MAC netd chose. Nothing to do on a
/// kernel without IPv6.
pub fn skip_dad_on_bridge(ifname: &str) -> Result<()> {
    write_ipv6_if_any(ifname, "accept_dad", "0")
}

/// [`enable_ipv6_on`] inside the network namespace `ns`, from a short-lived
/// thread (sysctls under /proc/sys/net are those of the thread's netns).
pub fn enable_ipv6_in(ns: &std::fs::File, ifname: &str) -> Result<()> {
    let ns = ns.try_clone()?;
    let ifname = ifname.to_string();
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("failed to enter the container's network namespace")?;
        enable_ipv6_on(&ifname)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sysctl thread panicked"))?
}

/// [`write_ipv6`] where the kernel has IPv6; nothing to do where not.
fn write_ipv6_if_any(dev: &str, key: &str, value: &str) -> Result<()> {
    if !std::path::Path::new(IPV6_CONF).exists() {
        return Ok(());
    }
    write_ipv6(dev, key, value)
}

fn write_ipv6(dev: &str, key: &str, value: &str) -> Result<()> {
    if !std::path::Path::new(IPV6_CONF).exists() {
        anyhow::bail!(
            "this kernel has IPv6 turned off (ipv6.disable=1 on its command line, or no ipv6 \
             module): networks with --ipv6 need it; boot without ipv6.disable or create the \
             network without --ipv6"
        );
    }
    let path = format!("{IPV6_CONF}/{dev}/{key}");
    let current =
        std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    if current.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).with_context(|| format!("failed to set {path} to {value}"))
}
