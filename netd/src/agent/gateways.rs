//! Which endpoint of a container each default route leaves by, as Docker
//! 28 picks its gateway endpoints per address family: the IPv4 default
//! route by the first endpoint (in connect order) with an IPv4 address,
//! the IPv6 one by the first with an IPv6 address. A container whose first
//! network is IPv6-only thus gets its IPv4 default route from the first
//! IPv4 network it is connected to, and when the endpoint carrying a
//! family's route leaves, the next one with that family takes it over.
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Agent;
use crate::{
    kernel::NetnsDriver,
    model::{Container, Endpoint},
};

/// The default routes an endpoint carries: (IPv4, IPv6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Carries {
    pub v4: bool,
    pub v6: bool,
}

impl Carries {
    /// What `ep` carries among `eps` (a container's endpoints in connect
    /// order): `ep` one of them, or a new one to come after them.
    pub(super) fn of(eps: &[Endpoint], ep: &Endpoint) -> Self {
        let before = || eps.iter().take_while(|e| e.host_ifname != ep.host_ifname);
        Carries {
            v4: ep.ip4().is_some() && before().all(|e| e.ip4().is_none()),
            v6: ep.ip6.is_some() && before().all(|e| e.ip6.is_none()),
        }
    }
}

/// Where the default routes of a container go after one endpoint left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Moves {
    /// (interface, gateway) for IPv4, when the leaver carried it and
    /// another endpoint has IPv4.
    pub v4: Option<(String, Ipv4Addr)>,
    pub v6: Option<(String, Ipv6Addr)>,
}

impl Agent {
    /// What `ep` of container `owner` carries (a container not stored yet
    /// has no other endpoints).
    pub(super) fn carries_default_routes(&self, owner: &str, ep: &Endpoint) -> Carries {
        match self.containers.get(owner) {
            Some(c) => Carries::of(&c.endpoints, ep),
            None => Carries::of(&[], ep),
        }
    }

    /// After an endpoint that carried `carried` left `c` (`c` without
    /// it): the endpoints taking over those families' default routes.
    pub(super) fn default_route_moves(&self, c: &Container, carried: Carries) -> Moves {
        let v4 = carried
            .v4
            .then(|| {
                c.endpoints.iter().find_map(|e| {
                    e.ip4()?;
                    let net = self.networks.get(&e.network_id)?;
                    net.has_ipv4().then(|| (e.ifname.clone(), net.gateway))
                })
            })
            .flatten();
        let v6 = carried
            .v6
            .then(|| {
                c.endpoints.iter().find_map(|e| {
                    e.ip6?;
                    let v6 = self.networks.get(&e.network_id)?.ipv6.as_ref()?;
                    Some((e.ifname.clone(), v6.gateway))
                })
            })
            .flatten();
        Moves { v4, v6 }
    }
}

/// Points the default routes of `c` where `moves` says (each failure
/// logged: the endpoint is gone already, the container keeps working on
/// its other routes).
pub(super) async fn apply_moves(netns: &dyn NetnsDriver, c: &Container, moves: Moves) {
    if moves == Moves::default() {
        return;
    }
    let ns = match netns.open(&c.netns) {
        Ok(ns) => ns,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "default routes not moved");
            return;
        }
    };
    if let Some((ifname, gw)) = moves.v4 {
        if let Err(e) = ns.set_default_route(&ifname, gw).await {
            tracing::warn!(error = %format!("{e:#}"), "IPv4 default route not moved");
        }
    }
    if let Some((ifname, gw)) = moves.v6 {
        if let Err(e) = ns.set_default_route6(&ifname, gw).await {
            tracing::warn!(error = %format!("{e:#}"), "IPv6 default route not moved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, v4: bool, v6: bool) -> Endpoint {
        Endpoint {
            network_id: "n".into(),
            ip: if v4 {
                Ipv4Addr::new(10, 0, 0, 2)
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            ip6: v6.then(|| "fd00::2".parse().unwrap()),
            ifname: host.into(),
            host_ifname: host.into(),
            aliases: Vec::new(),
            mac: None,
        }
    }

    fn carries(eps: &[Endpoint], i: usize) -> (bool, bool) {
        let c = Carries::of(eps, &eps[i]);
        (c.v4, c.v6)
    }

    #[test]
    fn each_family_by_the_first_endpoint_that_has_it() {
        // IPv6-only first, then IPv4-only, then dual stack.
        let eps = [
            ep("a", false, true),
            ep("b", true, false),
            ep("c", true, true),
        ];
        assert_eq!(carries(&eps, 0), (false, true));
        assert_eq!(carries(&eps, 1), (true, false));
        assert_eq!(carries(&eps, 2), (false, false));
        // Dual stack first carries both.
        let eps = [
            ep("a", true, true),
            ep("b", true, false),
            ep("c", false, true),
        ];
        assert_eq!(carries(&eps, 0), (true, true));
        assert_eq!(carries(&eps, 1), (false, false));
        assert_eq!(carries(&eps, 2), (false, false));
        // A new endpoint after the stored ones.
        let stored = [ep("a", false, true)];
        let new = ep("b", true, true);
        assert_eq!(
            Carries::of(&stored, &new),
            Carries {
                v4: true,
                v6: false
            }
        );
        assert_eq!(Carries::of(&[], &new), Carries { v4: true, v6: true });
    }
}
