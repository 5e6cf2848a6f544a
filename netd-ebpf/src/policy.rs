//! Isolation policy (SPEC section 4): which container may talk to whom.
//!
//! Pure functions of map values and addresses, so the rules read in one place
//! and the same code runs in both directions of the veth.
use netd_common::{DropReason, Endpoint, NetworkInfo, NET_F_ICC, NET_F_INTERNAL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop(DropReason),
}

#[inline(always)]
pub fn is_group_address(addr: u32) -> bool {
    let first = addr.to_ne_bytes()[0];
    addr == u32::MAX || (first & 0xf0) == 0xe0
}

/// Policy for what a container sends (`from_container`): `dst_net` is the
/// netd network whose subnet holds `dst`, if any.
#[inline(always)]
pub fn from_container(ep: &Endpoint, src: u32, dst: u32, dst_net: Option<&NetworkInfo>) -> Verdict {
    // An endpoint of an IPv6-only network (address 0) sends no IPv4.
    if src != ep.ip || ep.ip == 0 {
        return Verdict::Drop(DropReason::Spoofed);
    }
    if dst_net.is_none() && is_group_address(dst) {
        // Broadcast and multicast reach the other containers on the bridge.
        return if ep.net_flags & NET_F_ICC != 0 {
            Verdict::Pass
        } else {
            Verdict::Drop(DropReason::Icc)
        };
    }
    between(ep, dst, dst_net)
}

/// Policy for what a container receives (`to_container`): `src_net` is the
/// netd network whose subnet holds the source address, if any.
#[inline(always)]
pub fn to_container(ep: &Endpoint, src: u32, src_net: Option<&NetworkInfo>) -> Verdict {
    between(ep, src, src_net)
}

#[inline(always)]
fn between(ep: &Endpoint, peer: u32, peer_net: Option<&NetworkInfo>) -> Verdict {
    between_addrs(
        ep,
        ep.ip,
        ep.gateway,
        peer,
        peer_net.map(|n| (n.net_id, n.gateway)),
    )
}

/// The rule for traffic between a container (`own` address, its network's
/// `gateway`) and `peer` (either way), for either address family:
/// same network follows icc (the gateway and itself always pass); another
/// network's gateway is a host address (not for internal networks); any
/// other address of another network is isolated; outside netd networks only
/// internal networks are closed. `peer_net` is the (id, gateway) of the
/// netd network whose subnet holds `peer`.
#[inline(always)]
pub fn between_addrs<A: Copy + PartialEq>(
    ep: &Endpoint,
    own: A,
    gateway: A,
    peer: A,
    peer_net: Option<(u32, A)>,
) -> Verdict {
    let internal = ep.net_flags & NET_F_INTERNAL != 0;
    match peer_net {
        Some((id, _)) if id == ep.net_id => {
            if ep.net_flags & NET_F_ICC != 0 || peer == gateway || peer == own {
                Verdict::Pass
            } else {
                Verdict::Drop(DropReason::Icc)
            }
        }
        Some((_, gw)) if peer == gw && !internal => Verdict::Pass,
        Some(_) | None if internal => Verdict::Drop(DropReason::Internal),
        Some(_) => Verdict::Drop(DropReason::Isolation),
        None => Verdict::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netd_common::NET_F_MASQUERADE;

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    fn net(id: u32, gw: [u8; 4], flags: u32) -> NetworkInfo {
        NetworkInfo {
            net_id: id,
            gateway: ip(gw),
            flags,
            prefix_len: 16,
        }
    }

    fn ep(flags: u32) -> Endpoint {
        Endpoint {
            ip: ip([172, 18, 0, 2]),
            net_id: 1,
            net_flags: flags,
            gateway: ip([172, 18, 0, 1]),
            ..Default::default()
        }
    }

    const OPEN: u32 = NET_F_ICC | NET_F_MASQUERADE;

    #[test]
    fn same_network_follows_icc() {
        let n1 = net(1, [172, 18, 0, 1], OPEN);
        let a = ep(OPEN);
        let b = ip([172, 18, 0, 3]);
        assert_eq!(from_container(&a, a.ip, b, Some(&n1)), Verdict::Pass);
        let closed = ep(0);
        assert_eq!(
            from_container(&closed, a.ip, b, Some(&n1)),
            Verdict::Drop(DropReason::Icc)
        );
        assert_eq!(
            from_container(&closed, a.ip, closed.gateway, Some(&n1)),
            Verdict::Pass
        );
        assert_eq!(
            to_container(&closed, b, Some(&n1)),
            Verdict::Drop(DropReason::Icc)
        );
        assert_eq!(
            to_container(&closed, closed.gateway, Some(&n1)),
            Verdict::Pass
        );
    }

    #[test]
    fn other_network_is_isolated_but_its_gateway_is_host() {
        let n2 = net(2, [172, 19, 0, 1], OPEN);
        let a = ep(OPEN);
        let b = ip([172, 19, 0, 2]);
        assert_eq!(
            from_container(&a, a.ip, b, Some(&n2)),
            Verdict::Drop(DropReason::Isolation)
        );
        assert_eq!(
            to_container(&a, b, Some(&n2)),
            Verdict::Drop(DropReason::Isolation)
        );
        assert_eq!(
            from_container(&a, a.ip, n2.gateway, Some(&n2)),
            Verdict::Pass
        );
    }

    #[test]
    fn ipv6_only_endpoint_sends_no_ipv4() {
        let a = Endpoint {
            ip: 0,
            gateway: 0,
            ..ep(OPEN)
        };
        assert_eq!(
            from_container(&a, 0, ip([1, 1, 1, 1]), None),
            Verdict::Drop(DropReason::Spoofed)
        );
    }

    #[test]
    fn spoofed_source_is_dropped() {
        let a = ep(OPEN);
        assert_eq!(
            from_container(&a, ip([10, 0, 0, 1]), ip([1, 1, 1, 1]), None),
            Verdict::Drop(DropReason::Spoofed)
        );
    }

    #[test]
    fn internal_stays_in_subnet() {
        let a = ep(NET_F_INTERNAL | NET_F_ICC);
        let n2 = net(2, [172, 19, 0, 1], OPEN);
        assert_eq!(
            from_container(&a, a.ip, ip([8, 8, 8, 8]), None),
            Verdict::Drop(DropReason::Internal)
        );
        assert_eq!(
            from_container(&a, a.ip, n2.gateway, Some(&n2)),
            Verdict::Drop(DropReason::Internal)
        );
        assert_eq!(
            from_container(&a, a.ip, a.gateway, None),
            Verdict::Drop(DropReason::Internal)
        );
        assert_eq!(
            to_container(&a, ip([8, 8, 8, 8]), None),
            Verdict::Drop(DropReason::Internal)
        );
    }
}
