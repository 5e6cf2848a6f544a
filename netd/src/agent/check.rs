//! Comparing the kernel with what is stored for a container (CNI CHECK):
//! the veth's host end and its programs, the interface inside the netns
//! with its address and route, the published ports in the map.
use super::{publish::Hold, Agent};
use crate::{
    datapath::{addr6_key, addr_key, publish_key6},
    error::{AgentError, AgentResult},
    kernel::ContainerNetns,
    model::{Container, Endpoint, Mode, Network},
};

impl Agent {
    /// What is missing or different for container `key` (only its
    /// interface `ifname` when given); empty when all is in place.
    pub async fn check_container(
        &mut self,
        key: &str,
        ifname: Option<&str>,
    ) -> AgentResult<Vec<String>> {
        let c = self.find_container(key)?.clone();
        if c.mode != Mode::Bridge {
            return Ok(Vec::new());
        }
        let eps: Vec<(usize, Endpoint)> = c
            .endpoints
            .iter()
            .cloned()
            .enumerate()
            .filter(|(_, e)| ifname.is_none_or(|n| e.ifname == n))
            .collect();
        if let (Some(n), true) = (ifname, eps.is_empty()) {
            return Err(AgentError::NotFound(format!(
                "container {} has no interface {n}",
                c.name
            )));
        }
        let mut problems = Vec::new();
        let ns = match self.netns.open(&c.netns) {
            Ok(ns) => Some(ns),
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        };
        let indexes = self.datapath.endpoint_indexes()?;
        let host_ifnames: Vec<&str> = eps.iter().map(|(_, e)| e.host_ifname.as_str()).collect();
        let gaps = self.datapath.missing_endpoint_programs_of(&host_ifnames)?;
        for (i, ep) in &eps {
            let Some(net) = self.networks.get(&ep.network_id).cloned() else {
                problems.push(format!("{}: its network is gone", ep.ifname));
                continue;
            };
            match self.links.index_of(&ep.host_ifname).await? {
                None => problems.push(format!(
                    "host interface {} of {} is missing",
                    ep.host_ifname, ep.ifname
                )),
                Some(index) if !indexes.contains(&index) => problems.push(format!(
                    "{} is not in the datapath's endpoint map",
                    ep.host_ifname
                )),
                Some(_) => {}
            }
            for prog in gaps.get(&ep.host_ifname).into_iter().flatten() {
                problems.push(format!(
                    "program {prog} is not attached to {}",
                    ep.host_ifname
                ));
            }
            if let Some(ns) = &ns {
                let carries = super::gateways::Carries::of(&c.endpoints, ep);
                problems.extend(check_inside(ns.as_ref(), ep, &net, carries.v4).await?);
                problems.extend(check_inside6(ns.as_ref(), ep, &net, carries.v6).await?);
            }
            if *i == 0 {
                problems.extend(self.check_ports(&c, ep)?);
            }
        }
        Ok(problems)
    }

    /// Each mapping in the published map of its family (`PUBLISHED`,
    /// `PUBLISHED6`), leading to `target`'s address of that family.
    fn check_ports(&mut self, c: &Container, target: &Endpoint) -> AgentResult<Vec<String>> {
        let entries = self.datapath.published_entries()?;
        let entries6 = self.datapath.published6_entries()?;
        let hold = Hold::for_runtime(c.runtime_binds_ports());
        let mut problems = Vec::new();
        for m in &c.ports {
            let in_map = if m.is_ipv6() {
                let (key, addr) = (publish_key6(m), target.ip6.map(addr6_key));
                entries6.iter().any(|(k, t)| {
                    *k == key && Some(t.addr) == addr && t.port == m.container_port.to_be()
                })
            } else {
                let key = (
                    m.host_v4().map(addr_key).unwrap_or(0),
                    m.host_port.to_be(),
                    m.proto.number(),
                );
                let addr = target.ip4().map(addr_key);
                entries.iter().any(|(k, t)| {
                    (k.addr, k.port, k.proto) == key
                        && Some(t.addr) == addr
                        && t.port == m.container_port.to_be()
                })
            };
            if !in_map {
                problems.push(format!("published port {m} is not in the datapath"));
            }
            // A runtime that binds its ports (conmon) may hold them itself,
            // e.g. after an agent restart found them listened on.
            if hold == Hold::Exclusive && hold.holds(m) && !self.reservations.holds(m) {
                problems.push(format!("host port of {m} is not held"));
            }
        }
        Ok(problems)
    }
}

/// The container side of one endpoint.
async fn check_inside(
    ns: &dyn ContainerNetns,
    ep: &Endpoint,
    net: &Network,
    default_route: bool,
) -> AgentResult<Vec<String>> {
    let mut problems = Vec::new();
    let Some(state) = ns.interface_state(&ep.ifname).await? else {
        return Ok(vec![format!(
            "interface {} is missing in the container",
            ep.ifname
        )]);
    };
    if !state.up {
        problems.push(format!("interface {} is down", ep.ifname));
    }
    // An IPv6-only endpoint: its IPv6 side is checked by `check_inside6`.
    if ep.ip4().is_none() {
        return Ok(problems);
    }
    let want = format!("{}/{}", ep.ip, net.subnet.prefix_len());
    if !state.addrs.iter().any(|a| a.to_string() == want) {
        problems.push(format!("interface {} lacks address {want}", ep.ifname));
    }
    if default_route && state.default_gateway != Some(net.gateway) {
        problems.push(format!(
            "no default route via {} on {}",
            net.gateway, ep.ifname
        ));
    }
    Ok(problems)
}

/// The IPv6 side of one endpoint (nothing to check without one).
async fn check_inside6(
    ns: &dyn ContainerNetns,
    ep: &Endpoint,
    net: &Network,
    default_route: bool,
) -> AgentResult<Vec<String>> {
    let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipv6) else {
        return Ok(Vec::new());
    };
    // A missing interface is reported by the IPv4 check.
    let Some((addrs, gateway)) = ns.ipv6_state(&ep.ifname).await? else {
        return Ok(Vec::new());
    };
    let mut problems = Vec::new();
    let want = format!("{ip6}/{}", v6.subnet.prefix_len());
    if !addrs.iter().any(|a| a.to_string() == want) {
        problems.push(format!("interface {} lacks address {want}", ep.ifname));
    }
    if default_route && gateway != Some(v6.gateway) {
        problems.push(format!(
            "no IPv6 default route via {} on {}",
            v6.gateway, ep.ifname
        ));
    }
    Ok(problems)
}
