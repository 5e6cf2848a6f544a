//! What the name service must know, derived from the stored state, and
//! which DNS servers a container should use.
use std::net::{IpAddr, Ipv4Addr};

use tracing::warn;

use super::Agent;
use crate::{
    dns::{DnsName, DnsNetwork, DnsResolver, DnsView, CONTAINER_RESOLVER},
    error::AgentResult,
    model::{Container, Mode},
    schema::ResolvConf,
};

impl Agent {
    pub(super) fn dns_view(&self) -> DnsView {
        let networks = self
            .networks
            .values()
            .map(|n| DnsNetwork {
                id: n.id.clone(),
                subnet: n.subnet,
                gateway: n.gateway,
                subnet6: n.ipv6.as_ref().map(|v6| v6.subnet),
                internal: n.internal,
                serve: !n.is_default(),
            })
            .collect();
        let mut names: Vec<DnsName> = self
            .containers
            .values()
            .flat_map(|c| {
                c.endpoints.iter().map(|ep| DnsName {
                    network_id: ep.network_id.clone(),
                    container: c.name.clone(),
                    aliases: ep.aliases.clone(),
                    ip: ep.ip,
                    ip6: ep.ip6,
                    remote: false,
                })
            })
            .collect();
        // Containers of other hosts on the overlay networks realised here.
        if let Some(cluster) = &self.cluster {
            names.extend(
                self.cluster_view
                    .remote_endpoints(&cluster.config.host_id)
                    .filter(|(e, _)| {
                        self.networks
                            .get(&e.network_id)
                            .is_some_and(|n| n.is_overlay())
                    })
                    .map(|(e, _)| DnsName {
                        network_id: e.network_id.clone(),
                        container: e.container.clone(),
                        aliases: e.aliases.clone(),
                        ip: e.ip,
                        ip6: None,
                        remote: true,
                    }),
            );
        }
        // One listener per container netns on a served network; containers
        // in `container:OTHER` mode have no endpoints and share OTHER's.
        // Docker's sandboxes are Docker's: its own embedded DNS answers on
        // 127.0.0.11 there, and netd never opens them.
        let resolvers = self
            .containers
            .values()
            .filter(|c| c.mode == Mode::Bridge && !c.is_docker())
            .filter_map(|c| {
                let ep = c.endpoints.iter().find(|ep| {
                    self.networks
                        .get(&ep.network_id)
                        .is_some_and(|n| !n.is_default())
                })?;
                // The address it is known by: IPv6 on an IPv6-only network.
                let ip = match (ep.ip4(), ep.ip6) {
                    (None, Some(ip6)) => IpAddr::V6(ip6),
                    _ => IpAddr::V4(ep.ip),
                };
                Some(DnsResolver {
                    container_id: c.id.clone(),
                    netns: c.netns.clone(),
                    network_id: ep.network_id.clone(),
                    ip,
                })
            })
            .collect();
        DnsView {
            networks,
            names,
            resolvers,
            upstreams: self.config.dns_upstreams.clone(),
        }
    }

    /// Called after every change of networks or containers.
    pub(super) fn state_changed(&mut self) {
        self.monitor.set_names(self.monitor_names());
        let view = self.dns_view();
        if let Err(e) = self.dns.sync(view) {
            warn!(error = %format!("{e:#}"), "name service update failed");
        }
    }
}

impl Agent {
    /// The DNS servers container `c` should use: on a served
    /// (user-defined) network, 127.0.0.11, the listener inside its own
    /// netns (as Docker's embedded DNS); without one, the upstreams (less
    /// loopback ones, which mean nothing inside a container netns), else
    /// Google's public servers, as Docker does.
    pub(super) fn dns_servers(&self, c: &Container) -> Vec<IpAddr> {
        let owner = match &c.mode {
            Mode::Container(id) => self.containers.get(id).unwrap_or(c),
            _ => c,
        };
        let served = owner
            .endpoints
            .iter()
            .filter_map(|ep| self.networks.get(&ep.network_id))
            .any(|n| !n.is_default());
        if served && owner.mode == Mode::Bridge {
            return vec![IpAddr::V4(CONTAINER_RESOLVER)];
        }
        let host = matches!(owner.mode, Mode::Host);
        let mut ups: Vec<IpAddr> = Vec::new();
        for u in &self.config.dns_upstreams {
            if (host || !u.ip().is_loopback()) && u.port() == 53 && !ups.contains(&u.ip()) {
                ups.push(u.ip());
            }
        }
        if ups.is_empty() {
            ups = vec![
                Ipv4Addr::new(8, 8, 8, 8).into(),
                Ipv4Addr::new(8, 8, 4, 4).into(),
            ];
        }
        ups
    }

    /// The resolv.conf a runtime should write into container `key`.
    pub fn resolv_conf(&self, key: &str) -> AgentResult<ResolvConf> {
        let c = self.find_container(key)?;
        let servers = self.dns_servers(c);
        let mut text = format!("# Generated by netd for container {}\n", c.name);
        for s in &servers {
            text.push_str(&format!("nameserver {s}\n"));
        }
        text.push_str("options ndots:0\n");
        Ok(ResolvConf {
            nameservers: servers,
            resolv_conf: text,
        })
    }
}
