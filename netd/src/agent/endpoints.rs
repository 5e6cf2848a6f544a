//! The kernel steps that put a container on a network and take it off:
//! a veth pair (host end on the bridge, peer born in the container netns),
//! the peer's address and routes, the endpoint in the datapath maps and the
//! programs on the host end. The host end comes up last, so no packet ever
//! crosses an unfiltered veth.
use anyhow::{Context, Result};
use netd_common::{
    Endpoint as DpEndpoint, NetworkInfo, NET_F_ICC, NET_F_INTERNAL, NET_F_MASQUERADE, NET_F_OVERLAY,
};

use super::Agent;
use crate::{
    datapath::addr_key,
    model::{mac_for, Endpoint, Network},
    net::ContainerNs,
};

pub(super) fn network_flags(net: &Network) -> u32 {
    let mut flags = 0;
    if net.internal {
        flags |= NET_F_INTERNAL;
    }
    if net.icc {
        flags |= NET_F_ICC;
    }
    if net.masquerade {
        flags |= NET_F_MASQUERADE;
    }
    if net.is_overlay() {
        flags |= NET_F_OVERLAY;
    }
    flags
}

pub(super) fn network_info(net: &Network) -> NetworkInfo {
    NetworkInfo {
        net_id: net.datapath_id,
        gateway: addr_key(net.gateway),
        flags: network_flags(net),
        prefix_len: u32::from(net.subnet.prefix_len()),
    }
}

impl Agent {
    /// Creates the bridge (if missing) and the network's datapath entry.
    pub(super) async fn realise_network(&mut self, net: &Network) -> Result<()> {
        let bridge = self
            .links
            .ensure_bridge(
                &net.bridge,
                &net.id,
                mac_for(net.gateway),
                net.mtu,
                net.gateway,
                net.subnet.prefix_len(),
            )
            .await?;
        if let Some(v6) = &net.ipv6 {
            crate::net::sysctl::enable_ipv6_forwarding()?;
            crate::net::sysctl::enable_ipv6_on(&net.bridge)?;
            self.links
                .ensure_address6(bridge, v6.gateway, v6.subnet.prefix_len())
                .await
                .with_context(|| format!("on bridge {}", net.bridge))?;
        }
        crate::fault::point("network-create:bridge");
        self.datapath
            .upsert_network(net.subnet, network_info(net))?;
        self.publish_network6(net)?;
        crate::fault::point("network-create:datapath");
        Ok(())
    }

    /// Writes the endpoint to the maps and attaches (or adopts) its programs.
    pub(super) fn publish_endpoint(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        ifindex: u32,
    ) -> Result<()> {
        let dp = DpEndpoint {
            ip: addr_key(ep.ip),
            net_id: net.datapath_id,
            net_flags: network_flags(net),
            gateway: addr_key(net.gateway),
            mac: ep.mac(),
            _pad: [0; 2],
        };
        self.datapath
            .attach_endpoint(&ep.host_ifname, ifindex, dp)?;
        self.publish_endpoint6(net, ep, ifindex)
    }

    /// All kernel steps of attaching; on failure, undoes what it did.
    pub(super) async fn plumb_endpoint(
        &mut self,
        owner: &str,
        ns: &ContainerNs,
        net: &Network,
        ep: &Endpoint,
        default_route: bool,
    ) -> Result<()> {
        let result = self
            .try_plumb_endpoint(owner, ns, net, ep, default_route)
            .await;
        if let Err(e) = result {
            let _ = self.unplumb_endpoint(ep).await;
            return Err(crate::net::kernel_errors::explain_plumbing(e, net));
        }
        Ok(())
    }

    async fn try_plumb_endpoint(
        &mut self,
        owner: &str,
        ns: &ContainerNs,
        net: &Network,
        ep: &Endpoint,
        default_route: bool,
    ) -> Result<()> {
        let bridge =
            self.links.index_of(&net.bridge).await?.with_context(|| {
                format!("bridge {} of network {} is missing", net.bridge, net.name)
            })?;
        let ifindex = self
            .links
            .create_veth(
                &ep.host_ifname,
                owner,
                &ep.ifname,
                &ns.file,
                ep.mac(),
                net.mtu,
                bridge,
            )
            .await?;
        crate::fault::point("endpoint:veth");
        ns.configure_endpoint(
            &ep.ifname,
            ep.ip,
            net.subnet.prefix_len(),
            default_route.then_some(net.gateway),
        )
        .await?;
        if let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipv6) {
            let default6 = self.carries_default_route6(owner, ep);
            ns.configure_ipv6(
                &ep.ifname,
                ip6,
                v6.subnet.prefix_len(),
                default6.then_some(v6.gateway),
            )
            .await?;
        }
        crate::fault::point("endpoint:configured");
        self.publish_endpoint(net, ep, ifindex)?;
        crate::fault::point("endpoint:attached");
        self.links.set_up(ifindex).await
    }

    /// The kernel steps of a Docker Join: a veth pair in the agent's netns
    /// (Docker moves the peer into its sandbox and configures it), the
    /// endpoint in the maps, programs on the host end, host end up. On
    /// failure, undoes what it did.
    pub(super) async fn plumb_host_pair(
        &mut self,
        owner: &str,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<()> {
        let result = async {
            let bridge = self.links.index_of(&net.bridge).await?.with_context(|| {
                format!("bridge {} of network {} is missing", net.bridge, net.name)
            })?;
            let ifindex = self
                .links
                .create_veth_at(
                    &ep.host_ifname,
                    owner,
                    &ep.ifname,
                    None,
                    ep.mac(),
                    net.mtu,
                    bridge,
                )
                .await?;
            self.publish_endpoint(net, ep, ifindex)?;
            self.links.set_up(ifindex).await
        }
        .await;
        if result.is_err() {
            let _ = self.unplumb_endpoint(ep).await;
        }
        result
    }

    /// Deletes the veth (traffic stops at once), then the links and entry.
    pub(super) async fn unplumb_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        let ifindex = self.links.index_of(&ep.host_ifname).await?;
        if let Some(index) = ifindex {
            self.links.delete(index).await?;
        }
        self.datapath.detach_endpoint(&ep.host_ifname, ifindex)?;
        if let Some(ip6) = ep.ip6 {
            self.datapath.flush_flows6_of(ip6)?;
        }
        Ok(())
    }
}
