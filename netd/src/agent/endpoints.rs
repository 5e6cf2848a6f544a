//! The kernel steps that put a container on a network and take it off:
//! a veth pair (host end on the bridge, peer born in the container netns),
//! the peer's address and routes, the endpoint in the datapath maps and the
//! programs on the host end. The host end comes up last, so no packet ever
//! crosses an unfiltered veth.
use anyhow::{Context, Result};
use netd_common::{
    Endpoint as DpEndpoint, NetworkInfo, NET_F_ICC, NET_F_INTERNAL, NET_F_MASQUERADE, NET_F_OVERLAY,
};

use std::sync::Arc;

use super::{gateways::Carries, Agent, SharedAgent};
use crate::{
    datapath::addr_key,
    kernel::{ContainerNetns, EndpointPrograms, LinkDriver, NetnsDriver},
    metrics::phases::lap,
    model::{Endpoint, Network},
    store::Store,
};

/// What a phased operation uses while it does not hold the state.
#[derive(Clone)]
pub(super) struct Kernel {
    pub links: Arc<dyn LinkDriver>,
    pub netns: Arc<dyn NetnsDriver>,
    pub attacher: Arc<dyn EndpointPrograms>,
    pub store: Arc<Store>,
}

/// The bridge of `net` (made, or adopted), with its gateway addresses.
pub(super) async fn realise_bridge(links: &dyn LinkDriver, net: &Network) -> Result<()> {
    let bridge = links
        .ensure_bridge(
            &net.bridge,
            &net.id,
            net.bridge_mac(),
            net.mtu,
            ipv4_gateway(net),
        )
        .await?;
    if let Some(v6) = &net.ipv6 {
        links.enable_ipv6(&net.bridge)?;
        links
            .ensure_address6(bridge, v6.gateway, v6.subnet.prefix_len())
            .await
            .with_context(|| format!("on bridge {}", net.bridge))?;
    }
    crate::fault::point("network-create:bridge");
    Ok(())
}

/// The IPv4 gateway with the subnet's prefix (`None`: IPv6-only).
fn ipv4_gateway(net: &Network) -> Option<ipnet::Ipv4Net> {
    net.has_ipv4()
        .then(|| ipnet::Ipv4Net::new(net.gateway, net.subnet.prefix_len()).ok())
        .flatten()
}

/// The endpoint as the maps hold it (address and gateway 0 on an
/// IPv6-only network: the programs then take no IPv4 from it).
fn dp_endpoint(net: &Network, ep: &Endpoint) -> DpEndpoint {
    DpEndpoint {
        ip: addr_key(ep.ip),
        net_id: net.datapath_id,
        net_flags: network_flags(net),
        gateway: addr_key(net.gateway),
        mac: ep.mac(),
        _pad: [0; 2],
    }
}

/// The veth of `ep` (a new pair with the peer born in the container) on
/// the bridge, down, and its container end addressed and up, with the
/// default routes it `carries`. Returns the host end's ifindex.
async fn make_veth(
    k: &Kernel,
    owner: &str,
    ns: &dyn ContainerNetns,
    net: &Network,
    ep: &Endpoint,
    carries: Carries,
) -> Result<u32> {
    let bridge = k
        .links
        .index_of(&net.bridge)
        .await?
        .with_context(|| format!("bridge {} of network {} is missing", net.bridge, net.name))?;
    let ifindex = k
        .links
        .create_veth(
            &ep.host_ifname,
            owner,
            &ep.ifname,
            Some(ns),
            ep.mac(),
            net.mtu,
            bridge,
        )
        .await?;
    crate::fault::point("endpoint:veth");
    lap("veth");
    let addr = ep
        .ip4()
        .and_then(|ip| ipnet::Ipv4Net::new(ip, net.subnet.prefix_len()).ok());
    let gateway = (carries.v4 && addr.is_some()).then_some(net.gateway);
    ns.configure_endpoint(&ep.ifname, addr, gateway).await?;
    if let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipv6) {
        ns.configure_ipv6(
            &ep.ifname,
            ip6,
            v6.subnet.prefix_len(),
            carries.v6.then_some(v6.gateway),
        )
        .await?;
    }
    crate::fault::point("endpoint:configured");
    lap("configure");
    Ok(ifindex)
}

/// After the endpoint is in the maps: the programs, on a blocking thread
/// (an earlier veth's binding of that name replaced), then the host end up.
async fn finish_veth(k: &Kernel, ep: &Endpoint, ifindex: u32) -> Result<()> {
    let a = k.attacher.clone();
    let host = ep.host_ifname.clone();
    // A veth just made has no qdisc: bind it, no unbind first (that
    // would dump every qdisc of the host, per add).
    tokio::task::spawn_blocking(move || a.attach(&host))
        .await
        .context("the attach thread failed")??;
    crate::fault::point("endpoint:attached");
    lap("attach");
    k.links.set_up(ifindex).await?;
    lap("up");
    Ok(())
}

impl SharedAgent {
    /// [`Agent::plumb_endpoint`] for a phased operation: the state is held
    /// only for the map write. `carries`: the default routes that leave
    /// by it.
    pub(super) async fn plumb(
        &self,
        k: &Kernel,
        owner: &str,
        ns: &dyn ContainerNetns,
        net: &Network,
        ep: &Endpoint,
        carries: Carries,
    ) -> Result<()> {
        let result = async {
            let ifindex = make_veth(k, owner, ns, net, ep, carries).await?;
            {
                let mut state = self.state().await;
                state
                    .datapath
                    .set_endpoint(ifindex, dp_endpoint(net, ep))
                    .with_context(|| {
                        format!(
                            "failed to write endpoint {} to the datapath",
                            ep.host_ifname
                        )
                    })?;
                state.publish_endpoint6(net, ep, ifindex)?;
            }
            lap("maps");
            finish_veth(k, ep, ifindex).await
        }
        .await;
        if let Err(e) = result {
            let _ = self.unplumb(k, ep).await;
            return Err(crate::net::kernel_errors::explain_plumbing(e, net));
        }
        Ok(())
    }

    /// [`Agent::unplumb_endpoint`] for a phased operation.
    pub(super) async fn unplumb(&self, k: &Kernel, ep: &Endpoint) -> Result<()> {
        let ifindex = k.links.index_of(&ep.host_ifname).await?;
        if let Some(index) = ifindex {
            k.links.delete(index).await?;
        }
        let mut state = self.state().await;
        state.datapath.detach_endpoint(&ep.host_ifname, ifindex)?;
        if let Some(ip6) = ep.ip6 {
            state.datapath.flush_flows6_of(ip6)?;
        }
        Ok(())
    }
}

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
        realise_bridge(self.links.as_ref(), net).await?;
        self.publish_network(net)?;
        crate::fault::point("network-create:datapath");
        Ok(())
    }

    /// Writes the network's subnets to the datapath: `NETWORKS` (none for
    /// an IPv6-only network) and `NETWORKS6`.
    pub(super) fn publish_network(&mut self, net: &Network) -> Result<()> {
        if net.has_ipv4() {
            self.datapath
                .upsert_network(net.subnet, network_info(net))?;
        }
        self.publish_network6(net)
    }

    /// Writes the endpoint to the maps and attaches (or adopts) its programs.
    pub(super) fn publish_endpoint(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        ifindex: u32,
    ) -> Result<()> {
        self.datapath
            .attach_endpoint(&ep.host_ifname, ifindex, dp_endpoint(net, ep))?;
        self.publish_endpoint6(net, ep, ifindex)
    }

    /// The handles a phased operation works with while the state is free.
    pub(super) fn kernel(&self) -> Kernel {
        Kernel {
            links: self.links.clone(),
            netns: self.netns.clone(),
            attacher: self.attacher.clone(),
            store: self.store.clone(),
        }
    }

    /// All kernel steps of attaching (a fresh veth) `ep` of the stored
    /// container `owner`, with the default routes it carries among its
    /// endpoints; on failure, undoes what it did.
    pub(super) async fn plumb_endpoint(
        &mut self,
        owner: &str,
        ns: &dyn ContainerNetns,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<()> {
        let k = self.kernel();
        let routes = self.carries_default_routes(owner, ep);
        let result = async {
            let ifindex = make_veth(&k, owner, ns, net, ep, routes).await?;
            self.datapath.set_endpoint(ifindex, dp_endpoint(net, ep))?;
            self.publish_endpoint6(net, ep, ifindex)?;
            finish_veth(&k, ep, ifindex).await
        }
        .await;
        if let Err(e) = result {
            let _ = self.unplumb_endpoint(ep).await;
            return Err(crate::net::kernel_errors::explain_plumbing(e, net));
        }
        Ok(())
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
                .create_veth(
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
