//! IPv6 through rtnetlink: addresses without duplicate address detection
//! (netd owns the subnet, and a tentative address would drop traffic for a
//! second or two), default routes, and what the reconciler reads back.
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv6Net;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
    },
    RouteMessageBuilder,
};

use super::HostLinks;

const RT_TABLE_MAIN: u8 = 254;

fn ipv6_of(msg: &AddressMessage) -> Option<Ipv6Addr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V6(ip)) | AddressAttribute::Local(IpAddr::V6(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

/// Neither link-local nor multicast: a prefix a network could clash with.
fn is_routable(net: &Ipv6Net) -> bool {
    let seg = net.addr().segments()[0];
    seg & 0xffc0 != 0xfe80 && seg & 0xff00 != 0xff00
}

/// [`HostLinks::masquerade_ipv6`]'s choice among a link's routable
/// addresses.
pub fn pick_masquerade_ipv6(nets: &[Ipv6Net]) -> Option<Ipv6Addr> {
    let unique_local = |a: &Ipv6Addr| a.segments()[0] & 0xfe00 == 0xfc00;
    let mut addrs = nets.iter().map(Ipv6Net::addr);
    addrs
        .clone()
        .find(|a| !unique_local(a))
        .or_else(|| addrs.next())
}

impl HostLinks {
    /// Puts `addr/prefix` on link `index` (without DAD) unless it is there.
    pub async fn ensure_address6(&self, index: u32, addr: Ipv6Addr, prefix: u8) -> Result<()> {
        let mut addrs = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr.into())
            .execute();
        if addrs.try_next().await?.is_some() {
            return Ok(());
        }
        let mut req = self.handle().address().add(index, addr.into(), prefix);
        let msg = req.message_mut();
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute()
            .await
            .with_context(|| format!("failed to add {addr}/{prefix}"))
    }

    /// The global IPv6 addresses (with prefix) of a link.
    pub async fn ipv6_nets(&self, index: u32) -> Result<Vec<Ipv6Net>> {
        let mut out = Vec::new();
        let mut addrs = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addrs.try_next().await? {
            if let Some(net) =
                ipv6_of(&msg).and_then(|ip| Ipv6Net::new(ip, msg.header.prefix_len).ok())
            {
                if is_routable(&net) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Every IPv6 route of the main table.
    async fn main_routes6(&self) -> Result<Vec<RouteMessage>> {
        let mut out = Vec::new();
        let mut routes = self
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        while let Some(msg) = routes.try_next().await? {
            if msg.header.table == RT_TABLE_MAIN {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// IPv6 destinations of the main table: no default route, no
    /// link-local or multicast prefixes.
    pub async fn route_prefixes6(&self) -> Result<Vec<Ipv6Net>> {
        let mut out = Vec::new();
        for msg in self.main_routes6().await? {
            let len = msg.header.destination_prefix_length;
            if len == 0 {
                continue;
            }
            let dst = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(net) = dst.and_then(|d| Ipv6Net::new(d, len).ok()) {
                if is_routable(&net) {
                    out.push(net.trunc());
                }
            }
        }
        Ok(out)
    }

    /// The interfaces of the IPv6 default routes (unicast ones of the
    /// main table): the IPv6 uplinks.
    pub async fn default_route_interfaces6(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for msg in self.main_routes6().await? {
            if msg.header.destination_prefix_length != 0 || msg.header.kind != RouteType::Unicast {
                continue;
            }
            for attr in &msg.attributes {
                if let RouteAttribute::Oif(index) = attr {
                    if !out.contains(index) {
                        out.push(*index);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The address IPv6 masquerade uses on link `index`: its first global
    /// unicast address, else its first unique local one (fc00::/7).
    pub async fn masquerade_ipv6(&self, index: u32) -> Result<Option<Ipv6Addr>> {
        Ok(pick_masquerade_ipv6(&self.ipv6_nets(index).await?))
    }

    /// (output interface, gateway) of the IPv6 default routes.
    pub async fn default_gateways6(&self) -> Result<Vec<(u32, Ipv6Addr)>> {
        Ok(super::links::default_gateways_of(
            &self.main_routes6().await?,
            |g| match g {
                RouteAddress::Inet6(ip) => Some(*ip),
                _ => None,
            },
        ))
    }

    /// Points the IPv6 default route at `gateway` through link `index`
    /// (replacing one that is there).
    pub async fn set_default_route6(&self, index: u32, gateway: Ipv6Addr) -> Result<()> {
        self.handle()
            .route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .with_context(|| format!("failed to set the IPv6 default route via {gateway}"))
    }
}

impl super::ContainerNs {
    /// The IPv6 side of an endpoint, after [`Self::configure_endpoint`]:
    /// IPv6 on for `ifname`, its address (no DAD), and the default route
    /// via `default_gateway` when given.
    pub async fn configure_ipv6(
        &self,
        ifname: &str,
        ip: Ipv6Addr,
        prefix: u8,
        default_gateway: Option<Ipv6Addr>,
    ) -> Result<()> {
        let index = self.ifindex(ifname).await?;
        super::sysctl::enable_ipv6_in(&self.file, ifname)?;
        self.links
            .ensure_address6(index, ip, prefix)
            .await
            .with_context(|| format!("on {ifname} in the container"))?;
        if let Some(gw) = default_gateway {
            self.links.set_default_route6(index, gw).await?;
        }
        Ok(())
    }

    /// Points the IPv6 default route at `gateway` through `ifname`.
    pub async fn set_default_route6(&self, ifname: &str, gateway: Ipv6Addr) -> Result<()> {
        let index = self.ifindex(ifname).await?;
        self.links.set_default_route6(index, gateway).await
    }

    /// The global IPv6 addresses of `ifname` and the IPv6 default gateway
    /// through it (`None` when it is missing).
    pub async fn ipv6_state(
        &self,
        ifname: &str,
    ) -> Result<Option<(Vec<Ipv6Net>, Option<Ipv6Addr>)>> {
        let Some(index) = self.links.index_of(ifname).await? else {
            return Ok(None);
        };
        let addrs = self.links.ipv6_nets(index).await?;
        let gw = self
            .links
            .default_gateways6()
            .await?
            .into_iter()
            .find(|(oif, _)| *oif == index)
            .map(|(_, gw)| gw);
        Ok(Some((addrs, gw)))
    }

    async fn ifindex(&self, ifname: &str) -> Result<u32> {
        self.links
            .index_of(ifname)
            .await?
            .with_context(|| format!("{ifname} is missing in the container namespace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Ipv6Net> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn masquerade_prefers_a_global_address_to_a_unique_local_one() {
        let pick = |s: &[&str]| pick_masquerade_ipv6(&nets(s)).map(|a| a.to_string());
        assert_eq!(
            pick(&["fd00:1::2/64", "2001:db8::7/64"]).as_deref(),
            Some("2001:db8::7")
        );
        assert_eq!(pick(&["fd00:1::2/64"]).as_deref(), Some("fd00:1::2"));
        assert_eq!(pick(&[]), None);
    }
}
