//! Uplink programs: attached per uplink device, fed through `UPLINKS`.
use anyhow::{Context, Result};
use aya::maps::HashMap;
use netd_common::{Uplink, MAP_UPLINKS};

use super::loader::{Datapath, UPLINK_IN, UPLINK_OUT, UPLINK_XDP};
use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    TcAttachType, Xdp, XdpMode,
};

/// The programs on an uplink and where each attaches.
pub(super) const UPLINK_PROGRAMS: [(&str, TcAttachType); 2] = [
    (UPLINK_IN, TcAttachType::Ingress),
    (UPLINK_OUT, TcAttachType::Egress),
];

impl Datapath {
    /// Attaches (or adopts) the uplink programs and writes the uplink's
    /// address and port range. Re-running it only updates the entry.
    /// `generic_xdp` runs the prefilter in the stack (for veths, where
    /// native XDP defeats GRO and costs more than it saves).
    pub fn attach_uplink(
        &mut self,
        ifname: &str,
        ifindex: u32,
        uplink: Uplink,
        generic_xdp: bool,
    ) -> Result<()> {
        self.uplinks()?
            .insert(ifindex, uplink, 0)
            .with_context(|| format!("failed to write uplink {ifname}"))?;
        for (name, attach_type) in UPLINK_PROGRAMS {
            self.attach_link(ifname, name, attach_type)
                .with_context(|| format!("failed to attach {name} to {ifname}"))?;
        }
        self.attach_prefilter(ifname, ifindex, generic_xdp)
            .with_context(|| format!("failed to attach {UPLINK_XDP} to {ifname}"))
    }

    /// The loaded prefilter (for test runs).
    pub fn prefilter_program(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(UPLINK_XDP)
            .ok_or_else(|| anyhow::anyhow!("program {UPLINK_XDP} missing"))?
            .try_into()?)
    }

    fn attach_prefilter(&mut self, ifname: &str, ifindex: u32, generic: bool) -> Result<()> {
        let pin = self.pins().link(ifname, UPLINK_XDP);
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(UPLINK_XDP)
            .ok_or_else(|| anyhow::anyhow!("program {UPLINK_XDP} missing"))?
            .try_into()?;
        if let Ok(old) = PinnedLink::from_pin(&pin) {
            let adopted = XdpLink::try_from(FdLink::from(old))
                .map_err(anyhow::Error::from)
                .and_then(|link| prog.attach_to_link(link).map_err(Into::into));
            match adopted {
                Ok(id) => {
                    drop(prog.take_link(id)?);
                    return Ok(());
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let mode = if generic {
            XdpMode::Skb
        } else {
            XdpMode::Default
        };
        let id = prog.attach_to_if_index(ifindex, mode)?;
        let link: FdLink = prog.take_link(id)?.try_into()?;
        link.pin(&pin)?;
        Ok(())
    }

    pub fn detach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        self.unpin_link(&self.pins().link(ifname, UPLINK_XDP))?;
        for (name, _) in UPLINK_PROGRAMS {
            self.unpin_link(&self.pins().link(ifname, name))?;
        }
        self.remove_uplink6(ifindex)?;
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
