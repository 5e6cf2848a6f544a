//! Uplinks: the devices container traffic leaves the host by. By default
//! the interfaces of the IPv4 and IPv6 default route(s), followed as
//! routes and addresses change; `--uplink` pins the choice. Each gets the
//! uplink programs and an entry with its primary address and the SNAT port
//! range; one with an IPv6 default route (or pinned) also gets an IPv6
//! entry with its global IPv6 address (NAT66) and the same port range.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use netd_common::{Uplink, Uplink6};
use serde::Serialize;
use tracing::{info, warn};

use super::Agent;
use crate::datapath::{addr6_key, addr_key};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UplinkState {
    pub ifindex: u32,
    pub address: Option<Ipv4Addr>,
    /// The IPv6 masquerade address (`None`: IPv6 is routed, or the uplink
    /// carries no IPv6 default route).
    pub address6: Option<Ipv6Addr>,
}

impl Agent {
    /// What the uplinks should be right now: name -> (ifindex, address).
    async fn wanted_uplinks(&self) -> Result<BTreeMap<String, UplinkState>> {
        let links: BTreeMap<u32, String> = self.links.link_names().await?.into_iter().collect();
        let pinned = !self.config.uplinks.is_empty();
        let v6_routes = self.links.default_route_interfaces6().await?;
        let indexes: Vec<u32> = if !pinned {
            let mut v = self.links.default_route_interfaces().await?;
            for i in &v6_routes {
                if !v.contains(i) {
                    v.push(*i);
                }
            }
            v
        } else {
            let by_name: BTreeMap<&String, u32> = links.iter().map(|(i, n)| (n, *i)).collect();
            self.config
                .uplinks
                .iter()
                .filter_map(|n| by_name.get(n).copied())
                .collect()
        };
        let mut wanted = BTreeMap::new();
        for ifindex in indexes {
            let Some(name) = links.get(&ifindex) else {
                continue;
            };
            let address = self.links.primary_ipv4(ifindex).await?;
            let address6 = if pinned || v6_routes.contains(&ifindex) {
                self.links.masquerade_ipv6(ifindex).await?
            } else {
                None
            };
            let state = UplinkState {
                ifindex,
                address,
                address6,
            };
            wanted.insert(name.clone(), state);
        }
        Ok(wanted)
    }

    /// Attaches, updates and detaches uplink programs to match the host.
    pub async fn sync_uplinks(&mut self) -> Result<()> {
        let wanted = self.wanted_uplinks().await?;
        let gone: Vec<(String, UplinkState)> = self
            .uplinks
            .iter()
            .filter(|(name, state)| wanted.get(*name).map(|w| w.ifindex) != Some(state.ifindex))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        for (name, state) in gone {
            info!(uplink = %name, "uplink removed");
            if let Err(e) = self.datapath.detach_uplink(&name, state.ifindex) {
                warn!(uplink = %name, error = %format!("{e:#}"), "failed to detach uplink");
            }
            self.uplinks.remove(&name);
        }
        for (name, state) in wanted {
            if self.uplinks.get(&name) == Some(&state) {
                continue;
            }
            let entry = Uplink {
                addr: state.address.map(addr_key).unwrap_or(0),
                port_min: self.config.snat_ports.0,
                port_max: self.config.snat_ports.1,
            };
            let is_veth = self
                .links
                .kind(state.ifindex)
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("veth");
            let entry6 = state.address6.map(|a| Uplink6 {
                addr: addr6_key(a),
                port_min: self.config.snat_ports.0,
                port_max: self.config.snat_ports.1,
                _pad: 0,
            });
            let attached = self
                .datapath
                .attach_uplink(&name, state.ifindex, entry, is_veth)
                .and_then(|()| self.datapath.set_uplink6(state.ifindex, entry6));
            match attached {
                Ok(()) => {
                    info!(
                        uplink = %name,
                        address = ?state.address,
                        address6 = ?state.address6,
                        "uplink ready"
                    );
                    self.uplinks.insert(name, state);
                }
                Err(e) => {
                    warn!(uplink = %name, error = %format!("{e:#}"), "failed to attach uplink")
                }
            }
        }
        self.remove_stale_uplink_state()
    }

    /// Pins and map entries of uplinks that are no longer uplinks.
    fn remove_stale_uplink_state(&mut self) -> Result<()> {
        let current: Vec<u32> = self.uplinks.values().map(|u| u.ifindex).collect();
        for (ifindex, _) in self.datapath.uplink_entries()? {
            if !current.contains(&ifindex) {
                self.datapath.detach_uplink("", ifindex)?;
            }
        }
        for (ifindex, _) in self.datapath.uplink6_entries()? {
            if !current.contains(&ifindex) {
                self.datapath.set_uplink6(ifindex, None)?;
            }
        }
        for ifname in self.datapath.linked_uplinks()? {
            if !self.uplinks.contains_key(&ifname) {
                self.datapath.unlink_uplink(&ifname)?;
            }
        }
        Ok(())
    }

    /// Periodic upkeep: follow uplinks and host addresses, repair what
    /// someone else removed, expire conntrack entries.
    pub async fn maintain(&mut self) {
        let started = std::time::Instant::now();
        if let Err(e) = self.reconcile(false).await {
            warn!(error = %format!("{e:#}"), "reconcile failed");
        }
        if let Err(e) = self.sync_uplinks().await {
            warn!(error = %format!("{e:#}"), "uplink sync failed");
        }
        if let Err(e) = self.sync_host_addrs().await {
            warn!(error = %format!("{e:#}"), "host address sync failed");
        }
        self.maintain_overlay().await;
        match self.datapath.expire_flows(&self.config.ct_timeouts) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "conntrack entries expired"),
            Err(e) => warn!(error = %format!("{e:#}"), "conntrack expiry failed"),
        }
        tracing::debug!(
            ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
            containers = self.containers.len(),
            "upkeep pass"
        );
    }
}
