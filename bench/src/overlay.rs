//! Cross-host container -> container, three ways, on one topology shape:
//!
//! ```text
//!  h1 ul0 198.18.0.1 ─┐                       ┌─ ul0 198.18.0.2 h2
//!   └─ c1              └── br0 (underlay netns) ──┘              └─ c2
//!                          etcd 198.18.0.100 (netd only)
//! ```
//!
//! - netd: an agent per host, clustered through one etcd
//!   (`--cluster-store`, `--advertise-addr`), an overlay network
//!   10.250.0.0/24 (`network create --driver overlay`), c1 on h1, c2 on h2.
//! - kernel VXLAN + bridge: what Docker's overlay driver builds per host
//!   and network: a bridge with the gateway-less overlay subnet, a VXLAN
//!   device (VNI 256, port 4789, no learning, ARP proxy) as a bridge port,
//!   static FDB and neighbour entries for the other host's container (the
//!   driver writes them from its store); MTU 1450. Docker keeps the bridge
//!   in a namespace of its own; the packet path is the same.
//! - underlay: no encapsulation: each container routed on its host
//!   (point-to-point veth), the hosts route each other's container subnet
//!   over the underlay.
//!
//! Servers (`bench serve`, `iperf3 -s`) in c2; the client in c1.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::measure;
use crate::run::{measure_rep, Measured, Plan};
use crate::sys::{self, ip, ip_batch, sysctl, Netns, Proc};
use crate::topo::{Agent, Ctx, Target, IPERF_PORT, RR_PORT};

const UNDERLAY_PREFIX: u8 = 24;
const ETCD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const OVERLAY_SUBNET: &str = "10.250.0.0/24";
/// The containers on the overlay (netd, kernel VXLAN).
const OV_C: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 250, 0, 11), Ipv4Addr::new(10, 250, 0, 12)];
/// The containers' routed addresses without encapsulation.
const UL_C: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 251, 1, 2), Ipv4Addr::new(10, 251, 2, 2)];
const VXLAN_MTU: u32 = 1450;

fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i as u8 + 1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OvKind {
    Netd,
    KernelVxlan,
    Underlay,
}

impl OvKind {
    pub const ALL: [OvKind; 3] = [OvKind::Netd, OvKind::KernelVxlan, OvKind::Underlay];

    pub fn short(self) -> &'static str {
        match self {
            OvKind::Netd => "ovnetd",
            OvKind::KernelVxlan => "ovkvx",
            OvKind::Underlay => "ovul",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            OvKind::Netd => "netd overlay",
            OvKind::KernelVxlan => "kernel VXLAN + bridge (Docker overlay)",
            OvKind::Underlay => "underlay, no encapsulation",
        }
    }
}

/// Cross-host c1 -> c2 on one datapath.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayCell {
    pub dp: OvKind,
    pub na: Option<String>,
    #[serde(flatten)]
    pub m: Measured,
    /// netd drop counters (both hosts) that rose while it was measured.
    pub netd_drops: std::collections::BTreeMap<String, u64>,
}

/// One datapath's two hosts. Fields drop in order: servers, agents, etcd,
/// then the namespaces.
struct Bed {
    kind: OvKind,
    c1: String,
    c2: String,
    servers: Vec<Proc>,
    agents: Vec<Agent>,
    etcd: Option<Proc>,
    _ns: Vec<Netns>,
}

impl Bed {
    fn build(ctx: &Ctx, kind: OvKind) -> Result<Bed> {
        let tag = kind.short();
        let mut nss = Vec::new();
        for role in ["ul", "h1", "h2", "c1", "c2"] {
            nss.push(Netns::create(&ctx.ns_name(tag, role))?);
        }
        let name = |i: usize| nss[i].name().to_string();
        let (ul, hosts, ctrs) = (name(0), [name(1), name(2)], [name(3), name(4)]);
        underlay(&ul, &hosts)?;
        for ns in hosts.iter().chain(&ctrs) {
            sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
            sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65000")?;
        }
        let mut bed = Bed {
            kind,
            c1: ctrs[0].clone(),
            c2: ctrs[1].clone(),
            servers: Vec::new(),
            agents: Vec::new(),
            etcd: None,
            _ns: nss,
        };
        match kind {
            OvKind::Netd => bed.build_netd(ctx, &ul, &hosts, &ctrs)?,
            OvKind::KernelVxlan => kernel_vxlan(&hosts, &ctrs)?,
            OvKind::Underlay => routed(&hosts, &ctrs)?,
        }
        bed.servers.push(ctx.server(&bed.c2, RR_PORT)?);
        bed.servers.push(ctx.iperf_server(&bed.c2)?);
        Ok(bed)
    }

    fn target(&self) -> Target {
        let dst = match self.kind {
            OvKind::Underlay => UL_C[1],
            _ => OV_C[1],
        };
        let sa = |port| SocketAddr::V4(SocketAddrV4::new(dst, port));
        Target {
            client_ns: self.c1.clone(),
            rr: sa(RR_PORT),
            iperf: sa(IPERF_PORT),
            note: None,
            cgroup: None,
            unsupported: None,
        }
    }

    fn build_netd(
        &mut self,
        ctx: &Ctx,
        ul: &str,
        hosts: &[String; 2],
        ctrs: &[String; 2],
    ) -> Result<()> {
        self.etcd = Some(etcd(ctx, ul)?);
        let store = format!("etcd://{ETCD}:2379");
        for (i, h) in hosts.iter().enumerate() {
            let adv = host_addr(i).to_string();
            self.agents.push(Agent::start(
                ctx,
                h,
                &format!("ov{}", i + 1),
                &[
                    "--no-default-bridge",
                    "--cluster-store",
                    &store,
                    "--advertise-addr",
                    &adv,
                ],
            )?);
        }
        self.agents[0].ok(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "ov",
            "--subnet",
            OVERLAY_SUBNET,
        ])?;
        // The second host sees the network through the store.
        wait_for(
            Duration::from_secs(15),
            "the overlay network on the second host",
            || {
                Ok(self.agents[1]
                    .cli(&["network", "ls", "-q"])?
                    .stdout
                    .lines()
                    .any(|l| !l.trim().is_empty()))
            },
        )?;
        for (i, c) in ctrs.iter().enumerate() {
            let path = sys::netns_path(c).display().to_string();
            let addr = OV_C[i].to_string();
            self.agents[i].ok(&[
                "container",
                "add",
                &format!("c{}", i + 1),
                "--netns",
                &path,
                "--network",
                "ov",
                "--ip",
                &addr,
            ])?;
        }
        Ok(())
    }

    /// Drop counters of both agents, summed.
    fn drops(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        if self.agents.is_empty() {
            return None;
        }
        let mut out = std::collections::BTreeMap::new();
        for a in &self.agents {
            for (k, v) in a.drops().ok()? {
                *out.entry(k).or_default() += v;
            }
        }
        Some(out)
    }
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ok()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not there after {} s", limit.as_secs());
        }
        sys::check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The underlay bridge and one veth per host on it.
fn underlay(ul: &str, hosts: &[String; 2]) -> Result<()> {
    ip_batch(
        ul,
        &[
            "link add br0 type bridge".into(),
            format!("addr add {ETCD}/{UNDERLAY_PREFIX} dev br0"),
            "link set br0 up".into(),
        ],
    )?;
    for (i, h) in hosts.iter().enumerate() {
        let port = format!("p{}", i + 1);
        ip(
            h,
            &[
                "link", "add", "ul0", "type", "veth", "peer", "name", &port, "netns", ul,
            ],
        )?;
        ip_batch(
            ul,
            &[
                format!("link set {port} master br0"),
                format!("link set {port} up"),
            ],
        )?;
        ip_batch(
            h,
            &[
                format!("addr add {}/{UNDERLAY_PREFIX} dev ul0", host_addr(i)),
                "link set ul0 up".into(),
            ],
        )?;
    }
    Ok(())
}

fn etcd(ctx: &Ctx, ul: &str) -> Result<Proc> {
    let client = format!("http://{ETCD}:2379");
    let peer = "http://127.0.0.1:2380";
    let data = ctx.dir.join("etcd-data");
    let mut c = sys::in_ns(ul, "etcd");
    c.args(["--name", "bench", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", peer])
        .args(["--initial-advertise-peer-urls", peer])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .args(["--log-level", "warn"]);
    let p = Proc::spawn(
        &format!("etcd in {ul}"),
        &mut c,
        &ctx.dir.join("etcd.log"),
        &ctx.pids,
    )
    .context("starting etcd (Debian etcd-server)")?;
    wait_for(Duration::from_secs(20), "etcd's client port", || {
        let out = sys::run_in(ul, "ss", &["-ltnH", "sport = :2379"]).unwrap_or_default();
        Ok(!out.trim().is_empty())
    })?;
    Ok(p)
}

fn mac_of(a: Ipv4Addr) -> String {
    let o = a.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Docker's overlay, per host: bridge + VXLAN port + static entries.
fn kernel_vxlan(hosts: &[String; 2], ctrs: &[String; 2]) -> Result<()> {
    for i in 0..2 {
        let (h, c, other) = (&hosts[i], &ctrs[i], 1 - i);
        ip_batch(
            h,
            &[
                format!("link add br-ov mtu {VXLAN_MTU} type bridge"),
                format!(
                    "link add vx-ov mtu {VXLAN_MTU} type vxlan id 256 dstport 4789 local {} \
                     nolearning proxy",
                    host_addr(i)
                ),
                "link set vx-ov master br-ov".into(),
                "link set br-ov up".into(),
                "link set vx-ov up".into(),
            ],
        )?;
        ip(
            h,
            &[
                "link",
                "add",
                "vh",
                "mtu",
                &VXLAN_MTU.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                c,
            ],
        )?;
        ip_batch(
            h,
            &["link set vh master br-ov".into(), "link set vh up".into()],
        )?;
        ip_batch(
            c,
            &[
                format!("link set eth0 address {}", mac_of(OV_C[i])),
                format!("addr add {}/24 dev eth0", OV_C[i]),
                "link set eth0 up".into(),
            ],
        )?;
        // What the driver writes from its store for the other host's
        // container: where its MAC is, and its ARP answer.
        let peer_mac = mac_of(OV_C[other]);
        sys::run_in(
            h,
            "bridge",
            &[
                "fdb",
                "add",
                &peer_mac,
                "dev",
                "vx-ov",
                "dst",
                &host_addr(other).to_string(),
                "self",
                "permanent",
            ],
        )?;
        ip(
            h,
            &[
                "neigh",
                "add",
                &OV_C[other].to_string(),
                "lladdr",
                &peer_mac,
                "dev",
                "vx-ov",
                "nud",
                "permanent",
            ],
        )?;
    }
    Ok(())
}

/// No encapsulation: routed containers, hosts routing each other's.
fn routed(hosts: &[String; 2], ctrs: &[String; 2]) -> Result<()> {
    for i in 0..2 {
        let (h, c, other) = (&hosts[i], &ctrs[i], 1 - i);
        let gw = Ipv4Addr::from(u32::from(UL_C[i]) - 1);
        sysctl(h, "net.ipv4.ip_forward", "1")?;
        ip(
            h,
            &[
                "link", "add", "vh", "type", "veth", "peer", "name", "eth0", "netns", c,
            ],
        )?;
        ip_batch(
            h,
            &[
                format!("addr add {gw} peer {}/32 dev vh", UL_C[i]),
                "link set vh up".into(),
                format!(
                    "route add {}/24 via {}",
                    Ipv4Addr::from(u32::from(UL_C[other]) & 0xffff_ff00),
                    host_addr(other)
                ),
            ],
        )?;
        ip_batch(
            c,
            &[
                format!("addr add {} peer {gw}/32 dev eth0", UL_C[i]),
                "link set eth0 up".into(),
                format!("route add default via {gw} dev eth0"),
            ],
        )?;
    }
    Ok(())
}

/// Builds the three, measures them interleaved, tears them down.
pub fn run(plan: &Plan, ctx: &Ctx) -> Result<Vec<OverlayCell>> {
    let mut cells: Vec<OverlayCell> = OvKind::ALL
        .iter()
        .map(|&dp| OverlayCell {
            dp,
            na: None,
            m: Measured::default(),
            netd_drops: Default::default(),
        })
        .collect();
    let mut beds = Vec::new();
    for (i, kind) in OvKind::ALL.into_iter().enumerate() {
        sys::check()?;
        let t = Instant::now();
        let built = Bed::build(ctx, kind).and_then(|b| {
            // The first packets wait for the store to spread the endpoints
            // and for neighbours: a few tries.
            let target = b.target();
            wait_for(
                Duration::from_secs(20),
                "a first transaction c1 -> c2",
                || Ok(measure::load(ctx, &target, "rr", 0.2).is_ok()),
            )?;
            Ok(b)
        });
        match built {
            Ok(b) => {
                eprintln!(
                    "bench: built cross-host {} in {:.1} s",
                    kind.label(),
                    t.elapsed().as_secs_f64()
                );
                beds.push((i, b));
            }
            Err(e) => {
                sys::check()?;
                eprintln!("bench: cross-host {}: {e:#}", kind.label());
                cells[i].na = Some(format!("setup failed: {}", first_line(&e)));
            }
        }
    }
    for rep in 0..plan.reps {
        let n = beds.len().max(1);
        beds.rotate_left(usize::from(rep > 0) % n);
        for (i, bed) in &beds {
            sys::check()?;
            let before = bed.drops();
            measure_rep(plan, ctx, &bed.target(), &mut cells[*i].m)?;
            if let (Some(before), Some(after)) = (before, bed.drops()) {
                for (reason, n) in after {
                    let d = n.saturating_sub(before.get(&reason).copied().unwrap_or(0));
                    if d > 0 {
                        *cells[*i].netd_drops.entry(reason).or_default() += d;
                    }
                }
            }
            let m = &cells[*i].m;
            eprintln!(
                "bench: [{}/{}] cross-host {:<40} {:>7} Gbit/s {:>9} tx/s {:>8} conn/s",
                rep + 1,
                plan.reps,
                bed.kind.label(),
                m.gbps
                    .samples
                    .last()
                    .map(|v| measure::num(*v, 2))
                    .unwrap_or_default(),
                m.tps
                    .samples
                    .last()
                    .map(|v| measure::num(*v, 0))
                    .unwrap_or_default(),
                m.cps
                    .samples
                    .last()
                    .map(|v| measure::num(*v, 0))
                    .unwrap_or_default(),
            );
        }
    }
    eprintln!("bench: tearing down the cross-host topologies");
    Ok(cells)
}

/// The error's first line and, when it quotes a log, the log's last line.
fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").to_string();
    let last = lines
        .next_back()
        .map(|l| format!(" … {}", l.trim()))
        .unwrap_or_default();
    format!("{first}{last}").chars().take(300).collect()
}
