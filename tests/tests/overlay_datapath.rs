//! Packets across hosts on overlay networks (issue 17): three hosts with
//! their own agents sharing one etcd, containers on each. The reachability
//! matrix across hosts (same overlay network, another overlay network, icc
//! off, overlay vs a local bridge network, a container on both), with the
//! sender's drop counters as witnesses; forwarding while an agent is
//! killed and after it restarts; what container and network removal leave
//! in the maps. (The receiver's own checks, which a netd sender never
//! puts to the test, are in netd/tests/overlay_netns.rs.)
use std::time::{Duration, Instant};

use netd_tests::cluster::{Cluster, CONVERGE};
use netd_tests::traffic::{allow, dropped, icmp, no_icmp, tcp};
use netd_tests::Bed;

/// Waits (bounded) until `network inspect NAME` answers on `bed`.
fn wait_network(bed: &Bed, name: &str) {
    let deadline = Instant::now() + CONVERGE;
    while !bed.netd(&["network", "inspect", name]).success() {
        assert!(
            Instant::now() < deadline,
            "network {name} not on host {} within {CONVERGE:?}",
            bed.id()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until the pinned map `map` of `bed` has `n` entries.
fn wait_entries(bed: &Bed, map: &str, n: usize) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let have = bed.map_entries(map);
        if have == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{map} of host {} has {have} entries, want {n}",
            bed.id()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reachability_across_hosts() {
    let Some(c) = Cluster::new(3, &[]) else {
        return;
    };
    let (h1, h2, h3) = (c.host(1), c.host(2), c.host(3));
    for (name, extra) in [("ov1", None), ("ov2", None), ("ovq", Some("--icc=false"))] {
        let mut args = vec!["network", "create", "-d", "overlay", name];
        args.extend(extra);
        h1.ok(&args);
    }
    h1.network("lb", &[]);
    for h in c.hosts() {
        for n in ["ov1", "ov2", "ovq"] {
            wait_network(h, n);
        }
    }
    assert!(
        h1.host_links().iter().any(|l| l == "netd-vxlan"),
        "the VXLAN device: {:?}",
        h1.host_links()
    );
    let a1 = h1.container("a1", &["--network", "ov1"]);
    let b1 = h2.container("b1", &["--network", "ov1"]);
    let c1 = h3.container("c1", &["--network", "ov1"]);
    let a2 = h1.container("a2", &["--network", "ov2"]);
    let b2 = h2.container("b2", &["--network", "ov2"]);
    let q1 = h1.container("q1", &["--network", "ovq"]);
    let q2 = h2.container("q2", &["--network", "ovq"]);
    // m: on the overlay and on host 1's local network; l: only local.
    let m = h1.container("m", &["--network", "ov1"]);
    h1.ok(&["network", "connect", "lb", "m"]);
    let l = h1.container("l", &["--network", "lb"]);
    c.wait_remotes(1, &["b1", "b2", "c1", "q2"]);
    c.wait_remotes(2, &["a1", "a2", "c1", "m", "q1"]);
    c.wait_remotes(3, &["a1", "a2", "b1", "b2", "m", "q1", "q2"]);

    // The overlay's MTU leaves room for VXLAN on the 1500-byte underlay.
    let link = netd_tests::cmd::ip_ns(&a1.ns, &["link", "show", "eth0"]).unwrap();
    assert!(link.contains("mtu 1450"), "{link}");

    let (a1e, b1e, c1e) = (h1.ep(&a1, "ov1"), h2.ep(&b1, "ov1"), h3.ep(&c1, "ov1"));
    let (a2e, b2e) = (h1.ep(&a2, "ov2"), h2.ep(&b2, "ov2"));
    let (q1e, q2e) = (h1.ep(&q1, "ovq"), h2.ep(&q2, "ovq"));
    let (m_ov, m_lb, le) = (h1.ep(&m, "ov1"), h1.ep(&m, "lb"), h1.ep(&l, "lb"));
    // Each row is decided (and its drop counted) on the sender's host;
    // allowed rows check the receiver sees the sender's own address.
    h1.expect(&[
        allow(&a1e, &b1e),
        allow(&a1e, &c1e),
        allow(&a2e, &b2e),
        allow(&m_ov, &b1e),
        dropped(&a1e, &b2e, "network-isolation"),
        dropped(&a2e, &b1e, "network-isolation"),
        dropped(&q1e, &q2e, "icc-disabled"),
        dropped(&le, &b1e, "network-isolation"),
        allow(&le, &m_lb),
    ]);
    h2.expect(&[
        allow(&b1e, &a1e),
        allow(&b1e, &m_ov),
        allow(&b1e, &c1e),
        dropped(&b2e, &a1e, "network-isolation"),
        dropped(&q2e, &q1e, "icc-disabled"),
    ]);
    // A local network's address is no overlay address: host 2 routes it as
    // any address outside its networks (these hosts have no default route:
    // the stack answers "network unreachable"), nothing tunnels it.
    no_icmp(&b1.ns, m_lb.ip4()).expect("b1 -> m's local address");
    h3.expect(&[allow(&c1e, &a1e), dropped(&c1e, &b2e, "network-isolation")]);
    let s = h1.json(&["status", "--format", "json"]);
    let shortcuts = &s["host_routing"]["shortcuts"];
    for k in ["overlay-encap", "overlay-decap", "overlay-arp-reply"] {
        assert!(shortcuts[k].as_u64().unwrap_or(0) > 0, "{k}: {shortcuts}");
    }
}

#[test]
fn forwarding_survives_an_agent_kill_and_removal_cleans_up() {
    let Some(c) = Cluster::new(2, &[]) else {
        return;
    };
    let (h1, h2) = (c.host(1), c.host(2));
    h1.ok(&["network", "create", "-d", "overlay", "ov"]);
    wait_network(h2, "ov");
    let a = h1.container("a", &["--network", "ov"]);
    let b = h2.container("b", &["--network", "ov"]);
    c.wait_remotes(1, &["b"]);
    c.wait_remotes(2, &["a"]);
    let (ae, be) = (h1.ep(&a, "ov"), h2.ep(&b, "ov"));
    h1.expect(&[allow(&ae, &be)]);
    wait_entries(h1, "OVERLAY_REMOTES", 1);
    wait_entries(h1, "OVERLAY_VNIS", 1);

    // Host 2's agent dies: its pinned programs and maps keep forwarding
    // (checked at once, well within its lease), and again after it
    // restarts and reconciles.
    h2.kill_agent();
    icmp(&a.ns, be.ip4()).expect("a -> b with host 2's agent dead");
    assert_eq!(tcp(&b.ns, &ae).expect("b -> a"), be.ip);
    h2.start_agent();
    c.wait_remotes(1, &["b"]);
    c.wait_remotes(2, &["a"]);
    h1.expect(&[allow(&ae, &be)]);
    h2.expect(&[allow(&be, &ae)]);

    // b goes: host 1 forgets it (and no longer reaches its address).
    h2.ok(&["container", "rm", "b"]);
    c.wait_remotes(1, &[]);
    wait_entries(h1, "OVERLAY_REMOTES", 0);
    no_icmp(&a.ns, be.ip4()).expect("a -> b's old address");
    // The network goes: no VNI, no remote left on either host.
    h1.ok(&["container", "rm", "a"]);
    h1.ok(&["network", "rm", "ov"]);
    for h in [h1, h2] {
        wait_entries(h, "OVERLAY_VNIS", 0);
        wait_entries(h, "OVERLAY_REMOTES", 0);
    }
}
