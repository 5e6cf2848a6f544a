//! The userspace side of events and counters: the `EVENTS` ring buffer and
//! `EVENT_CONFIG` (handed to the monitor hub), the rate limiter's held-back
//! count, and per-endpoint / per-network counters summed over CPUs.
use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use netd_common::{
    Counters, EventConfig, RateState, COUNTED_DROP_REASONS, MAP_EP_COUNTERS, MAP_EVENTS,
    MAP_EVENT_CONFIG, MAP_EVENT_RATE, MAP_NET_COUNTERS,
};

use super::Datapath;

/// What the monitor hub owns: the ring buffer and the switch.
pub struct EventMaps {
    pub ring: RingBuf<MapData>,
    pub config: Array<MapData, EventConfig>,
}

impl Datapath {
    /// Takes the ring buffer and the event switch out of the datapath (once).
    pub fn take_event_maps(&mut self) -> Result<EventMaps> {
        let ring = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or_else(|| anyhow!("map {MAP_EVENTS} missing"))?;
        let config = self
            .ebpf
            .take_map(MAP_EVENT_CONFIG)
            .ok_or_else(|| anyhow!("map {MAP_EVENT_CONFIG} missing"))?;
        Ok(EventMaps {
            ring: RingBuf::try_from(ring).context("EVENTS is not a ring buffer")?,
            config: Array::try_from(config).context("EVENT_CONFIG is not an array")?,
        })
    }

    /// Host veth ifindex -> container address, from `ENDPOINTS`.
    pub fn endpoint_addresses(&self) -> Result<Vec<(u32, std::net::Ipv4Addr)>> {
        let m = self
            .ebpf
            .map(netd_common::MAP_ENDPOINTS)
            .ok_or_else(|| anyhow!("map ENDPOINTS missing"))?;
        let m: aya::maps::HashMap<_, u32, netd_common::Endpoint> = aya::maps::HashMap::try_from(m)?;
        Ok(m.iter()
            .filter_map(Result::ok)
            .map(|(i, e)| (i, std::net::Ipv4Addr::from(e.ip.to_ne_bytes())))
            .collect())
    }

    /// Events the rate limit (or a full ring) held back, over all CPUs.
    pub fn events_suppressed(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(MAP_EVENT_RATE)
            .ok_or_else(|| anyhow!("map {MAP_EVENT_RATE} missing"))?;
        let rate: PerCpuArray<_, RateState> = PerCpuArray::try_from(map)?;
        Ok(rate.get(&0, 0)?.iter().map(|s| s.suppressed).sum())
    }

    fn counters(&self, map: &str, key: u32) -> Result<Counters> {
        let m = self
            .ebpf
            .map(map)
            .ok_or_else(|| anyhow!("map {map} missing"))?;
        let m: PerCpuHashMap<_, u32, Counters> = PerCpuHashMap::try_from(m)?;
        let mut sum = Counters::default();
        if let Ok(per_cpu) = m.get(&key, 0) {
            for c in per_cpu.iter() {
                sum.packets_in += c.packets_in;
                sum.bytes_in += c.bytes_in;
                sum.packets_out += c.packets_out;
                sum.bytes_out += c.bytes_out;
                for i in 0..COUNTED_DROP_REASONS {
                    sum.drops[i] += c.drops[i];
                }
            }
        }
        Ok(sum)
    }

    /// The counters of the endpoint with container address `ip` (none:
    /// IPv6-only) behind host veth `host_ifname` (zero when it is gone).
    pub fn endpoint_counters(&self, ip: std::net::Ipv4Addr, host_ifname: &str) -> Result<Counters> {
        let ip = super::addr_key(ip);
        let ifindex = if ip == 0 {
            match super::blocks_ifindex(host_ifname) {
                Some(i) => i,
                None => return Ok(Counters::default()),
            }
        } else {
            0
        };
        self.counters(
            MAP_EP_COUNTERS,
            netd_common::endpoint_counter_key(ip, ifindex),
        )
    }

    /// The counters of the network with datapath id `net_id`.
    pub fn network_counters(&self, net_id: u32) -> Result<Counters> {
        self.counters(MAP_NET_COUNTERS, net_id)
    }

    /// Forgets an endpoint's counters (its address or veth may be reused);
    /// `key`: [`netd_common::endpoint_counter_key`].
    pub fn remove_endpoint_counters(&mut self, key: u32) -> Result<()> {
        let mut m: PerCpuHashMap<_, u32, Counters> =
            PerCpuHashMap::try_from(self.map_mut(MAP_EP_COUNTERS)?)?;
        let _ = m.remove(&key);
        Ok(())
    }

    /// Forgets a removed network's counters (its id may be reused).
    pub fn remove_network_counters(&mut self, net_id: u32) -> Result<()> {
        let mut m: PerCpuHashMap<_, u32, Counters> =
            PerCpuHashMap::try_from(self.map_mut(MAP_NET_COUNTERS)?)?;
        let _ = m.remove(&net_id);
        Ok(())
    }
}
