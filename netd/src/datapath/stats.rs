//! Reading the datapath's counters and fill levels for `netd status`.
use anyhow::{anyhow, Result};
use aya::{
    maps::{HashMap, LpmTrie, PerCpuArray},
    Pod,
};
use netd_common::{
    CtEntry, CtKey, DropReason, Endpoint, FragKey, NetworkInfo, PublishKey, PublishTarget,
    RemoteEndpoint, RemoteKey, CT_F_DNAT, CT_F_SNAT, MAP_CT_IN, MAP_CT_LOCAL, MAP_CT_OUT,
    MAP_DROPS, MAP_ENDPOINTS, MAP_FRAGMENTS, MAP_NETWORKS, MAP_OVERLAY_REMOTES, MAP_PUBLISHED,
};
use serde::Serialize;

use super::Datapath;

#[derive(Debug, Serialize)]
pub struct DropCount {
    pub reason: &'static str,
    pub packets: u64,
}

impl Datapath {
    /// Drop counters summed over CPUs, one per reason.
    pub fn drop_counts(&self) -> Result<Vec<DropCount>> {
        let map = self
            .ebpf
            .map(MAP_DROPS)
            .ok_or_else(|| anyhow!("map {MAP_DROPS} missing"))?;
        let drops: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        DropReason::ALL
            .iter()
            .map(|r| {
                let per_cpu = drops.get(&(*r as u32), 0)?;
                Ok(DropCount {
                    reason: r.name(),
                    packets: per_cpu.iter().sum(),
                })
            })
            .collect()
    }
}

/// How full one map is.
#[derive(Debug, Serialize)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

impl Datapath {
    fn capacity(&mut self, name: &str) -> Result<u32> {
        use aya::maps::Map;
        let info = match self.map_mut(name)? {
            Map::HashMap(d) | Map::LruHashMap(d) | Map::LpmTrie(d) | Map::PerCpuArray(d) => {
                d.info()?
            }
            _ => return Err(anyhow!("map {name} has an unexpected type")),
        };
        Ok(info.max_entries())
    }

    fn count_hash<K: Pod, V: Pod>(&mut self, name: &'static str) -> Result<MapFill> {
        let capacity = self.capacity(name)?;
        let map: HashMap<_, K, V> = HashMap::try_from(self.map_mut(name)?)?;
        let entries = map.keys().filter(Result::is_ok).count();
        Ok(MapFill {
            map: name,
            entries,
            capacity,
        })
    }

    /// Entries and capacity of the maps whose fill matters to operators:
    /// endpoints, networks, conntrack, published ports, fragments.
    pub fn map_fill(&mut self) -> Result<Vec<MapFill>> {
        let networks = {
            let capacity = self.capacity(MAP_NETWORKS)?;
            let trie: LpmTrie<_, u32, NetworkInfo> =
                LpmTrie::try_from(self.map_mut(MAP_NETWORKS)?)?;
            MapFill {
                map: MAP_NETWORKS,
                entries: trie.keys().filter(Result::is_ok).count(),
                capacity,
            }
        };
        Ok(vec![
            self.count_hash::<u32, Endpoint>(MAP_ENDPOINTS)?,
            networks,
            self.count_hash::<CtKey, CtEntry>(MAP_CT_OUT)?,
            self.count_hash::<CtKey, CtEntry>(MAP_CT_IN)?,
            self.count_hash::<CtKey, CtEntry>(MAP_CT_LOCAL)?,
            self.count_hash::<PublishKey, PublishTarget>(MAP_PUBLISHED)?,
            self.count_hash::<FragKey, u32>(MAP_FRAGMENTS)?,
            self.count_hash::<RemoteKey, RemoteEndpoint>(MAP_OVERLAY_REMOTES)?,
        ])
    }

    /// Masqueraded flows: outbound entries with a source translation that
    /// are not replies of published ports.
    pub fn nat_bindings(&mut self) -> Result<usize> {
        let map: HashMap<_, CtKey, CtEntry> = HashMap::try_from(self.map_mut(MAP_CT_OUT)?)?;
        Ok(map
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, e)| e.flags & CT_F_SNAT != 0 && e.flags & CT_F_DNAT == 0)
            .count())
    }
}
