//! The few per-netns sysctls the agent owns (its own netns only).
use anyhow::{Context, Result};

/// Turns on IPv4 forwarding in the agent's network namespace.
pub fn enable_ipv4_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
        .context("failed to enable net.ipv4.ip_forward")
}
