//! Uplinks: the devices container traffic leaves the host by. By default
//! the interfaces of the IPv4 default route(s), followed as routes and
//! addresses change; `--uplink` pins the choice. Each gets the uplink
//! programs and an entry with its primary address and the SNAT port range.
use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::Result;
use netd_common::Uplink;
use serde::Serialize;
use tracing::{info, warn};

use super::Agent;
use crate::datapath::addr_key;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UplinkState {
    pub ifindex: u32,
    pub address: Option<Ipv4Addr>,
}

impl Agent {
    /// What the uplinks should be right now: name -> (ifindex, address).
    async fn wanted_uplinks(&self) -> Result<BTreeMap<String, UplinkState>> {
        let links: BTreeMap<u32, String> = self.links.link_names().await?.into_iter().collect();
        let indexes: Vec<u32> = if self.config.uplinks.is_empty() {
            self.links.default_route_interfaces().await?
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
            wanted.insert(name.clone(), UplinkState { ifindex, address });
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
            match self
                .datapath
                .attach_uplink(&name, state.ifindex, entry, is_veth)
            {
                Ok(()) => {
                    info!(uplink = %name, address = ?state.address, "uplink ready");
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
    }
}
