//! Published ports over IPv6 in the maps (`PUBLISHED6`).
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, MapError};
use netd_common::{PublishKey6, PublishTarget6, MAP_PUBLISHED6};

use super::{addr6_key, Datapath};
use crate::ports::PortMapping;

/// The key of an IPv6 mapping (`[::]`: every host IPv6 address).
pub fn publish_key6(m: &PortMapping) -> PublishKey6 {
    let addr = match m.host_ip {
        Some(IpAddr::V6(ip)) if !ip.is_unspecified() => addr6_key(ip),
        _ => [0; 4],
    };
    PublishKey6 {
        addr,
        port: m.host_port.to_be(),
        proto: m.proto.number(),
        _pad: 0,
    }
}

impl Datapath {
    fn published6(&mut self) -> Result<HashMap<&mut MapData, PublishKey6, PublishTarget6>> {
        Ok(HashMap::try_from(self.map_mut(MAP_PUBLISHED6)?)?)
    }

    /// One map write: the next packet to the IPv6 port is translated to
    /// `target` (the container's IPv6 address).
    pub fn publish6(&mut self, m: &PortMapping, target: Ipv6Addr) -> Result<()> {
        let value = PublishTarget6 {
            addr: addr6_key(target),
            port: m.container_port.to_be(),
            _pad: 0,
        };
        self.published6()?
            .insert(publish_key6(m), value, 0)
            .with_context(|| format!("failed to publish {m}"))
    }

    pub fn unpublish6(&mut self, m: &PortMapping) -> Result<()> {
        match self.published6()?.remove(&publish_key6(m)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("failed to unpublish {m}")),
        }
    }

    /// Every IPv6 published entry: (key, target).
    pub fn published6_entries(&mut self) -> Result<Vec<(PublishKey6, PublishTarget6)>> {
        self.published6()?
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    pub fn remove_published6_key(&mut self, key: &PublishKey6) -> Result<()> {
        let _ = self.published6()?.remove(key);
        Ok(())
    }
}
