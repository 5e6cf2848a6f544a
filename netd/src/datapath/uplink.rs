//! Uplink programs: attached per uplink device, fed through `UPLINKS`.
use anyhow::{Context, Result};
use aya::maps::HashMap;
use netd_common::{Uplink, MAP_UPLINKS};

use super::loader::{Datapath, UPLINK_IN, UPLINK_OUT};
use aya::programs::TcAttachType;

/// The programs on an uplink and where each attaches.
pub(super) const UPLINK_PROGRAMS: [(&str, TcAttachType); 2] = [
    (UPLINK_IN, TcAttachType::Ingress),
    (UPLINK_OUT, TcAttachType::Egress),
];

impl Datapath {
    /// Attaches (or adopts) both uplink programs and writes the uplink's
    /// address and port range. Re-running it only updates the entry.
    pub fn attach_uplink(&mut self, ifname: &str, ifindex: u32, uplink: Uplink) -> Result<()> {
        self.uplinks()?
            .insert(ifindex, uplink, 0)
            .with_context(|| format!("failed to write uplink {ifname}"))?;
        for (name, attach_type) in UPLINK_PROGRAMS {
            self.attach_link(ifname, name, attach_type)
                .with_context(|| format!("failed to attach {name} to {ifname}"))?;
        }
        Ok(())
    }

    pub fn detach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        for (name, _) in UPLINK_PROGRAMS {
            self.unpin_link(&self.pins().link(ifname, name))?;
        }
        match self.uplinks()?.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("failed to remove an uplink"),
        }
    }

    /// Writes an uplink entry without attaching anything (tests, upkeep).
    pub fn set_uplink_entry(&mut self, ifindex: u32, uplink: Uplink) -> Result<()> {
        Ok(self.uplinks()?.insert(ifindex, uplink, 0)?)
    }

    /// Uplink entries in the map, by ifindex.
    pub fn uplink_entries(&mut self) -> Result<Vec<(u32, Uplink)>> {
        self.uplinks()?
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    fn uplinks(&mut self) -> Result<HashMap<&mut aya::maps::MapData, u32, Uplink>> {
        let map = self.map_mut(MAP_UPLINKS)?;
        Ok(HashMap::try_from(map)?)
    }
}
