//! Address management: subnet pools for new networks, addresses for
//! endpoints.
use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::Ipv4Net;

use crate::error::{conflict, invalid, AgentResult};

/// The default network's preferred subnet.
pub fn default_bridge_subnet() -> Ipv4Net {
    "172.17.0.0/16".parse().expect("valid literal")
}

/// Subnets tried, in order, for networks created without `--subnet`:
/// 172.18.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 steps.
pub fn default_pools() -> Vec<Ipv4Net> {
    let mut pools: Vec<Ipv4Net> = (18..=31)
        .map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid prefix"))
        .collect();
    pools.extend(
        (0..16)
            .map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).expect("valid prefix")),
    );
    pools
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first candidate that overlaps nothing in `taken`.
pub fn pick_subnet(candidates: &[Ipv4Net], taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    candidates
        .iter()
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
        .copied()
}

/// Checks a user-given subnet, gateway and range; returns the gateway to use
/// (the first host address when none is given).
pub fn validate_network(
    subnet: &Ipv4Net,
    gateway: Option<Ipv4Addr>,
    ip_range: Option<&Ipv4Net>,
) -> AgentResult<Ipv4Addr> {
    if subnet.prefix_len() > 30 {
        return invalid(format!(
            "subnet {subnet} is too small: a network needs at least a /30"
        ));
    }
    if subnet.network() != subnet.addr() {
        return invalid(format!(
            "subnet {subnet} has host bits set; did you mean {}?",
            subnet.trunc()
        ));
    }
    if let Some(range) = ip_range {
        if !subnet.contains(range) {
            return invalid(format!("ip-range {range} is not inside subnet {subnet}"));
        }
    }
    let gateway = match gateway {
        Some(gw) => gw,
        None => first_host(subnet),
    };
    if !is_host_address(subnet, gateway) {
        return invalid(format!(
            "gateway {gateway} is not a usable address in subnet {subnet}"
        ));
    }
    Ok(gateway)
}

fn first_host(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

fn is_host_address(subnet: &Ipv4Net, addr: Ipv4Addr) -> bool {
    subnet.contains(&addr) && addr != subnet.network() && addr != subnet.broadcast()
}

/// A requested address (of either family): refused when it is not
/// `usable` in `subnet` or already `used`.
pub(crate) fn take_requested<A>(
    ip: A,
    usable: bool,
    used: &HashSet<A>,
    subnet: &impl std::fmt::Display,
) -> AgentResult<A>
where
    A: std::hash::Hash + Eq + std::fmt::Display,
{
    if !usable {
        return invalid(format!(
            "address {ip} is not a usable address in subnet {subnet}"
        ));
    }
    if used.contains(&ip) {
        return conflict(format!("address {ip} is already in use"));
    }
    Ok(ip)
}

/// Picks an address for an endpoint: `requested` if it is free and inside the
/// subnet, else the lowest free address in `ip_range` (or the subnet).
pub fn allocate(
    subnet: &Ipv4Net,
    ip_range: Option<&Ipv4Net>,
    used: &HashSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> AgentResult<Ipv4Addr> {
    if let Some(ip) = requested {
        return take_requested(ip, is_host_address(subnet, ip), used, subnet);
    }
    let range = ip_range.unwrap_or(subnet);
    let start = u32::from(range.network()).max(u32::from(subnet.network()) + 1);
    let end = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()) - 1);
    (start..=end)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            crate::error::AgentError::Conflict(format!("no free address left in {range}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn pools_skip_taken_subnets() {
        let taken = [net("172.18.0.0/16"), net("172.19.5.0/24")];
        assert_eq!(
            pick_subnet(&default_pools(), &taken),
            Some(net("172.20.0.0/16"))
        );
        assert_eq!(default_pools().len(), 30);
        assert_eq!(default_pools()[29], net("192.168.240.0/20"));
    }

    #[test]
    fn gateway_defaults_and_is_checked() {
        assert_eq!(
            validate_network(&net("10.1.0.0/24"), None, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 1)
        );
        assert!(
            validate_network(&net("10.1.0.0/24"), Some(Ipv4Addr::new(10, 2, 0, 1)), None).is_err()
        );
        assert!(validate_network(
            &net("10.1.0.0/24"),
            Some(Ipv4Addr::new(10, 1, 0, 255)),
            None
        )
        .is_err());
        assert!(validate_network(&net("10.1.0.5/24"), None, None).is_err());
        assert!(validate_network(&net("10.1.0.0/24"), None, Some(&net("10.2.0.0/25"))).is_err());
    }

    #[test]
    fn allocation_is_lowest_free_in_range() {
        let subnet = net("10.1.0.0/24");
        let mut used = HashSet::from([Ipv4Addr::new(10, 1, 0, 1)]);
        assert_eq!(
            allocate(&subnet, None, &used, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 2)
        );
        used.insert(Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(
            allocate(&subnet, None, &used, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 3)
        );
        let range = net("10.1.0.128/25");
        assert_eq!(
            allocate(&subnet, Some(&range), &used, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 128)
        );
        assert!(allocate(&subnet, None, &used, Some(Ipv4Addr::new(10, 1, 0, 2))).is_err());
        assert!(allocate(&subnet, None, &used, Some(Ipv4Addr::new(10, 9, 0, 2))).is_err());
        let tiny = net("10.1.0.0/30");
        let used = HashSet::from([Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2)]);
        assert!(allocate(&tiny, None, &used, None).is_err());
    }
}
