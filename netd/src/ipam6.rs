//! IPv6 address management: the host's ULA prefix and the /64s taken from
//! it (or from `--default-pool-v6`), and addresses for endpoints.
use std::{collections::HashSet, net::Ipv6Addr};

use ipnet::Ipv6Net;

use crate::error::{invalid, AgentError, AgentResult};

/// Prefix length of the subnets picked from a pool (as Docker: /64, what
/// SLAAC and most hosts expect).
pub const POOL_SUBNET_LEN: u8 = 64;
/// Smallest subnet a network may have: a gateway and a few containers.
const MAX_PREFIX_LEN: u8 = 124;
/// Subnets of one pool looked at before giving up (a /48 has 65536 /64s).
const MAX_CANDIDATES: u128 = 65_536;

/// The RFC 4193 prefix of a host: `fd` followed by the low 40 bits of
/// `global_id`, a /48.
pub fn ula_prefix(global_id: u64) -> Ipv6Net {
    let id = u128::from(global_id & 0xff_ffff_ffff);
    let addr = (0xfd_u128 << 120) | (id << 80);
    Ipv6Net::new(Ipv6Addr::from(addr), 48).expect("48 is a valid prefix length")
}

pub fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The subnets a pool offers, in order: its /64s, or the pool itself when
/// it is longer than a /64. At most [`MAX_CANDIDATES`].
fn candidates(pool: &Ipv6Net) -> impl Iterator<Item = Ipv6Net> + '_ {
    let len = pool.prefix_len().max(POOL_SUBNET_LEN);
    let count = 1u128
        .checked_shl(u32::from(len - pool.prefix_len()))
        .unwrap_or(u128::MAX)
        .min(MAX_CANDIDATES);
    let base = u128::from(pool.network());
    let step = 1u128.checked_shl(128 - u32::from(len)).unwrap_or(0);
    (0..count).filter_map(move |i| Ipv6Net::new(Ipv6Addr::from(base + i * step), len).ok())
}

/// The first subnet of `pools` that overlaps nothing in `taken`.
pub fn pick_subnet(pools: &[Ipv6Net], taken: &[Ipv6Net]) -> Option<Ipv6Net> {
    pools
        .iter()
        .flat_map(candidates)
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
}

/// Checks a user-given IPv6 subnet, gateway and range; returns the gateway
/// to use (the subnet's first address after the subnet-router anycast one
/// when none is given).
pub fn validate_network(
    subnet: &Ipv6Net,
    gateway: Option<Ipv6Addr>,
    ip_range: Option<&Ipv6Net>,
) -> AgentResult<Ipv6Addr> {
    if subnet.prefix_len() > MAX_PREFIX_LEN {
        return invalid(format!(
            "IPv6 subnet {subnet} is too small: a network needs at least a /{MAX_PREFIX_LEN}"
        ));
    }
    if subnet.network() != subnet.addr() {
        return invalid(format!(
            "IPv6 subnet {subnet} has host bits set; did you mean {}?",
            subnet.trunc()
        ));
    }
    let seg = subnet.addr().segments()[0];
    if seg & 0xffc0 == 0xfe80 || seg & 0xff00 == 0xff00 || subnet.prefix_len() == 0 {
        return invalid(format!(
            "IPv6 subnet {subnet} is not a unicast range (link-local and multicast cannot be a network's subnet)"
        ));
    }
    if let Some(range) = ip_range {
        if !subnet.contains(range) {
            return invalid(format!("ip-range {range} is not inside subnet {subnet}"));
        }
    }
    let gateway = gateway.unwrap_or_else(|| Ipv6Addr::from(u128::from(subnet.network()) + 1));
    if !is_host_address(subnet, gateway) {
        return invalid(format!(
            "gateway {gateway} is not a usable address in subnet {subnet}"
        ));
    }
    Ok(gateway)
}

/// Inside the subnet and not its subnet-router anycast address (all host
/// bits zero).
fn is_host_address(subnet: &Ipv6Net, addr: Ipv6Addr) -> bool {
    subnet.contains(&addr) && addr != subnet.network()
}

/// Picks an IPv6 address for an endpoint: `requested` if it is free and
/// inside the subnet, else the lowest free address in `ip_range` (or the
/// subnet).
pub fn allocate(
    subnet: &Ipv6Net,
    ip_range: Option<&Ipv6Net>,
    used: &HashSet<Ipv6Addr>,
    requested: Option<Ipv6Addr>,
) -> AgentResult<Ipv6Addr> {
    if let Some(ip) = requested {
        return crate::ipam::take_requested(ip, is_host_address(subnet, ip), used, subnet);
    }
    let range = ip_range.unwrap_or(subnet);
    let start = u128::from(range.network()).max(u128::from(subnet.network()) + 1);
    let end = u128::from(range.broadcast()).min(u128::from(subnet.broadcast()));
    // The lowest free address is at most `used.len()` steps from the start.
    let tries = used.len() as u128 + 1;
    (start..=end)
        .take(usize::try_from(tries).unwrap_or(usize::MAX))
        .map(Ipv6Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| AgentError::Conflict(format!("no free address left in {range}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ula_prefix_keeps_40_bits_of_the_id() {
        assert_eq!(ula_prefix(0), net("fd00::/48"));
        assert_eq!(ula_prefix(0x12_3456_789a), net("fd12:3456:789a::/48"));
        // Higher bits are ignored: it stays inside fd00::/8.
        assert_eq!(ula_prefix(u64::MAX), net("fdff:ffff:ffff::/48"));
    }

    #[test]
    fn pools_give_64s_skipping_taken_ones() {
        let ula = net("fd12:3456:789a::/48");
        assert_eq!(pick_subnet(&[ula], &[]), Some(net("fd12:3456:789a::/64")));
        let taken = [net("fd12:3456:789a::/64"), net("fd12:3456:789a:1::1/128")];
        assert_eq!(
            pick_subnet(&[ula], &taken),
            Some(net("fd12:3456:789a:2::/64"))
        );
        // A host route covering the whole pool leaves nothing in it.
        assert_eq!(pick_subnet(&[ula], &[net("fd12::/16")]), None);
        // A longer pool is used as it is; the next pool follows.
        let small = net("2001:db8::/80");
        assert_eq!(pick_subnet(&[small, ula], &[]), Some(small));
        assert_eq!(
            pick_subnet(&[small, ula], &[small]),
            Some(net("fd12:3456:789a::/64"))
        );
        // A huge pool is searched in bounded time.
        assert_eq!(
            pick_subnet(&[net("2001:db8::/32")], &[net("2001:db8::/48")]),
            None
        );
    }

    #[test]
    fn gateway_defaults_and_is_checked() {
        let s = net("fd00:1::/64");
        assert_eq!(validate_network(&s, None, None).unwrap(), ip("fd00:1::1"));
        assert!(validate_network(&s, Some(ip("fd00:2::1")), None).is_err());
        assert!(validate_network(&s, Some(ip("fd00:1::")), None).is_err());
        assert!(validate_network(&net("fd00:1::5/64"), None, None).is_err());
        assert!(validate_network(&net("fe80::/64"), None, None).is_err());
        assert!(validate_network(&net("ff02::/64"), None, None).is_err());
        assert!(validate_network(&net("fd00::/126"), None, None).is_err());
        assert!(validate_network(&s, None, Some(&net("fd00:2::/80"))).is_err());
        assert!(validate_network(&s, None, Some(&net("fd00:1::8000:0/96"))).is_ok());
    }

    #[test]
    fn allocation_is_lowest_free_in_range() {
        let subnet = net("fd00:1::/64");
        let mut used = HashSet::from([ip("fd00:1::1")]);
        assert_eq!(
            allocate(&subnet, None, &used, None).unwrap(),
            ip("fd00:1::2")
        );
        used.insert(ip("fd00:1::2"));
        assert_eq!(
            allocate(&subnet, None, &used, None).unwrap(),
            ip("fd00:1::3")
        );
        let range = net("fd00:1::100/120");
        assert_eq!(
            allocate(&subnet, Some(&range), &used, None).unwrap(),
            ip("fd00:1::100")
        );
        assert!(allocate(&subnet, None, &used, Some(ip("fd00:1::2"))).is_err());
        assert!(allocate(&subnet, None, &used, Some(ip("fd00:9::2"))).is_err());
        assert_eq!(
            allocate(&subnet, None, &used, Some(ip("fd00:1::99"))).unwrap(),
            ip("fd00:1::99")
        );
        let tiny = net("fd00::/127");
        let used = HashSet::from([ip("fd00::1")]);
        assert!(allocate(&tiny, None, &used, None).is_err());
    }
}
