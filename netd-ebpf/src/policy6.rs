//! Isolation policy for IPv6 (SPEC section 4, the same rows as IPv4):
//! pure functions of map values and the packet's facts.
//!
//! - Global sources: only the endpoint's own IPv6 address; an endpoint
//!   without one (a network without IPv6) sends nothing beyond the link.
//! - Neighbour discovery and MLD pass whatever the addresses, where ARP
//!   does: their hop limit (255, 1) keeps them on the link, as receivers
//!   discard routed ones.
//! - Link-scoped traffic (link-local or unspecified source, link-local or
//!   multicast destination) stays on the bridge and follows icc, the
//!   gateway itself excepted.
//! - Between addresses of netd networks: the IPv4 rule (`between_addrs`).
//! - Router advertisements and redirects from containers are dropped.
use netd_common::{Addr6, DropReason, Endpoint, Endpoint6, NetworkInfo6, NET_F_ICC};

use crate::policy::{between_addrs, Verdict};

/// What the policy needs to know about an IPv6 packet.
pub struct Facts6 {
    pub src: Addr6,
    pub dst: Addr6,
    /// Neighbour discovery (RS, NS, NA with hop limit 255) or MLD (hop
    /// limit 1): what IPv6 needs where IPv4 has ARP.
    pub link_control: bool,
    /// A router advertisement or redirect.
    pub router_message: bool,
    /// The frame's other end is the bridge (its destination MAC leaving a
    /// container, its source MAC entering one).
    pub via_gateway: bool,
    /// The bridge's link-local address (EUI-64 of its MAC).
    pub gateway_ll: Addr6,
}

#[inline(always)]
fn first_bytes(a: Addr6) -> [u8; 4] {
    a[0].to_ne_bytes()
}

#[inline(always)]
pub fn is_unspecified(a: Addr6) -> bool {
    a == [0; 4]
}

/// fe80::/10.
#[inline(always)]
pub fn is_link_local(a: Addr6) -> bool {
    let b = first_bytes(a);
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// ff00::/8.
#[inline(always)]
pub fn is_multicast(a: Addr6) -> bool {
    first_bytes(a)[0] == 0xff
}

/// The EUI-64 link-local address of `mac`.
#[inline(always)]
pub fn eui64_link_local(mac: [u8; 6]) -> Addr6 {
    [
        u32::from_ne_bytes([0xfe, 0x80, 0, 0]),
        0,
        u32::from_ne_bytes([mac[0] ^ 0x02, mac[1], mac[2], 0xff]),
        u32::from_ne_bytes([0xfe, mac[3], mac[4], mac[5]]),
    ]
}

/// Traffic that stays on the link: the bridge's own link-local address,
/// everything else by icc.
#[inline(always)]
fn on_link(ep: &Endpoint, f: &Facts6, peer: Addr6) -> Verdict {
    if ep.net_flags & NET_F_ICC != 0 || f.via_gateway && peer == f.gateway_ll {
        Verdict::Pass
    } else {
        Verdict::Drop(DropReason::Icc)
    }
}

/// Policy for what a container sends. `dst_net` is the netd network whose
/// IPv6 subnet holds the destination.
#[inline(always)]
pub fn from_container6(
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    f: &Facts6,
    dst_net: Option<&NetworkInfo6>,
) -> Verdict {
    if f.router_message {
        return Verdict::Drop(DropReason::RouterMessage);
    }
    if f.link_control {
        return Verdict::Pass;
    }
    let link_dst = is_link_local(f.dst) || is_multicast(f.dst);
    if is_unspecified(f.src) {
        // Only duplicate address detection and MLD (above) have no address.
        return Verdict::Drop(DropReason::Spoofed);
    }
    if is_link_local(f.src) {
        // A link-local source is never routed off the link.
        return if link_dst {
            on_link(ep, f, f.dst)
        } else {
            Verdict::Drop(DropReason::Spoofed)
        };
    }
    let Some(ep6) = ep6 else {
        return Verdict::Drop(DropReason::NoIpv6);
    };
    if f.src != ep6.ip {
        return Verdict::Drop(DropReason::Spoofed);
    }
    if link_dst {
        return on_link(ep, f, f.dst);
    }
    between_addrs(
        ep,
        ep6.ip,
        ep6.gateway,
        f.dst,
        dst_net.map(|n| (n.net_id, n.gateway)),
    )
}

/// Policy for what a container receives. `src_net` is the netd network
/// whose IPv6 subnet holds the source.
#[inline(always)]
pub fn to_container6(
    ep: &Endpoint,
    ep6: Option<&Endpoint6>,
    f: &Facts6,
    src_net: Option<&NetworkInfo6>,
) -> Verdict {
    if f.link_control {
        return Verdict::Pass;
    }
    if is_unspecified(f.src) || is_link_local(f.src) {
        // The host (the bridge) may always talk to its containers.
        return if f.via_gateway {
            Verdict::Pass
        } else {
            on_link(ep, f, f.src)
        };
    }
    let Some(ep6) = ep6 else {
        return Verdict::Drop(DropReason::NoIpv6);
    };
    between_addrs(
        ep,
        ep6.ip,
        ep6.gateway,
        f.src,
        src_net.map(|n| (n.net_id, n.gateway)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netd_common::{addr6_from_octets, NET_F_INTERNAL, NET_F_MASQUERADE};

    fn a6(s: &str) -> Addr6 {
        addr6_from_octets(s.parse::<std::net::Ipv6Addr>().unwrap().octets())
    }

    const OPEN: u32 = NET_F_ICC | NET_F_MASQUERADE;
    const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 1];

    fn ep(flags: u32) -> Endpoint {
        Endpoint {
            ip: u32::from_ne_bytes([10, 1, 0, 2]),
            net_id: 1,
            net_flags: flags,
            gateway: u32::from_ne_bytes([10, 1, 0, 1]),
            ..Default::default()
        }
    }

    fn ep6() -> Endpoint6 {
        Endpoint6 {
            ip: a6("fd00:a::2"),
            gateway: a6("fd00:a::1"),
            gateway_mac: GW_MAC,
            _pad: [0; 2],
        }
    }

    fn net(id: u32, gw: &str, flags: u32) -> NetworkInfo6 {
        NetworkInfo6 {
            net_id: id,
            flags,
            prefix_len: 64,
            _pad: 0,
            gateway: a6(gw),
        }
    }

    fn facts(src: &str, dst: &str) -> Facts6 {
        Facts6 {
            src: a6(src),
            dst: a6(dst),
            link_control: false,
            router_message: false,
            via_gateway: false,
            gateway_ll: eui64_link_local(GW_MAC),
        }
    }

    #[test]
    fn eui64_of_the_bridge_mac() {
        assert_eq!(eui64_link_local(GW_MAC), a6("fe80::42:aff:fe01:1"));
    }

    #[test]
    fn networks_are_isolated_both_ways() {
        let (a, a6e) = (ep(OPEN), ep6());
        let n1 = net(1, "fd00:a::1", OPEN);
        let n2 = net(2, "fd00:b::1", OPEN);
        let same = facts("fd00:a::2", "fd00:a::3");
        assert_eq!(
            from_container6(&a, Some(&a6e), &same, Some(&n1)),
            Verdict::Pass
        );
        let cross = facts("fd00:a::2", "fd00:b::2");
        assert_eq!(
            from_container6(&a, Some(&a6e), &cross, Some(&n2)),
            Verdict::Drop(DropReason::Isolation)
        );
        let inbound = facts("fd00:b::2", "fd00:a::2");
        assert_eq!(
            to_container6(&a, Some(&a6e), &inbound, Some(&n2)),
            Verdict::Drop(DropReason::Isolation)
        );
        let other_gw = facts("fd00:a::2", "fd00:b::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &other_gw, Some(&n2)),
            Verdict::Pass
        );
        let world = facts("fd00:a::2", "2001:db8::1");
        assert_eq!(from_container6(&a, Some(&a6e), &world, None), Verdict::Pass);
    }

    #[test]
    fn icc_off_keeps_the_gateway_and_neighbour_discovery() {
        let (a, a6e) = (ep(NET_F_MASQUERADE), ep6());
        let n1 = net(1, "fd00:a::1", NET_F_MASQUERADE);
        let peer = facts("fd00:a::2", "fd00:a::3");
        assert_eq!(
            from_container6(&a, Some(&a6e), &peer, Some(&n1)),
            Verdict::Drop(DropReason::Icc)
        );
        let gw = facts("fd00:a::2", "fd00:a::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &gw, Some(&n1)),
            Verdict::Pass
        );
        let mut ns = facts("fe80::1", "ff02::1:ff00:3");
        assert_eq!(
            from_container6(&a, Some(&a6e), &ns, None),
            Verdict::Drop(DropReason::Icc)
        );
        ns.link_control = true;
        assert_eq!(from_container6(&a, Some(&a6e), &ns, None), Verdict::Pass);
        let mut ll_gw = facts("fe80::1", "fe80::42:aff:fe01:1");
        ll_gw.via_gateway = true;
        assert_eq!(from_container6(&a, Some(&a6e), &ll_gw, None), Verdict::Pass);
        // Sent to the bridge's MAC for another link-local address: the
        // host would route it back onto the bridge.
        let mut hairpin = facts("fe80::1", "fe80::2");
        hairpin.via_gateway = true;
        assert_eq!(
            from_container6(&a, Some(&a6e), &hairpin, None),
            Verdict::Drop(DropReason::Icc)
        );
        let ll_in = facts("fe80::2", "fe80::1");
        assert_eq!(
            to_container6(&a, Some(&a6e), &ll_in, None),
            Verdict::Drop(DropReason::Icc)
        );
        let mut from_host = facts("fe80::42:aff:fe01:1", "ff02::1");
        from_host.via_gateway = true;
        assert_eq!(
            to_container6(&a, Some(&a6e), &from_host, None),
            Verdict::Pass
        );
    }

    #[test]
    fn sources_are_checked() {
        let (a, a6e) = (ep(OPEN), ep6());
        let spoofed = facts("fd00:a::9", "2001:db8::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &spoofed, None),
            Verdict::Drop(DropReason::Spoofed)
        );
        let ll_off_link = facts("fe80::1", "2001:db8::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &ll_off_link, None),
            Verdict::Drop(DropReason::Spoofed)
        );
        let mut dad = facts("::", "ff02::1:ff00:2");
        assert_eq!(
            from_container6(&a, Some(&a6e), &dad, None),
            Verdict::Drop(DropReason::Spoofed)
        );
        dad.link_control = true;
        assert_eq!(from_container6(&a, Some(&a6e), &dad, None), Verdict::Pass);
        let mut ra = facts("fe80::1", "ff02::1");
        ra.router_message = true;
        assert_eq!(
            from_container6(&a, Some(&a6e), &ra, None),
            Verdict::Drop(DropReason::RouterMessage)
        );
    }

    #[test]
    fn without_ipv6_only_the_link() {
        let a = ep(OPEN);
        let n2 = net(2, "fd00:b::1", OPEN);
        let leak = facts("fd00:a::2", "fd00:b::2");
        assert_eq!(
            from_container6(&a, None, &leak, Some(&n2)),
            Verdict::Drop(DropReason::NoIpv6)
        );
        let world = facts("fd00:a::2", "2001:db8::1");
        assert_eq!(
            from_container6(&a, None, &world, None),
            Verdict::Drop(DropReason::NoIpv6)
        );
        let ll = facts("fe80::1", "fe80::2");
        assert_eq!(from_container6(&a, None, &ll, None), Verdict::Pass);
        // Neighbour discovery for the gateway, with a global source (the
        // address was set by hand), and the host's answer.
        let mut ns = facts("fd00:a::2", "ff02::1:ff00:1");
        ns.link_control = true;
        assert_eq!(from_container6(&a, None, &ns, None), Verdict::Pass);
        let mut na = facts("fd00:a::1", "fd00:a::2");
        na.link_control = true;
        assert_eq!(to_container6(&a, None, &na, None), Verdict::Pass);
        let inbound = facts("fd00:b::2", "fd00:a::2");
        assert_eq!(
            to_container6(&a, None, &inbound, Some(&n2)),
            Verdict::Drop(DropReason::NoIpv6)
        );
    }

    #[test]
    fn internal_stays_in_subnet() {
        let (a, a6e) = (ep(NET_F_INTERNAL | NET_F_ICC), ep6());
        let n1 = net(1, "fd00:a::1", NET_F_INTERNAL | NET_F_ICC);
        let n2 = net(2, "fd00:b::1", OPEN);
        let world = facts("fd00:a::2", "2001:db8::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &world, None),
            Verdict::Drop(DropReason::Internal)
        );
        let other_gw = facts("fd00:a::2", "fd00:b::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &other_gw, Some(&n2)),
            Verdict::Drop(DropReason::Internal)
        );
        let gw = facts("fd00:a::2", "fd00:a::1");
        assert_eq!(
            from_container6(&a, Some(&a6e), &gw, Some(&n1)),
            Verdict::Pass
        );
        let inbound = facts("2001:db8::1", "fd00:a::2");
        assert_eq!(
            to_container6(&a, Some(&a6e), &inbound, None),
            Verdict::Drop(DropReason::Internal)
        );
    }
}
