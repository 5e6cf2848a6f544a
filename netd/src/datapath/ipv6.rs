//! The IPv6 maps the agent feeds: networks (`NETWORKS6`), endpoint
//! addresses (`ENDPOINT6`, `ENDPOINT6_BY_IP`), the host's addresses
//! (`HOST_ADDRS6`) and the uplinks' masquerade addresses (`UPLINKS6`).
//! An endpoint without an `ENDPOINT6` entry has no IPv6: its programs
//! keep its IPv6 traffic on the link.
use std::{collections::HashSet, net::Ipv6Addr};

use anyhow::{Context, Result};
use aya::maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, MapError};
use ipnet::Ipv6Net;
use netd_common::{
    addr6_from_octets, addr6_octets, Addr6, CtEntry6, CtKey6, Endpoint6, EndpointRef6,
    NetworkInfo6, Uplink6, MAP_CT6_IN, MAP_CT6_LOCAL, MAP_CT6_OUT, MAP_ENDPOINT6,
    MAP_ENDPOINT6_BY_IP, MAP_ENDPOINTS, MAP_HOST_ADDRS6, MAP_NETWORKS6, MAP_UPLINKS6,
};

use super::Datapath;

/// IPv6 address bytes as the programs see them.
pub fn addr6_key(ip: Ipv6Addr) -> Addr6 {
    addr6_from_octets(ip.octets())
}

/// The address an [`Addr6`] holds.
pub fn addr6_of(a: Addr6) -> Ipv6Addr {
    Ipv6Addr::from(addr6_octets(a))
}

fn subnet_key(subnet: Ipv6Net) -> Key<Addr6> {
    Key::new(u32::from(subnet.prefix_len()), addr6_key(subnet.network()))
}

/// A removal is done when the key is gone, whoever removed it.
fn absent_ok(r: Result<(), MapError>, what: &str) -> Result<()> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {what} from the datapath")),
    }
}

impl Datapath {
    fn networks6(&mut self) -> Result<LpmTrie<&mut MapData, Addr6, NetworkInfo6>> {
        Ok(LpmTrie::try_from(self.map_mut(MAP_NETWORKS6)?)?)
    }

    fn endpoints6(&mut self) -> Result<HashMap<&mut MapData, u32, Endpoint6>> {
        Ok(HashMap::try_from(self.map_mut(MAP_ENDPOINT6)?)?)
    }

    fn endpoints6_by_ip(&mut self) -> Result<HashMap<&mut MapData, Addr6, EndpointRef6>> {
        Ok(HashMap::try_from(self.map_mut(MAP_ENDPOINT6_BY_IP)?)?)
    }

    /// Writes a network's IPv6 subnet (its id and flags are the network's).
    pub fn upsert_network6(&mut self, subnet: Ipv6Net, info: NetworkInfo6) -> Result<()> {
        self.networks6()?
            .insert(&subnet_key(subnet), info, 0)
            .with_context(|| format!("failed to write network {subnet} to the datapath"))
    }

    pub fn remove_network6(&mut self, subnet: Ipv6Net) -> Result<()> {
        let r = self.networks6()?.remove(&subnet_key(subnet));
        absent_ok(r, "an IPv6 network")
    }

    /// Every subnet in the `NETWORKS6` map.
    pub fn network6_subnets(&mut self) -> Result<Vec<Ipv6Net>> {
        let mut out = Vec::new();
        for key in self.networks6()?.keys() {
            let key = key?;
            out.push(Ipv6Net::new(addr6_of(key.data()), key.prefix_len() as u8)?);
        }
        Ok(out)
    }

    /// Gives the endpoint behind host veth `ifindex` its IPv6 address
    /// (and makes the address deliverable past the host stack). Its
    /// `ENDPOINTS` entry holds the MAC used for delivery; write this before
    /// the veth comes up.
    pub fn set_endpoint6(&mut self, ifindex: u32, ep: Endpoint6) -> Result<()> {
        let mac = HashMap::<_, u32, netd_common::Endpoint>::try_from(self.map_mut(MAP_ENDPOINTS)?)?
            .get(&ifindex, 0)
            .map(|e| e.mac)
            .unwrap_or_default();
        let by_ip = EndpointRef6 {
            ifindex,
            mac,
            gateway_mac: ep.gateway_mac,
        };
        let what = || {
            format!(
                "failed to write the IPv6 address {} to the datapath",
                addr6_of(ep.ip)
            )
        };
        // A changed address leaves no stale delivery entry behind.
        if let Some(old) = self.endpoint6(ifindex)? {
            if old.ip != ep.ip {
                self.remove_endpoint6(ifindex)?;
            }
        }
        self.endpoints6_by_ip()?
            .insert(ep.ip, by_ip, 0)
            .with_context(what)?;
        self.endpoints6()?.insert(ifindex, ep, 0).with_context(what)
    }

    /// The IPv6 entry of the endpoint behind `ifindex`, if it has one.
    pub fn endpoint6(&mut self, ifindex: u32) -> Result<Option<Endpoint6>> {
        match self.endpoints6()?.get(&ifindex, 0) {
            Ok(ep) => Ok(Some(ep)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("failed to read an IPv6 endpoint"),
        }
    }

    /// Takes IPv6 away from the endpoint behind `ifindex` (nothing to do
    /// when it has none).
    pub fn remove_endpoint6(&mut self, ifindex: u32) -> Result<()> {
        if let Some(ep) = self.endpoint6(ifindex)? {
            let mut by_ip = self.endpoints6_by_ip()?;
            if by_ip.get(&ep.ip, 0).is_ok_and(|r| r.ifindex == ifindex) {
                absent_ok(by_ip.remove(&ep.ip), "an IPv6 endpoint address")?;
            }
        }
        let r = self.endpoints6()?.remove(&ifindex);
        absent_ok(r, "an IPv6 endpoint")
    }

    /// Every ifindex in the `ENDPOINT6` map.
    pub fn endpoint6_indexes(&mut self) -> Result<Vec<u32>> {
        self.endpoints6()?
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    /// Makes `HOST_ADDRS6` hold exactly `addrs`.
    pub fn set_host_addrs6(&mut self, addrs: &HashSet<Ipv6Addr>) -> Result<()> {
        let wanted: HashSet<Addr6> = addrs.iter().map(|a| addr6_key(*a)).collect();
        let mut map: HashMap<_, Addr6, u32> = HashMap::try_from(self.map_mut(MAP_HOST_ADDRS6)?)?;
        let present: HashSet<Addr6> = map.keys().filter_map(Result::ok).collect();
        for stale in present.difference(&wanted) {
            let _ = map.remove(stale);
        }
        for new in wanted.difference(&present) {
            map.insert(new, 1, 0)
                .context("failed to write the host's IPv6 addresses")?;
        }
        Ok(())
    }

    /// The IPv6 masquerade address and port range of uplink `ifindex`.
    pub fn set_uplink6(&mut self, ifindex: u32, up: Uplink6) -> Result<()> {
        let mut map: HashMap<_, u32, Uplink6> = HashMap::try_from(self.map_mut(MAP_UPLINKS6)?)?;
        map.insert(ifindex, up, 0)
            .context("failed to write an uplink's IPv6 address")
    }

    /// IPv6 masquerade entries, by uplink ifindex.
    pub fn uplink6_entries(&mut self) -> Result<Vec<(u32, Uplink6)>> {
        let map: HashMap<_, u32, Uplink6> = HashMap::try_from(self.map_mut(MAP_UPLINKS6)?)?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    pub fn remove_uplink6(&mut self, ifindex: u32) -> Result<()> {
        let mut map: HashMap<_, u32, Uplink6> = HashMap::try_from(self.map_mut(MAP_UPLINKS6)?)?;
        absent_ok(map.remove(&ifindex), "an uplink's IPv6 address")
    }

    /// Drops every tracked IPv6 flow to or from `addr`.
    pub fn flush_flows6_of(&mut self, addr: Ipv6Addr) -> Result<usize> {
        let a = addr6_key(addr);
        let mut removed = 0;
        for name in [MAP_CT6_OUT, MAP_CT6_IN, MAP_CT6_LOCAL] {
            let mut map: HashMap<_, CtKey6, CtEntry6> = HashMap::try_from(self.map_mut(name)?)?;
            let doomed: Vec<CtKey6> = map
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, v)| k.saddr == a || k.daddr == a || v.addr == a)
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
