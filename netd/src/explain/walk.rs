//! The walk: one packet through every hook it would meet, each hook's
//! verdict taken from a test run of the real program on the sandbox (a
//! copy of the live maps), the packet each program leaves going on to the
//! next hook. Between hooks the walk does what the kernel would: the
//! bridge or the host stack carries the packet to the veth of the
//! container that owns the destination, to the host, or to an uplink.
use std::{collections::HashMap, net::Ipv4Addr};

use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use serde::Serialize;

use netd_common::Shortcut;

use super::packet::{self, Packet, Proto};
use crate::{
    datapath::{
        addr_key, Run, Sandbox, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT, UPLINK_XDP,
    },
    model::mac_for,
};

/// Who owns a container address, for the walk's labels.
#[derive(Clone, Debug)]
pub struct EndpointName {
    pub container: String,
    pub network: String,
    /// Host end of the container's veth.
    pub device: String,
}

#[derive(Clone, Debug)]
pub struct UplinkName {
    pub name: String,
    pub ifindex: u32,
    pub address: Option<Ipv4Addr>,
}

/// A container of an overlay network on another host (a remote endpoint).
#[derive(Clone, Debug)]
pub struct RemoteName {
    pub container: String,
    pub network: String,
    /// Its host's name and tunnel (underlay) address.
    pub host: String,
    pub host_address: Ipv4Addr,
}

/// The agent's names for what the datapath knows by numbers.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub endpoints: HashMap<Ipv4Addr, EndpointName>,
    /// Remote endpoints of the overlay networks, by address.
    pub remotes: HashMap<Ipv4Addr, RemoteName>,
    /// Network subnets: (subnet, network name, gateway).
    pub subnets: Vec<(Ipv4Net, String, Ipv4Addr)>,
    pub uplinks: Vec<UplinkName>,
}

impl Topology {
    fn network_of(&self, ip: Ipv4Addr) -> Option<&(Ipv4Net, String, Ipv4Addr)> {
        self.subnets.iter().find(|(s, _, _)| s.contains(&ip))
    }
}

/// Where the packet starts.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// Sent by a container: it enters the host end (`ifindex`) of its veth.
    Container { ifindex: u32 },
    /// Sent by a host process.
    Host,
    /// Arrives from beyond the uplink `ifindex`.
    World { ifindex: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    FromContainer,
    ToContainer,
    UplinkXdp,
    UplinkIn,
    UplinkOut,
}

impl Hook {
    fn program(self) -> &'static str {
        match self {
            Hook::FromContainer => FROM_CONTAINER,
            Hook::ToContainer => TO_CONTAINER,
            Hook::UplinkXdp => UPLINK_XDP,
            Hook::UplinkIn => UPLINK_IN,
            Hook::UplinkOut => UPLINK_OUT,
        }
    }

    /// The program's return code as a verdict.
    fn action(self, code: u32) -> Action {
        const TC_ACT_SHOT: u32 = 2;
        const TC_ACT_REDIRECT: u32 = 7;
        const XDP_ABORTED: u32 = 0;
        const XDP_DROP: u32 = 1;
        match (self, code) {
            (Hook::UplinkXdp, XDP_ABORTED | XDP_DROP) => Action::Drop,
            (Hook::UplinkXdp, _) => Action::Pass,
            (_, TC_ACT_SHOT) => Action::Drop,
            (_, TC_ACT_REDIRECT) => Action::Redirect,
            // TC_ACT_OK, and TC_ACT_UNSPEC (the next program decides).
            _ => Action::Pass,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Pass,
    Drop,
    Redirect,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::Redirect => "redirect",
        }
    }
}

/// A rewrite a program made: `snat` (the source) or `dnat` (the
/// destination), before and after.
#[derive(Clone, Debug, Serialize)]
pub struct Rewrite {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub hook: &'static str,
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rewrites: Vec<Rewrite>,
    /// The packet as the hook left it.
    pub packet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where a delivered packet ends.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// `container`, `remote` (into the tunnel, for a container on another
    /// host), `host`, `world` or `nowhere`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The uplink it leaves by (`world`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// The packet as the receiver sees it.
    pub packet: String,
    pub note: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Walk {
    /// The packet as sent.
    pub packet: Packet,
    pub walk: Vec<Step>,
    /// `delivered` or `dropped`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The hook that dropped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Delivery>,
}

enum Stage {
    Hook(Hook, u32),
    Delivered(Delivery),
    Dropped(&'static str, &'static str),
}

/// More hooks than any real path meets: the walk is bounded.
const MAX_HOOKS: usize = 8;

/// Walks `pkt` from `start`, framed from `src_mac` to `dst_mac`.
pub fn walk(
    sb: &mut Sandbox,
    topo: &Topology,
    start: Start,
    mut pkt: Packet,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
) -> Result<Walk> {
    let sent = pkt;
    let mut steps = Vec::new();
    let mut frame = packet::build(&pkt, src_mac, dst_mac);
    let mut at = match start {
        Start::Container { ifindex } => Stage::Hook(Hook::FromContainer, ifindex),
        Start::World { ifindex } => Stage::Hook(Hook::UplinkXdp, ifindex),
        Start::Host => {
            if let Some(translated) = connect_translation(sb, topo, &pkt, &mut steps)? {
                pkt = translated;
                let gw = topo.network_of(pkt.dst).map_or(pkt.src, |n| n.2);
                frame = packet::build(&pkt, mac_for(gw), mac_for(pkt.dst));
            }
            route(sb, topo, None, &pkt)?
        }
    };
    for _ in 0..MAX_HOOKS {
        let (hook, ifindex) = match at {
            Stage::Hook(hook, ifindex) => (hook, ifindex),
            Stage::Delivered(d) => return Ok(finish(sent, steps, Some(d), None)),
            Stage::Dropped(reason, hook) => {
                return Ok(finish(sent, steps, None, Some((reason, hook))))
            }
        };
        let run: Run = match hook {
            Hook::UplinkXdp => sb.run_xdp(&frame)?,
            _ => sb.run_tc(hook.program(), ifindex, &frame)?,
        };
        let after = packet::read(&run.frame).unwrap_or(pkt);
        let action = hook.action(run.code);
        steps.push(step(topo, hook, ifindex, action, &run, &pkt, &after));
        pkt = after;
        frame = run.frame;
        at = match action {
            Action::Drop => Stage::Dropped(
                run.drops.first().copied().unwrap_or("uncounted"),
                hook.program(),
            ),
            Action::Redirect => redirected(sb, topo, hook, &pkt, &run.shortcuts)?,
            Action::Pass => match hook {
                Hook::FromContainer => route(sb, topo, Some(hook), &pkt)?,
                Hook::UplinkIn => route(sb, topo, Some(hook), &pkt)?,
                Hook::UplinkXdp => Stage::Hook(Hook::UplinkIn, ifindex),
                Hook::ToContainer => Stage::Delivered(to_container(topo, &pkt, "")),
                Hook::UplinkOut => Stage::Delivered(Delivery {
                    kind: "world",
                    container: None,
                    network: None,
                    uplink: uplink_name(topo, ifindex),
                    packet: pkt.to_string(),
                    note: format!("leaves the host with source {}", pkt.source()),
                }),
            },
        };
    }
    bail!("the walk met more than {MAX_HOOKS} hooks; this is a bug in netd explain")
}

fn finish(
    packet: Packet,
    walk: Vec<Step>,
    delivered: Option<Delivery>,
    dropped: Option<(&'static str, &'static str)>,
) -> Walk {
    Walk {
        packet,
        walk,
        verdict: if dropped.is_some() {
            "dropped"
        } else {
            "delivered"
        },
        reason: dropped.map(|d| d.0),
        hook: dropped.map(|d| d.1),
        delivered,
    }
}

fn uplink_name(topo: &Topology, ifindex: u32) -> Option<String> {
    topo.uplinks
        .iter()
        .find(|u| u.ifindex == ifindex)
        .map(|u| u.name.clone())
}

fn step(
    topo: &Topology,
    hook: Hook,
    ifindex: u32,
    action: Action,
    run: &Run,
    before: &Packet,
    after: &Packet,
) -> Step {
    let mut rewrites = Vec::new();
    if (before.src, before.sport) != (after.src, after.sport) {
        rewrites.push(Rewrite {
            kind: "snat",
            from: before.source(),
            to: after.source(),
        });
    }
    if (before.dst, before.dport) != (after.dst, after.dport) {
        rewrites.push(Rewrite {
            kind: "dnat",
            from: before.destination(),
            to: after.destination(),
        });
    }
    // The veth a container hook runs on belongs to the sender (ingress) or
    // the receiver (egress).
    let owner = match hook {
        Hook::FromContainer => topo.endpoints.get(&before.src),
        Hook::ToContainer => topo.endpoints.get(&after.dst),
        _ => None,
    };
    let device = match (owner, uplink_name(topo, ifindex)) {
        (Some(ep), _) => ep.device.clone(),
        (None, Some(u)) => u,
        (None, None) => format!("ifindex {ifindex}"),
    };
    let note =
        (action == Action::Pass && !rewrites.is_empty() && !packet::checksums_ok(&run.frame))
            .then(|| "checksums left for offload to finish".to_string());
    Step {
        hook: hook.program(),
        device,
        container: owner.map(|e| e.container.clone()),
        network: owner.map(|e| e.network.clone()),
        verdict: action.name(),
        reason: (action == Action::Drop).then(|| run.drops.first().copied().unwrap_or("uncounted")),
        rewrites,
        packet: after.to_string(),
        note,
    }
}

fn to_container(topo: &Topology, pkt: &Packet, how: &str) -> Delivery {
    let owner = topo.endpoints.get(&pkt.dst);
    let name = owner.map_or_else(|| pkt.dst.to_string(), |e| e.container.clone());
    Delivery {
        kind: "container",
        container: owner.map(|e| e.container.clone()),
        network: owner.map(|e| e.network.clone()),
        uplink: None,
        packet: pkt.to_string(),
        note: format!(
            "delivered to {name}{how}, which sees source {}",
            pkt.source()
        ),
    }
}

/// Into the VXLAN tunnel (`from_container` set the tunnel key and
/// redirected to the overlay device): the rest happens on the other host.
fn to_remote(topo: &Topology, pkt: &Packet) -> Delivery {
    let remote = topo.remotes.get(&pkt.dst);
    let whom = remote.map_or_else(
        || format!("{} on another host", pkt.dst),
        |r| format!("{} on host {} ({})", r.container, r.host, r.host_address),
    );
    Delivery {
        kind: "remote",
        container: remote.map(|r| r.container.clone()),
        network: remote.map(|r| r.network.clone()),
        uplink: None,
        packet: pkt.to_string(),
        note: format!(
            "tunnelled (VXLAN, {}) to {whom}, which sees source {}; that host's overlay_in \
             checks it again before it delivers it",
            netd_common::VXLAN_DEVICE,
            pkt.source()
        ),
    }
}

fn is_group(ip: Ipv4Addr) -> bool {
    ip.is_broadcast() || ip.is_multicast()
}

/// Where the bridge or the host stack takes a packet that a hook passed
/// (`from`: None for a host process's packet).
fn route(sb: &mut Sandbox, topo: &Topology, from: Option<Hook>, pkt: &Packet) -> Result<Stage> {
    let dst = addr_key(pkt.dst);
    if let Some(ep) = sb.endpoint_by_ip(dst)? {
        return Ok(Stage::Hook(Hook::ToContainer, ep.ifindex));
    }
    let host = |note: &str| Delivery {
        kind: "host",
        container: None,
        network: None,
        uplink: None,
        packet: pkt.to_string(),
        note: note.to_string(),
    };
    if sb.is_host_addr(dst)? || pkt.dst.is_loopback() {
        let note = match from {
            None => "the host talks to itself: no netd program is on the way",
            Some(_) => "delivered to the host",
        };
        return Ok(Stage::Delivered(host(note)));
    }
    if let Some(r) = topo.remotes.get(&pkt.dst) {
        return Ok(Stage::Delivered(Delivery {
            kind: "nowhere",
            note: format!(
                "{} is a container on host {} ({}): only containers of network {} reach it, \
                 through the tunnel; nothing else on this host does",
                r.container, r.host, r.host_address, r.network
            ),
            network: Some(r.network.clone()),
            ..host("")
        }));
    }
    if let Some((subnet, name, _)) = topo.network_of(pkt.dst) {
        return Ok(Stage::Delivered(Delivery {
            kind: "nowhere",
            note: format!("no container has {} on network {name} ({subnet})", pkt.dst),
            network: Some(name.clone()),
            ..host("")
        }));
    }
    if is_group(pkt.dst) {
        return Ok(Stage::Delivered(host(
            "a broadcast or multicast address: flooded on the bridge",
        )));
    }
    match (from, topo.uplinks.first()) {
        (Some(Hook::UplinkIn), _) => Ok(Stage::Delivered(host(
            "not for a container: routed by the host's own routes",
        ))),
        (_, Some(u)) => Ok(Stage::Hook(Hook::UplinkOut, u.ifindex)),
        (_, None) => Ok(Stage::Delivered(Delivery {
            kind: "world",
            ..host("no uplink: the host's own routes take it, untranslated")
        })),
    }
}

/// Where a program's redirect sends the packet. `from_container` redirects
/// to a container (`bpf_redirect` to the host end of its veth, whose egress
/// program then runs, or with eBPF host routing `bpf_redirect_peer`, where
/// that egress program would pass it too) or, with eBPF host routing, to
/// the uplink the fib chose; `uplink_in` uses `bpf_redirect_peer`, straight
/// into the container's namespace, past its veth's egress hook.
fn redirected(
    sb: &mut Sandbox,
    topo: &Topology,
    hook: Hook,
    pkt: &Packet,
    shortcuts: &[&str],
) -> Result<Stage> {
    if hook == Hook::FromContainer && shortcuts.contains(&Shortcut::OverlayEncap.name()) {
        return Ok(Stage::Delivered(to_remote(topo, pkt)));
    }
    let target = sb.endpoint_by_ip(addr_key(pkt.dst))?;
    // The programs count how they delivered: into the netns (the receiver's
    // veth egress program is not on the way) or to a veth's egress.
    let peer = shortcuts
        .iter()
        .any(|s| *s == Shortcut::PeerSameNetwork.name() || *s == Shortcut::PeerRouted.name());
    Ok(match (hook, target) {
        (Hook::FromContainer, Some(_)) if peer => Stage::Delivered(to_container(
            topo,
            pkt,
            " straight into its namespace (bpf_redirect_peer)",
        )),
        (Hook::FromContainer, Some(ep)) => Stage::Hook(Hook::ToContainer, ep.ifindex),
        // eBPF host routing: sent by the fib to the uplink, whose egress
        // program still runs.
        (Hook::FromContainer, None) => route(sb, topo, Some(hook), pkt)?,
        (Hook::UplinkIn, Some(_)) => Stage::Delivered(to_container(
            topo,
            pkt,
            " straight into its namespace (bpf_redirect_peer)",
        )),
        _ => Stage::Delivered(Delivery {
            kind: "nowhere",
            container: None,
            network: None,
            uplink: None,
            packet: pkt.to_string(),
            note: format!("redirected by {} to no known container", hook.program()),
        }),
    })
}

/// A host process's connection to a published port is translated by the
/// cgroup programs at connect()/sendmsg() time, not per packet; those
/// programs cannot be test-run, so the walk reads the copy's PUBLISHED
/// map, as they do, and says so.
fn connect_translation(
    sb: &mut Sandbox,
    topo: &Topology,
    pkt: &Packet,
    steps: &mut Vec<Step>,
) -> Result<Option<Packet>> {
    let local = pkt.dst.is_loopback() || sb.is_host_addr(addr_key(pkt.dst))?;
    if !local || pkt.proto == Proto::Icmp {
        return Ok(None);
    }
    let lookup_addr = if pkt.dst.is_loopback() {
        0
    } else {
        addr_key(pkt.dst)
    };
    let Some(target) = sb.published(lookup_addr, pkt.dport.to_be(), pkt.proto.number())? else {
        return Ok(None);
    };
    let dst = Ipv4Addr::from(target.addr.to_ne_bytes());
    let src = topo.network_of(dst).map_or(pkt.src, |n| n.2);
    let after = Packet {
        src,
        dst,
        dport: u16::from_be(target.port),
        ..*pkt
    };
    steps.push(Step {
        hook: "sock_connect4",
        device: "cgroup".into(),
        container: None,
        network: None,
        verdict: "translate",
        reason: None,
        rewrites: vec![Rewrite {
            kind: "dnat",
            from: pkt.destination(),
            to: after.destination(),
        }],
        packet: after.to_string(),
        note: Some(
            "socket programs translate at connect()/sendmsg(); the kernel cannot test-run them, \
             so this step reads the PUBLISHED map they use"
                .into(),
        ),
    });
    Ok(Some(after))
}
