//! Agent lifecycle (issue 5, SPEC section 5) with real packets.
//!
//! - Traffic between containers, a published port and a masqueraded flow,
//!   each over IPv4 and IPv6 on a dual-stack network, keep running while
//!   the agent is SIGKILLed and restarted twice; while it is down, the
//!   pinned programs still drop (and count) traffic between networks, both
//!   families.
//! - Fault injection: the agent aborts at every crash point
//!   (`NETD_CRASH_AT`, netd/src/fault.rs) in the middle of an operation; a
//!   restarted agent leaves no orphans, its stored state matches the kernel,
//!   and what exists still carries traffic.
//! - External damage (a container's netns, a host veth, a bridge, a pinned
//!   program link removed from outside) is repaired or released within a
//!   few seconds and reported by `status`, IPv6 state included.
//! - `netd reset --force` leaves no trace; `netd reset` alone is refused.
//!
//! Beds that publish or masquerade have an uplink as in `masquerade.rs`:
//! veth `up0` (203.0.113.2/24) to a "world" netns (`w0`, 203.0.113.1/24),
//! default route via the world; a dual-stack uplink adds 2001:db8:95::2/64
//! and the world 2001:db8:95::1 (`netd_tests::world`), which has no route
//! to the containers' subnets (NAT66 and published ports translate). Every
//! agent here attaches its host-socket programs to a cgroup2 directory made
//! for the test (`--cgroup`), never to the real root; the directory is
//! removed after the bed.

mod kernel;
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use kernel::{
    consistency, endpoint6, endpoint6_by_ip, endpoint_by_ip, ifindexes, links_of,
    published6_entries, published_entries,
};
use netd_common::DropReason;
use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::ports::{ask_via, sa, PortServer, P};
use netd_tests::traffic::{dropped, icmp, no_icmp, no_tcp, tcp};
use netd_tests::wait::wait_for;
use netd_tests::world::{at4, at6, world_reaches, UPLINK, UPLINK6, UPLINK_LIMIT, WORLD, WORLD6};
use netd_tests::{Bed, Ctr, Ep};
use serde_json::Value;
use streams::{flood_lossless, ping_flood, Stream, StreamSpec};

/// The published host port and the container port behind it.
const HOST_PORT: u16 = 8080;
const CTR_PORT: u16 = 5001;
/// How long a repair or release may take ("within a few seconds").
const REPAIR_LIMIT: Duration = Duration::from_secs(6);
/// The longest a stream may stall while the agent restarts.
const MAX_STALL: Duration = Duration::from_secs(1);
const ISOLATION: &str = "network-isolation";

// ---------------------------------------------------------------- bed

/// The uplink a bed has before its agent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uplink {
    None,
    /// IPv4 only (`Bed::make_world`).
    V4,
    /// IPv4 and IPv6 (`Bed::make_world6`).
    DualStack,
}

/// A bed, maybe with a world behind an uplink (the agent's socket programs
/// are on the bed's own cgroup).
struct LcBed {
    bed: Bed,
    world: Option<String>,
    uplink: Uplink,
}

impl Deref for LcBed {
    type Target = Bed;
    fn deref(&self) -> &Bed {
        &self.bed
    }
}

impl LcBed {
    /// The world netns (panics if the bed has none).
    fn world(&self) -> &str {
        self.world.as_deref().expect("this bed has no world")
    }

    /// Starts the agent (without extra environment) and waits for the
    /// uplink's addresses if there is one.
    fn start(&self) {
        self.bed.start_agent();
        if self.uplink != Uplink::None {
            self.bed.wait_uplink(UPLINK, UPLINK_LIMIT);
        }
        if self.uplink == Uplink::DualStack {
            self.bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
        }
    }
}

/// A bed with `args` and `uplink` made before the agent starts; with
/// `start`, the agent is started.
fn lc_bed(uplink: Uplink, start: bool, args: &[&str]) -> LcBed {
    let bed = Bed::without_agent(args);
    let world = match uplink {
        Uplink::None => None,
        Uplink::V4 => Some(bed.make_world()),
        Uplink::DualStack => Some(bed.make_world6()),
    };
    let lc = LcBed { bed, world, uplink };
    if start {
        lc.start();
    }
    lc
}

fn status(bed: &Bed) -> Value {
    bed.json(&["status", "--format", "json"])
}

/// `status`'s `last_reconcile.repairs`.
fn repairs(bed: &Bed) -> Vec<String> {
    let st = status(bed);
    st["last_reconcile"]["repairs"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "status has no last_reconcile.repairs: {}",
                st["last_reconcile"]
            )
        })
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A repair whose text contains every one of `words`.
fn repaired(bed: &Bed, words: &[&str]) -> Result<String, String> {
    let all = repairs(bed);
    all.iter()
        .find(|r| words.iter().all(|w| r.contains(w)))
        .cloned()
        .ok_or_else(|| format!("no repair mentioning {words:?} in {all:?}"))
}

fn host_if(bed: &Bed, ctr: &str, net: &str) -> String {
    let v = bed.ctr_info(ctr);
    v["Networks"][net]["HostInterface"]
        .as_str()
        .unwrap_or_else(|| panic!("container {ctr} has no HostInterface on {net}: {v}"))
        .to_string()
}

fn bridge_of(bed: &Bed, net: &str) -> String {
    let v = bed.net_info(net);
    v["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or_else(|| panic!("network {net} has no bridge option: {v}"))
        .to_string()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["Name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn container_names(bed: &Bed) -> BTreeSet<String> {
    names(&bed.json(&["container", "ls", "--format", "json"]))
}

fn network_names(bed: &Bed) -> BTreeSet<String> {
    names(&bed.json(&["network", "ls", "--format", "json"]))
}

/// Waits until the stored state and the kernel agree (panics if they do not
/// within [`REPAIR_LIMIT`]).
fn wait_consistent(bed: &Bed, what: &str) -> Duration {
    wait_for(
        &format!("stored state and kernel to agree ({what})"),
        REPAIR_LIMIT,
        || consistency(bed),
    )
    .1
}

/// The links of a netns with no container in it: only `lo` is allowed.
fn assert_bare(ns: &str, what: &str) {
    let names: Vec<String> = links_of(ns)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(
        names,
        vec!["lo".to_string()],
        "netns {ns} ({what}) should only have lo"
    );
}

// ---------------------------------------------------------------- probes

/// ICMP and TCP both ways between `a` and `b`.
fn reach2(a: &Ep, b: &Ep) -> Result<(), String> {
    let mut errs = Vec::new();
    for (x, y) in [(a, b), (b, a)] {
        if let Err(e) = icmp(&x.ns, y.ip) {
            errs.push(format!("ICMP {x} -> {y}: {e:#}"));
        }
        match tcp(&x.ns, y) {
            Ok(src) if src == x.ip => {}
            Ok(src) => errs.push(format!("TCP {x} -> {y}: server saw {src}")),
            Err(e) => errs.push(format!("TCP {x} -> {y}: {e:#}")),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

fn assert_reach(a: &Ep, b: &Ep) {
    if let Err(e) = reach2(a, b) {
        panic!("{e}");
    }
}

/// From the world to UPLINK:HOST_PORT: a server on 0.0.0.0:CTR_PORT in
/// `ctr_ns` must get the connection (the peer it saw is returned) and the
/// world must read its answer.
fn published(world: &str, ctr_ns: &str) -> anyhow::Result<SocketAddrV4> {
    Ok(ask_via(P::Tcp, ctr_ns, CTR_PORT, world, sa(UPLINK, HOST_PORT))?.seen)
}

fn assert_published(bed: &LcBed, ctr: &Ctr) {
    match published(bed.world(), &ctr.ns) {
        Ok(peer) => assert_eq!(
            *peer.ip(),
            WORLD,
            "published port: {} should see the world's address",
            ctr.name
        ),
        Err(e) => panic!("published port of {}: {e:#}", ctr.name),
    }
}

/// The published HOST_PORT answers the world on both families (TCP), the
/// container seeing the world's own address.
fn assert_published_dual(bed: &LcBed, ctr: &Ctr) {
    let srv = PortServer::start_dual(&ctr.ns, &[CTR_PORT], &[]);
    world_reaches(
        bed.world(),
        &srv,
        &[
            (P::Tcp, at4(HOST_PORT), CTR_PORT),
            (P::Tcp, at6(HOST_PORT), CTR_PORT),
        ],
        &[],
        &format!("published port {HOST_PORT} of {}", ctr.name),
    );
}

// ---------------------------------------------------------------- (1) restarts

/// Echo requests of one `no_icmp` probe.
const DOWN_PINGS: u64 = 2;
/// Echo requests of each ping flood (10 ms apart): long enough to span
/// both restarts (checked).
const FLOOD: u32 = 1500;

/// While no agent runs: pings from `from` to each of `to` (on another
/// network) go unanswered, and the pinned `DROPS` counter of network
/// isolation grows by what each probe sent, the witness that the pinned
/// programs dropped them (not a missing route or neighbour).
fn isolated_while_down(bed: &Bed, from: &Ctr, to: &[&Ep]) -> Vec<String> {
    let mut errs = Vec::new();
    for &dst in to {
        let before = bed.pinned_drops(DropReason::Isolation);
        if let Err(e) = no_icmp(&from.ns, dst.ip) {
            errs.push(format!(
                "ICMP {} -> {dst} with the agent down should be dropped: {e:#}",
                from.name
            ));
            continue;
        }
        let grew = bed
            .pinned_drops(DropReason::Isolation)
            .saturating_sub(before);
        if grew < DOWN_PINGS {
            errs.push(format!(
                "with the agent down, drops[{ISOLATION:?}] grew by {grew} for the pings {} -> \
                 {dst}, expected at least {DOWN_PINGS}",
                from.name
            ));
        }
    }
    errs
}

/// On a dual-stack network, for each family: a ping flood and a TCP stream
/// between containers, a stream from the world to a published port and a
/// masqueraded stream to the world (NAT66 for IPv6) run while the agent is
/// SIGKILLed and restarted twice: no ping is lost, no stream stalls for a
/// second, every stream keeps its one connection and the peer address it
/// began with. While the agent is down, pings to a container on another
/// network are dropped and counted, both families.
#[test]
fn traffic_survives_agent_kill_and_restart() {
    let bed = lc_bed(Uplink::DualStack, true, &[]);
    for (net, v4, v6) in [
        ("n1", "10.81.1.0/24", "fd00:81:1::/64"),
        ("n2", "10.81.2.0/24", "fd00:81:2::/64"),
    ] {
        bed.network(net, &["--subnet", v4, "--ipv6", "--subnet", v6]);
    }
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n1", "-p", "8080:5001"]);
    let z = bed.container("z", &["--network", "n2"]);
    let (ea, eb, ez) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"), bed.ep(&z, "n2"));
    let (ea6, eb6, ez6) = (bed.ep6(&a, "n1"), bed.ep6(&b, "n1"), bed.ep6(&z, "n2"));
    let ec6 = bed.ep6(&c, "n1");
    // Warm up neighbour caches and check the paths before the clock starts.
    assert_reach(&ea, &eb);
    assert_reach(&ea6, &eb6);
    assert_published_dual(&bed, &c);

    let stop = Arc::new(AtomicBool::new(false));
    let world = bed.world();
    let any4 = IpAddr::from(Ipv4Addr::UNSPECIFIED);
    let specs = [
        ("a -> b", (&*b.ns, eb.ip, 0), &*a.ns, None, ea.ip),
        (
            "world -> H:8080",
            (&*c.ns, any4, CTR_PORT),
            world,
            Some(at4(HOST_PORT)),
            WORLD.into(),
        ),
        (
            "a -> world",
            (world, WORLD.into(), 0),
            &*a.ns,
            None,
            UPLINK.into(),
        ),
        (
            "a -> b over IPv6",
            (&*b.ns, eb6.ip, 0),
            &*a.ns,
            None,
            ea6.ip,
        ),
        (
            "world -> [H6]:8080",
            (&*c.ns, ec6.ip, CTR_PORT),
            world,
            Some(at6(HOST_PORT)),
            WORLD6.into(),
        ),
        (
            "a -> world over IPv6 (NAT66)",
            (world, WORLD6.into(), 0),
            &*a.ns,
            None,
            UPLINK6.into(),
        ),
    ];
    let streams: Vec<Stream> = specs
        .into_iter()
        .map(|(name, rx, tx_ns, via, peer)| {
            let spec = StreamSpec {
                name,
                rx,
                tx_ns,
                via,
                peer,
            };
            Stream::start(spec, &stop)
        })
        .collect();
    let floods = [
        ("a -> b", ping_flood(&a.ns, eb.ip, FLOOD)),
        ("a -> b over IPv6", ping_flood(&a.ns, eb6.ip, FLOOD)),
    ];

    std::thread::sleep(Duration::from_millis(1000));
    let (mut downtime, mut errs) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let t = Instant::now();
        bed.kill_agent();
        assert!(
            !bed.agent_running(),
            "round {round}: agent still running after SIGKILL"
        );
        if round == 0 {
            // The floods a -> b are the control on the same veth.
            errs.extend(isolated_while_down(&bed, &a, &[&ez, &ez6]));
        } else {
            std::thread::sleep(Duration::from_millis(1000));
        }
        bed.start_agent();
        downtime.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1000));
    }
    for (what, flood) in &floods {
        if flood.is_finished() {
            errs.push(format!(
                "harness: the flood {what} ended before the second restart was over (raise FLOOD)"
            ));
        }
    }
    for (what, flood) in floods {
        let ping = flood.join().expect("ping thread");
        errs.extend(flood_lossless(what, &ping, FLOOD).err());
    }
    stop.store(true, Ordering::SeqCst);
    for s in streams {
        errs.extend(s.finish(MAX_STALL));
    }
    eprintln!("agent down+restart times: {downtime:?}");
    assert!(
        errs.is_empty(),
        "across two SIGKILL restarts:\n  - {}",
        errs.join("\n  - ")
    );
    // The restarted agent still isolates the networks, both families.
    bed.expect(&[
        dropped(&ea, &ez, ISOLATION),
        dropped(&ea6, &ez6, ISOLATION),
        dropped(&ez6, &ea6, ISOLATION),
    ]);
    wait_consistent(&bed, "after the restarts");
}

// ---------------------------------------------------------------- (2) faults

/// Starts the agent with `NETD_CRASH_AT=point`, runs `op` (which must fail
/// because the agent aborts at `point`), checks the agent died there, and
/// starts it again without the variable.
fn crash_during(bed: &LcBed, point: &str, op: &[&str]) {
    if bed.agent_running() {
        bed.stop_agent();
    }
    bed.start_agent_env(&[("NETD_CRASH_AT", point)]);
    let out = bed.netd(op);
    assert!(
        !out.success(),
        "`{}` should fail when the agent aborts at {point}:\n{out}",
        op.join(" ")
    );
    let st = bed
        .wait_agent_exit(Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "agent still running after `{}` with NETD_CRASH_AT={point}",
                op.join(" ")
            )
        });
    assert!(
        !st.success(),
        "agent exited cleanly ({st}) instead of aborting at {point}"
    );
    let log = bed.log_tail(400);
    assert!(
        log.contains(&format!("crash point {point} reached")),
        "the agent did not report reaching crash point {point}; log:\n{}",
        bed.log_tail(40)
    );
    bed.start();
    wait_consistent(bed, &format!("restart after a crash at {point}"));
}

/// A fault bed: a dual-stack uplink, no default network (a stored network
/// makes every start run the network-create steps).
fn fault_bed(start: bool) -> LcBed {
    lc_bed(Uplink::DualStack, start, &["--no-default-bridge"])
}

/// `network create` arguments of a dual-stack network `n` with these
/// subnets.
fn dual_net<'a>(n: &'a str, v4: &'a str, v6: &'a str) -> [&'a str; 8] {
    [
        "network", "create", n, "--subnet", v4, "--ipv6", "--subnet", v6,
    ]
}

/// Both families between `a` and `b` on `net`.
fn assert_reach_dual(bed: &Bed, a: &Ctr, b: &Ctr, net: &str) {
    assert_reach(&bed.ep(a, net), &bed.ep(b, net));
    assert_reach(&bed.ep6(a, net), &bed.ep6(b, net));
}

fn fault_network_create(point: &str) {
    let bed = fault_bed(false);
    let create = dual_net("n1", "10.82.1.0/24", "fd00:82:1::/64");
    crash_during(&bed, point, &create);
    let nets = network_names(&bed);
    if nets.contains("n1") {
        eprintln!("{point}: network n1 was created in full");
    } else {
        assert!(
            nets.is_empty(),
            "unexpected networks after the crash: {nets:?}"
        );
        // The bridge made before the crash was found and removed.
        repaired(&bed, &["orphan", "br-"]).unwrap_or_else(|e| panic!("{point}: {e}"));
        // Nothing left: the name, subnets and bridge are free again.
        bed.ok(&create);
    }
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1", "-p", "8080:5001"]);
    wait_consistent(&bed, "after the retry");
    assert_reach_dual(&bed, &a, &b, "n1");
    assert_published_dual(&bed, &b);
}

/// Crash while adding container `c` with `--ip`, `--ip6` and `-p`.
fn fault_container_add(point: &str) {
    let bed = fault_bed(true);
    bed.ok(&dual_net("n1", "10.82.2.0/24", "fd00:82:2::/64"));
    let a = bed.container("a", &["--network", "n1"]);
    let ns = bed.new_netns("c");
    let path = path_of(&ns).display().to_string();
    let add = [
        "container",
        "add",
        "c",
        "--netns",
        &path,
        "--network",
        "n1",
        "--ip",
        "10.82.2.50",
        "--ip6",
        "fd00:82:2::50",
        "-p",
        "8080:5001",
    ];
    crash_during(&bed, point, &add);
    let c = Ctr {
        name: "c".into(),
        id: String::new(),
        ns: ns.clone(),
        netns_path: path.clone(),
    };
    if container_names(&bed).contains("c") {
        eprintln!("{point}: container c was added in full");
    } else {
        assert_bare(&ns, "container add was cut short");
        // The veth made before the crash was found and removed.
        repaired(&bed, &["orphan", "nd"]).unwrap_or_else(|e| panic!("{point}: {e}"));
        // The addresses and the host port are free again.
        bed.ok(&add);
        wait_consistent(&bed, "after the retry");
    }
    assert_eq!(bed.ip(&c, "n1").to_string(), "10.82.2.50");
    assert_eq!(bed.ip6(&c, "n1").to_string(), "fd00:82:2::50");
    assert_reach_dual(&bed, &a, &c, "n1");
    assert_published_dual(&bed, &c);
}

/// The value of a kernel read that must work.
fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// What the kernel holds for one endpoint (host veth `host_if`, addresses
/// `ip` and `ip6`): with `present`, the veth, both pinned links, its
/// ENDPOINT_BY_IP, ENDPOINT6_BY_IP and ENDPOINT6 entries naming that veth;
/// without, none of them, and no PUBLISHED or PUBLISHED6 entry to its
/// addresses. Panics with what differs.
fn assert_endpoint(
    bed: &Bed,
    host_if: &str,
    (ip, ip6): (Ipv4Addr, Ipv6Addr),
    present: bool,
    what: &str,
) {
    let mut errs = Vec::new();
    let index = ifindexes(bed.host_ns()).unwrap_or_else(|e| panic!("{e}"));
    let veth = index.get(host_if).copied();
    if veth.is_some() != present {
        errs.push(format!("host veth {host_if}: present {}", veth.is_some()));
    }
    if present && veth.is_some() {
        // A bridge port carries no IPv6 of its own (no link-local address,
        // DAD, MLD or routes per container on the host).
        let net = format!(
            "--net={}",
            netd_tests::netns::path_of(bed.host_ns()).display()
        );
        let path = format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6");
        match netd_tests::cmd::run_ok("nsenter", &[&net, "cat", &path]) {
            Ok(v) if v.trim() == "1" => {}
            other => errs.push(format!(
                "host veth {host_if}: disable_ipv6 {other:?}, wanted 1"
            )),
        }
    }
    let links = bed.pinned_links();
    for prog in ["from_container", "to_container"] {
        let pin = bed.bpffs().join(format!("v1/links/{host_if}_{prog}"));
        let there = links.contains(&pin);
        if there != present {
            errs.push(format!("program link {}: present {there}", pin.display()));
        }
    }
    let by_ip6: BTreeMap<u32, IpAddr> = must(endpoint6(bed));
    let entries = [
        (
            "ENDPOINT_BY_IP",
            must(endpoint_by_ip(bed)).get(&ip.into()).copied(),
        ),
        (
            "ENDPOINT6_BY_IP",
            must(endpoint6_by_ip(bed)).get(&ip6.into()).copied(),
        ),
        (
            "ENDPOINT6 (by its address)",
            by_ip6
                .iter()
                .find(|(_, a)| **a == IpAddr::from(ip6))
                .map(|(i, _)| *i),
        ),
    ];
    for (map, entry) in entries {
        match (present, entry) {
            (true, Some(i)) if Some(i) == veth => {}
            (false, None) => {}
            (_, e) => errs.push(format!(
                "{map}: ifindex {e:?}, veth {host_if} has ifindex {veth:?}"
            )),
        }
    }
    if !present {
        let published = published_entries(bed).unwrap_or_else(|e| panic!("{e}"));
        let to_ip: Vec<_> = published.iter().filter(|p| p.3 == ip).collect();
        if !to_ip.is_empty() {
            errs.push(format!("PUBLISHED entries to {ip} left: {to_ip:?}"));
        }
        let published6 = published6_entries(bed).unwrap_or_else(|e| panic!("{e}"));
        let to_ip6: Vec<_> = published6.iter().filter(|p| p.3 == ip6).collect();
        if !to_ip6.is_empty() {
            errs.push(format!("PUBLISHED6 entries to {ip6} left: {to_ip6:?}"));
        }
    }
    assert!(
        errs.is_empty(),
        "{what}: the kernel should {} the endpoint {host_if} ({ip}, {ip6}):\n  - {}",
        if present { "hold" } else { "have nothing of" },
        errs.join("\n  - ")
    );
}

/// Crash while removing container `b` (which publishes 8080). Whichever
/// way the crash falls (b still stored, or gone), the kernel must hold
/// exactly what the store says, and nothing of b once it is removed.
fn fault_container_rm(point: &str) {
    let bed = fault_bed(true);
    bed.ok(&dual_net("n1", "10.82.3.0/24", "fd00:82:3::/64"));
    let a = bed.container("a", &["--network", "n1"]);
    let fixed = [
        "--network",
        "n1",
        "--ip",
        "10.82.3.60",
        "--ip6",
        "fd00:82:3::60",
        "-p",
        "8080:5001",
    ];
    let b = bed.container("b", &fixed);
    let b_if = host_if(&bed, "b", "n1");
    let b_ips = (bed.ip(&b, "n1"), bed.ip6(&b, "n1"));
    assert_endpoint(&bed, &b_if, b_ips, true, "before the crash");
    crash_during(&bed, point, &["container", "rm", "b"]);
    if container_names(&bed).contains("b") {
        eprintln!("{point}: container b is still there, in full");
        assert_endpoint(&bed, &b_if, b_ips, true, "b still stored after the crash");
        assert_reach_dual(&bed, &a, &b, "n1");
        assert_published_dual(&bed, &b);
        bed.ok(&["container", "rm", "b"]);
        wait_consistent(&bed, "after removing b again");
    } else {
        eprintln!("{point}: container b is gone from the store");
    }
    assert_endpoint(&bed, &b_if, b_ips, false, "b removed");
    assert_bare(&b.ns, "container removed");
    // Its addresses and host port are free again.
    let d = bed.container("d", &fixed);
    wait_consistent(&bed, "after adding d");
    assert_reach_dual(&bed, &a, &d, "n1");
    assert_published_dual(&bed, &d);
}

/// Crash while disconnecting `b` from its second network n2.
fn fault_disconnect(point: &str) {
    let bed = fault_bed(true);
    bed.ok(&dual_net("n1", "10.82.4.0/24", "fd00:82:4::/64"));
    bed.ok(&dual_net("n2", "10.82.5.0/24", "fd00:82:5::/64"));
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n2"]);
    bed.ok(&["network", "connect", "n2", "b"]);
    let b_if = host_if(&bed, "b", "n2");
    let b_ips = (bed.ip(&b, "n2"), bed.ip6(&b, "n2"));
    assert_endpoint(&bed, &b_if, b_ips, true, "before the crash");
    crash_during(&bed, point, &["network", "disconnect", "n2", "b"]);
    let on_n2 = bed.ctr_info("b")["Networks"].get("n2").is_some();
    if on_n2 {
        eprintln!("{point}: b is still connected to n2, in full");
        assert_endpoint(&bed, &b_if, b_ips, true, "b still on n2 after the crash");
        assert_reach_dual(&bed, &b, &c, "n2");
        bed.ok(&["network", "disconnect", "n2", "b"]);
        wait_consistent(&bed, "after disconnecting again");
    } else {
        eprintln!("{point}: b is off n2 in the store");
    }
    assert_endpoint(&bed, &b_if, b_ips, false, "b disconnected from n2");
    assert_eq!(
        Bed::links(&b.ns),
        vec!["eth0".to_string(), "lo".to_string()],
        "b's links after the disconnect"
    );
    assert_reach_dual(&bed, &a, &b, "n1");
    // Connecting again works.
    bed.ok(&["network", "connect", "n2", "b"]);
    wait_consistent(&bed, "after connecting again");
    assert_reach_dual(&bed, &b, &c, "n2");
}

#[test]
fn fault_network_create_bridge() {
    fault_network_create("network-create:bridge");
}

#[test]
fn fault_network_create_datapath() {
    fault_network_create("network-create:datapath");
}

#[test]
fn fault_endpoint_veth() {
    fault_container_add("endpoint:veth");
}

#[test]
fn fault_endpoint_configured() {
    fault_container_add("endpoint:configured");
}

#[test]
fn fault_endpoint_attached() {
    fault_container_add("endpoint:attached");
}

#[test]
fn fault_container_add_plumbed() {
    fault_container_add("container-add:plumbed");
}

#[test]
fn fault_container_add_published() {
    fault_container_add("container-add:published");
}

#[test]
fn fault_container_rm_unpublished() {
    fault_container_rm("container-rm:unpublished");
}

#[test]
fn fault_container_rm_unplumbed() {
    fault_container_rm("container-rm:unplumbed");
}

#[test]
fn fault_disconnect_unplumbed() {
    fault_disconnect("disconnect:unplumbed");
}

/// Every crash point the agent has is driven by one of the tests above.
#[test]
fn fault_points_all_covered() {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../netd/src/fault.rs"))
            .expect("reading netd/src/fault.rs");
    let list = src
        .split("pub const POINTS")
        .nth(1)
        .and_then(|s| s.split("];").next())
        .expect("POINTS in fault.rs");
    let points: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    let covered = [
        "network-create:bridge",
        "network-create:datapath",
        "endpoint:veth",
        "endpoint:configured",
        "endpoint:attached",
        "container-add:plumbed",
        "container-add:published",
        "container-rm:unpublished",
        "container-rm:unplumbed",
        "disconnect:unplumbed",
    ];
    let missing: Vec<_> = points.iter().filter(|p| !covered.contains(p)).collect();
    assert!(!points.is_empty(), "no crash points found in fault.rs");
    assert!(
        missing.is_empty(),
        "crash points without a test: {missing:?}"
    );
}

// ---------------------------------------------------------------- (3) damage

/// A container whose netns is deleted from outside is released: it leaves
/// `container ls`, its veth goes with its map entries (both families), and
/// its addresses and host port are free: a new container takes them and is
/// reached on both families.
#[test]
fn netns_deleted_releases_container() {
    let bed = lc_bed(Uplink::DualStack, true, &[]);
    bed.network(
        "n1",
        &[
            "--subnet",
            "10.83.1.0/24",
            "--ipv6",
            "--subnet",
            "fd00:83:1::/64",
        ],
    );
    let a = bed.container("a", &["--network", "n1"]);
    let fixed = [
        "--network",
        "n1",
        "--ip",
        "10.83.1.70",
        "--ip6",
        "fd00:83:1::70",
        "-p",
        "8080:5001",
    ];
    let b = bed.container("b", &fixed);
    let b_if = host_if(&bed, "b", "n1");
    netd_tests::cmd::run_ok("ip", &["netns", "del", &b.ns]).unwrap();
    let (_, took) = wait_for("container b to be released", REPAIR_LIMIT, || {
        let names = container_names(&bed);
        if names.contains("b") {
            Err(format!("container ls: {names:?}"))
        } else {
            Ok(())
        }
    });
    eprintln!("b released after {took:?}");
    repaired(&bed, &["released", "b"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !bed.host_links().contains(&b_if),
        "b's host veth {b_if} left behind"
    );
    wait_consistent(&bed, "after the release");
    let d = bed.container("d", &fixed);
    assert_eq!(bed.ip6(&d, "n1").to_string(), "fd00:83:1::70");
    assert_reach(&bed.ep(&a, "n1"), &bed.ep(&d, "n1"));
    assert_reach(&bed.ep6(&a, "n1"), &bed.ep6(&d, "n1"));
    assert_published_dual(&bed, &d);
}

/// A host veth deleted from outside is recreated, its container end with
/// both addresses and default routes, its map entries (both families)
/// naming the new veth, and traffic flows again on both families.
#[test]
fn host_veth_deleted_is_recreated() {
    let bed = lc_bed(Uplink::None, true, &[]);
    bed.network(
        "n1",
        &[
            "--subnet",
            "10.83.2.0/24",
            "--ipv6",
            "--subnet",
            "fd00:83:2::/64",
        ],
    );
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let (ea, eb) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"));
    let (ea6, eb6) = (bed.ep6(&a, "n1"), bed.ep6(&b, "n1"));
    let a_if = host_if(&bed, "a", "n1");
    let old_index = ifindexes(bed.host_ns()).unwrap_or_else(|e| panic!("{e}"))[&a_if];
    ip_ns(bed.host_ns(), &["link", "del", &a_if]).unwrap();
    let took = wait_consistent(&bed, "after deleting a's host veth");
    eprintln!("veth recreated after {took:?}");
    assert_eq!(
        host_if(&bed, "a", "n1"),
        a_if,
        "a's host interface changed name"
    );
    let new_index = ifindexes(bed.host_ns()).unwrap_or_else(|e| panic!("{e}"))[&a_if];
    assert_ne!(
        new_index, old_index,
        "a's host veth should be a new link (consistency then checked the maps name it)"
    );
    wait_for("a repair report", Duration::from_secs(2), || {
        repaired(&bed, &["recreated", "of a"])
    });
    wait_for("traffic a <-> b", REPAIR_LIMIT, || reach2(&ea, &eb));
    wait_for("IPv6 traffic a <-> b", REPAIR_LIMIT, || reach2(&ea6, &eb6));
}

/// A bridge deleted from outside is recreated with both gateways and its
/// veths on it.
#[test]
fn bridge_deleted_is_recreated() {
    let bed = lc_bed(Uplink::None, true, &[]);
    bed.network(
        "n1",
        &[
            "--subnet",
            "10.83.3.0/24",
            "--ipv6",
            "--subnet",
            "fd00:83:3::/64",
        ],
    );
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let (ea, eb) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"));
    let (ea6, eb6) = (bed.ep6(&a, "n1"), bed.ep6(&b, "n1"));
    let br = bridge_of(&bed, "n1");
    ip_ns(bed.host_ns(), &["link", "del", &br]).unwrap();
    let took = wait_consistent(&bed, "after deleting the bridge");
    eprintln!("bridge recreated after {took:?}");
    wait_for("a repair report", Duration::from_secs(2), || {
        repaired(&bed, &["recreated bridge", &br])
    });
    wait_for("traffic a <-> b", REPAIR_LIMIT, || reach2(&ea, &eb));
    wait_for("IPv6 traffic a <-> b", REPAIR_LIMIT, || reach2(&ea6, &eb6));
    // The gateways (host) are reachable again too.
    let (gw, gw6) = (bed.gateway("n1"), bed.gateway6("n1"));
    icmp(&a.ns, gw).unwrap_or_else(|e| panic!("a -> gateway {gw}: {e:#}"));
    icmp(&a.ns, gw6).unwrap_or_else(|e| panic!("a -> gateway {gw6}: {e:#}"));
}

/// UDP from `from_ns`, with source address `src` (which must be one of that
/// netns's own), to a receiver on `to`: `n` datagrams; returns the sources
/// the receiver saw.
fn udp_from(from_ns: &str, src: Ipv4Addr, to: &Ep, n: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
    let (ptx, prx) = mpsc::channel::<u16>();
    let dst_ip = to.ip;
    let rx = spawn_in(&to.ns, move || {
        let s = std::net::UdpSocket::bind((dst_ip, 0)).context("bind receiver")?;
        let _ = ptx.send(s.local_addr()?.port());
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let (start, mut seen, mut buf) = (Instant::now(), Vec::new(), [0u8; 64]);
        while start.elapsed() < Duration::from_millis(1500) {
            if let Ok((_, SocketAddr::V4(peer))) = s.recv_from(&mut buf) {
                seen.push(*peer.ip());
            }
        }
        Ok(seen)
    });
    let port = prx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| anyhow!("receiver in {} did not start", to.ns))?;
    let tx = spawn_in(from_ns, move || {
        let s = std::net::UdpSocket::bind((src, 0)).with_context(|| format!("bind {src}"))?;
        for _ in 0..n {
            s.send_to(b"spoof?", (dst_ip, port))?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    });
    join(tx)?;
    join(rx)
}

/// A veth's binding to the endpoint filter blocks (its `clsact` qdisc)
/// removed from outside is put back, and isolation holds again (both
/// families: the networks are dual-stack).
#[test]
fn pinned_link_removed_is_reattached() {
    let bed = lc_bed(Uplink::None, true, &[]);
    bed.ok(&dual_net("n1", "10.83.4.0/24", "fd00:83:4::/64"));
    bed.ok(&dual_net("n2", "10.83.5.0/24", "fd00:83:5::/64"));
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n2"]);
    let (ea, eb, ec) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"), bed.ep(&c, "n2"));
    let (ea6, eb6, ec6) = (bed.ep6(&a, "n1"), bed.ep6(&b, "n1"), bed.ep6(&c, "n2"));
    let a_if = host_if(&bed, "a", "n1");
    let pin = bed.bpffs().join(format!("v1/links/{a_if}_from_container"));
    assert!(
        bed.pinned_links().contains(&pin),
        "{} is not attached",
        pin.display()
    );
    let del = netd_tests::cmd::run_timeout(
        "tc",
        &["-n", bed.host_ns(), "qdisc", "del", "dev", &a_if, "clsact"],
        Duration::from_secs(10),
    );
    assert!(del.success(), "deleting the clsact qdisc of {a_if}:\n{del}");
    assert!(
        !bed.pinned_links().contains(&pin),
        "{} still attached",
        pin.display()
    );
    let (_, took) = wait_for("the veth to be bound again", REPAIR_LIMIT, || {
        if bed.pinned_links().contains(&pin) {
            Ok(())
        } else {
            Err(format!("{} missing", pin.display()))
        }
    });
    eprintln!("link re-attached after {took:?}");
    wait_for("a repair report", Duration::from_secs(2), || {
        repaired(&bed, &["re-attached", "of a"])
    });
    wait_consistent(&bed, "after the re-attach");
    let mut errs = Vec::new();
    for (x, y) in [(&ea, &ec), (&ec, &ea), (&ea6, &ec6), (&ec6, &ea6)] {
        if let Err(e) = no_icmp(&x.ns, y.ip) {
            errs.push(format!("ICMP {x} -> {y} should be dropped: {e:#}"));
        }
        if let Err(e) = no_tcp(&x.ns, y) {
            errs.push(format!("TCP {x} -> {y} should be dropped: {e:#}"));
        }
    }
    assert!(
        errs.is_empty(),
        "isolation after the re-attach:\n{}",
        errs.join("\n")
    );
    assert_reach(&ea, &eb);
    assert_reach(&ea6, &eb6);

    // What only from_container enforces (c's programs drop a -> c too): the
    // ingress block a's veth is bound to again runs from_container ...
    let block = netd_common::programs::ENDPOINT_INGRESS_BLOCK.to_string();
    let filters = netd_tests::cmd::run_timeout(
        "tc",
        &["-n", bed.host_ns(), "filter", "show", "block", &block],
        Duration::from_secs(10),
    );
    assert!(
        filters.success() && filters.stdout.contains("from_container"),
        "the ingress block should run from_container:\n{filters}"
    );
    // ... and a source address that is not a's own is dropped there and
    // counted, while a's own address passes to b on the same path.
    let spoof: Ipv4Addr = "10.83.4.200".parse().unwrap();
    ip_ns(&a.ns, &["addr", "add", "10.83.4.200/32", "dev", "eth0"]).unwrap();
    let own = udp_from(&a.ns, ea.ip4(), &eb, 5).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        own.contains(&ea.ip4()),
        "control: UDP from a's own address should reach b, b saw {own:?}"
    );
    let before = bed.drop_count("spoofed-source");
    let seen = udp_from(&a.ns, spoof, &eb, 5).unwrap_or_else(|e| panic!("{e:#}"));
    let grew = bed.drop_count("spoofed-source") - before;
    ip_ns(&a.ns, &["addr", "del", "10.83.4.200/32", "dev", "eth0"]).unwrap();
    assert!(
        seen.is_empty() && grew >= 5,
        "UDP from a spoofed {spoof} after the re-attach: b saw {seen:?}, \
         drops[\"spoofed-source\"] grew by {grew} (expected nothing through, at least 5 counted)"
    );
}

// ---------------------------------------------------------------- (4) reset

/// `netd reset` without `--force` is refused and changes nothing;
/// `netd reset --force` removes every link, pin, mount and file netd made
/// and stops the agent.
#[test]
fn reset_leaves_no_trace() {
    let bed = lc_bed(Uplink::V4, true, &[]);
    bed.network("n1", &["--subnet", "10.84.1.0/24"]);
    let a = bed.container("a", &["--network", "n1", "-p", "8080:5001"]);
    let b = bed.container("b", &[]);
    bed.ok(&["network", "connect", "n1", "b"]);
    assert_published(&bed, &a);
    let nets = ["bridge", "n1"];
    let ctrs = ["a", "b"];
    let before = bed.snapshot(&nets, &ctrs);
    assert!(
        !bed.pinned_links().is_empty(),
        "nothing pinned before the reset"
    );

    let err = bed.fail(&["reset"]);
    assert!(
        err.contains("--force"),
        "the refusal should name --force: {err}"
    );
    bed.assert_unchanged(&before, &nets, &ctrs, "`netd reset` without --force");
    assert!(bed.agent_running(), "agent stopped by a refused reset");

    bed.ok(&["reset", "--force"]);
    let st = bed
        .wait_agent_exit(Duration::from_secs(10))
        .expect("agent still running 10 s after reset --force");
    eprintln!("agent exited after reset: {st}");

    let mut errs = Vec::new();
    let host: Vec<String> = bed.host_links();
    if host != vec!["lo".to_string(), "up0".to_string()] {
        errs.push(format!(
            "host netns links after reset: {host:?} (expected only lo, up0)"
        ));
    }
    for ns in [&a.ns, &b.ns] {
        let l = Bed::links(ns);
        if l != vec!["lo".to_string()] {
            errs.push(format!("container netns {ns} links after reset: {l:?}"));
        }
    }
    let addrs = ip_ns(bed.host_ns(), &["-o", "-4", "addr", "show"]).unwrap();
    for l in addrs.lines() {
        if !(l.contains(" lo ") || l.contains(" up0 ")) {
            errs.push(format!("host address left: {l}"));
        }
    }
    let bpffs = bed.bpffs();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m).starts_with(&bpffs))
    {
        errs.push(format!("something is still mounted at {}", bpffs.display()));
    }
    for (what, dir) in [
        ("bpffs", bpffs.clone()),
        ("state dir", bed.dir().join("state")),
        ("run dir", bed.dir().join("run")),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let left: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            if !left.is_empty() {
                errs.push(format!("{what} {} still holds {left:?}", dir.display()));
            }
        }
    }
    // No program left on the uplink or on the test's cgroup.
    let net = format!("--net={}", path_of(bed.host_ns()).display());
    let out = run_timeout(
        "nsenter",
        &[&net, "bpftool", "net", "show", "dev", "up0"],
        Duration::from_secs(10),
    );
    if out.success() {
        for l in out.stdout.lines() {
            if l.contains("up0") && (l.contains("tcx") || l.contains("xdp") || l.contains("id ")) {
                errs.push(format!("program left on up0: {l}"));
            }
        }
    } else {
        errs.push(format!("bpftool net show failed:\n{out}"));
    }
    let cg = bed.cgroup().display().to_string();
    let out = run_timeout("bpftool", &["cgroup", "show", &cg], Duration::from_secs(10));
    if !out.success() {
        errs.push(format!("bpftool cgroup show failed:\n{out}"));
    } else if !out.stdout.trim().is_empty() {
        errs.push(format!("programs left on the cgroup {cg}:\n{}", out.stdout));
    }
    // The world can no longer reach a published port.
    if published(bed.world(), &a.ns).is_ok() {
        errs.push("the published port still works after reset".into());
    }
    assert!(
        errs.is_empty(),
        "after reset --force:\n  - {}",
        errs.join("\n  - ")
    );
    // The CLI now finds no agent.
    let out = bed.netd(&["status"]);
    assert!(!out.success(), "status should fail after reset:\n{out}");
}
