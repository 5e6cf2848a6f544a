//! Published ports and host addresses in the maps; flushing the flows of a
//! removed target.
use std::{collections::HashSet, net::Ipv4Addr};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use netd_common::{
    CtEntry, CtKey, PublishKey, PublishTarget, MAP_CT_IN, MAP_CT_LOCAL, MAP_CT_OUT, MAP_HOST_ADDRS,
    MAP_PUBLISHED,
};

use super::{addr_key, Datapath};
use crate::ports::PortMapping;

fn publish_key(m: &PortMapping) -> PublishKey {
    PublishKey {
        addr: m.host_v4().map(addr_key).unwrap_or(0),
        port: m.host_port.to_be(),
        proto: m.proto.number(),
        _pad: 0,
    }
}

impl Datapath {
    fn published(&mut self) -> Result<HashMap<&mut MapData, PublishKey, PublishTarget>> {
        Ok(HashMap::try_from(self.map_mut(MAP_PUBLISHED)?)?)
    }

    /// One map write: the next packet to the port is translated.
    pub fn publish(&mut self, m: &PortMapping, target: Ipv4Addr) -> Result<()> {
        let value = PublishTarget {
            addr: addr_key(target),
            port: m.container_port.to_be(),
            _pad: 0,
        };
        self.published()?
            .insert(publish_key(m), value, 0)
            .with_context(|| format!("failed to publish {m}"))
    }

    pub fn unpublish(&mut self, m: &PortMapping) -> Result<()> {
        match self.published()?.remove(&publish_key(m)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to unpublish {m}")),
        }
    }

    /// Every published entry: (key, target).
    pub fn published_entries(&mut self) -> Result<Vec<(PublishKey, PublishTarget)>> {
        self.published()?
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    pub fn remove_published_key(&mut self, key: &PublishKey) -> Result<()> {
        let _ = self.published()?.remove(key);
        Ok(())
    }

    /// Makes `HOST_ADDRS` hold exactly `addrs`.
    pub fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<()> {
        let wanted: HashSet<u32> = addrs.iter().map(|a| addr_key(*a)).collect();
        self.set_keys(MAP_HOST_ADDRS, &wanted)
            .context("failed to write the host addresses")
    }

    /// Makes the `u32 -> u32` set map `name` hold exactly `wanted`.
    pub(super) fn set_keys(&mut self, name: &str, wanted: &HashSet<u32>) -> Result<()> {
        let mut map: HashMap<_, u32, u32> = HashMap::try_from(self.map_mut(name)?)?;
        let present: HashSet<u32> = map.keys().filter_map(Result::ok).collect();
        for stale in present.difference(wanted) {
            let _ = map.remove(stale);
        }
        for new in wanted.difference(&present) {
            map.insert(new, 1, 0)?;
        }
        Ok(())
    }

    /// Drops every tracked flow to or from `addr`, so a removed container's
    /// flows never reach whoever gets the address next.
    pub fn flush_flows_of(&mut self, addr: Ipv4Addr) -> Result<usize> {
        let a = addr_key(addr);
        let mut removed = 0;
        for name in [MAP_CT_OUT, MAP_CT_IN, MAP_CT_LOCAL] {
            let mut map: HashMap<_, CtKey, CtEntry> = HashMap::try_from(self.map_mut(name)?)?;
            let doomed: Vec<CtKey> = map
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, v)| k.saddr == a || k.daddr == a || v.addr == a || v.peer == a)
                .map(|(k, _)| k)
                .collect();
            for k in &doomed {
                let _ = map.remove(k);
            }
            removed += doomed.len();
        }
        Ok(removed)
    }
}
