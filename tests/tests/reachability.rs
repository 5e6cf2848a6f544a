//! SPEC section 4, with real ICMP, TCP and UDP in both directions. Every
//! "dropped" row has a witness that netd dropped it: the drop counter of
//! its reason grows by what the probes sent (`dropped` rows of
//! `Bed::expect`), and an "allowed" control runs in the same topology, so a
//! broken topology cannot pass as isolation. On a hostile host
//! (`NETD_TEST_FIREWALL`), rows to a socket of the host itself follow the
//! host's INPUT chain (`Bed::to_host`: dropped there); all others hold as is.

use netd_tests::traffic::{allow, dropped, expect, no_icmp};
use netd_tests::{Bed, Ctr, Ep};

const ISOLATION: &str = "network-isolation";

/// A bed with networks net1 (10.91.1.0/24) and net2 (10.91.2.0/24).
fn two_networks() -> Bed {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    bed.network("net2", &["--subnet", "10.91.2.0/24"]);
    bed
}

/// Like [`two_networks`], dual stack: IPv6 subnets fd00:91:1::/64 and
/// fd00:91:2::/64.
fn two_dual_networks() -> Bed {
    let bed = Bed::new();
    for (name, v4, v6) in [
        ("net1", "10.91.1.0/24", "fd00:91:1::/64"),
        ("net2", "10.91.2.0/24", "fd00:91:2::/64"),
    ] {
        bed.network(name, &["--subnet", v4, "--ipv6", "--subnet", v6]);
    }
    bed
}

/// On [`two_networks`]: a on net1, b on net2, c on net1 then connected to
/// net2. Containers [a, b, c], and the endpoints [a1, b2, c1, c2].
fn a_b_and_c_on_both(bed: &Bed) -> ([Ctr; 3], [Ep; 4]) {
    let a = bed.container("a", &["--network", "net1"]);
    let b = bed.container("b", &["--network", "net2"]);
    let c = bed.container("c", &["--network", "net1"]);
    bed.ok(&["network", "connect", "net2", "c"]);
    let (a1, b2, c1, c2) = (
        bed.ep(&a, "net1"),
        bed.ep(&b, "net2"),
        bed.ep(&c, "net1"),
        bed.ep(&c, "net2"),
    );
    ([a, b, c], [a1, b2, c1, c2])
}

#[test]
fn same_network_allowed() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    let a = bed.container("a", &["--network", "net1"]);
    let b = bed.container("b", &["--network", "net1"]);
    let (a1, b1) = (bed.ep(&a, "net1"), bed.ep(&b, "net1"));
    assert!(a1.ip4().octets()[..3] == [10, 91, 1] && b1.ip4().octets()[..3] == [10, 91, 1]);
    expect(&[allow(&a1, &b1), allow(&b1, &a1)]);
}

#[test]
fn different_networks_dropped_both_ways() {
    let bed = two_networks();
    let a = bed.container("a", &["--network", "net1"]);
    let a2 = bed.container("a2", &["--network", "net1"]);
    let b = bed.container("b", &["--network", "net2"]);
    let b2 = bed.container("b2", &["--network", "net2"]);
    let (a, a2, b, b2) = (
        bed.ep(&a, "net1"),
        bed.ep(&a2, "net1"),
        bed.ep(&b, "net2"),
        bed.ep(&b2, "net2"),
    );
    bed.expect(&[
        allow(&a, &a2),
        allow(&b, &b2),
        dropped(&a, &b, ISOLATION),
        dropped(&b, &a, ISOLATION),
        dropped(&a2, &b2, ISOLATION),
        dropped(&b2, &a2, ISOLATION),
    ]);
}

#[test]
fn container_on_two_networks_reaches_both() {
    let bed = two_networks();
    let (_, [a1, b2, c1, c2]) = a_b_and_c_on_both(&bed);
    bed.expect(&[
        // c talks to each network from its address there.
        allow(&c1, &a1),
        allow(&a1, &c1),
        allow(&c2, &b2),
        allow(&b2, &c2),
        // Neither network reaches the other ...
        dropped(&a1, &b2, ISOLATION),
        dropped(&b2, &a1, ISOLATION),
        // ... not even through c's address on the other network.
        dropped(&a1, &c2, ISOLATION),
        dropped(&b2, &c1, ISOLATION),
    ]);
}

/// Both families: IPv4 and IPv6 (dual-stack networks) stop together.
#[test]
fn disconnect_stops_traffic_at_once() {
    let bed = two_dual_networks();
    let ([a, b, c], [a1, b2, c1, c2]) = a_b_and_c_on_both(&bed);
    let (a1_6, b2_6, c1_6, c2_6) = (
        bed.ep6(&a, "net1"),
        bed.ep6(&b, "net2"),
        bed.ep6(&c, "net1"),
        bed.ep6(&c, "net2"),
    );
    expect(&[
        allow(&b2, &c2),
        allow(&c2, &b2),
        allow(&a1, &c1),
        allow(&b2_6, &c2_6),
        allow(&c2_6, &b2_6),
        allow(&a1_6, &c1_6),
    ]);

    bed.ok(&["network", "disconnect", "net2", "c"]);
    // Right away, no settling time: c is gone from net2 ...
    let info = bed.ctr_info("c");
    assert!(
        info["Networks"].get("net2").is_none(),
        "c still lists net2 after disconnect: {info}"
    );
    let net = bed.net_info("net2");
    assert!(
        !net["Containers"].to_string().contains(&c.id),
        "net2 still lists c after disconnect: {net}"
    );
    // ... its old net2 addresses no longer answer (while b's path into
    // net2 still carries a ping to the gateway: the control), and b (net2)
    // can no longer reach c at all, while c keeps net1.
    let (gw2, gw2_6) = (bed.gateway("net2"), bed.gateway6("net2"));
    let old = [
        no_icmp(&b.ns, c2.ip).map_err(|e| format!("b -> c's old net2 address {}: {e:#}", c2.ip)),
        no_icmp(&b.ns, c2_6.ip)
            .map_err(|e| format!("b -> c's old net2 address {}: {e:#}", c2_6.ip)),
        bed.ping_host(&b.ns, gw2)
            .map_err(|e| format!("control b -> net2 gateway {gw2}: {e:#}")),
    ];
    let errs: Vec<_> = old.into_iter().filter_map(Result::err).collect();
    assert!(errs.is_empty(), "after disconnect: {}", errs.join("\n"));
    let gw2_6 = Ep::v6("gateway/net2/v6", bed.host_ns(), gw2_6);
    bed.expect(&[
        dropped(&b2, &c1, ISOLATION),
        dropped(&c1, &b2, ISOLATION),
        dropped(&b2_6, &c1_6, ISOLATION),
        dropped(&c1_6, &b2_6, ISOLATION),
        allow(&c1, &a1),
        allow(&a1, &c1),
        allow(&c1_6, &a1_6),
        allow(&a1_6, &c1_6),
        bed.to_host(&b2_6, &gw2_6),
    ]);

    // Reconnecting restores traffic (no stale state left behind).
    bed.ok(&["network", "connect", "net2", "c"]);
    let (c2, c2_6) = (bed.ep(&c, "net2"), bed.ep6(&c, "net2"));
    expect(&[
        allow(&b2, &c2),
        allow(&c2, &b2),
        allow(&b2_6, &c2_6),
        allow(&c2_6, &b2_6),
    ]);
}

/// SPEC is silent; Docker moves the default route to a remaining network
/// when the one that provided it is disconnected: for IPv4 and IPv6 alike
/// (dual-stack networks), and traffic over both follows.
#[test]
fn disconnect_of_first_network_moves_default_route() {
    let bed = two_dual_networks();
    let c = bed.container("c", &["--network", "net1"]);
    bed.ok(&["network", "connect", "net2", "c"]);
    bed.ok(&["network", "disconnect", "net1", "c"]);
    let routes = netd_tests::cmd::ip_ns(&c.ns, &["route", "show", "default"]).unwrap();
    assert!(
        routes.contains("via 10.91.2.1"),
        "after disconnecting net1, c's default route should move to net2's gateway \
         (as Docker does); `ip route show default` in c: {routes:?}"
    );
    let routes6 = netd_tests::cmd::ip_ns(&c.ns, &["-6", "route", "show", "default"]).unwrap();
    assert!(
        routes6.contains("via fd00:91:2::1 dev eth1") && !routes6.contains("fd00:91:1::1"),
        "after disconnecting net1, c's IPv6 default route should move to net2's IPv6 \
         gateway; `ip -6 route show default` in c: {routes6:?}"
    );
    let gw = bed.host(bed.gateway("net2"));
    let gw6 = Ep::v6("gateway/net2/v6", bed.host_ns(), bed.gateway6("net2"));
    let (c2, c2_6) = (bed.ep(&c, "net2"), bed.ep6(&c, "net2"));
    // Another IPv6 address of the host, on no bridge: reached by the
    // default route alone.
    netd_tests::cmd::ip_ns(
        bed.host_ns(),
        &["-6", "addr", "add", "2001:db8:91::1/128", "dev", "lo"],
    )
    .unwrap();
    let other6 = Ep::v6(
        "host/other-v6",
        bed.host_ns(),
        "2001:db8:91::1".parse().unwrap(),
    );
    bed.expect(&[
        bed.to_host(&c2, &gw),
        allow(&gw, &c2),
        bed.to_host(&c2_6, &gw6),
        allow(&gw6, &c2_6),
        bed.to_host(&c2_6, &other6),
    ]);
}

#[test]
fn default_bridge_isolated_from_user_networks() {
    let bed = Bed::new();
    bed.network("net1", &["--subnet", "10.91.1.0/24"]);
    let d = bed.container("d", &[]);
    let d2 = bed.container("d2", &["--network", "bridge"]);
    let u = bed.container("u", &["--network", "net1"]);
    let (d, d2, u) = (
        bed.ep(&d, "bridge"),
        bed.ep(&d2, "bridge"),
        bed.ep(&u, "net1"),
    );
    assert_eq!(
        d.ip4().octets()[..2],
        [172, 17],
        "default network should be 172.17.0.0/16"
    );
    let gw = bed.gateway("bridge");
    assert_eq!(gw.to_string(), "172.17.0.1");
    bed.expect(&[
        allow(&d, &d2),
        bed.to_host(&d, &bed.host(gw)),
        dropped(&d, &u, ISOLATION),
        dropped(&u, &d, ISOLATION),
        dropped(&d2, &u, ISOLATION),
        dropped(&u, &d2, ISOLATION),
    ]);
}

#[test]
fn icc_disabled_drops_container_to_container_but_not_gateway() {
    let bed = Bed::new();
    bed.network("quiet", &["--subnet", "10.91.3.0/24", "--icc=false"]);
    let info = bed.net_info("quiet");
    assert_eq!(
        info["Options"]["com.docker.network.bridge.enable_icc"], "false",
        "inspect should show enable_icc=false: {info}"
    );
    let a = bed.container("a", &["--network", "quiet"]);
    let b = bed.container("b", &["--network", "quiet"]);
    let (a, b) = (bed.ep(&a, "quiet"), bed.ep(&b, "quiet"));
    let gw = bed.host(bed.gateway("quiet"));
    // The containers' own IPv6 (router solicitations, MLD) counts as
    // icc-disabled too; the witness wants what the IPv4 probes sent.
    bed.expect(&[
        dropped(&a, &b, "icc-disabled"),
        dropped(&b, &a, "icc-disabled"),
        bed.to_host(&a, &gw),
        allow(&gw, &a),
        bed.to_host(&b, &gw),
    ]);
}

#[test]
fn internal_network_only_reaches_its_subnet_and_gateway() {
    let bed = Bed::new();
    bed.network("inside", &["--subnet", "10.91.4.0/24", "--internal"]);
    bed.network("open", &["--subnet", "10.91.5.0/24", "--masquerade=false"]);
    assert_eq!(bed.net_info("inside")["Internal"], true);
    let i1 = bed.container("i1", &["--network", "inside"]);
    let i2 = bed.container("i2", &["--network", "inside"]);
    let o = bed.container("o", &["--network", "open"]);
    let (i1, i2, o) = (
        bed.ep(&i1, "inside"),
        bed.ep(&i2, "inside"),
        bed.ep(&o, "open"),
    );
    let gw = bed.host(bed.gateway("inside"));
    let open_gw = bed.host(bed.gateway("open"));

    // W: a machine beyond the host, in its own netns, routed via the host.
    let w_ns = bed.new_netns("w");
    let h = bed.host_ns();
    netd_tests::cmd::ip_ns(
        h,
        &[
            "link", "add", "wh0", "type", "veth", "peer", "name", "ww0", "netns", &w_ns,
        ],
    )
    .unwrap();
    netd_tests::cmd::ip_ns(h, &["addr", "add", "198.51.100.1/24", "dev", "wh0"]).unwrap();
    netd_tests::cmd::ip_ns(h, &["link", "set", "wh0", "up"]).unwrap();
    netd_tests::cmd::ip_ns(&w_ns, &["addr", "add", "198.51.100.2/24", "dev", "ww0"]).unwrap();
    netd_tests::cmd::ip_ns(&w_ns, &["link", "set", "ww0", "up"]).unwrap();
    netd_tests::cmd::ip_ns(&w_ns, &["link", "set", "lo", "up"]).unwrap();
    netd_tests::cmd::ip_ns(&w_ns, &["route", "add", "default", "via", "198.51.100.1"]).unwrap();
    let w = Ep::new("w", &w_ns, "198.51.100.2".parse().unwrap());

    // Control: a container on a normal network (no masquerade) gets a
    // datagram out to W with its own address.
    match netd_tests::traffic::udp_oneway(&o.ns, &w) {
        Ok(src) => assert_eq!(src, o.ip, "W should see o's own address (masquerade off)"),
        Err(e) => panic!("control: UDP o -> W should arrive: {e:#}"),
    }

    bed.expect(&[
        // Inside the subnet, and the host through the gateway: allowed.
        allow(&i1, &i2),
        allow(&i2, &i1),
        bed.to_host(&i1, &gw),
        allow(&gw, &i1),
        // Leaving the subnet: dropped.
        dropped(&i1, &w, "internal-network"),
        dropped(&i1, &o, "internal-network"),
        // (o is on an open network: for it, i1 is another network's.)
        dropped(&o, &i1, ISOLATION),
        dropped(&i1, &open_gw, "internal-network"),
    ]);
}

#[test]
fn host_and_container_reach_each_other() {
    let bed = two_networks();
    let a = bed.container("a", &["--network", "net1"]);
    let a = bed.ep(&a, "net1");
    let gw1 = bed.host(bed.gateway("net1"));
    let gw2 = bed.host(bed.gateway("net2"));
    // Another host address, not on any bridge.
    netd_tests::cmd::ip_ns(bed.host_ns(), &["addr", "add", "192.0.2.1/32", "dev", "lo"]).unwrap();
    let other = bed.host("192.0.2.1".parse().unwrap());
    bed.expect(&[
        // H -> A: the container sees the gateway (the host's bridge address).
        allow(&gw1, &a),
        // A -> H: the gateway, another network's gateway, any host address
        // (a socket of the host itself: the host's INPUT chain decides).
        bed.to_host(&a, &gw1),
        bed.to_host(&a, &gw2),
        bed.to_host(&a, &other),
    ]);
}
