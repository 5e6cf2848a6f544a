//! Agent lifecycle (issue 5, SPEC section 5) with real packets.
//!
//! - Traffic between containers, a published port and a masqueraded flow
//!   keep running while the agent is SIGKILLed and restarted twice.
//! - Fault injection: the agent aborts at every crash point
//!   (`NETD_CRASH_AT`, netd/src/fault.rs) in the middle of an operation; a
//!   restarted agent leaves no orphans, its stored state matches the kernel,
//!   and what exists still carries traffic.
//! - External damage (a container's netns, a host veth, a bridge, a pinned
//!   program link removed from outside) is repaired or released within a
//!   few seconds and reported by `status`.
//! - `netd reset --force` leaves no trace; `netd reset` alone is refused.
//!
//! Beds that publish or masquerade have an uplink as in `masquerade.rs`:
//! veth `up0` (203.0.113.2/24) to a "world" netns (`w0`, 203.0.113.1/24),
//! default route via the world. Every agent here attaches its host-socket
//! programs to a cgroup2 directory made for the test (`--cgroup`), never to
//! the real root; the directory is removed after the bed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::ports::{ask_via, sa, P};
use netd_tests::traffic::{icmp, no_icmp, no_tcp, tcp};
use netd_tests::wait::wait_for;
use netd_tests::world::{UPLINK, UPLINK_LIMIT, WORLD};
use netd_tests::{Bed, Ctr, Ep};
use serde_json::Value;

/// The published host port and the container port behind it.
const HOST_PORT: u16 = 8080;
const CTR_PORT: u16 = 5001;
/// How long a repair or release may take ("within a few seconds").
const REPAIR_LIMIT: Duration = Duration::from_secs(6);
/// The longest a stream may stall while the agent restarts.
const MAX_STALL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- bed

/// A bed, maybe with a world behind an uplink (the agent's socket programs
/// are on the bed's own cgroup).
struct LcBed {
    bed: Bed,
    world: Option<String>,
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
    /// uplink if there is one.
    fn start(&self) {
        self.bed.start_agent();
        if self.world.is_some() {
            self.bed.wait_uplink(UPLINK, UPLINK_LIMIT);
        }
    }
}

/// A bed with `args`; with `world`, an uplink exists before the agent
/// starts; with `start`, the agent is started.
fn lc_bed(world: bool, start: bool, args: &[&str]) -> LcBed {
    let bed = Bed::without_agent(args);
    let world = world.then(|| bed.make_world());
    let lc = LcBed { bed, world };
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

// ---------------------------------------------------------------- kernel view

/// One line of `ip -o link`: name (without `@peer`), flags, master.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    up: bool,
    master: Option<String>,
}

fn links_of(ns: &str) -> Result<Vec<Link>, String> {
    let s = ip_ns(ns, &["-o", "link", "show"]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            let name = name.split('@').next().unwrap_or(name).to_string();
            let flags = l.split('<').nth(1)?.split('>').next()?;
            let words: Vec<&str> = l.split_whitespace().collect();
            let master = words
                .iter()
                .position(|w| *w == "master")
                .and_then(|i| words.get(i + 1))
                .map(|m| m.to_string());
            Some(Link {
                name,
                up: flags.split(',').any(|f| f == "UP"),
                master,
            })
        })
        .collect())
}

/// Interface name -> ifindex in `ns`.
fn ifindexes(ns: &str) -> Result<BTreeMap<String, u32>, String> {
    let s = ip_ns(ns, &["-o", "link", "show"]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?.trim().parse().ok()?;
            let name = f.next()?;
            Some((name.split('@').next().unwrap_or(name).to_string(), index))
        })
        .collect())
}

/// `IP/PREFIX` addresses of `dev` in `ns`.
fn addrs_of(ns: &str, dev: &str) -> Result<Vec<String>, String> {
    let s = ip_ns(ns, &["-o", "-4", "addr", "show", "dev", dev]).map_err(|e| format!("{e:#}"))?;
    Ok(s.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|x| *x == "inet")
                .and_then(|i| w.get(i + 1))
                .map(|a| a.to_string())
        })
        .collect())
}

/// A name netd gives the host end of a veth: `nd` and 11 hex digits.
fn is_host_veth(name: &str) -> bool {
    name.len() == 13 && name.starts_with("nd") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bridge name netd makes (`br-<12 hex>`, or the default `netd0`).
fn is_netd_bridge(name: &str) -> bool {
    name == "netd0" || name.starts_with("br-")
}

/// What the store says about one endpoint.
#[derive(Debug, Clone)]
struct StoredEp {
    ctr: String,
    net: String,
    ifname: String,
    ip: String,
    prefix: u64,
    ns: String,
    bridge: String,
}

/// Compares the stored state (`network ls`, `container ls`, status) with the
/// kernel (host links, bridges, container netns, pins). Returns every
/// difference found.
fn consistency(bed: &Bed) -> Result<(), String> {
    let nets = bed.json(&["network", "ls", "--format", "json"]);
    let ctrs = bed.json(&["container", "ls", "--format", "json"]);
    let mut errs = Vec::new();

    let mut bridges: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    for n in nets.as_array().into_iter().flatten() {
        let name = n["Name"].as_str().unwrap_or_default().to_string();
        let bridge = n["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let gw = n["IPAM"]["Config"][0]["Gateway"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let prefix = n["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .and_then(|s| s.split('/').nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        bridges.insert(bridge, (name, gw, prefix));
    }
    let mut eps: BTreeMap<String, StoredEp> = BTreeMap::new();
    let mut per_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in ctrs.as_array().into_iter().flatten() {
        let cname = c["Name"].as_str().unwrap_or_default().to_string();
        if c["Mode"].as_str() != Some("bridge") {
            continue;
        }
        let ns = c["NetnsPath"]
            .as_str()
            .and_then(|p| Path::new(p).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        per_ns.entry(ns.clone()).or_default();
        for (net, e) in c["Networks"].as_object().into_iter().flatten() {
            let host_if = e["HostInterface"].as_str().unwrap_or_default().to_string();
            let bridge = bridges
                .iter()
                .find(|(_, (n, _, _))| n == net)
                .map(|(b, _)| b.clone())
                .unwrap_or_default();
            let ep = StoredEp {
                ctr: cname.clone(),
                net: net.clone(),
                ifname: e["Interface"].as_str().unwrap_or_default().to_string(),
                ip: e["IPAddress"].as_str().unwrap_or_default().to_string(),
                prefix: e["PrefixLen"].as_u64().unwrap_or(0),
                ns: ns.clone(),
                bridge,
            };
            per_ns
                .entry(ns.clone())
                .or_default()
                .push(ep.ifname.clone());
            eps.insert(host_if, ep);
        }
    }

    // Host netns: no orphans, nothing missing, veths on their bridges.
    let host = links_of(bed.host_ns())?;
    let by_name: BTreeMap<&str, &Link> = host.iter().map(|l| (l.name.as_str(), l)).collect();
    for l in &host {
        if is_host_veth(&l.name) && !eps.contains_key(&l.name) {
            errs.push(format!("orphan veth {} in the host netns", l.name));
        }
        if is_netd_bridge(&l.name) && !bridges.contains_key(&l.name) {
            errs.push(format!("orphan bridge {} in the host netns", l.name));
        }
        if l.name.starts_with("nd") && !is_host_veth(&l.name) {
            errs.push(format!("unexpected link {} in the host netns", l.name));
        }
    }
    for (br, (net, gw, prefix)) in &bridges {
        match by_name.get(br.as_str()) {
            None => errs.push(format!("bridge {br} of network {net} missing")),
            Some(l) => {
                if !l.up {
                    errs.push(format!("bridge {br} of network {net} is down"));
                }
                match addrs_of(bed.host_ns(), br) {
                    Ok(a) if a == vec![format!("{gw}/{prefix}")] => {}
                    Ok(a) => errs.push(format!(
                        "bridge {br} of network {net} has addresses {a:?}, expected [{gw}/{prefix}]"
                    )),
                    Err(e) => errs.push(e),
                }
            }
        }
    }
    for (host_if, ep) in &eps {
        match by_name.get(host_if.as_str()) {
            None => errs.push(format!(
                "host veth {host_if} of {} on {} missing",
                ep.ctr, ep.net
            )),
            Some(l) => {
                if !l.up {
                    errs.push(format!("host veth {host_if} of {} is down", ep.ctr));
                }
                if l.master.as_deref() != Some(ep.bridge.as_str()) {
                    errs.push(format!(
                        "host veth {host_if} of {} has master {:?}, expected {}",
                        ep.ctr, l.master, ep.bridge
                    ));
                }
            }
        }
    }

    // Container netns: exactly lo and the stored interfaces, with addresses.
    for (ns, ifs) in &per_ns {
        let want: BTreeSet<String> = ifs.iter().cloned().chain(["lo".to_string()]).collect();
        match links_of(ns) {
            Ok(ls) => {
                let got: BTreeSet<String> = ls.into_iter().map(|l| l.name).collect();
                if got != want {
                    errs.push(format!("netns {ns} has links {got:?}, store says {want:?}"));
                }
            }
            Err(e) => errs.push(format!("netns {ns}: {e}")),
        }
    }
    for ep in eps.values() {
        let want = format!("{}/{}", ep.ip, ep.prefix);
        match addrs_of(&ep.ns, &ep.ifname) {
            Ok(a) if a == vec![want.clone()] => {}
            Ok(a) => errs.push(format!(
                "{} of {} has addresses {a:?}, store says {want}",
                ep.ifname, ep.ctr
            )),
            Err(e) => errs.push(format!("{} of {}: {e}", ep.ifname, ep.ctr)),
        }
    }

    // Pins: one per program per stored veth, none for others.
    let pins: BTreeSet<String> = bed
        .pinned_links()
        .iter()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    for pin in &pins {
        if let Some((veth, _)) = pin.split_once('_') {
            if is_host_veth(veth) && !eps.contains_key(veth) {
                errs.push(format!("orphan pinned link {pin}"));
            }
        }
    }
    for (host_if, ep) in &eps {
        for prog in ["from_container", "to_container"] {
            if !pins.contains(&format!("{host_if}_{prog}")) {
                errs.push(format!("no pinned link {host_if}_{prog} for {}", ep.ctr));
            }
        }
    }

    // Published ports: PUBLISHED holds exactly the stored mappings.
    let mut want_pub = BTreeSet::new();
    for c in ctrs.as_array().into_iter().flatten() {
        let ips: Vec<String> = c["Networks"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, e)| e["IPAddress"].as_str().map(str::to_string))
            .collect();
        for p in c["Ports"].as_array().into_iter().flatten() {
            let proto = match p["Protocol"].as_str() {
                Some("tcp") => 6,
                Some("udp") => 17,
                Some("sctp") => 132,
                other => {
                    errs.push(format!("unknown protocol {other:?} in {p}"));
                    continue;
                }
            };
            want_pub.insert((
                p["HostIp"].as_str().unwrap_or_default().to_string(),
                p["HostPort"].as_u64().unwrap_or(0) as u16,
                proto,
                ips.clone(),
                p["ContainerPort"].as_u64().unwrap_or(0) as u16,
            ));
        }
    }
    match published_entries(bed) {
        Ok(got) => {
            let mut unmatched: Vec<_> = got.clone();
            unmatched.retain(|(hip, hport, proto, cip, cport)| {
                !want_pub
                    .iter()
                    .any(|(w_hip, w_hport, w_proto, w_ips, w_cport)| {
                        w_hip == &hip.to_string()
                            && w_hport == hport
                            && w_proto == proto
                            && w_cport == cport
                            && w_ips.contains(&cip.to_string())
                    })
            });
            if !unmatched.is_empty() || got.len() != want_pub.len() {
                errs.push(format!(
                    "PUBLISHED map {got:?} does not match the stored ports {want_pub:?}"
                ));
            }
        }
        Err(e) => errs.push(e),
    }

    // Map entries.
    let st = status(bed);
    let ep_entries = st["maps"]["ENDPOINTS"]["entries"].as_u64();
    if ep_entries != Some(eps.len() as u64) {
        errs.push(format!(
            "ENDPOINTS map has {ep_entries:?} entries, store has {} endpoints",
            eps.len()
        ));
    }
    let net_entries = st["maps"]["NETWORKS"]["entries"].as_u64();
    if net_entries != Some(bridges.len() as u64) {
        errs.push(format!(
            "NETWORKS map has {net_entries:?} entries, store has {} networks",
            bridges.len()
        ));
    }
    // ENDPOINT_BY_IP: exactly one entry per stored address, naming the
    // ifindex of its host veth.
    match (map_entries(bed, "ENDPOINT_BY_IP"), ifindexes(bed.host_ns())) {
        (Ok(got), Ok(index)) => {
            let got: BTreeMap<String, u32> = got
                .iter()
                .filter(|(k, v)| k.len() >= 4 && v.len() >= 4)
                .map(|(k, v)| {
                    (
                        Ipv4Addr::new(k[0], k[1], k[2], k[3]).to_string(),
                        u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
                    )
                })
                .collect();
            let want: BTreeMap<String, u32> = eps
                .iter()
                .map(|(host_if, ep)| (ep.ip.clone(), index.get(host_if).copied().unwrap_or(0)))
                .collect();
            if got != want {
                errs.push(format!(
                    "ENDPOINT_BY_IP (address -> ifindex) is {got:?}, the store's endpoints are {want:?}"
                ));
            }
        }
        (Err(e), _) | (_, Err(e)) => errs.push(e),
    }

    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("\n  - {}", errs.join("\n  - ")))
    }
}

/// (host address, host port, protocol, container address, container port).
type PubEntry = (Ipv4Addr, u16, u8, Ipv4Addr, u16);

/// The key and value bytes of one map entry.
type MapEntry = (Vec<u8>, Vec<u8>);

/// The (key, value) bytes of every entry of the pinned map `name`
/// (`bpftool map dump`).
fn map_entries(bed: &Bed, name: &str) -> Result<Vec<MapEntry>, String> {
    let pin = bed.bpffs().join(format!("v1/maps/{name}"));
    let pin = pin.display().to_string();
    let out = run_timeout(
        "bpftool",
        &["-j", "map", "dump", "pinned", &pin],
        Duration::from_secs(10),
    );
    if !out.success() {
        return Err(format!("dumping {name}:\n{out}"));
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("bpftool output is not JSON ({e}): {}", out.stdout))?;
    let bytes = |x: &Value| -> Vec<u8> {
        x.as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_str())
            .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
            .collect()
    };
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|e| (bytes(&e["key"]), bytes(&e["value"])))
        .collect())
}

/// The pinned PUBLISHED map, one [`PubEntry`] per entry.
fn published_entries(bed: &Bed) -> Result<Vec<PubEntry>, String> {
    let mut entries = Vec::new();
    for (k, val) in map_entries(bed, "PUBLISHED")? {
        if k.len() < 7 || val.len() < 6 {
            return Err(format!("unexpected PUBLISHED entry {k:?} -> {val:?}"));
        }
        entries.push((
            Ipv4Addr::new(k[0], k[1], k[2], k[3]),
            u16::from_be_bytes([k[4], k[5]]),
            k[6],
            Ipv4Addr::new(val[0], val[1], val[2], val[3]),
            u16::from_be_bytes([val[4], val[5]]),
        ));
    }
    Ok(entries)
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

// ---------------------------------------------------------------- streams

/// What a stream receiver saw on its one connection.
#[derive(Debug)]
struct RxReport {
    peer: SocketAddrV4,
    bytes: u64,
    /// The longest time between two reads that returned data.
    max_gap: Duration,
}

/// A stream receiver in `ns` on `ip:port` (0: any port): accepts exactly
/// one connection (within 10 s), reads until EOF (at most 90 s) keeping the
/// longest gap between reads, then answers `BYTES n\n`. Returns the port.
fn stream_rx(ns: &str, ip: Ipv4Addr, port: u16) -> (u16, JoinHandle<anyhow::Result<RxReport>>) {
    let (ptx, prx) = mpsc::channel::<anyhow::Result<u16>>();
    let h = spawn_in(ns, move || {
        let l = match TcpListener::bind((ip, port)) {
            Ok(l) => l,
            Err(e) => {
                let _ = ptx.send(Err(anyhow!("bind {ip}:{port}: {e}")));
                bail!("bind {ip}:{port}: {e}");
            }
        };
        let _ = ptx.send(Ok(l.local_addr()?.port()));
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let (mut s, peer) = loop {
            match l.accept() {
                Ok(x) => break x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if start.elapsed() > Duration::from_secs(10) {
                        bail!("no connection within 10 s");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("accept"),
            }
        };
        let peer = match peer {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => bail!("unexpected IPv6 peer {a}"),
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = vec![0u8; 65536];
        let (mut bytes, mut max_gap, mut last) = (0u64, Duration::ZERO, None::<Instant>);
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let now = Instant::now();
                    if let Some(t) = last {
                        max_gap = max_gap.max(now - t);
                    }
                    last = Some(now);
                    bytes += n as u64;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if start.elapsed() > Duration::from_secs(90) {
                        bail!("stream from {peer} did not end within 90 s");
                    }
                }
                Err(e) => bail!("stream from {peer} broke after {bytes} bytes: {e}"),
            }
        }
        s.write_all(format!("BYTES {bytes}\n").as_bytes())
            .context("answering BYTES")?;
        let _ = s.shutdown(Shutdown::Write);
        Ok(RxReport {
            peer,
            bytes,
            max_gap,
        })
    });
    match prx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(p)) => (p, h),
        Ok(Err(e)) => panic!("stream receiver in {ns}: {e:#}"),
        Err(_) => panic!("stream receiver in {ns} did not start: {:?}", join(h).err()),
    }
}

/// A stream sender in `ns` to `dst`: one connection, 1 KiB every 5 ms until
/// `stop`, then half-close and check the receiver's `BYTES n` matches what
/// was sent. Returns the bytes sent.
fn stream_tx(ns: &str, dst: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<anyhow::Result<u64>> {
    spawn_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .with_context(|| format!("connect to {dst}"))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let chunk = [0x5au8; 1024];
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            s.write_all(&chunk)
                .with_context(|| format!("write to {dst} after {sent} bytes"))?;
            sent += chunk.len() as u64;
            std::thread::sleep(Duration::from_millis(5));
        }
        s.shutdown(Shutdown::Write)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .with_context(|| format!("reading the answer of {dst}"))?;
        if answer.trim() != format!("BYTES {sent}") {
            bail!("{dst} answered {answer:?} after {sent} bytes were sent");
        }
        Ok(sent)
    })
}

/// Parses ping's `N packets transmitted, M received`.
fn ping_counts(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let nums: Vec<u64> = line
        .split(',')
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}

// ---------------------------------------------------------------- (1) restarts

/// A ping flood and a TCP stream between containers, a stream from the
/// world to a published port and a masqueraded stream to the world run
/// while the agent is SIGKILLed and restarted twice: no ping is lost, no
/// stream stalls for a second, every stream keeps its one connection.
#[test]
fn traffic_survives_agent_kill_and_restart() {
    let bed = lc_bed(true, true, &[]);
    bed.network("n1", &["--subnet", "10.81.1.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n1", "-p", "8080:5001"]);
    let (ea, eb) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"));
    // Warm up neighbour caches and check the paths before the clock starts.
    assert_reach(&ea, &eb);
    assert_published(&bed, &c);

    let stop = Arc::new(AtomicBool::new(false));
    let (p_ab, rx_ab) = stream_rx(&b.ns, eb.ip4(), 0);
    let (_, rx_pub) = stream_rx(&c.ns, Ipv4Addr::UNSPECIFIED, CTR_PORT);
    let (p_nat, rx_nat) = stream_rx(bed.world(), WORLD, 0);
    let tx_ab = stream_tx(&a.ns, SocketAddr::from((eb.ip, p_ab)), stop.clone());
    let tx_pub = stream_tx(
        bed.world(),
        SocketAddr::from((UPLINK, HOST_PORT)),
        stop.clone(),
    );
    let tx_nat = stream_tx(&a.ns, SocketAddr::from((WORLD, p_nat)), stop.clone());
    let ping_ns = path_of(&a.ns).display().to_string();
    let ping_dst = eb.ip.to_string();
    let flood = std::thread::spawn(move || {
        run_timeout(
            "nsenter",
            &[
                &format!("--net={ping_ns}"),
                "ping",
                "-n",
                "-q",
                "-i",
                "0.01",
                "-c",
                "1000",
                &ping_dst,
            ],
            Duration::from_secs(60),
        )
    });

    std::thread::sleep(Duration::from_millis(1000));
    let mut downtime = Vec::new();
    for round in 0..2 {
        let t = Instant::now();
        bed.kill_agent();
        assert!(
            !bed.agent_running(),
            "round {round}: agent still running after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(1000));
        bed.start_agent();
        downtime.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1000));
    }

    let ping = flood.join().expect("ping thread");
    stop.store(true, Ordering::SeqCst);
    let sent: Vec<_> = [
        ("a -> b", tx_ab),
        ("world -> H:8080", tx_pub),
        ("a -> world", tx_nat),
    ]
    .into_iter()
    .map(|(n, h)| (n, join(h)))
    .collect();
    let recv: Vec<_> = [
        ("a -> b", rx_ab),
        ("world -> H:8080", rx_pub),
        ("a -> world", rx_nat),
    ]
    .into_iter()
    .map(|(n, h)| (n, join(h)))
    .collect();

    let mut errs = Vec::new();
    match ping_counts(&ping.stdout) {
        Some((tx, rx)) if tx == 1000 && rx == tx => {}
        Some((tx, rx)) => errs.push(format!(
            "ping flood a -> b: {tx} sent, {rx} received:\n{ping}"
        )),
        None => errs.push(format!("ping flood a -> b: no summary:\n{ping}")),
    }
    for ((name, s), (_, r)) in sent.iter().zip(recv.iter()) {
        match (s, r) {
            (Ok(n), Ok(rep)) => {
                if rep.bytes != *n {
                    errs.push(format!("{name}: {n} bytes sent, {} received", rep.bytes));
                }
                if rep.max_gap > MAX_STALL {
                    errs.push(format!("{name}: stalled for {:?}", rep.max_gap));
                }
                eprintln!(
                    "{name}: {n} bytes, longest gap {:?}, peer {}",
                    rep.max_gap, rep.peer
                );
            }
            (s, r) => errs.push(format!("{name}: sender {s:?}; receiver {r:?}")),
        }
    }
    if let Some((_, Ok(r))) = recv.first() {
        if *r.peer.ip() != ea.ip {
            errs.push(format!("a -> b: b saw {} instead of a's address", r.peer));
        }
    }
    if let Some((_, Ok(r))) = recv.get(1) {
        if *r.peer.ip() != WORLD {
            errs.push(format!(
                "world -> H:8080: c saw {} instead of the world's address",
                r.peer
            ));
        }
    }
    if let Some((_, Ok(r))) = recv.get(2) {
        if *r.peer.ip() != UPLINK {
            errs.push(format!(
                "a -> world: the world saw {} instead of the uplink address",
                r.peer
            ));
        }
    }
    eprintln!("agent down+restart times: {downtime:?}");
    assert!(
        errs.is_empty(),
        "across two SIGKILL restarts:\n  - {}",
        errs.join("\n  - ")
    );
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

/// A fault bed: uplink, no default network (a stored network makes every
/// start run the network-create steps).
fn fault_bed(start: bool) -> LcBed {
    lc_bed(true, start, &["--no-default-bridge"])
}

fn fault_network_create(point: &str) {
    let bed = fault_bed(false);
    crash_during(
        &bed,
        point,
        &["network", "create", "n1", "--subnet", "10.82.1.0/24"],
    );
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
        // Nothing left: the name, subnet and bridge are free again.
        bed.network("n1", &["--subnet", "10.82.1.0/24"]);
    }
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1", "-p", "8080:5001"]);
    wait_consistent(&bed, "after the retry");
    assert_reach(&bed.ep(&a, "n1"), &bed.ep(&b, "n1"));
    assert_published(&bed, &b);
}

/// Crash while adding container `c` with `--ip` and `-p`.
fn fault_container_add(point: &str) {
    let bed = fault_bed(true);
    bed.network("n1", &["--subnet", "10.82.2.0/24"]);
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
        // The address and the host port are free again.
        bed.ok(&add);
        wait_consistent(&bed, "after the retry");
    }
    assert_eq!(bed.ip(&c, "n1").to_string(), "10.82.2.50");
    assert_reach(&bed.ep(&a, "n1"), &bed.ep(&c, "n1"));
    assert_published(&bed, &c);
}

/// What the kernel holds for one endpoint (host veth `host_if`, address
/// `ip`): with `present`, the veth, both pinned links and its
/// ENDPOINT_BY_IP entry naming that veth; without, none of them, and no
/// PUBLISHED entry to `ip`. Panics with what differs.
fn assert_endpoint(bed: &Bed, host_if: &str, ip: Ipv4Addr, present: bool, what: &str) {
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
    let by_ip = map_entries(bed, "ENDPOINT_BY_IP").unwrap_or_else(|e| panic!("{e}"));
    let entry = by_ip
        .iter()
        .find(|(k, v)| k.len() >= 4 && v.len() >= 4 && k[..4] == ip.octets())
        .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
    match (present, entry) {
        (true, Some(i)) if Some(i) == veth => {}
        (false, None) => {}
        (_, e) => errs.push(format!(
            "ENDPOINT_BY_IP[{ip}] = {e:?}, veth {host_if} has ifindex {veth:?}"
        )),
    }
    if !present {
        let published = published_entries(bed).unwrap_or_else(|e| panic!("{e}"));
        let to_ip: Vec<_> = published.iter().filter(|p| p.3 == ip).collect();
        if !to_ip.is_empty() {
            errs.push(format!("PUBLISHED entries to {ip} left: {to_ip:?}"));
        }
    }
    assert!(
        errs.is_empty(),
        "{what}: the kernel should {} the endpoint {host_if} ({ip}):\n  - {}",
        if present { "hold" } else { "have nothing of" },
        errs.join("\n  - ")
    );
}

/// Crash while removing container `b` (which publishes 8080). Whichever
/// way the crash falls (b still stored, or gone), the kernel must hold
/// exactly what the store says, and nothing of b once it is removed.
fn fault_container_rm(point: &str) {
    let bed = fault_bed(true);
    bed.network("n1", &["--subnet", "10.82.3.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container(
        "b",
        &["--network", "n1", "--ip", "10.82.3.60", "-p", "8080:5001"],
    );
    let (b_if, b_ip) = (host_if(&bed, "b", "n1"), bed.ip(&b, "n1"));
    assert_endpoint(&bed, &b_if, b_ip, true, "before the crash");
    crash_during(&bed, point, &["container", "rm", "b"]);
    let ea = bed.ep(&a, "n1");
    if container_names(&bed).contains("b") {
        eprintln!("{point}: container b is still there, in full");
        assert_endpoint(&bed, &b_if, b_ip, true, "b still stored after the crash");
        assert_reach(&ea, &bed.ep(&b, "n1"));
        assert_published(&bed, &b);
        bed.ok(&["container", "rm", "b"]);
        wait_consistent(&bed, "after removing b again");
    } else {
        eprintln!("{point}: container b is gone from the store");
    }
    assert_endpoint(&bed, &b_if, b_ip, false, "b removed");
    assert_bare(&b.ns, "container removed");
    // Its address and host port are free again.
    let d = bed.container(
        "d",
        &["--network", "n1", "--ip", "10.82.3.60", "-p", "8080:5001"],
    );
    wait_consistent(&bed, "after adding d");
    assert_reach(&ea, &bed.ep(&d, "n1"));
    assert_published(&bed, &d);
}

/// Crash while disconnecting `b` from its second network n2.
fn fault_disconnect(point: &str) {
    let bed = fault_bed(true);
    bed.network("n1", &["--subnet", "10.82.4.0/24"]);
    bed.network("n2", &["--subnet", "10.82.5.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n2"]);
    bed.ok(&["network", "connect", "n2", "b"]);
    let ec = bed.ep(&c, "n2");
    let (b_if, b_ip) = (host_if(&bed, "b", "n2"), bed.ip(&b, "n2"));
    assert_endpoint(&bed, &b_if, b_ip, true, "before the crash");
    crash_during(&bed, point, &["network", "disconnect", "n2", "b"]);
    let on_n2 = bed.ctr_info("b")["Networks"].get("n2").is_some();
    if on_n2 {
        eprintln!("{point}: b is still connected to n2, in full");
        assert_endpoint(&bed, &b_if, b_ip, true, "b still on n2 after the crash");
        assert_reach(&bed.ep(&b, "n2"), &ec);
        bed.ok(&["network", "disconnect", "n2", "b"]);
        wait_consistent(&bed, "after disconnecting again");
    } else {
        eprintln!("{point}: b is off n2 in the store");
    }
    assert_endpoint(&bed, &b_if, b_ip, false, "b disconnected from n2");
    assert_eq!(
        Bed::links(&b.ns),
        vec!["eth0".to_string(), "lo".to_string()],
        "b's links after the disconnect"
    );
    assert_reach(&bed.ep(&a, "n1"), &bed.ep(&b, "n1"));
    // Connecting again works.
    bed.ok(&["network", "connect", "n2", "b"]);
    wait_consistent(&bed, "after connecting again");
    assert_reach(&bed.ep(&b, "n2"), &ec);
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
/// `container ls`, its veth goes, and its address and host port are free.
#[test]
fn netns_deleted_releases_container() {
    let bed = lc_bed(true, true, &[]);
    bed.network("n1", &["--subnet", "10.83.1.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container(
        "b",
        &["--network", "n1", "--ip", "10.83.1.70", "-p", "8080:5001"],
    );
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
    let d = bed.container(
        "d",
        &["--network", "n1", "--ip", "10.83.1.70", "-p", "8080:5001"],
    );
    assert_reach(&bed.ep(&a, "n1"), &bed.ep(&d, "n1"));
    assert_published(&bed, &d);
}

/// A host veth deleted from outside is recreated and traffic flows again.
#[test]
fn host_veth_deleted_is_recreated() {
    let bed = lc_bed(false, true, &[]);
    bed.network("n1", &["--subnet", "10.83.2.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let (ea, eb) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"));
    let a_if = host_if(&bed, "a", "n1");
    ip_ns(bed.host_ns(), &["link", "del", &a_if]).unwrap();
    let took = wait_consistent(&bed, "after deleting a's host veth");
    eprintln!("veth recreated after {took:?}");
    assert_eq!(
        host_if(&bed, "a", "n1"),
        a_if,
        "a's host interface changed name"
    );
    wait_for("a repair report", Duration::from_secs(2), || {
        repaired(&bed, &["recreated", "of a"])
    });
    wait_for("traffic a <-> b", REPAIR_LIMIT, || reach2(&ea, &eb));
}

/// A bridge deleted from outside is recreated with its veths on it.
#[test]
fn bridge_deleted_is_recreated() {
    let bed = lc_bed(false, true, &[]);
    bed.network("n1", &["--subnet", "10.83.3.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let (ea, eb) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"));
    let br = bridge_of(&bed, "n1");
    ip_ns(bed.host_ns(), &["link", "del", &br]).unwrap();
    let took = wait_consistent(&bed, "after deleting the bridge");
    eprintln!("bridge recreated after {took:?}");
    wait_for("a repair report", Duration::from_secs(2), || {
        repaired(&bed, &["recreated bridge", &br])
    });
    wait_for("traffic a <-> b", REPAIR_LIMIT, || reach2(&ea, &eb));
    // The gateway (host) is reachable again too.
    let gw = bed.gateway("n1");
    icmp(&a.ns, gw).unwrap_or_else(|e| panic!("a -> gateway {gw}: {e:#}"));
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
/// removed from outside is put back, and isolation holds again.
#[test]
fn pinned_link_removed_is_reattached() {
    let bed = lc_bed(false, true, &[]);
    bed.network("n1", &["--subnet", "10.83.4.0/24"]);
    bed.network("n2", &["--subnet", "10.83.5.0/24"]);
    let a = bed.container("a", &["--network", "n1"]);
    let b = bed.container("b", &["--network", "n1"]);
    let c = bed.container("c", &["--network", "n2"]);
    let (ea, eb, ec) = (bed.ep(&a, "n1"), bed.ep(&b, "n1"), bed.ep(&c, "n2"));
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
    for (x, y) in [(&ea, &ec), (&ec, &ea)] {
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
    let bed = lc_bed(true, true, &[]);
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
