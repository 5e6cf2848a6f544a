//! The endpoint programs on two shared TC filter blocks.
//!
//! `from_container` sits once on the ingress block and `to_container` once
//! on the egress block (direct-action `cls_bpf` filters); every container
//! veth gets a `clsact` qdisc bound to both blocks. Binding a qdisc to a
//! block needs no RCU grace period, where each TCX attach waits for one
//! under RTNL (10-20 ms here): this is what takes the attach off a
//! container add's critical path. A block lives while a qdisc uses it, so
//! a down, port-less bridge ([`BLOCK_HOLDER`]) holds both for the agent:
//! the programs stay on the blocks (and every veth filtered) while no
//! agent runs, and a new agent replaces each filter's program in place,
//! without a moment with no filter.
use std::{
    ffi::CStr,
    io,
    os::fd::{AsFd, AsRawFd},
    sync::Mutex,
};

use anyhow::{anyhow, Context, Result};
use aya::programs::SchedClassifier;
use netd_common::programs::{
    BLOCK_HOLDER, BLOCK_HOLDER_OWNER, ENDPOINT_EGRESS_BLOCK, ENDPOINT_INGRESS_BLOCK,
    FROM_CONTAINER, TO_CONTAINER,
};
use rtnetlink::packet_core::{DefaultNla, Nla, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use rtnetlink::packet_route::{
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption},
    RouteNetlinkMessage,
};

use super::loader::PinLayout;
use crate::net::{links::owner_alias, rtnl_sync::SyncRtnl};

/// `TCA_INGRESS_BLOCK` and `TCA_EGRESS_BLOCK` (qdisc attributes
/// netlink-packet-route does not name).
const TCA_INGRESS_BLOCK: u16 = 13;
const TCA_EGRESS_BLOCK: u16 = 14;
/// The handle of a `clsact` qdisc (`ffff:`).
const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// Where each endpoint filter sits on its block.
const FILTER_PRIORITY: u32 = 1;
const FILTER_HANDLE: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// The endpoint programs and where each goes.
const BLOCK_PROGRAMS: [(&str, u32); 2] = [
    (FROM_CONTAINER, ENDPOINT_INGRESS_BLOCK),
    (TO_CONTAINER, ENDPOINT_EGRESS_BLOCK),
];

/// Which blocks a veth's `clsact` qdisc is bound to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub ingress: bool,
    pub egress: bool,
}

impl Binding {
    pub fn whole(self) -> bool {
        self.ingress && self.egress
    }

    /// The endpoint programs a veth with this binding lacks.
    pub fn missing(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.ingress {
            out.push(FROM_CONTAINER);
        }
        if !self.egress {
            out.push(TO_CONTAINER);
        }
        out
    }
}

pub struct EndpointBlocks {
    rtnl: Mutex<SyncRtnl>,
    progs: Vec<(&'static str, u32, SchedClassifier)>,
}

impl EndpointBlocks {
    /// In the calling thread's netns: opens the pinned endpoint programs
    /// (pinned by `Datapath::load`), makes (or adopts) the holder bound to
    /// both blocks and puts the programs on the blocks, replacing those of
    /// an earlier agent in place.
    pub fn open(pins: &PinLayout) -> Result<Self> {
        let mut progs = Vec::new();
        for (name, block) in BLOCK_PROGRAMS {
            let path = pins.progs().join(name);
            let prog = SchedClassifier::from_pin(&path)
                .with_context(|| format!("failed to open the pinned program {}", path.display()))?;
            progs.push((name, block, prog));
        }
        let rtnl = SyncRtnl::open().context("failed to open an rtnetlink socket")?;
        let blocks = Self {
            rtnl: Mutex::new(rtnl),
            progs,
        };
        blocks.ensure_holder()?;
        blocks.install_programs()?;
        Ok(blocks)
    }

    fn rtnl(&self) -> std::sync::MutexGuard<'_, SyncRtnl> {
        self.rtnl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The holder's ifindex, made (down, marked as netd's) when missing, and
    /// its qdisc bound to both blocks.
    pub fn ensure_holder(&self) -> Result<u32> {
        let index = match ifindex(BLOCK_HOLDER) {
            Some(i) => i,
            None => {
                let mut msg = LinkMessage::default();
                msg.attributes = vec![
                    LinkAttribute::IfName(BLOCK_HOLDER.to_string()),
                    LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
                ];
                match self
                    .rtnl()
                    .ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
                {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("failed to create {BLOCK_HOLDER}, the device that holds the endpoint programs' filter blocks")
                        })
                    }
                }
                let index = ifindex(BLOCK_HOLDER)
                    .ok_or_else(|| anyhow!("{BLOCK_HOLDER} vanished right after it was made"))?;
                let mut mark = LinkMessage::default();
                mark.header.index = index;
                mark.attributes = vec![LinkAttribute::IfAlias(owner_alias(BLOCK_HOLDER_OWNER))];
                self.rtnl()
                    .ack(RouteNetlinkMessage::SetLink(mark), 0)
                    .with_context(|| format!("failed to mark {BLOCK_HOLDER} as netd's"))?;
                index
            }
        };
        self.bind(index)
            .with_context(|| format!("failed to bind {BLOCK_HOLDER} to the filter blocks"))?;
        Ok(index)
    }

    /// Puts each endpoint program on its block (replacing the program of a
    /// filter already there, atomically).
    pub fn install_programs(&self) -> Result<()> {
        for (name, block, prog) in &self.progs {
            let fd = prog
                .fd()
                .with_context(|| format!("program {name} is not loaded"))?;
            let fd = fd.as_fd().as_raw_fd();
            let mut msg = block_message(*block);
            msg.header.handle = FILTER_HANDLE.into();
            msg.header.info = (FILTER_PRIORITY << 16) | u32::from(ETH_P_ALL.to_be());
            msg.attributes = vec![
                TcAttribute::Kind("bpf".to_string()),
                TcAttribute::Options(vec![
                    TcOption::Bpf(TcFilterBpfOption::ProgFd(fd as u32)),
                    TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_string())),
                    TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
                ]),
            ];
            self.rtnl()
                .ack(RouteNetlinkMessage::NewTrafficFilter(msg), NLM_F_CREATE)
                .with_context(|| format!("failed to put {name} on its filter block"))?;
        }
        Ok(())
    }

    /// Puts back what is missing of the holder and the programs on the
    /// blocks (someone deleted the holder or a filter).
    pub fn ensure_programs(&self) -> Result<()> {
        if self.missing_programs()?.is_empty() {
            return Ok(());
        }
        self.ensure_holder()?;
        self.install_programs()
    }

    /// Binds the veth `host_ifname` (down, just made) to the blocks, and
    /// makes sure they carry the programs: a block made afresh by this
    /// binding (holder and every veth gone) would filter nothing.
    pub fn attach(&self, host_ifname: &str) -> Result<()> {
        let index = ifindex(host_ifname).with_context(|| format!("{host_ifname} is missing"))?;
        self.bind(index)?;
        self.ensure_programs()
    }

    /// The endpoint programs missing from their blocks.
    pub fn missing_programs(&self) -> Result<Vec<&'static str>> {
        let mut out = Vec::new();
        for (name, block, _) in &self.progs {
            let filters = self
                .rtnl()
                .get(
                    RouteNetlinkMessage::GetTrafficFilter(block_message(*block)),
                    NLM_F_DUMP,
                )
                .or_else(|e| match e.raw_os_error() {
                    // No such block: nothing on it.
                    Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(Vec::new()),
                    _ => Err(e),
                })
                .context("failed to list the filters of the endpoint blocks")?;
            let present = filters.iter().any(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(f) => has_program(f, name),
                _ => false,
            });
            if !present {
                out.push(*name);
            }
        }
        Ok(out)
    }

    /// Binds a `clsact` qdisc of `ifindex` to both blocks, replacing a
    /// `clsact` bound elsewhere (a block cannot be changed in place).
    pub fn bind(&self, ifindex: u32) -> Result<()> {
        let add = || {
            let mut msg = clsact_message(ifindex);
            msg.attributes.extend([
                TcAttribute::Kind("clsact".to_string()),
                block_attribute(TCA_INGRESS_BLOCK, ENDPOINT_INGRESS_BLOCK),
                block_attribute(TCA_EGRESS_BLOCK, ENDPOINT_EGRESS_BLOCK),
            ]);
            self.rtnl().ack(
                RouteNetlinkMessage::NewQueueDiscipline(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        };
        match add() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let now = self.bound()?.into_iter().find(|(i, _)| *i == ifindex);
                if now.is_some_and(|(_, b)| b.whole()) {
                    return Ok(());
                }
                self.delete_clsact(ifindex)?;
                add().map_err(|e| explain(e, ifindex))
            }
            Err(e) => Err(explain(e, ifindex)),
        }
    }

    /// Removes the `clsact` qdisc of endpoint veth `ifindex` (a device
    /// already gone, or one without the qdisc, is not an error). An
    /// endpoint veth is netd's: whatever `clsact` it has is the one
    /// [`Self::bind`] put there, so no dump of every qdisc (O(devices), per
    /// removal) is asked first.
    pub fn unbind(&self, ifindex: u32) -> Result<()> {
        self.delete_clsact(ifindex)
    }

    /// How the qdisc of `ifindex` is bound (nothing for a device that is
    /// gone or has no `clsact`). From a dump of every qdisc (the kernel does
    /// not answer a plain get of a `clsact` qdisc): a question about many
    /// veths asks [`Self::bound`] once instead.
    pub fn binding(&self, ifindex: u32) -> Result<Binding> {
        Ok(self
            .bound()?
            .into_iter()
            .find_map(|(i, b)| (i == ifindex).then_some(b))
            .unwrap_or_default())
    }

    /// Every ifindex whose qdisc is bound to a block (the holder's
    /// included).
    pub fn bound(&self) -> Result<Vec<(u32, Binding)>> {
        let msgs = self
            .rtnl()
            .get(
                RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
                NLM_F_DUMP,
            )
            .context("failed to list qdiscs")?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(q) => {
                    let b = binding_of(q);
                    (b.ingress || b.egress).then_some((q.header.index as u32, b))
                }
                _ => None,
            })
            .collect())
    }

    fn delete_clsact(&self, ifindex: u32) -> Result<()> {
        let mut msg = clsact_message(ifindex);
        msg.attributes.push(TcAttribute::Kind("clsact".to_string()));
        match self
            .rtnl()
            .ack(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
        {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(e)
                .with_context(|| format!("failed to delete the clsact qdisc of ifindex {ifindex}")),
        }
    }
}

/// Is this link the blocks' holder?
pub fn is_holder_row(row: &crate::net::LinkRow) -> bool {
    row.name == BLOCK_HOLDER && row.owner.as_deref() == Some(BLOCK_HOLDER_OWNER)
}

/// The ifindex of `name` in the calling thread's netns.
pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|i| *i != 0)
}

/// The name of `ifindex` in the calling thread's netns.
pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// A message about the `clsact` qdisc of `ifindex`.
fn clsact_message(ifindex: u32) -> TcMessage {
    TcMessage::from_parts(
        TcHeader {
            index: ifindex as i32,
            handle: CLSACT_HANDLE,
            parent: TcHandle::CLSACT,
            ..Default::default()
        },
        Vec::new(),
    )
}

/// A message about the filters of a shared block.
fn block_message(block: u32) -> TcMessage {
    TcMessage::from_parts(
        TcHeader {
            index: TcHeader::TCM_IFINDEX_MAGIC_BLOCK as i32,
            parent: block.into(),
            ..Default::default()
        },
        Vec::new(),
    )
}

fn block_attribute(kind: u16, block: u32) -> TcAttribute {
    TcAttribute::Other(DefaultNla::new(kind, block.to_ne_bytes().to_vec()))
}

fn binding_of(q: &TcMessage) -> Binding {
    let clsact = q
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"));
    let block = |kind: u16| -> Option<u32> {
        q.attributes.iter().find_map(|a| match a {
            TcAttribute::Other(nla) if nla.kind() == kind => {
                let mut v = vec![0; nla.value_len()];
                nla.emit_value(&mut v);
                v.try_into().ok().map(u32::from_ne_bytes)
            }
            _ => None,
        })
    };
    Binding {
        ingress: clsact && block(TCA_INGRESS_BLOCK) == Some(ENDPOINT_INGRESS_BLOCK),
        egress: clsact && block(TCA_EGRESS_BLOCK) == Some(ENDPOINT_EGRESS_BLOCK),
    }
}

fn has_program(f: &TcMessage, name: &str) -> bool {
    f.attributes.iter().any(|a| match a {
        TcAttribute::Options(opts) => opts
            .iter()
            .any(|o| matches!(o, TcOption::Bpf(TcFilterBpfOption::ProgName(n)) if n == name)),
        _ => false,
    })
}

/// A device or qdisc that is not there.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::EINVAL)
    )
}

fn explain(e: io::Error, ifindex: u32) -> anyhow::Error {
    let name = ifname(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"));
    anyhow!(e).context(format!(
        "failed to bind {name} to the endpoint programs' filter blocks (its clsact qdisc)"
    ))
}
