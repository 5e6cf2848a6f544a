//! netd's kernel programs. Entry points live in one module per hook
//! (`endpoint`: the host end of container veths; `uplink` and `prefilter`:
//! the host's uplinks, `uplink6` their IPv6 side; `endpoint6` the IPv6
//! side of the veths; `overlay`: the VXLAN device; `sock`: host sockets);
//! the logic they share lives in one module per concern (`packet`, `parse`
//! and `parse6`, `policy` and `policy6`, `conntrack` and `conntrack6`,
//! `snat`, `nat` and `nat6` (with `csum`), `fragments`, `publish` and `publish6`, `redirect`, `forward` and
//! `fib` (host routing), `tunnel` and `arp` (overlay networks), `routing`
//! (its mode and counters), `maps`, `drops`, `events`, `counters`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod arp;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod conntrack6;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(any(target_arch = "bpf", test))]
mod csum;
#[cfg(target_arch = "bpf")]
mod drops;
#[cfg(target_arch = "bpf")]
mod endpoint;
#[cfg(target_arch = "bpf")]
mod endpoint6;
#[cfg(target_arch = "bpf")]
mod events;
#[cfg(target_arch = "bpf")]
mod fib;
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod fragments;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod nat;
#[cfg(target_arch = "bpf")]
mod nat6;
#[cfg(target_arch = "bpf")]
mod nd;
#[cfg(target_arch = "bpf")]
mod overlay;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod parse6;
#[cfg(any(target_arch = "bpf", test))]
mod policy;
#[cfg(any(target_arch = "bpf", test))]
mod policy6;
#[cfg(target_arch = "bpf")]
mod prefilter;
#[cfg(target_arch = "bpf")]
mod publish;
#[cfg(target_arch = "bpf")]
mod publish6;
#[cfg(target_arch = "bpf")]
mod redirect;
#[cfg(target_arch = "bpf")]
mod routing;
#[cfg(target_arch = "bpf")]
mod snat;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod tunnel;
#[cfg(target_arch = "bpf")]
mod uplink;
#[cfg(target_arch = "bpf")]
mod uplink6;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Host builds (clippy, unit tests of `policy`) have nothing to run.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
