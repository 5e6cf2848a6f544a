//! The IPv6 side of networks and endpoints: subnets from the ULA prefix
//! (or `--default-pool-v6`), addresses for endpoints.
use std::{collections::HashSet, net::Ipv6Addr};

use anyhow::Result;
use ipnet::Ipv6Net;
use netd_common::{Endpoint6, NetworkInfo6};

use super::Agent;
use crate::{
    datapath::addr6_key,
    error::{conflict, invalid, AgentError, AgentResult},
    ipam6,
    model::{Endpoint, Ipv6Config, Network},
    schema::NetworkCreate,
    store::StoreOp,
};

/// A network's `NETWORKS6` entry: the same datapath id and flags as its
/// IPv4 one.
fn network_info6(net: &Network, v6: &Ipv6Config) -> NetworkInfo6 {
    NetworkInfo6 {
        net_id: net.datapath_id,
        flags: super::endpoints::network_flags(net),
        prefix_len: u32::from(v6.subnet.prefix_len()),
        _pad: 0,
        gateway: addr6_key(v6.gateway),
    }
}

impl Agent {
    /// Writes the network's IPv6 subnet to the datapath (nothing for an
    /// IPv4-only network).
    pub(super) fn publish_network6(&mut self, net: &Network) -> Result<()> {
        match &net.ipv6 {
            Some(v6) => self
                .datapath
                .upsert_network6(v6.subnet, network_info6(net, v6)),
            None => Ok(()),
        }
    }

    /// Gives the endpoint behind `ifindex` its IPv6 entry (after its
    /// `ENDPOINTS` entry, before its veth comes up), or takes a stale one
    /// away: without an entry the programs keep its IPv6 on the link.
    pub(super) fn publish_endpoint6(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        ifindex: u32,
    ) -> Result<()> {
        match (ep.ip6, &net.ipv6) {
            (Some(ip6), Some(v6)) => self.datapath.set_endpoint6(
                ifindex,
                Endpoint6 {
                    ip: addr6_key(ip6),
                    gateway: addr6_key(v6.gateway),
                    gateway_mac: net.bridge_mac(),
                    _pad: [0; 2],
                },
            ),
            _ => self.datapath.remove_endpoint6(ifindex),
        }
    }

    /// Reconcile: removes `NETWORKS6` subnets no network has and
    /// `ENDPOINT6` entries whose endpoint has no `ENDPOINTS` entry.
    pub(super) fn remove_stale6(&mut self) -> Result<()> {
        let wanted: HashSet<Ipv6Net> = self
            .networks
            .values()
            .filter_map(|n| n.ipv6.as_ref().map(|v6| v6.subnet))
            .collect();
        for subnet in self.datapath.network6_subnets()? {
            if !wanted.contains(&subnet) {
                self.datapath.remove_network6(subnet)?;
                self.repaired(format!("removed stale datapath network {subnet}"));
            }
        }
        let endpoints: HashSet<u32> = self.datapath.endpoint_indexes()?.into_iter().collect();
        for index in self.datapath.endpoint6_indexes()? {
            if !endpoints.contains(&index) {
                self.datapath.remove_endpoint6(index)?;
                self.repaired(format!("removed orphan IPv6 endpoint entry {index}"));
            }
        }
        Ok(())
    }

    /// The IPv6 side a network create asks for (`None`: IPv4 only);
    /// `routes6`: the host's IPv6 route prefixes.
    pub(super) fn plan_ipv6(
        &self,
        req: &NetworkCreate,
        routes6: &[Ipv6Net],
    ) -> AgentResult<Option<Ipv6Config>> {
        if req.ipv4 == Some(false) && !req.ipv6 {
            return invalid("a network needs IPv4 or IPv6: --ipv4=false needs --ipv6");
        }
        if !req.ipv6 {
            if req.subnet6.is_some() || req.gateway6.is_some() || req.ip_range6.is_some() {
                return invalid("an IPv6 --subnet, --gateway or --ip-range needs --ipv6");
            }
            return Ok(None);
        }
        let taken = self.taken_subnets6(routes6);
        let subnet = match req.subnet6 {
            Some(subnet) => {
                let clash = self
                    .networks
                    .values()
                    .filter_map(|n| Some((n, n.ipv6.as_ref()?)))
                    .find(|(_, v6)| ipam6::overlaps(&v6.subnet, &subnet))
                    .map(|(n, v6)| format!("network {} ({})", n.name, v6.subnet))
                    .or_else(|| {
                        self.claimed()
                            .subnets6()
                            .find(|t| ipam6::overlaps(t, &subnet))
                            .map(|t| format!("a network being created ({t})"))
                    })
                    .or_else(|| {
                        taken
                            .iter()
                            .find(|t| ipam6::overlaps(t, &subnet))
                            .map(|t| format!("a host route to {t}"))
                    });
                if let Some(clash) = clash {
                    return conflict(format!("subnet {subnet} overlaps {clash}"));
                }
                subnet
            }
            None => {
                if req.gateway6.is_some() || req.ip_range6.is_some() {
                    return invalid("an IPv6 --gateway or --ip-range needs an IPv6 --subnet");
                }
                ipam6::pick_subnet(&self.pools6()?, &taken).ok_or_else(|| {
                    AgentError::Conflict(
                        "every IPv6 subnet of the default pools is in use or routed on the host; give an IPv6 --subnet or more --default-pool-v6".into(),
                    )
                })?
            }
        };
        let gateway = ipam6::validate_network(&subnet, req.gateway6, req.ip_range6.as_ref())?;
        Ok(Some(Ipv6Config {
            subnet,
            gateway,
            ip_range: req.ip_range6,
        }))
    }

    /// `--ipv6` on an agent whose default network was made without it:
    /// the network gets an IPv6 subnet (and its gateway on the bridge);
    /// containers attached before keep IPv4 only until attached again.
    pub(super) async fn default_network_ipv6(&mut self) -> Result<()> {
        let Some(mut net) = self
            .networks
            .values()
            .find(|n| n.is_default() && n.ipv6.is_none())
            .cloned()
        else {
            return Ok(());
        };
        let req = NetworkCreate {
            ipv6: true,
            ..Default::default()
        };
        let routes6 = self.links.route_prefixes6().await?;
        net.ipv6 = self.plan_ipv6(&req, &routes6)?;
        self.realise_network(&net).await?;
        self.store.apply(&[StoreOp::PutNetwork(&net)])?;
        if let Some(v6) = &net.ipv6 {
            tracing::info!(subnet = %v6.subnet, "the default network has IPv6 now (--ipv6)");
        }
        self.networks.insert(net.id.clone(), net);
        Ok(())
    }

    /// IPv6 subnets a new network must not overlap: netd's, those of
    /// networks being created, and the host's routes `routes6`
    /// (link-local and multicast ones left out).
    fn taken_subnets6(&self, routes6: &[Ipv6Net]) -> Vec<Ipv6Net> {
        let mut taken: Vec<_> = self
            .networks
            .values()
            .filter_map(|n| n.ipv6.as_ref().map(|v6| v6.subnet))
            .collect();
        taken.extend(self.claimed().subnets6());
        taken.extend_from_slice(routes6);
        taken
    }

    fn pools6(&self) -> Result<Vec<Ipv6Net>> {
        if self.config.default_pools_v6.is_empty() {
            Ok(vec![self.store.ula_prefix()?])
        } else {
            Ok(self.config.default_pools_v6.clone())
        }
    }

    /// The IPv6 address of a new endpoint on `net` (`None` when the
    /// network has no IPv6; then `requested` is refused).
    pub(super) fn allocate_ip6(
        &self,
        net: &Network,
        requested: Option<Ipv6Addr>,
    ) -> AgentResult<Option<Ipv6Addr>> {
        let Some(v6) = &net.ipv6 else {
            if let Some(ip) = requested {
                return invalid(format!(
                    "network {} has no IPv6 (create it with --ipv6) for address {ip}",
                    net.name
                ));
            }
            return Ok(None);
        };
        let used = self.used_addresses6(net);
        ipam6::allocate(&v6.subnet, v6.ip_range.as_ref(), &used, requested).map(Some)
    }

    /// IPv6 addresses taken on `net` (its gateway included).
    pub(super) fn used_addresses6(&self, net: &Network) -> HashSet<Ipv6Addr> {
        let mut used: HashSet<_> = self
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network_id == net.id)
            .filter_map(|e| e.ip6)
            .collect();
        used.extend(self.claimed().addresses6_on(&net.id));
        if let Some(v6) = &net.ipv6 {
            used.insert(v6.gateway);
        }
        used
    }
}
