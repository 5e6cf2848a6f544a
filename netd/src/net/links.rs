//! Bridges, veths and routes in the agent's own network namespace.
use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressMessage, AddressScope},
        link::{
            InfoData, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
        },
        route::{RouteAddress, RouteAttribute, RouteMessage},
        AddressFamily,
    },
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

const RT_TABLE_MAIN: u8 = 254;

/// A netlink connection to the agent's network namespace.
#[derive(Clone)]
pub struct HostLinks {
    handle: Handle,
    /// The kernel runs one dump at a time per netlink socket (a second
    /// one is refused with EBUSY): concurrent requests take turns.
    dumps: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// One link as the reconciler sees it.
#[derive(Clone, Debug)]
pub struct LinkRow {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub master: Option<u32>,
    /// Owner id from netd's alias, if the link is netd's.
    pub owner: Option<String>,
}

/// Every link netd creates carries this alias prefix and its owner's id,
/// so a restarted agent can tell its orphans from other software's links.
pub const ALIAS_PREFIX: &str = "netd:";

pub fn owner_alias(owner: &str) -> String {
    format!("{ALIAS_PREFIX}{owner}")
}

/// Is this the kernel's "no such device" answer?
pub fn is_not_found(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(e)
        if e.code.map(|c| c.get()) == Some(-libc_enodev()))
}

const fn libc_enodev() -> i32 {
    19
}

/// The IPv4 address an address message is about.
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl HostLinks {
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("failed to open an rtnetlink socket")?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            dumps: Default::default(),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The ifindex of `name`, if such a link exists.
    pub async fn index_of(&self, name: &str) -> Result<Option<u32>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("failed to look up link {name}"))),
        }
    }

    /// The kind of a link (`veth`, `bridge`, ...), if it has one.
    pub async fn kind(&self, index: u32) -> Result<Option<String>> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let Some(msg) = links.try_next().await? else {
            return Ok(None);
        };
        for attr in &msg.attributes {
            if let LinkAttribute::LinkInfo(infos) = attr {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        return Ok(Some(kind.to_string()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// A dump of every link, without the per-link statistics (the kernel
    /// sums them per CPU for each link; nothing here reads them).
    fn dump_request(&self) -> impl futures::Stream<Item = Result<LinkMessage, rtnetlink::Error>> {
        self.handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
            .execute()
    }

    /// Every link of the namespace in one dump.
    pub async fn dump(&self) -> Result<Vec<LinkRow>> {
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
        let mut links = self.dump_request();
        while let Some(msg) = links.try_next().await? {
            let Some(name) = link_name(&msg) else {
                continue;
            };
            let mut row = LinkRow {
                index: msg.header.index,
                name: name.to_string(),
                up: msg.header.flags.contains(LinkFlags::Up),
                master: None,
                owner: None,
            };
            for attr in &msg.attributes {
                match attr {
                    LinkAttribute::Controller(m) => row.master = Some(*m),
                    LinkAttribute::IfAlias(a) => {
                        row.owner = a.strip_prefix(ALIAS_PREFIX).map(str::to_string);
                    }
                    _ => {}
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// The dump keyed by link name.
    pub async fn by_name(&self) -> Result<std::collections::HashMap<String, LinkRow>> {
        Ok(self
            .dump()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect())
    }

    /// Links whose alias marks them as netd's: (index, name, owner id).
    pub async fn owned_links(&self) -> Result<Vec<(u32, String, String)>> {
        Ok(self
            .dump()
            .await?
            .into_iter()
            .filter_map(|r| r.owner.map(|o| (r.index, r.name, o)))
            .collect())
    }

    /// Names of every link in the namespace.
    pub async fn link_names(&self) -> Result<Vec<(u32, String)>> {
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
        let mut links = self.dump_request();
        while let Some(msg) = links.try_next().await? {
            if let Some(name) = link_name(&msg) {
                out.push((msg.header.index, name.to_string()));
            }
        }
        Ok(out)
    }

    /// Creates (or adopts) a bridge with the gateway address on it, up.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        owner: &str,
        mac: [u8; 6],
        mtu: u32,
        gateway: Option<ipnet::Ipv4Net>,
    ) -> Result<u32> {
        let index = match self.index_of(name).await? {
            Some(i) => i,
            None => {
                let msg = LinkBridge::new(name).mtu(mtu).address(mac.to_vec()).build();
                self.add_marked(msg, name, owner).await?
            }
        };
        if let Some(gw) = gateway {
            self.ensure_address(index, gw.addr(), gw.prefix_len())
                .await
                .with_context(|| format!("failed to put {gw} on {name}"))?;
        }
        super::sysctl::skip_dad_on_bridge(name)?;
        self.set_up(index).await?;
        Ok(index)
    }

    async fn ensure_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let _turn = self.dumps.lock().await;
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr.into())
            .execute();
        // Read to the end: a dump left half-read keeps the socket busy.
        let mut found = false;
        while addrs.try_next().await?.is_some() {
            found = true;
        }
        if found {
            return Ok(());
        }
        self.handle
            .address()
            .add(index, addr.into(), prefix)
            .execute()
            .await?;
        Ok(())
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("failed to bring up link {index}"))
    }

    /// Deletes a link; a link already gone is not an error.
    pub async fn delete(&self, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("failed to delete link {index}"))),
        }
    }

    pub async fn delete_by_name(&self, name: &str) -> Result<()> {
        if let Some(index) = self.index_of(name).await? {
            self.delete(index).await?;
        }
        Ok(())
    }

    /// Creates a veth pair whose host end `host_name` is enslaved to
    /// `bridge_index` (left down) and whose peer is born inside the container
    /// netns `netns` as `peer_name` with `peer_mac`. Returns the host ifindex.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_veth(
        &self,
        host_name: &str,
        owner: &str,
        peer_name: &str,
        netns: &impl AsRawFd,
        peer_mac: [u8; 6],
        mtu: u32,
        bridge_index: u32,
    ) -> Result<u32> {
        let at = Some(netns.as_raw_fd());
        self.create_veth_at(host_name, owner, peer_name, at, peer_mac, mtu, bridge_index)
            .await
    }

    /// Like [`Self::create_veth`], with the peer born in the netns
    /// `peer_netns` or, when `None`, in this namespace too (for a runtime
    /// that moves the peer into its sandbox itself, as Docker does).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_veth_at(
        &self,
        host_name: &str,
        owner: &str,
        peer_name: &str,
        peer_netns: Option<std::os::fd::RawFd>,
        peer_mac: [u8; 6],
        mtu: u32,
        bridge_index: u32,
    ) -> Result<u32> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new();
        if let Some(fd) = peer_netns {
            peer = peer.setns_by_fd(fd);
        }
        let peer = peer
            .name(peer_name.to_string())
            .address(peer_mac.to_vec())
            .mtu(mtu)
            .build();
        let msg = LinkVeth::new(host_name, peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(mtu)
            .controller(bridge_index)
            .build();
        let index = self.add_marked(msg, host_name, owner).await?;
        if let Err(e) = super::sysctl::disable_ipv6_on_port(host_name) {
            tracing::warn!(veth = host_name, error = %format!("{e:#}"), "IPv6 stays on for this bridge port");
        }
        Ok(index)
    }

    /// Creates the link `msg` describes, named `name`, and marks it as
    /// `owner`'s; returns its ifindex.
    async fn add_marked(&self, msg: LinkMessage, name: &str, owner: &str) -> Result<u32> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("failed to create {name}"))?;
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| anyhow!("{name} vanished after creation"))?;
        self.mark(index, owner).await?;
        Ok(index)
    }

    /// Sets netd's owner alias on a link (the kernel ignores IFLA_IFALIAS
    /// when a link is created, so it is set right after).
    async fn mark(&self, index: u32, owner: &str) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .alias(owner_alias(owner))
                    .build(),
            )
            .execute()
            .await
            .context("failed to mark a link as netd's")
    }

    pub async fn set_master(&self, index: u32, bridge: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(bridge).build())
            .execute()
            .await
            .context("failed to put a veth back on its bridge")
    }

    /// Every IPv4 route of the main table.
    async fn main_routes(&self) -> Result<Vec<RouteMessage>> {
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(msg) = routes.try_next().await? {
            if msg.header.table == RT_TABLE_MAIN {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// Output interfaces of the IPv4 default route(s) in the main table.
    pub async fn default_route_interfaces(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for msg in self.main_routes().await? {
            if msg.header.destination_prefix_length != 0 {
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

    /// The address messages of a link.
    async fn addresses_of(&self, index: u32) -> Result<Vec<AddressMessage>> {
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addrs.try_next().await? {
            out.push(msg);
        }
        Ok(out)
    }

    /// The first global IPv4 address of a link (its primary address).
    pub async fn primary_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .addresses_of(index)
            .await?
            .iter()
            .filter(|m| m.header.scope == AddressScope::Universe)
            .find_map(ipv4_of))
    }

    /// The IPv4 addresses (with prefix) of a link.
    pub async fn ipv4_nets(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        Ok(self
            .addresses_of(index)
            .await?
            .iter()
            .filter_map(|m| Ipv4Net::new(ipv4_of(m)?, m.header.prefix_len).ok())
            .collect())
    }

    /// (output interface, gateway) of the IPv4 default routes of the main table.
    pub async fn default_gateways(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        Ok(default_gateways_of(
            &self.main_routes().await?,
            |g| match g {
                RouteAddress::Inet(ip) => Some(*ip),
                _ => None,
            },
        ))
    }

    /// Every IPv4 address of the namespace except loopback ones.
    pub async fn all_ipv4(&self) -> Result<std::collections::HashSet<Ipv4Addr>> {
        let _turn = self.dumps.lock().await;
        let mut out = std::collections::HashSet::new();
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await? {
            if let Some(ip) = ipv4_of(&msg).filter(|ip| !ip.is_loopback()) {
                out.insert(ip);
            }
        }
        Ok(out)
    }

    /// Every global (or unique local) IPv6 address of the host: loopback,
    /// link-local and multicast ones excluded.
    pub async fn all_ipv6(&self) -> Result<std::collections::HashSet<std::net::Ipv6Addr>> {
        let _turn = self.dumps.lock().await;
        let mut out = std::collections::HashSet::new();
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = ip.filter(|ip| {
                !ip.is_loopback()
                    && !ip.is_unspecified()
                    && !ip.is_multicast()
                    && !ip.is_unicast_link_local()
            }) {
                out.insert(ip);
            }
        }
        Ok(out)
    }

    /// IPv4 destinations of the main routing table, default route excluded.
    pub async fn route_prefixes(&self) -> Result<Vec<Ipv4Net>> {
        let mut out = Vec::new();
        for msg in self.main_routes().await? {
            if msg.header.destination_prefix_length == 0 {
                continue;
            }
            let dst = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(dst) = dst {
                if let Ok(net) = Ipv4Net::new(dst, msg.header.destination_prefix_length) {
                    out.push(net.trunc());
                }
            }
        }
        Ok(out)
    }
}

/// (output interface, gateway) of the default routes among `routes`, for
/// either family: `gateway` reads the family's address.
pub(super) fn default_gateways_of<A>(
    routes: &[RouteMessage],
    gateway: impl Fn(&RouteAddress) -> Option<A>,
) -> Vec<(u32, A)> {
    routes
        .iter()
        .filter(|m| m.header.destination_prefix_length == 0)
        .filter_map(|msg| {
            let oif = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })?;
            let gw = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => gateway(g),
                _ => None,
            })?;
            Some((oif, gw))
        })
        .collect()
}
