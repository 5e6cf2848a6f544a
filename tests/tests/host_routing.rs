//! eBPF host routing (issue 10) on a hostile host, with real packets.
//!
//! The bed's host netns (never the real host) gets what dockerd, ufw or a
//! hardened host leave behind: iptables (nf_tables backend) with a FORWARD
//! policy of DROP, and br_netfilter's `net.bridge.bridge-nf-call-iptables=1`
//! (per netns on this kernel), so every IP packet a bridge forwards meets
//! that FORWARD chain too. With `--host-routing ebpf` container to
//! container on one network, container to world (masqueraded: the world
//! sees the uplink address; routed: the container's own), and world to a
//! published port (the container sees the client's address) all work, and
//! the counters say the programs delivered them. With `--host-routing
//! kernel` (the negative control) the same paths are dropped by the host's
//! firewall, while host -> container (not forwarded) still works. Neither
//! mode adds anything to the host's firewall.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::{no_tcp, tcp, Bed, Ctr, Ep};
use serde_json::Value;

const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const UPLINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const PUBLISHED: u16 = 8080;
const CONTAINER_PORT: u16 = 80;

/// Runs a command inside the bed's host netns (nsenter keeps /sys).
fn in_host(bed: &Bed, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let net = format!("--net={}", path_of(bed.host_ns()).display());
    let mut all = vec![net.as_str(), program];
    all.extend_from_slice(args);
    let out = run_timeout("nsenter", &all, Duration::from_secs(20));
    if !out.success() {
        bail!("{out}");
    }
    Ok(out.stdout)
}

/// Is every tool the hostile fixture needs installed? Prints why not.
fn have_firewall_tools() -> bool {
    for tool in [
        "/usr/sbin/iptables",
        "/usr/sbin/iptables-save",
        "/usr/sbin/nft",
    ] {
        if !Path::new(tool).exists() {
            eprintln!(
                "SKIPPED: {tool} is missing (install iptables and nftables: cargo xtask setup)"
            );
            return false;
        }
    }
    if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        // br_netfilter as a module: load it (the real host's sysctls stay
        // untouched; the setting below is made in the bed's netns only).
        let _ = run_timeout("modprobe", &["br_netfilter"], Duration::from_secs(20));
        if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
            eprintln!("SKIPPED: br_netfilter is not available on this kernel");
            return false;
        }
    }
    true
}

/// The host's firewall as its tools print it, without counters (`nft -s`).
fn firewall(bed: &Bed) -> String {
    let ipt = in_host(bed, "iptables-save", &[]).expect("iptables-save in the host netns");
    let ipt: Vec<&str> = ipt
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect();
    let nft = in_host(bed, "nft", &["-s", "list", "ruleset"])
        .expect("nft list ruleset in the host netns");
    format!("{}\n--- nft ---\n{nft}", ipt.join("\n"))
}

/// A bed whose host netns has an uplink to a world netns and a hostile
/// firewall, with its agent started in `mode`. Returns the firewall as it
/// was before the agent started.
fn hostile_bed(mode: &str) -> Option<(Bed, String, String)> {
    if !matches!(
        std::env::var("NETD_TEST_FIREWALL").as_deref(),
        Err(_) | Ok("" | "none")
    ) {
        eprintln!(
            "SKIPPED: this test builds its own hostile firewall; run it without NETD_TEST_FIREWALL"
        );
        return None;
    }
    if !have_firewall_tools() {
        return None;
    }
    let bed = Bed::without_agent(&["--host-routing", mode]);
    let world = bed.make_world();
    in_host(&bed, "iptables", &["-P", "FORWARD", "DROP"]).expect("FORWARD policy DROP");
    in_host(
        &bed,
        "sysctl",
        &["-qw", "net.bridge.bridge-nf-call-iptables=1"],
    )
    .expect("bridge-nf-call-iptables=1 in the host netns");
    assert_eq!(
        Bed::sysctl(bed.host_ns(), "net.bridge.bridge-nf-call-iptables").unwrap(),
        "1"
    );
    let before = firewall(&bed);
    assert!(
        before.contains(":FORWARD DROP"),
        "the fixture should show FORWARD policy DROP:\n{before}"
    );
    bed.start_agent();
    wait_uplink(&bed);
    Some((bed, world, before))
}

fn wait_uplink(bed: &Bed) {
    let start = Instant::now();
    loop {
        let st = bed.json(&["status", "--format", "json"]);
        if st["uplinks"]["up0"]["address"].as_str() == Some(&UPLINK.to_string()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no uplink up0 in status: {}",
            st["uplinks"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(bed: &Bed) -> Value {
    bed.json(&["status", "--format", "json"])
}

fn shortcut(bed: &Bed, name: &str) -> u64 {
    let st = status(bed);
    st["host_routing"]["shortcuts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no host_routing.shortcuts.{name} in status: {st}"))
}

/// A TCP server on 0.0.0.0:`port` in `ns` for one connection; returns the
/// peer it saw (or `None` after `wait`).
fn serve_once(
    ns: &str,
    port: u16,
    wait: Duration,
) -> std::thread::JoinHandle<anyhow::Result<Option<SocketAddrV4>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = spawn_in(ns, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).context("bind")?;
        l.set_nonblocking(true)?;
        let _ = tx.send(());
        let start = Instant::now();
        while start.elapsed() < wait {
            match l.accept() {
                Ok((mut s, SocketAddr::V4(peer))) => {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut buf = [0u8; 4];
                    let n = s.read(&mut buf)?;
                    s.write_all(&buf[..n])?;
                    return Ok(Some(peer));
                }
                Ok((_, peer)) => bail!("unexpected peer {peer}"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server did not start");
    h
}

/// TCP from `ns` to `dst`: a round trip of 4 bytes.
fn connect_from(ns: &str, dst: SocketAddrV4, timeout: Duration) -> anyhow::Result<()> {
    join(spawn_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&dst.into(), timeout)
            .with_context(|| format!("connect {dst}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(())
    }))
}

struct Topology {
    a: Ctr,
    b: Ctr,
    routed: Ctr,
}

/// `a` and `b` on network `front` (b publishes 8080 -> 80), `r` on the
/// routed network `flat` (`--masquerade=false`, the world routes its
/// subnet back via the host).
fn topology(bed: &Bed, world: &str) -> Topology {
    bed.network("front", &[]);
    bed.network("flat", &["--masquerade=false"]);
    let a = bed.container("a", &["--network", "front"]);
    let publish = format!("{PUBLISHED}:{CONTAINER_PORT}");
    let b = bed.container("b", &["--network", "front", "-p", &publish]);
    let routed = bed.container("r", &["--network", "flat"]);
    let routed_subnet = bed.net_info("flat")["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .expect("subnet of flat")
        .to_string();
    ip_ns(
        world,
        &["route", "add", &routed_subnet, "via", &UPLINK.to_string()],
    )
    .expect("world route to the routed network");
    Topology { a, b, routed }
}

#[test]
fn ebpf_host_routing_forwards_past_a_hostile_firewall() {
    let Some((bed, world, before)) = hostile_bed("ebpf") else {
        return;
    };
    assert_eq!(status(&bed)["host_routing"]["mode"], "ebpf");
    let t = topology(&bed, &world);
    let (a, b) = (bed.ep(&t.a, "front"), bed.ep(&t.b, "front"));

    // Container -> container, one network: straight into b's netns.
    let peers = shortcut(&bed, "peer-same-network");
    assert_eq!(tcp(&t.a.ns, &b).expect("a -> b on front"), a.ip);
    assert_eq!(tcp(&t.b.ns, &a).expect("b -> a on front"), b.ip);
    assert!(
        shortcut(&bed, "peer-same-network") > peers,
        "a -> b should be delivered by redirect_peer"
    );

    // Container -> world, masqueraded: the world sees the uplink address.
    let fib = shortcut(&bed, "fib-redirect") + shortcut(&bed, "fib-redirect-neigh");
    let w = Ep::new("world", &world, WORLD);
    assert_eq!(tcp(&t.a.ns, &w).expect("a -> world"), UPLINK);
    // Routed network: the world sees the container's own address.
    let r = bed.ep(&t.routed, "flat");
    assert_eq!(tcp(&t.routed.ns, &w).expect("r -> world (routed)"), r.ip);
    assert!(
        shortcut(&bed, "fib-redirect") + shortcut(&bed, "fib-redirect-neigh") > fib,
        "container -> world should be sent by the fib redirect"
    );

    // World -> published port: b sees the world's address.
    let routed_in = shortcut(&bed, "peer-routed");
    let server = serve_once(&t.b.ns, CONTAINER_PORT, Duration::from_secs(8));
    connect_from(
        &world,
        SocketAddrV4::new(UPLINK, PUBLISHED),
        Duration::from_secs(3),
    )
    .expect("world -> H:8080");
    let peer = join(server).expect("server").expect("b accepted nothing");
    assert_eq!(*peer.ip(), WORLD, "b should see the world's own address");
    assert!(shortcut(&bed, "peer-routed") > routed_in);

    // Pinned programs and mode keep forwarding with the agent stopped; a
    // restarted agent swaps its programs in and keeps the mode.
    bed.stop_agent();
    assert_eq!(tcp(&t.a.ns, &b).expect("a -> b, agent stopped"), a.ip);
    bed.start_agent();
    assert_eq!(status(&bed)["host_routing"]["mode"], "ebpf");
    let peers = shortcut(&bed, "peer-same-network");
    assert_eq!(tcp(&t.a.ns, &b).expect("a -> b after restart"), a.ip);
    assert!(shortcut(&bed, "peer-same-network") > peers);

    // Nothing of this is in the host's firewall.
    let after = firewall(&bed);
    assert_eq!(before, after, "netd changed the host's firewall");
    assert!(!after.to_lowercase().contains("netd"));
}

#[test]
fn kernel_host_routing_is_dropped_by_a_hostile_firewall() {
    let Some((bed, world, before)) = hostile_bed("kernel") else {
        return;
    };
    assert_eq!(status(&bed)["host_routing"]["mode"], "kernel");
    let t = topology(&bed, &world);
    let (a, b) = (bed.ep(&t.a, "front"), bed.ep(&t.b, "front"));

    // Control: the host reaches a (local output, not forwarded).
    let gw = bed.gateway("front");
    assert_eq!(tcp(bed.host_ns(), &a).expect("host -> a"), gw);

    // Bridged and routed paths meet the FORWARD chain and its DROP.
    no_tcp(&t.a.ns, &b).expect("a -> b is bridged through FORWARD: dropped");
    let w = Ep::new("world", &world, WORLD);
    no_tcp(&t.a.ns, &w).expect("a -> world is routed through FORWARD: dropped");
    no_tcp(&t.routed.ns, &w).expect("r -> world is routed through FORWARD: dropped");
    let server = serve_once(&t.b.ns, CONTAINER_PORT, Duration::from_secs(3));
    assert!(
        connect_from(
            &world,
            SocketAddrV4::new(UPLINK, PUBLISHED),
            Duration::from_secs(1),
        )
        .is_err(),
        "world -> H:8080 should not complete through FORWARD DROP"
    );
    let _ = join(server).expect("server");
    for name in ["peer-same-network", "peer-routed", "fib-redirect"] {
        assert_eq!(shortcut(&bed, name), 0, "{name} in kernel mode");
    }
    assert_eq!(before, firewall(&bed), "netd changed the host's firewall");
}
