//! Netlink inside a container's network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that created it,
//! so a short-lived thread enters the container netns, opens the socket and
//! exits; the agent then talks to that namespace through the socket without
//! ever moving its own threads.
use std::{fs::File, net::Ipv4Addr, path::Path};

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use super::links::HostLinks;

/// An interface inside a container, as the kernel has it.
#[derive(Debug)]
pub struct InterfaceState {
    pub up: bool,
    pub addrs: Vec<ipnet::Ipv4Net>,
    /// Gateway of a default route through this interface.
    pub default_gateway: Option<Ipv4Addr>,
}

pub struct ContainerNs {
    pub file: File,
    pub(super) links: HostLinks,
}

impl ContainerNs {
    /// Opens the netns at `path` (e.g. /run/netns/x or /proc/PID/ns/net).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("network namespace {} cannot be opened", path.display()))?;
        let ns = file.try_clone()?;
        let shown = path.display().to_string();
        let runtime = tokio::runtime::Handle::current();
        let links = std::thread::spawn(move || -> Result<HostLinks> {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| anyhow!("{shown} is not a network namespace: {e}"))?;
            let _guard = runtime.enter();
            HostLinks::connect()
        })
        .join()
        .map_err(|_| anyhow!("netns thread panicked"))?
        .with_context(|| format!("failed to enter network namespace {}", path.display()))?;
        Ok(Self { file, links })
    }

    /// Addresses the interface `ifname` (born here by `create_veth`; no
    /// IPv4 address on an IPv6-only network), brings it and `lo` up, and
    /// adds the default route when asked.
    pub async fn configure_endpoint(
        &self,
        ifname: &str,
        addr: Option<ipnet::Ipv4Net>,
        default_gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let index = self
            .links
            .index_of(ifname)
            .await?
            .ok_or_else(|| anyhow!("{ifname} did not appear in the container namespace"))?;
        let handle = self.links.handle();
        if let Some(addr) = addr {
            handle
                .address()
                .add(index, addr.addr().into(), addr.prefix_len())
                .execute()
                .await
                .with_context(|| format!("failed to add {addr} to {ifname}"))?;
        }
        self.links.set_up(index).await?;
        self.lo_up().await?;
        if let Some(gw) = default_gateway {
            handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gw)
                        .output_interface(index)
                        .build(),
                )
                .execute()
                .await
                .with_context(|| format!("failed to add default route via {gw}"))?;
        }
        Ok(())
    }

    /// Points the default route at `gateway` through `ifname`.
    pub async fn set_default_route(&self, ifname: &str, gateway: Ipv4Addr) -> Result<()> {
        let index = self
            .links
            .index_of(ifname)
            .await?
            .ok_or_else(|| anyhow!("{ifname} is missing in the container namespace"))?;
        self.links
            .handle()
            .route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .with_context(|| format!("failed to set the default route via {gateway}"))
    }

    pub async fn lo_up(&self) -> Result<()> {
        let lo = self
            .links
            .index_of("lo")
            .await?
            .ok_or_else(|| anyhow!("no lo in the container namespace"))?;
        self.links
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .context("failed to bring lo up")
    }

    /// Deletes `ifname` inside the container (its veth peer goes with it).
    pub async fn delete_link(&self, ifname: &str) -> Result<()> {
        self.links.delete_by_name(ifname).await
    }

    /// What the kernel shows of `ifname` in the container namespace:
    /// `None` when it is missing.
    pub async fn interface_state(&self, ifname: &str) -> Result<Option<InterfaceState>> {
        let rows = self.links.dump().await?;
        let Some(row) = rows.into_iter().find(|r| r.name == ifname) else {
            return Ok(None);
        };
        let addrs = self.links.ipv4_nets(row.index).await?;
        let default_gateway = self
            .links
            .default_gateways()
            .await?
            .into_iter()
            .find(|(oif, _)| *oif == row.index)
            .map(|(_, gw)| gw);
        Ok(Some(InterfaceState {
            up: row.up,
            addrs,
            default_gateway,
        }))
    }

    /// Interface names present in the container namespace.
    pub async fn link_names(&self) -> Result<Vec<String>> {
        Ok(self
            .links
            .link_names()
            .await?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }
}
