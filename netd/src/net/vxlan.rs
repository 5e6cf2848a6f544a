//! The host's one VXLAN device for overlay networks, made through
//! rtnetlink: external mode (collect_md: the programs choose VNI and
//! remote per packet), no learning, the underlay's MTU minus the
//! encapsulation, the advertise address as source.
use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, Context, Result};
use futures::TryStreamExt;
use rtnetlink::{
    packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage},
    LinkMessageBuilder, LinkUnspec, LinkVxlan,
};

use super::links::{is_not_found, owner_alias, HostLinks};

/// Owner id in the alias of the VXLAN device (`netd:overlay`).
pub const VXLAN_OWNER: &str = "overlay";

/// What an existing VXLAN device is configured with.
#[derive(Debug, Default, PartialEq, Eq)]
struct VxlanShape {
    external: bool,
    port: Option<u16>,
    local: Option<Ipv4Addr>,
    alias: Option<String>,
    mtu: Option<u32>,
}

fn shape_of(msg: &LinkMessage) -> Option<VxlanShape> {
    let mut shape = VxlanShape::default();
    let mut is_vxlan = false;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfAlias(a) => shape.alias = Some(a.clone()),
            LinkAttribute::Mtu(m) => shape.mtu = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => is_vxlan = k.to_string() == "vxlan",
                        LinkInfo::Data(InfoData::Vxlan(items)) => {
                            for item in items {
                                match item {
                                    InfoVxlan::CollectMetadata(on) => shape.external = *on,
                                    InfoVxlan::Port(p) => shape.port = Some(*p),
                                    InfoVxlan::Local(l) => shape.local = Some(*l),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    is_vxlan.then_some(shape)
}

impl HostLinks {
    async fn link_message(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(m) => Ok(m),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("failed to look up link {name}"))),
        }
    }

    /// The MTU of link `index`.
    pub async fn mtu_of(&self, index: u32) -> Result<u32> {
        let mut links = self.handle().link().get().match_index(index).execute();
        let msg = links
            .try_next()
            .await?
            .ok_or_else(|| anyhow!("link {index} is gone"))?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .ok_or_else(|| anyhow!("link {index} reports no MTU"))
    }

    /// The link that holds `addr`, if any.
    pub async fn link_with_address(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        for (index, _) in self.link_names().await? {
            if self
                .ipv4_nets(index)
                .await?
                .iter()
                .any(|n| n.addr() == addr)
            {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    /// Creates (or adopts) the VXLAN device `name` in external mode on UDP
    /// `port` with outer source `local`, MTU `mtu`. A new device is left
    /// down (the caller attaches its program first). A device of that
    /// name made otherwise (another port or address, not external) is
    /// replaced if it is netd's and refused if it is not.
    pub async fn ensure_vxlan(
        &self,
        name: &str,
        local: Ipv4Addr,
        port: u16,
        mtu: u32,
    ) -> Result<u32> {
        if let Some(msg) = self.link_message(name).await? {
            let index = msg.header.index;
            let shape = shape_of(&msg);
            let ours = shape
                .as_ref()
                .and_then(|s| s.alias.as_deref())
                .is_some_and(|a| a == owner_alias(VXLAN_OWNER));
            if !ours {
                bail!(
                    "a link named {name} exists and is not netd's VXLAN device: remove it \
                     (ip link del {name}) or free the name"
                );
            }
            let shape = shape.unwrap_or_default();
            if shape.external && shape.port == Some(port) && shape.local == Some(local) {
                if shape.mtu != Some(mtu) {
                    self.handle()
                        .link()
                        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
                        .execute()
                        .await
                        .with_context(|| format!("failed to set the MTU of {name} to {mtu}"))?;
                }
                return Ok(index);
            }
            self.delete(index).await?;
        }
        let msg = LinkMessageBuilder::<LinkVxlan>::new(name)
            .collect_metadata(true)
            .learning(false)
            .port(port)
            .local(local)
            .mtu(mtu)
            .build();
        if let Err(e) = self.handle().link().add(msg).execute().await {
            let e = anyhow!(e);
            let hint = if super::kernel_errors::errno(&e) == Some(libc::EEXIST) {
                format!(
                    "another VXLAN device in external mode already uses UDP port {port} in \
                     this network namespace: remove it or choose another port"
                )
            } else {
                format!("the kernel refused to create VXLAN device {name}")
            };
            return Err(e.context(hint));
        }
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| anyhow!("{name} vanished after creation"))?;
        self.handle()
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .alias(owner_alias(VXLAN_OWNER))
                    .build(),
            )
            .execute()
            .await
            .context("failed to mark the VXLAN device as netd's")?;
        Ok(index)
    }
}
