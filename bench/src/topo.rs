//! The topology, built once per datapath in its own set of namespaces:
//!
//! ```text
//!  world (W) eth0 10.253.0.2 ──veth── wan0 10.253.0.1  host (H)  ── c1 10.254.1.2
//!                                     default via W                └─ c2 10.254.1.3
//! ```
//!
//! - netd: an agent in H (`--uplink wan0`), networks n1 10.254.1.0/24 and n2
//!   10.254.2.0/24, c1 and c2 on n1, c1 publishing 8080->80, 15201->5201.
//! - iptables: bridges br1/br2 with the gateway addresses, veths enslaved, and
//!   the rules Docker 20.10 installs for two networks with
//!   `userland-proxy=false` (route_localnet + OUTPUT DNAT).
//! - bare: one routed point-to-point veth per container, no bridge, no
//!   netfilter; "published" paths go straight to the container's address.
//!
//! Servers: `bench serve` on port 80 and `iperf3 -s` on 5201, in c1 and in W
//! (dual-stack sockets).
//!
//! IPv6 rows: the uplink also has fd00:253::1 (H) / fd00:253::2 (W, the
//! host's IPv6 default route); netd's n1 is dual stack (fd00:254:1::/64,
//! c1 ::2, c2 ::3), the bare veths carry the same addresses routed (host
//! fe80::1 as the containers' gateway). World -> published port over IPv6
//! (`-p [::]:...`) and container -> world over IPv6 (NAT66) are measured
//! where this netd does them, else n/a with the reason; W has no route to
//! the containers' IPv6 subnet (bare: it routes it, as for IPv4), so without
//! IPv6 masquerade nothing comes back. The iptables datapath has IPv6 as
//! Docker 27+ sets it up with ip6tables on (the default since 27): br1
//! fd00:254:1::1/64, the containers' default route via it, and the same
//! chains and per-port rules as IPv4 in ip6tables (no route_localnet
//! equivalent: IPv6 loopback goes to docker-proxy in Docker, so its
//! host -> [::1] row is n/a, [`NO_LOCALNET6`]). netd does host -> [::1]
//! with its cgroup connect6/sendmsg6/recvmsg6 programs; bare goes to c1's
//! IPv6 address, as for 127.0.0.1.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::sys::{self, ip, ip_batch, run_in, sysctl, with_stdin, Netns, Proc};

pub const WAN_H: Ipv4Addr = Ipv4Addr::new(10, 253, 0, 1);
pub const WAN_W: Ipv4Addr = Ipv4Addr::new(10, 253, 0, 2);
pub const GW: Ipv4Addr = Ipv4Addr::new(10, 254, 1, 1);
pub const C1: Ipv4Addr = Ipv4Addr::new(10, 254, 1, 2);
pub const C2: Ipv4Addr = Ipv4Addr::new(10, 254, 1, 3);
pub const SUBNET1: &str = "10.254.1.0/24";
pub const SUBNET2: &str = "10.254.2.0/24";
pub const WAN_H6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 1);
pub const WAN_W6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 2);
pub const C1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x254, 1, 0, 0, 0, 0, 2);
pub const C2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x254, 1, 0, 0, 0, 0, 3);
pub const SUBNET1_6: &str = "fd00:254:1::/64";
pub const SUBNET2_6: &str = "fd00:254:2::/64";
/// The gateway the iptables topology's bridge br1 carries for IPv6.
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x254, 1, 0, 0, 0, 0, 1);
/// Why container -> world over IPv6 is n/a when its warm-up gets nothing
/// back (W has no route to the containers' subnet: only IPv6 masquerade
/// brings replies back).
pub const NO_NAT66: &str =
    "n/a (not supported: no IPv6 masquerade (NAT66) in this netd; nothing comes back)";
/// Why host -> [::1] published port is n/a on the iptables datapath.
pub const NO_LOCALNET6: &str =
    "n/a (Docker sends IPv6 loopback to docker-proxy; with userland-proxy=false \
     there is no ip6tables equivalent of route_localnet)";
pub const RR_PORT: u16 = 80;
pub const IPERF_PORT: u16 = 5201;
pub const PUB_RR: u16 = 8080;
pub const PUB_IPERF: u16 = 15201;
/// Filler published ports start here, probes ("the last-added port") here.
pub const FILL_BASE: u16 = 20000;
pub const PROBE_BASE: u16 = 30000;
/// Published ports per filler container (netd) / per filler target (iptables).
pub const PORTS_PER_FILLER: usize = 1000;
/// How long a `bench serve` lives at most.
const SERVER_LIFETIME_S: &str = "3600";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Netd,
    /// netd with `--host-routing kernel`: the programs decide, the bridge
    /// and the kernel's routing forward (what eBPF host routing saves).
    NetdKernel,
    Iptables,
    Bare,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Netd, Kind::NetdKernel, Kind::Iptables, Kind::Bare];

    pub fn short(self) -> &'static str {
        match self {
            Kind::Netd => "netd",
            Kind::NetdKernel => "netdk",
            Kind::Iptables => "ipt",
            Kind::Bare => "bare",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Netd => "netd",
            Kind::NetdKernel => "netd (kernel routing)",
            Kind::Iptables => "iptables",
            Kind::Bare => "bare veth",
        }
    }

    /// Is this a netd agent (either host routing mode)?
    pub fn is_netd(self) -> bool {
        matches!(self, Kind::Netd | Kind::NetdKernel)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathKind {
    C2c,
    WorldPub,
    CtrWorld,
    HostLocal,
    /// The same paths over IPv6.
    C2c6,
    WorldPub6,
    CtrWorld6,
    HostLocal6,
}

impl PathKind {
    pub const ALL: [PathKind; 8] = [
        PathKind::C2c,
        PathKind::WorldPub,
        PathKind::CtrWorld,
        PathKind::HostLocal,
        PathKind::C2c6,
        PathKind::WorldPub6,
        PathKind::CtrWorld6,
        PathKind::HostLocal6,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PathKind::C2c => "container -> container (same network)",
            PathKind::WorldPub => "world -> published port",
            PathKind::CtrWorld => "container -> world (masquerade)",
            PathKind::HostLocal => "host -> 127.0.0.1 published port",
            PathKind::C2c6 => "IPv6 container -> container (same network)",
            PathKind::WorldPub6 => "IPv6 world -> published port",
            PathKind::CtrWorld6 => "IPv6 container -> world (masquerade)",
            PathKind::HostLocal6 => "host -> [::1] published port",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            PathKind::C2c => "c2c",
            PathKind::WorldPub => "world->pub",
            PathKind::CtrWorld => "ctr->world",
            PathKind::HostLocal => "host->127.0.0.1",
            PathKind::C2c6 => "c2c6",
            PathKind::WorldPub6 => "world->pub6",
            PathKind::CtrWorld6 => "ctr->world6",
            PathKind::HostLocal6 => "host->[::1]",
        }
    }
}

/// Where a client runs and what it connects to.
#[derive(Clone, Debug)]
pub struct Target {
    pub client_ns: String,
    pub rr: SocketAddr,
    pub iperf: SocketAddr,
    /// How this datapath does the path differently, if it does.
    pub note: Option<&'static str>,
    /// The cgroup the client must run in (netd, host clients).
    pub cgroup: Option<PathBuf>,
    /// What the cell says when its warm-up gets nothing through (a path
    /// that works only once the datapath supports it).
    pub unsupported: Option<&'static str>,
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// What every datapath shares: the run directory, our own binary, netd's.
#[derive(Clone)]
pub struct Ctx {
    pub dir: PathBuf,
    pub pids: PathBuf,
    pub exe: PathBuf,
    pub netd: PathBuf,
    /// Our cgroup, where netd agents attach their host-socket programs.
    pub cgroup: PathBuf,
}

impl Ctx {
    pub fn ns_name(&self, tag: &str, role: &str) -> String {
        format!("{}{}-{tag}-{role}", sys::PREFIX, std::process::id())
    }

    /// Starts `bench serve` on `port` in `ns`, waits until it listens.
    pub fn server(&self, ns: &str, port: u16) -> Result<Proc> {
        let mut c = sys::load_cmd(ns, None, &self.exe);
        c.args([
            "serve",
            "--port",
            &port.to_string(),
            "--lifetime",
            SERVER_LIFETIME_S,
        ]);
        let p = Proc::spawn(
            &format!("bench serve :{port} in {ns}"),
            &mut c,
            &self.dir.join("servers.log"),
            &self.pids,
        )?;
        wait_listening(ns, port)?;
        Ok(p)
    }

    pub fn iperf_server(&self, ns: &str) -> Result<Proc> {
        let mut c = sys::load_cmd(ns, None, "iperf3");
        c.args(["-s", "-p", &IPERF_PORT.to_string()]);
        let p = Proc::spawn(
            &format!("iperf3 -s in {ns}"),
            &mut c,
            &self.dir.join("iperf3.log"),
            &self.pids,
        )?;
        wait_listening(ns, IPERF_PORT)?;
        Ok(p)
    }
}

fn wait_listening(ns: &str, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run_in(ns, "ss", &["-ltnH", &format!("sport = :{port}")]).unwrap_or_default();
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} in {ns} after 10 s");
        }
        sys::check()?;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A netd agent in a host netns, with its own state, run dir and bpffs.
/// Dropping it kills the agent, then unmounts its bpffs.
pub struct Agent {
    proc: Option<Proc>,
    dir: PathBuf,
    bin: PathBuf,
}

impl Agent {
    pub fn start(ctx: &Ctx, host_ns: &str, tag: &str, extra: &[&str]) -> Result<Agent> {
        let dir = ctx.dir.join(format!("netd-{tag}"));
        // Each agent its own directories: a second agent on them would be
        // refused, and `status` would then reach the first one's socket.
        std::fs::create_dir(&dir)
            .with_context(|| format!("{} is taken (another agent of this run?)", dir.display()))?;
        for sub in ["state", "run", "bpffs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut c = sys::in_ns(host_ns, &ctx.netd);
        c.arg("daemon");
        for (flag, sub) in [
            ("--state-dir", "state"),
            ("--run-dir", "run"),
            ("--bpffs", "bpffs"),
        ] {
            c.arg(flag).arg(dir.join(sub));
        }
        c.arg("--cgroup").arg(&ctx.cgroup);
        // Several agents run at once: none takes Docker's plugin socket
        // (one agent per socket).
        c.args(["--docker-plugin", "none"]);
        c.args(["--log-level", "warn"]).args(extra);
        let proc = Proc::spawn(
            &format!("netd agent in {host_ns}"),
            &mut c,
            &dir.join("agent.log"),
            &ctx.pids,
        )?;
        let mut agent = Agent {
            proc: Some(proc),
            dir,
            bin: ctx.netd.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if agent.cli(&["status"]).is_ok_and(|o| o.success) {
                return Ok(agent);
            }
            if !agent.proc.as_mut().is_some_and(|p| p.alive()) {
                bail!("the netd agent exited at start; log:\n{}", agent.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "the netd agent did not answer `status` within 20 s; log:\n{}",
                    agent.log_tail()
                );
            }
            sys::check()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join("netd.sock")
    }

    /// `netd -H SOCK args...`; the output (with its wall time), success or not.
    pub fn cli(&self, args: &[&str]) -> Result<sys::Output> {
        let mut c = Command::new(&self.bin);
        c.arg("-H").arg(self.socket()).args(args);
        sys::output(&mut c, Duration::from_secs(60))
    }

    /// `netd -H SOCK args...`, must succeed; returns its wall time.
    pub fn ok(&self, args: &[&str]) -> Result<Duration> {
        let o = self.cli(args)?;
        if !o.success {
            bail!("`netd {}` failed: {}", args.join(" "), o.stderr.trim());
        }
        Ok(o.elapsed)
    }

    /// The agent's drop counters by reason (`status --format json`).
    pub fn drops(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let o = self.cli(&["status", "--format", "json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&o.stdout).context("`netd status --format json`")?;
        Ok(v.get("drops")
            .and_then(|d| d.as_object())
            .map(|d| {
                d.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Does `container add` know `--publish`?
    pub fn has_publish_flag(&self) -> bool {
        self.cli(&["container", "add", "--help"])
            .is_ok_and(|o| o.stdout.contains("--publish"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.proc.take());
        sys::umount_below(&self.dir.join("bpffs"));
    }
}

/// One datapath's topology. Fields drop in order: servers, the agent, then
/// the namespaces (and with them every interface).
pub struct Dp {
    pub kind: Kind,
    pub host: String,
    pub world: String,
    pub c1: String,
    pub c2: String,
    /// Why published ports are not measured on this datapath, if they aren't.
    pub publish_na: Option<String>,
    /// Why world -> published port over IPv6 cannot be measured.
    pub publish6_na: Option<String>,
    servers: Vec<Proc>,
    pub agent: Option<Agent>,
    extra_ns: Vec<Netns>,
    _ns: Vec<Netns>,
    ctx: Ctx,
    /// Published filler ports so far (scale test).
    fillers: usize,
    extra_count: usize,
}

impl Dp {
    pub fn build(ctx: &Ctx, kind: Kind) -> Result<Dp> {
        let tag = kind.short();
        let names: Vec<String> = ["host", "world", "c1", "c2"]
            .iter()
            .map(|r| ctx.ns_name(tag, r))
            .collect();
        let mut nss = Vec::new();
        for n in &names {
            nss.push(Netns::create(n)?);
        }
        let mut dp = Dp {
            kind,
            host: names[0].clone(),
            world: names[1].clone(),
            c1: names[2].clone(),
            c2: names[3].clone(),
            publish_na: None,
            publish6_na: None,
            servers: Vec::new(),
            agent: None,
            extra_ns: Vec::new(),
            _ns: nss,
            ctx: ctx.clone(),
            fillers: 0,
            extra_count: 0,
        };
        dp.base()?;
        match kind {
            Kind::Bare => dp.build_bare()?,
            Kind::Iptables => dp.build_iptables()?,
            Kind::Netd | Kind::NetdKernel => dp.build_netd()?,
        }
        for ns in [dp.c1.clone(), dp.world.clone()] {
            let s = ctx.server(&ns, RR_PORT)?;
            dp.servers.push(s);
            let s = ctx.iperf_server(&ns)?;
            dp.servers.push(s);
        }
        Ok(dp)
    }

    /// World, uplink, client sysctls: the part all three share.
    fn base(&self) -> Result<()> {
        for ns in [&self.host, &self.world, &self.c1, &self.c2] {
            // Connection-rate clients: TIME_WAIT reuse and (except on the
            // host, whose low ports get published) a wide port range, so a
            // few seconds of connect/close never run out of ports.
            sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
            // Link-local addresses usable at once (no DAD wait).
            sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
            if *ns != self.host {
                sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65000")?;
            }
        }
        ip(
            &self.host,
            &[
                "link",
                "add",
                "wan0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.world,
            ],
        )?;
        ip_batch(
            &self.host,
            &[
                format!("addr add {WAN_H}/24 dev wan0"),
                "link set wan0 up".into(),
                format!("route add default via {WAN_W} dev wan0"),
            ],
        )?;
        ip_batch(
            &self.world,
            &[
                format!("addr add {WAN_W}/24 dev eth0"),
                format!("addr add {WAN_W6}/64 dev eth0 nodad"),
                "link set eth0 up".into(),
            ],
        )?;
        ip_batch(
            &self.host,
            &[
                format!("addr add {WAN_H6}/64 dev wan0 nodad"),
                format!("route add default via {WAN_W6} dev wan0"),
            ],
        )?;
        Ok(())
    }

    fn build_bare(&self) -> Result<()> {
        sysctl(&self.host, "net.ipv4.ip_forward", "1")?;
        sysctl(&self.host, "net.ipv6.conf.all.forwarding", "1")?;
        for (i, ((ns, addr), addr6)) in [(&self.c1, C1), (&self.c2, C2)]
            .into_iter()
            .zip([C1_6, C2_6])
            .enumerate()
        {
            let vh = format!("vh{}", i + 1);
            ip(
                &self.host,
                &[
                    "link", "add", &vh, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )?;
            ip_batch(
                &self.host,
                &[
                    format!("addr add {GW} peer {addr}/32 dev {vh}"),
                    format!("addr add fe80::1/64 dev {vh} nodad"),
                    format!("link set {vh} up"),
                    format!("route add {addr6}/128 dev {vh}"),
                ],
            )?;
            ip_batch(
                ns,
                &[
                    format!("addr add {addr} peer {GW}/32 dev eth0"),
                    format!("addr add {addr6}/128 dev eth0 nodad"),
                    "link set eth0 up".into(),
                    format!("route add default via {GW} dev eth0"),
                    "route add default via fe80::1 dev eth0".into(),
                ],
            )?;
        }
        ip(
            &self.world,
            &["route", "add", SUBNET1, "via", &WAN_H.to_string()],
        )?;
        ip(
            &self.world,
            &["route", "add", SUBNET1_6, "via", &WAN_H6.to_string()],
        )?;
        Ok(())
    }

    fn build_iptables(&self) -> Result<()> {
        let h = &self.host;
        ip_batch(
            h,
            &[
                "link add br1 type bridge".into(),
                "link add br2 type bridge".into(),
                format!("addr add {GW}/24 dev br1"),
                "addr add 10.254.2.1/24 dev br2".into(),
                format!("addr add {GW6}/64 dev br1 nodad"),
                "addr add fd00:254:2::1/64 dev br2 nodad".into(),
                "link set br1 up".into(),
                "link set br2 up".into(),
            ],
        )?;
        for (i, ((ns, addr), addr6)) in [(&self.c1, C1), (&self.c2, C2)]
            .into_iter()
            .zip([C1_6, C2_6])
            .enumerate()
        {
            let vh = format!("vh{}", i + 1);
            ip(
                h,
                &[
                    "link", "add", &vh, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )?;
            ip_batch(
                h,
                &[
                    format!("link set {vh} master br1"),
                    format!("link set {vh} up"),
                ],
            )?;
            ip_batch(
                ns,
                &[
                    format!("addr add {addr}/24 dev eth0"),
                    format!("addr add {addr6}/64 dev eth0 nodad"),
                    "link set eth0 up".into(),
                    format!("route add default via {GW} dev eth0"),
                    format!("route add default via {GW6} dev eth0"),
                ],
            )?;
        }
        // What dockerd sets: forwarding, bridged traffic through iptables
        // and ip6tables, and (userland-proxy=false) route_localnet for
        // 127.0.0.1 DNAT.
        sysctl(h, "net.ipv4.ip_forward", "1")?;
        sysctl(h, "net.ipv6.conf.all.forwarding", "1")?;
        sysctl(h, "net.bridge.bridge-nf-call-iptables", "1")?;
        sysctl(h, "net.bridge.bridge-nf-call-ip6tables", "1")?;
        sysctl(h, "net.ipv4.conf.br1.route_localnet", "1")?;
        for family in [Family::V4, Family::V6] {
            let mut c = sys::in_ns(h, family.restore());
            with_stdin(&mut c, &docker_ruleset(family), Duration::from_secs(60)).with_context(
                || format!("loading the Docker-equivalent {} ruleset", family.tool()),
            )?;
        }
        for ctr in [IpAddr::V4(C1), IpAddr::V6(C1_6)] {
            self.iptables_publish(PUB_RR, ctr, RR_PORT)?;
            self.iptables_publish(PUB_IPERF, ctr, IPERF_PORT)?;
        }
        Ok(())
    }

    /// The three rules dockerd adds for `-p HOST:CTR` (one `iptables` exec
    /// each, as dockerd does); returns their total wall time.
    pub fn iptables_publish(
        &self,
        host_port: u16,
        ctr: impl Into<IpAddr>,
        ctr_port: u16,
    ) -> Result<Duration> {
        let ctr = ctr.into();
        let mut total = Duration::ZERO;
        for rule in publish_rules(host_port, ctr, ctr_port) {
            let mut args = vec!["--wait", "-t", rule.0, "-A"];
            args.extend(rule.1.split(' '));
            let mut c = sys::in_ns(&self.host, Family::of(ctr).tool());
            c.args(&args);
            let o = sys::output(&mut c, Duration::from_secs(60))?;
            if !o.success {
                bail!(
                    "{} {}: {}",
                    Family::of(ctr).tool(),
                    args.join(" "),
                    o.stderr.trim()
                );
            }
            total += o.elapsed;
        }
        Ok(total)
    }

    fn iptables_unpublish(&self, host_port: u16, ctr: Ipv4Addr, ctr_port: u16) -> Result<()> {
        for rule in publish_rules(host_port, ctr.into(), ctr_port) {
            let mut args = vec!["--wait", "-t", rule.0, "-D"];
            args.extend(rule.1.split(' '));
            run_in(&self.host, "iptables", &args)?;
        }
        Ok(())
    }

    fn build_netd(&mut self) -> Result<()> {
        let routing = match self.kind {
            Kind::NetdKernel => "kernel",
            _ => "ebpf",
        };
        let agent = Agent::start(
            &self.ctx,
            &self.host,
            self.kind.short(),
            &[
                "--uplink",
                "wan0",
                "--no-default-bridge",
                "--host-routing",
                routing,
            ],
        )?;
        agent.ok(&[
            "network", "create", "n1", "--subnet", SUBNET1, "--ipv6", "--subnet", SUBNET1_6,
        ])?;
        agent.ok(&["network", "create", "n2", "--subnet", SUBNET2])?;
        let c1_path = sys::netns_path(&self.c1).display().to_string();
        let c2_path = sys::netns_path(&self.c2).display().to_string();
        let (c1_ip, c1_ip6) = (C1.to_string(), C1_6.to_string());
        let (c2_ip, c2_ip6) = (C2.to_string(), C2_6.to_string());
        let base = [
            "container",
            "add",
            "c1",
            "--netns",
            &c1_path,
            "--network",
            "n1",
            "--ip",
            &c1_ip,
            "--ip6",
            &c1_ip6,
        ];
        let pub_rr = format!("{PUB_RR}:{RR_PORT}");
        let pub_iperf = format!("{PUB_IPERF}:{IPERF_PORT}");
        if !agent.has_publish_flag() {
            self.publish_na =
                Some("n/a (not implemented: `container add` has no --publish)".into());
            agent.ok(&base)?;
        } else {
            let mut args = base.to_vec();
            args.extend(["--publish", &pub_rr, "--publish", &pub_iperf]);
            let o = agent.cli(&args)?;
            if !o.success {
                self.publish_na = Some(format!("n/a (publish refused: {})", o.stderr.trim()));
                agent.ok(&base)?;
            }
            // `-p HOST:CTR` publishes on [::] too for a container with
            // IPv6 (Docker 27/28); a netd that does not shows no `::` binding.
            let ports = agent.cli(&["port", "c1"])?;
            if !ports.success || !ports.stdout.contains("::") {
                self.publish6_na = Some("n/a (not supported: netd did not publish on [::])".into());
            }
        }
        agent.ok(&[
            "container",
            "add",
            "c2",
            "--netns",
            &c2_path,
            "--network",
            "n1",
            "--ip",
            &c2_ip,
            "--ip6",
            &c2_ip6,
        ])?;
        self.agent = Some(agent);
        Ok(())
    }

    /// Where the client of `path` runs and connects, or why it can't.
    pub fn target(&self, path: PathKind) -> Result<Target, String> {
        let bare = self.kind == Kind::Bare;
        let t = |ns: &str, ip: IpAddr, rr: u16, iperf: u16, note| Target {
            client_ns: ns.to_string(),
            rr: sa(ip, rr),
            iperf: sa(ip, iperf),
            note,
            cgroup: (self.kind.is_netd() && ns == self.host).then(|| self.ctx.cgroup.clone()),
            unsupported: None,
        };
        let (c1, c1_6) = (IpAddr::V4(C1), IpAddr::V6(C1_6));
        if matches!(path, PathKind::WorldPub | PathKind::HostLocal) {
            if let Some(na) = &self.publish_na {
                return Err(na.clone());
            }
        }
        if path == PathKind::HostLocal6 && self.kind == Kind::Iptables {
            return Err(NO_LOCALNET6.into());
        }
        if matches!(path, PathKind::WorldPub6 | PathKind::HostLocal6) && !bare {
            if let Some(na) = self.publish_na.as_ref().or(self.publish6_na.as_ref()) {
                return Err(na.clone());
            }
        }
        Ok(match path {
            PathKind::C2c => t(&self.c2, c1, RR_PORT, IPERF_PORT, None),
            PathKind::C2c6 => t(&self.c2, c1_6, RR_PORT, IPERF_PORT, None),
            PathKind::WorldPub6 if bare => t(
                &self.world,
                c1_6,
                RR_PORT,
                IPERF_PORT,
                Some("routed to the container address, no DNAT"),
            ),
            PathKind::WorldPub6 => t(&self.world, WAN_H6.into(), PUB_RR, PUB_IPERF, None),
            PathKind::CtrWorld6 if bare => t(
                &self.c1,
                WAN_W6.into(),
                RR_PORT,
                IPERF_PORT,
                Some("routed with the container's own address, no masquerade"),
            ),
            PathKind::CtrWorld6 => Target {
                unsupported: Some(NO_NAT66),
                ..t(&self.c1, WAN_W6.into(), RR_PORT, IPERF_PORT, None)
            },
            PathKind::WorldPub if bare => t(
                &self.world,
                c1,
                RR_PORT,
                IPERF_PORT,
                Some("routed to the container address, no DNAT"),
            ),
            PathKind::WorldPub => t(&self.world, WAN_H.into(), PUB_RR, PUB_IPERF, None),
            PathKind::CtrWorld => t(
                &self.c1,
                WAN_W.into(),
                RR_PORT,
                IPERF_PORT,
                bare.then_some("routed with the container's own address, no masquerade"),
            ),
            PathKind::HostLocal if bare => t(
                &self.host,
                c1,
                RR_PORT,
                IPERF_PORT,
                Some("host to the container address, no DNAT"),
            ),
            PathKind::HostLocal => t(
                &self.host,
                Ipv4Addr::LOCALHOST.into(),
                PUB_RR,
                PUB_IPERF,
                None,
            ),
            PathKind::HostLocal6 if bare => t(
                &self.host,
                c1_6,
                RR_PORT,
                IPERF_PORT,
                Some("host to the container address, no DNAT"),
            ),
            PathKind::HostLocal6 => t(
                &self.host,
                Ipv6Addr::LOCALHOST.into(),
                PUB_RR,
                PUB_IPERF,
                None,
            ),
        })
    }

    // ------------------------------------------------------------ scale

    /// Brings the published filler ports up to `n` (never down).
    pub fn scale_to(&mut self, n: usize) -> Result<()> {
        match self.kind {
            Kind::Bare => bail!("the bare datapath has no published ports"),
            Kind::Iptables => {
                if n <= self.fillers {
                    return Ok(());
                }
                let (mut nat, mut filter) = (String::new(), String::new());
                for i in self.fillers..n {
                    let (host_port, ctr, ctr_port) = filler(i);
                    for (table, rule) in publish_rules(host_port, ctr.into(), ctr_port) {
                        let out = if table == "nat" {
                            &mut nat
                        } else {
                            &mut filter
                        };
                        let _ = writeln!(out, "-A {rule}");
                    }
                }
                let input = format!("*nat\n{nat}COMMIT\n*filter\n{filter}COMMIT\n");
                let mut c = sys::in_ns(&self.host, "iptables-restore");
                c.arg("--noflush");
                with_stdin(&mut c, &input, Duration::from_secs(300))
                    .context("loading filler rules")?;
                self.fillers = n;
                Ok(())
            }
            Kind::Netd | Kind::NetdKernel => {
                if let Some(na) = &self.publish_na {
                    bail!("{na}");
                }
                while self.fillers < n {
                    let k = self.fillers / PORTS_PER_FILLER;
                    let count = (n - self.fillers).min(PORTS_PER_FILLER);
                    let first = FILL_BASE as usize + self.fillers;
                    let spec = format!(
                        "{first}-{}:{}-{}",
                        first + count - 1,
                        FILL_BASE,
                        FILL_BASE as usize + count - 1
                    );
                    self.netd_container(&format!("fill{k}"), &["--publish", &spec])?;
                    self.fillers += count;
                }
                Ok(())
            }
        }
    }

    /// A new container netns on n1 (with `args`); the wall time of its
    /// `container add`. Returns the netns name too.
    fn netd_container(&mut self, name: &str, args: &[&str]) -> Result<(Duration, String)> {
        let ns_name = self
            .ctx
            .ns_name(self.kind.short(), &format!("x{}", self.extra_count));
        self.extra_count += 1;
        self.extra_ns.push(Netns::create(&ns_name)?);
        let path = sys::netns_path(&ns_name).display().to_string();
        let agent = self.agent.as_ref().context("no agent")?;
        let mut all = vec![
            "container",
            "add",
            name,
            "--netns",
            &path,
            "--network",
            "n1",
        ];
        all.extend_from_slice(args);
        let t = agent.ok(&all)?;
        Ok((t, ns_name))
    }

    /// Publishes one more port (the "last-added" probe for level `level`),
    /// with a server behind it. Returns the host port and the timings.
    pub fn publish_probe(&mut self, level: usize) -> Result<Probe> {
        let port = PROBE_BASE + level as u16;
        match self.kind {
            Kind::Bare => bail!("the bare datapath has no published ports"),
            Kind::Iptables => {
                let mut publish_ms = Vec::new();
                for r in 0..3u16 {
                    let dummy = PROBE_BASE + 1000 + level as u16 * 10 + r;
                    publish_ms.push(ms(self.iptables_publish(dummy, C1, RR_PORT)?));
                    self.iptables_unpublish(dummy, C1, RR_PORT)?;
                }
                publish_ms.push(ms(self.iptables_publish(port, C1, RR_PORT)?));
                Ok(Probe {
                    port,
                    publish_ms,
                    plain_add_ms: Vec::new(),
                })
            }
            Kind::Netd | Kind::NetdKernel => {
                if let Some(na) = &self.publish_na {
                    bail!("{na}");
                }
                let (mut publish_ms, mut plain_add_ms) = (Vec::new(), Vec::new());
                for r in 0..3u16 {
                    let dummy = format!("{}:{RR_PORT}", PROBE_BASE + 1000 + level as u16 * 10 + r);
                    let (t, _) =
                        self.netd_container(&format!("dp{level}-{r}"), &["--publish", &dummy])?;
                    publish_ms.push(ms(t));
                    let (t, _) = self.netd_container(&format!("dn{level}-{r}"), &[])?;
                    plain_add_ms.push(ms(t));
                }
                let spec = format!("{port}:{RR_PORT}");
                let (t, ns) =
                    self.netd_container(&format!("probe{level}"), &["--publish", &spec])?;
                publish_ms.push(ms(t));
                let s = self.ctx.server(&ns, RR_PORT)?;
                self.servers.push(s);
                Ok(Probe {
                    port,
                    publish_ms,
                    plain_add_ms,
                })
            }
        }
    }

    pub fn probe_target(&self, port: u16) -> Target {
        Target {
            client_ns: self.world.clone(),
            rr: sa(WAN_H, port),
            iperf: sa(WAN_H, port),
            note: None,
            cgroup: None,
            unsupported: None,
        }
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}

/// Timings of publishing one more port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub port: u16,
    /// iptables: the three `iptables` execs; netd: `container add -p`.
    pub publish_ms: Vec<f64>,
    /// netd: `container add` without `-p`, at the same scale.
    pub plain_add_ms: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Filler port `i`: host port, container address and port it maps to.
fn filler(i: usize) -> (u16, Ipv4Addr, u16) {
    let k = (i / PORTS_PER_FILLER) as u8;
    (
        FILL_BASE + i as u16,
        Ipv4Addr::new(10, 254, 1, 100 + k),
        FILL_BASE + (i % PORTS_PER_FILLER) as u16,
    )
}

/// The address family of an iptables ruleset: which tool loads it and
/// which addresses it names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// The subnets of br1 and br2.
    fn subnets(self) -> [&'static str; 2] {
        match self {
            Family::V4 => [SUBNET1, SUBNET2],
            Family::V6 => [SUBNET1_6, SUBNET2_6],
        }
    }
}

/// dockerd's per-port rules (table, rule without `-A`), as in Docker 20.10
/// `-p HOST:CTR` on bridge br1 with userland-proxy=false; for an IPv6
/// container address the ip6tables rules Docker 27+ adds beside them.
fn publish_rules(host_port: u16, ctr: IpAddr, ctr_port: u16) -> [(&'static str, String); 3] {
    let (to, host_len) = match ctr {
        IpAddr::V4(_) => (format!("{ctr}:{ctr_port}"), 32),
        IpAddr::V6(_) => (format!("[{ctr}]:{ctr_port}"), 128),
    };
    [
        (
            "nat",
            format!("DOCKER ! -i br1 -p tcp -m tcp --dport {host_port} -j DNAT --to-destination {to}"),
        ),
        (
            "filter",
            format!("DOCKER -d {ctr}/{host_len} ! -i br1 -o br1 -p tcp -m tcp --dport {ctr_port} -j ACCEPT"),
        ),
        (
            "nat",
            format!("POSTROUTING -s {ctr}/{host_len} -d {ctr}/{host_len} -p tcp -m tcp --dport {ctr_port} -j MASQUERADE"),
        ),
    ]
}

/// The ruleset dockerd 20.10 leaves for two bridge networks (br1, br2),
/// before any port is published; for IPv6 the same chains in ip6tables, as
/// Docker 27+ sets them up with ip6tables on.
fn docker_ruleset(family: Family) -> String {
    let mut f = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n\
         :DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n",
    );
    for br in ["br2", "br1"] {
        let _ = write!(
            f,
            "-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -o {br} -j DOCKER\n\
             -A FORWARD -i {br} ! -o {br} -j ACCEPT\n\
             -A FORWARD -i {br} -o {br} -j ACCEPT\n"
        );
    }
    for br in ["br2", "br1"] {
        let _ = writeln!(
            f,
            "-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
        );
    }
    f.push_str("-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n");
    for br in ["br2", "br1"] {
        let _ = writeln!(f, "-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP");
    }
    f.push_str("-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n");
    f.push_str(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -o br1 -m addrtype --src-type LOCAL -j MASQUERADE\n\
         -A POSTROUTING -o br2 -m addrtype --src-type LOCAL -j MASQUERADE\n",
    );
    let [subnet1, subnet2] = family.subnets();
    let _ = writeln!(f, "-A POSTROUTING -s {subnet2} ! -o br2 -j MASQUERADE");
    let _ = writeln!(f, "-A POSTROUTING -s {subnet1} ! -o br1 -j MASQUERADE");
    f.push_str("-A DOCKER -i br2 -j RETURN\n-A DOCKER -i br1 -j RETURN\nCOMMIT\n");
    f
}
