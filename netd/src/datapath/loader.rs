//! Loading the embedded eBPF object with its maps pinned, the endpoint
//! programs of container veths (their qdiscs bound to the shared filter
//! blocks, see `blocks`), and the TCX links of uplinks (attached, adopted
//! from a previous agent, detached).
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{lpm_trie::Key, HashMap, LpmTrie, MapData},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use ipnet::Ipv4Net;
use netd_common::{
    Endpoint, EndpointRef, NetworkInfo, MAP_CT6_IN, MAP_CT6_OUT, MAP_CT_IN, MAP_CT_OUT,
    MAP_ENDPOINTS, MAP_ENDPOINT_BY_IP, MAP_LAYOUT_VERSION, MAP_NETWORKS, MAP_TAILS,
};

use super::blocks::EndpointBlocks;

pub use netd_common::programs::{
    FROM_CONTAINER, FROM_CONTAINER_FORWARD6, OVERLAY_IN, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
    UPLINK_XDP,
};

/// Every classifier in the object, loaded and pinned at start.
pub const PROGRAMS: [&str; 6] = [
    FROM_CONTAINER,
    FROM_CONTAINER_FORWARD6,
    TO_CONTAINER,
    UPLINK_IN,
    UPLINK_OUT,
    OVERLAY_IN,
];

/// Every program the agent loads, by name (what `netd status` lists).
pub fn all_programs() -> impl Iterator<Item = &'static str> {
    PROGRAMS
        .into_iter()
        .chain([UPLINK_XDP])
        .chain(super::SOCK_PROGRAMS)
}

/// Names of the programs on every container veth.
pub const ENDPOINT_PROGRAM_NAMES: [&str; 2] = [FROM_CONTAINER, TO_CONTAINER];

/// The eBPF object built from `netd-ebpf`, embedded in the binary.
pub fn ebpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"))
}

/// Where everything is pinned.
#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(bpffs: &Path) -> Self {
        Self {
            root: bpffs.join(format!("v{MAP_LAYOUT_VERSION}")),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn progs(&self) -> PathBuf {
        self.root.join("progs")
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, host_ifname: &str, program: &str) -> PathBuf {
        self.links().join(format!("{host_ifname}_{program}"))
    }
}

/// Address bytes as the programs see them (network order in memory).
pub fn addr_key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub struct Datapath {
    pub(super) ebpf: Ebpf,
    pins: PinLayout,
    /// The endpoint filter blocks, once [`Datapath::use_blocks`] set them up.
    blocks: Option<Arc<EndpointBlocks>>,
}

impl Datapath {
    /// Loads the programs, reusing maps already pinned under `bpffs` (so a
    /// restarted agent keeps the live datapath state), and pins programs.
    /// `ct_size` sizes each conntrack map when it is first created (an
    /// adopted map keeps its size).
    pub fn load(bpffs: &Path, ct_size: u32) -> Result<Self> {
        Self::load_object(ebpf_object(), bpffs, ct_size)
    }

    pub fn load_object(object: &[u8], bpffs: &Path, ct_size: u32) -> Result<Self> {
        let pins = PinLayout::new(bpffs);
        super::layout::check(bpffs, &pins)?;
        for dir in [pins.maps(), pins.progs(), pins.links()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.maps())
            .map_max_entries(MAP_CT_OUT, ct_size)
            .map_max_entries(MAP_CT_IN, ct_size)
            .map_max_entries(MAP_CT6_OUT, ct_size)
            .map_max_entries(MAP_CT6_IN, ct_size)
            .load(object)
            .context("failed to load the eBPF object")?;
        for name in PROGRAMS {
            let prog = classifier(&mut ebpf, name)?;
            Self::load_program(name, || prog.load())?;
            pin_program(prog, &pins.progs().join(name))?;
        }
        fill_tails(&mut ebpf)?;
        {
            let prog: &mut aya::programs::Xdp = ebpf
                .program_mut(UPLINK_XDP)
                .ok_or_else(|| anyhow!("program {UPLINK_XDP} missing from the eBPF object"))?
                .try_into()?;
            Self::load_program(UPLINK_XDP, || prog.load())?;
            pin_program(prog, &pins.progs().join(UPLINK_XDP))?;
        }
        for name in super::SOCK_PROGRAMS {
            let prog: &mut aya::programs::CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
                .try_into()?;
            Self::load_program(name, || prog.load())?;
            pin_program(prog, &pins.progs().join(name))?;
        }
        let mut dp = Self {
            ebpf,
            pins,
            blocks: None,
        };
        // Before IPv6-only endpoints had keys of their own, they all
        // counted into address 0, which no key is now: an upgraded host's
        // leftover entry goes.
        dp.remove_endpoint_counters(0)?;
        Ok(dp)
    }

    pub(super) fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing"))
    }

    pub fn pins(&self) -> &PinLayout {
        &self.pins
    }

    pub fn program(&mut self, name: &str) -> Result<&mut SchedClassifier> {
        classifier(&mut self.ebpf, name)
    }

    fn endpoints(&mut self) -> Result<HashMap<&mut MapData, u32, Endpoint>> {
        Ok(HashMap::try_from(self.map_mut(MAP_ENDPOINTS)?)?)
    }

    fn networks(&mut self) -> Result<LpmTrie<&mut MapData, u32, NetworkInfo>> {
        Ok(LpmTrie::try_from(self.map_mut(MAP_NETWORKS)?)?)
    }

    pub fn upsert_network(&mut self, subnet: Ipv4Net, info: NetworkInfo) -> Result<()> {
        let key = Key::new(u32::from(subnet.prefix_len()), addr_key(subnet.network()));
        self.networks()?
            .insert(&key, info, 0)
            .with_context(|| format!("failed to write network {subnet} to the datapath"))
    }

    pub fn remove_network(&mut self, subnet: Ipv4Net) -> Result<()> {
        let key = Key::new(u32::from(subnet.prefix_len()), addr_key(subnet.network()));
        match self.networks()?.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("failed to remove a network from the datapath"),
        }
    }

    /// Every subnet in the `NETWORKS` map.
    pub fn network_subnets(&mut self) -> Result<Vec<Ipv4Net>> {
        let mut out = Vec::new();
        for key in self.networks()?.keys() {
            let key = key?;
            let addr = Ipv4Addr::from(key.data().to_ne_bytes());
            out.push(Ipv4Net::new(addr, key.prefix_len() as u8)?);
        }
        Ok(out)
    }

    /// Every ifindex in the `ENDPOINTS` map.
    pub fn endpoint_indexes(&mut self) -> Result<Vec<u32>> {
        self.endpoints()?
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Into::into)
    }

    /// Sets up the endpoint filter blocks in the calling thread's netns
    /// (the holder, the programs on the blocks; see [`EndpointBlocks`]) and
    /// returns them for attaches away from the datapath.
    pub fn use_blocks(&mut self) -> Result<Arc<EndpointBlocks>> {
        let blocks = Arc::new(EndpointBlocks::open(&self.pins)?);
        self.blocks = Some(blocks.clone());
        Ok(blocks)
    }

    pub fn blocks(&self) -> Result<&EndpointBlocks> {
        self.blocks
            .as_deref()
            .ok_or_else(|| anyhow!("the endpoint filter blocks are not set up"))
    }

    /// Publishes the endpoint, then binds the host end of its veth to the
    /// filter blocks (the programs put back on the blocks first if someone
    /// removed them). A veth of an earlier netd with TCX links keeps them
    /// until it is bound: the links then go, and the blocks filter it.
    pub fn attach_endpoint(&mut self, host_ifname: &str, ifindex: u32, ep: Endpoint) -> Result<()> {
        self.set_endpoint(ifindex, ep)
            .with_context(|| format!("failed to write endpoint {host_ifname} to the datapath"))?;
        let blocks = self.blocks()?;
        blocks.ensure_programs()?;
        blocks.bind(ifindex)?;
        for name in ENDPOINT_PROGRAM_NAMES {
            self.unpin_link(&self.pins.link(host_ifname, name))?;
        }
        Ok(())
    }

    pub(super) fn attach_link(
        &mut self,
        host_ifname: &str,
        name: &str,
        attach_type: TcAttachType,
    ) -> Result<()> {
        let pin = self.pins.link(host_ifname, name);
        let prog = classifier(&mut self.ebpf, name)?;
        if let Ok(old) = PinnedLink::from_pin(&pin) {
            // A link from an earlier agent: swap its program atomically, so
            // the veth is never without a filter.
            let adopted = SchedClassifierLink::try_from(FdLink::from(old))
                .map_err(anyhow::Error::from)
                .and_then(|link| prog.attach_to_link(link).map_err(Into::into));
            match adopted {
                Ok(id) => {
                    let link = prog.take_link(id)?;
                    drop(link);
                    return Ok(());
                }
                // The link outlived its device (defunct): replace it.
                Err(_) => {
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        attach_pinned(prog, host_ifname, attach_type, &pin)
    }

    /// Unbinds the endpoint's veth from the blocks (`ifindex`, or the one
    /// named `host_ifname` when not given; nothing when it is gone),
    /// removes links an earlier netd pinned for it, and, given its
    /// ifindex, its entry.
    pub fn detach_endpoint(&mut self, host_ifname: &str, ifindex: Option<u32>) -> Result<()> {
        // A veth already deleted took its qdisc along.
        let live = match ifindex {
            Some(i) => super::blocks::ifname(i).map(|_| i),
            None => super::blocks::ifindex(host_ifname),
        };
        if let Some(index) = live {
            self.blocks()?.unbind(index)?;
        }
        for name in ENDPOINT_PROGRAM_NAMES {
            self.unpin_link(&self.pins.link(host_ifname, name))?;
        }
        if let Some(ifindex) = ifindex {
            self.remove_endpoint_entry(ifindex)?;
        }
        Ok(())
    }

    /// Writes the endpoint entry of a host-side ifindex
    /// (and of its address, for delivery past the host stack).
    pub fn set_endpoint(&mut self, ifindex: u32, ep: Endpoint) -> Result<()> {
        let by_ip = EndpointRef {
            ifindex,
            gateway: ep.gateway,
            mac: ep.mac,
            _pad: [0; 2],
        };
        // An IPv6-only endpoint has no IPv4 address to deliver to.
        if ep.ip != 0 {
            self.endpoints_by_ip()?.insert(ep.ip, by_ip, 0)?;
        }
        Ok(self.endpoints()?.insert(ifindex, ep, 0)?)
    }

    pub fn remove_endpoint_entry(&mut self, ifindex: u32) -> Result<()> {
        self.remove_endpoint6(ifindex)?;
        if let Ok(ep) = self.endpoints()?.get(&ifindex, 0) {
            self.remove_endpoint_counters(netd_common::endpoint_counter_key(ep.ip, ifindex))?;
            let mut by_ip = self.endpoints_by_ip()?;
            if by_ip.get(&ep.ip, 0).is_ok_and(|r| r.ifindex == ifindex) {
                let _ = by_ip.remove(&ep.ip);
            }
        }
        match self.endpoints()?.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("failed to remove an endpoint from the datapath"),
        }
    }

    fn endpoints_by_ip(&mut self) -> Result<HashMap<&mut MapData, u32, EndpointRef>> {
        Ok(HashMap::try_from(self.map_mut(MAP_ENDPOINT_BY_IP)?)?)
    }

    pub fn unpin_link(&self, pin: &Path) -> Result<()> {
        match std::fs::remove_file(pin) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to unpin {}", pin.display())),
        }
    }

    /// Loads one program. The verifier gives up with EAGAIN when a signal is
    /// pending for the loading thread (a child exiting, a busy test process);
    /// that says nothing about the program, so the load is tried again, as
    /// libbpf does.
    fn load_program(name: &str, mut load: impl FnMut() -> Result<(), ProgramError>) -> Result<()> {
        const TRIES: usize = 5;
        for _ in 1..TRIES {
            match load() {
                Err(ProgramError::LoadError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EAGAIN) => {}
                r => return r.with_context(|| format!("the verifier rejected {name}")),
            }
        }
        load().with_context(|| format!("the verifier rejected {name}"))
    }

    /// Names of pinned links: `<ifname>_<program>`.
    pub fn pinned_links(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.pins.links())? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
}

/// Puts every tail-called program in its `TAILS` slot, before any hook that
/// jumps there is attached (a restarted agent's new programs replace the
/// old ones slot by slot, and the hooks still attached jump into them).
fn fill_tails(ebpf: &mut aya::Ebpf) -> Result<()> {
    for (name, slot) in netd_common::programs::TAIL_PROGRAMS {
        let fd = classifier(ebpf, name)?
            .fd()
            .with_context(|| format!("program {name} is not loaded"))?
            .try_clone()
            .with_context(|| format!("failed to duplicate the descriptor of {name}"))?;
        let map = ebpf
            .map_mut(MAP_TAILS)
            .ok_or_else(|| anyhow!("map {MAP_TAILS} missing from the eBPF object"))?;
        aya::maps::ProgramArray::try_from(map)?
            .set(slot, &fd, 0)
            .with_context(|| format!("failed to put {name} in slot {slot} of {MAP_TAILS}"))?;
    }
    Ok(())
}

/// Attaches `prog` first in the TCX chain of `host_ifname` and pins the
/// link at `pin` (each attach waits for an RCU grace period under RTNL).
pub(super) fn attach_pinned(
    prog: &mut SchedClassifier,
    host_ifname: &str,
    attach_type: TcAttachType,
    pin: &Path,
) -> Result<()> {
    let id = prog.attach_with_options(
        host_ifname,
        attach_type,
        TcAttachOptions::TcxOrder(LinkOrder::first()),
    )?;
    let link: FdLink = prog.take_link(id)?.try_into()?;
    link.pin(pin)
        .with_context(|| format!("failed to pin {}", pin.display()))?;
    Ok(())
}

fn pin_program<P: PinnableProgram>(prog: &mut P, pin: &Path) -> Result<()> {
    let _ = std::fs::remove_file(pin);
    prog.pin_at(pin)
        .with_context(|| format!("failed to pin {}", pin.display()))
}

/// The one thing the loader needs from every program type: pinning.
trait PinnableProgram {
    fn pin_at(&mut self, path: &Path) -> Result<(), aya::pin::PinError>;
}

impl PinnableProgram for SchedClassifier {
    fn pin_at(&mut self, path: &Path) -> Result<(), aya::pin::PinError> {
        self.pin(path)
    }
}

impl PinnableProgram for aya::programs::Xdp {
    fn pin_at(&mut self, path: &Path) -> Result<(), aya::pin::PinError> {
        self.pin(path)
    }
}

impl PinnableProgram for aya::programs::CgroupSockAddr {
    fn pin_at(&mut self, path: &Path) -> Result<(), aya::pin::PinError> {
        self.pin(path)
    }
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
        .try_into()
        .map_err(|e| anyhow!("program {name} is not a classifier: {e}"))
}
