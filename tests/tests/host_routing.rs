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

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::netns::path_of;
use netd_tests::ports::{ask_from, unanswered_from, PortServer, P};
use netd_tests::world::{UPLINK, UPLINK_LIMIT, WORLD};
use netd_tests::{no_tcp, tcp, Bed, Ctr, Ep};
use serde_json::Value;

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
    bed.wait_uplink(UPLINK, UPLINK_LIMIT);
    Some((bed, world, before))
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
    let server = PortServer::start(&t.b.ns, &[CONTAINER_PORT], &[]);
    let answer =
        ask_from(&world, P::Tcp, SocketAddrV4::new(UPLINK, PUBLISHED)).expect("world -> H:8080");
    assert_eq!(
        *answer.seen.ip(),
        WORLD,
        "b should see the world's own address"
    );
    assert_eq!(server.count(), 1, "b should have accepted one connection");
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
    let server = PortServer::start(&t.b.ns, &[CONTAINER_PORT], &[]);
    unanswered_from(&world, P::Tcp, SocketAddrV4::new(UPLINK, PUBLISHED))
        .expect("world -> H:8080 should not complete through FORWARD DROP");
    assert_eq!(
        server.count(),
        0,
        "b accepted a connection through FORWARD DROP"
    );
    for name in ["peer-same-network", "peer-routed", "fib-redirect"] {
        assert_eq!(shortcut(&bed, name), 0, "{name} in kernel mode");
    }
    assert_eq!(before, firewall(&bed), "netd changed the host's firewall");
}
