//! Overlay networks in the maps: the VXLAN device the programs send to
//! (`OVERLAY_CONFIG`), which local network each VNI carries
//! (`OVERLAY_VNIS`), and the containers of overlay networks on other hosts
//! (`OVERLAY_REMOTES`). The control plane (the cluster store's watches)
//! calls these; `net::vxlan` makes the device.
use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, HashMap, MapData, MapError},
    programs::TcAttachType,
};
use netd_common::{
    OverlayConfig, OverlayNet, RemoteEndpoint, RemoteKey, MAP_OVERLAY_CONFIG, MAP_OVERLAY_REMOTES,
    MAP_OVERLAY_VNIS, VNI_MAX, VXLAN_DEVICE, VXLAN_OVERHEAD,
};

use super::{addr_key, loader::OVERLAY_IN, Datapath};
use crate::{
    kernel::{DatapathDriver, LinkDriver},
    net::{vxlan::VXLAN_OWNER, LinkRow},
};

/// The MTU of an overlay network on an underlay of `underlay_mtu`.
pub fn default_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

/// The host's VXLAN device as the programs use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayDevice {
    pub ifindex: u32,
    /// The advertise address: outer source, what other hosts send to.
    pub local: Ipv4Addr,
    pub port: u16,
    /// MTU of the device that holds the advertise address.
    pub underlay_mtu: u32,
}

impl OverlayDevice {
    /// The default MTU of overlay networks (and of the VXLAN device).
    pub fn network_mtu(&self) -> u32 {
        default_mtu(self.underlay_mtu)
    }
}

/// Is this link the VXLAN device netd made (not an orphan while the agent
/// is part of a cluster)?
pub fn is_device_row(row: &LinkRow) -> bool {
    row.name == VXLAN_DEVICE && row.owner.as_deref() == Some(VXLAN_OWNER)
}

/// The address other hosts reach this one by: `advertise`, which must be
/// an address of this host, or else the primary IPv4 of the default
/// route's interface. Returns it with the link that holds it.
async fn advertise_address(
    links: &dyn LinkDriver,
    advertise: Option<Ipv4Addr>,
) -> Result<(Ipv4Addr, u32)> {
    if let Some(addr) = advertise {
        let index = links.link_with_address(addr).await?.with_context(|| {
            format!(
                "--advertise-addr {addr} is not an address of this host: give the address \
                 other hosts reach this one by"
            )
        })?;
        return Ok((addr, index));
    }
    for index in links.default_route_interfaces().await? {
        if let Some(addr) = links.primary_ipv4(index).await? {
            return Ok((addr, index));
        }
    }
    bail!(
        "no address to advertise to other hosts: there is no IPv4 default route with an \
         address; give --advertise-addr IP"
    )
}

/// Creates or adopts the VXLAN device on the underlay of the advertise
/// address (UDP `port`, MTU the underlay's minus the encapsulation),
/// attaches `overlay_in` before the device comes up, and points the
/// programs at it. Idempotent: a restarted agent adopts the device and the
/// program link.
pub async fn ensure_device(
    links: &dyn LinkDriver,
    dp: &mut dyn DatapathDriver,
    advertise: Option<Ipv4Addr>,
    port: u16,
) -> Result<OverlayDevice> {
    if port == 0 {
        bail!("the VXLAN port must not be 0");
    }
    let (local, underlay) = advertise_address(links, advertise).await?;
    let underlay_mtu = links.mtu_of(underlay).await?;
    let ifindex = links
        .ensure_vxlan(VXLAN_DEVICE, local, port, default_mtu(underlay_mtu))
        .await?;
    dp.attach_overlay_device(ifindex, local)?;
    links.set_up(ifindex).await?;
    Ok(OverlayDevice {
        ifindex,
        local,
        port,
        underlay_mtu,
    })
}

/// Removes the VXLAN device (if it is netd's) and stops encapsulation.
pub async fn remove_device(links: &dyn LinkDriver, dp: &mut dyn DatapathDriver) -> Result<()> {
    dp.detach_overlay_device()?;
    for row in links.dump().await? {
        if is_device_row(&row) {
            links.delete(row.index).await?;
        }
    }
    Ok(())
}

/// A remote endpoint as the agent names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Local datapath id of the network.
    pub net_id: u32,
    pub vni: u32,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// Tunnel address of the host it runs on.
    pub host: Ipv4Addr,
    pub mac: [u8; 6],
}

impl Remote {
    fn from_entry(k: &RemoteKey, v: &RemoteEndpoint) -> Self {
        Remote {
            net_id: k.net_id,
            vni: v.vni,
            ip: Ipv4Addr::from(k.addr.to_ne_bytes()),
            host: Ipv4Addr::from(v.host.to_ne_bytes()),
            mac: v.mac,
        }
    }
}

fn check_vni(vni: u32) -> Result<()> {
    if vni == 0 || vni > VNI_MAX {
        bail!("VNI {vni} is out of range (1-{VNI_MAX})");
    }
    Ok(())
}

fn remove_ok(r: Result<(), MapError>, what: &str) -> Result<()> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {what} from the datapath")),
    }
}

impl Datapath {
    fn overlay_vnis(&mut self) -> Result<HashMap<&mut MapData, u32, OverlayNet>> {
        Ok(HashMap::try_from(self.map_mut(MAP_OVERLAY_VNIS)?)?)
    }

    fn overlay_remotes(&mut self) -> Result<HashMap<&mut MapData, RemoteKey, RemoteEndpoint>> {
        Ok(HashMap::try_from(self.map_mut(MAP_OVERLAY_REMOTES)?)?)
    }

    fn overlay_config_map(&mut self) -> Result<Array<&mut MapData, OverlayConfig>> {
        Ok(Array::try_from(self.map_mut(MAP_OVERLAY_CONFIG)?)?)
    }

    /// Attaches (or adopts) `overlay_in` on the VXLAN device, then tells the
    /// programs where to send and with which outer source address.
    pub fn attach_overlay_device(&mut self, ifindex: u32, local: Ipv4Addr) -> Result<()> {
        self.attach_link(VXLAN_DEVICE, OVERLAY_IN, TcAttachType::Ingress)
            .with_context(|| format!("failed to attach {OVERLAY_IN} to {VXLAN_DEVICE}"))?;
        let cfg = OverlayConfig {
            ifindex,
            local: addr_key(local),
        };
        self.overlay_config_map()?
            .set(0, cfg, 0)
            .context("failed to write the overlay device to the datapath")
    }

    /// Forgets the VXLAN device: nothing more is encapsulated (counted as
    /// `overlay-no-device`), its program link is unpinned.
    pub fn detach_overlay_device(&mut self) -> Result<()> {
        self.overlay_config_map()?
            .set(0, OverlayConfig::default(), 0)
            .context("failed to clear the overlay device in the datapath")?;
        self.unpin_link(&self.pins().link(VXLAN_DEVICE, OVERLAY_IN))
    }

    /// Writes `OVERLAY_CONFIG` as given, nothing attached: for the explain
    /// sandbox's copy of the live maps.
    pub fn set_overlay_config(&mut self, cfg: OverlayConfig) -> Result<()> {
        self.overlay_config_map()?
            .set(0, cfg, 0)
            .context("failed to write OVERLAY_CONFIG")
    }

    /// What `OVERLAY_CONFIG` holds (ifindex 0: no device).
    pub fn overlay_config(&mut self) -> Result<OverlayConfig> {
        Ok(self.overlay_config_map()?.get(&0, 0)?)
    }

    /// Binds `vni` to the local network `net_id` (what `overlay_in` accepts).
    /// A VNI already bound to another network is refused.
    pub fn register_overlay_network(&mut self, net_id: u32, vni: u32) -> Result<()> {
        check_vni(vni)?;
        let mut vnis = self.overlay_vnis()?;
        if let Ok(old) = vnis.get(&vni, 0) {
            if old.net_id != net_id {
                bail!(
                    "VNI {vni} already carries datapath network {}; remove that network first",
                    old.net_id
                );
            }
            return Ok(());
        }
        let stale: Vec<u32> = vnis
            .iter()
            .filter_map(Result::ok)
            .filter(|(v, n)| n.net_id == net_id && *v != vni)
            .map(|(v, _)| v)
            .collect();
        for v in stale {
            remove_ok(vnis.remove(&v), "an old VNI")?;
        }
        vnis.insert(
            vni,
            OverlayNet {
                net_id,
                _reserved: 0,
            },
            0,
        )
        .with_context(|| format!("failed to write VNI {vni} to the datapath"))
    }

    /// Removes the network's VNI and every remote endpoint of it.
    pub fn unregister_overlay_network(&mut self, net_id: u32) -> Result<()> {
        let mut vnis = self.overlay_vnis()?;
        let doomed: Vec<u32> = vnis
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, n)| n.net_id == net_id)
            .map(|(v, _)| v)
            .collect();
        for v in doomed {
            remove_ok(vnis.remove(&v), "a VNI")?;
        }
        self.sync_remote_endpoints(net_id, 0, &BTreeMap::new())?;
        Ok(())
    }

    /// `(vni, net_id)` of every overlay network the datapath carries.
    pub fn overlay_networks(&mut self) -> Result<Vec<(u32, u32)>> {
        Ok(self
            .overlay_vnis()?
            .iter()
            .filter_map(Result::ok)
            .map(|(v, n)| (v, n.net_id))
            .collect())
    }

    /// Adds or updates the container `ip` of network `net_id` on host `host`.
    pub fn set_remote_endpoint(
        &mut self,
        net_id: u32,
        vni: u32,
        ip: Ipv4Addr,
        host: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<()> {
        check_vni(vni)?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            bail!("remote endpoint {ip}: its MAC is not a unicast address");
        }
        let key = RemoteKey {
            net_id,
            addr: addr_key(ip),
        };
        let value = RemoteEndpoint {
            host: addr_key(host),
            vni,
            mac,
            _pad: [0; 2],
        };
        self.overlay_remotes()?
            .insert(key, value, 0)
            .with_context(|| format!("failed to write remote endpoint {ip} to the datapath"))
    }

    pub fn remove_remote_endpoint(&mut self, net_id: u32, ip: Ipv4Addr) -> Result<()> {
        let key = RemoteKey {
            net_id,
            addr: addr_key(ip),
        };
        remove_ok(self.overlay_remotes()?.remove(&key), "a remote endpoint")
    }

    /// Makes the remote endpoints of `net_id` exactly `want` (address ->
    /// (host, MAC)); returns how many were written and how many removed.
    /// Entries already right are not rewritten.
    pub fn sync_remote_endpoints(
        &mut self,
        net_id: u32,
        vni: u32,
        want: &BTreeMap<Ipv4Addr, (Ipv4Addr, [u8; 6])>,
    ) -> Result<(usize, usize)> {
        let have: BTreeMap<Ipv4Addr, Remote> = self
            .remote_endpoints()?
            .into_iter()
            .filter(|r| r.net_id == net_id)
            .map(|r| (r.ip, r))
            .collect();
        let mut removed = 0;
        for ip in have.keys().filter(|ip| !want.contains_key(ip)) {
            self.remove_remote_endpoint(net_id, *ip)?;
            removed += 1;
        }
        let mut written = 0;
        for (ip, (host, mac)) in want {
            let same = have
                .get(ip)
                .is_some_and(|r| r.host == *host && r.mac == *mac && r.vni == vni);
            if !same {
                self.set_remote_endpoint(net_id, vni, *ip, *host, *mac)?;
                written += 1;
            }
        }
        Ok((written, removed))
    }

    /// Every remote endpoint in the datapath.
    pub fn remote_endpoints(&mut self) -> Result<Vec<Remote>> {
        Ok(self
            .overlay_remotes()?
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| Remote::from_entry(&k, &v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mtu_leaves_room_for_vxlan() {
        assert_eq!(default_mtu(1500), 1450);
        assert_eq!(default_mtu(9000), 8950);
        assert_eq!(default_mtu(20), 0);
    }

    #[test]
    fn vni_range() {
        assert!(check_vni(0).is_err());
        assert!(check_vni(1).is_ok());
        assert!(check_vni(VNI_MAX).is_ok());
        assert!(check_vni(VNI_MAX + 1).is_err());
    }
}
