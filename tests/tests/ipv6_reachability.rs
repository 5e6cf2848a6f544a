//! SPEC section 4 over IPv6, with real packets (ICMPv6, TCP, UDP) between
//! network namespaces on networks made with `--ipv6`: what is denied is
//! counted by netd under its reason (`Bed::expect`'s witness), and flows
//! once the programs are detached (the negative controls).
use std::net::IpAddr;

use netd_tests::{
    bed::Bed,
    cmd::ip_ns,
    traffic::{allow, dropped, icmp, tcp, udp, Ep},
    world::{route6_via_uplink, UPLINK6, UPLINK_LIMIT, WORLD6},
};

#[test]
fn ipv6_rows_between_containers() {
    let bed = Bed::new();
    let v6 = |subnet: &'static str| ["--ipv6", "--subnet", subnet];
    bed.network(
        "a",
        &[&["--subnet", "10.95.1.0/24"][..], &v6("fd00:95:1::/64")].concat(),
    );
    bed.network(
        "b",
        &[&["--subnet", "10.95.2.0/24"][..], &v6("fd00:95:2::/64")].concat(),
    );
    bed.network(
        "closed",
        &[
            &["--subnet", "10.95.3.0/24", "--icc=false"][..],
            &v6("fd00:95:3::/64"),
        ]
        .concat(),
    );
    bed.network(
        "inner",
        &[
            &["--subnet", "10.95.4.0/24", "--internal"][..],
            &v6("fd00:95:4::/64"),
        ]
        .concat(),
    );
    let a1 = bed.container("a1", &["--network", "a"]);
    let a2 = bed.container("a2", &["--network", "a"]);
    let b1 = bed.container("b1", &["--network", "b"]);
    let c1 = bed.container("c1", &["--network", "closed"]);
    let c2 = bed.container("c2", &["--network", "closed"]);
    let i1 = bed.container("i1", &["--network", "inner"]);
    let i2 = bed.container("i2", &["--network", "inner"]);
    let (a1, a2) = (bed.ep6(&a1, "a"), bed.ep6(&a2, "a"));
    let b1 = bed.ep6(&b1, "b");
    let (c1, c2) = (bed.ep6(&c1, "closed"), bed.ep6(&c2, "closed"));
    let (i1, i2) = (bed.ep6(&i1, "inner"), bed.ep6(&i2, "inner"));
    let host = bed.host_ns().to_string();
    let gw = |net: &str| Ep::v6(&format!("gateway/{net}"), &host, bed.gateway6(net));
    let gw_a = gw("a");
    bed.expect(&[
        allow(&a1, &a2),
        allow(&a2, &a1),
        dropped(&a1, &b1, "network-isolation"),
        dropped(&b1, &a1, "network-isolation"),
        // Another network's gateway is a host address.
        bed.to_host(&a1, &gw("b")),
        dropped(&c1, &c2, "icc-disabled"),
        dropped(&c2, &c1, "icc-disabled"),
        bed.to_host(&c1, &gw("closed")),
        allow(&i1, &i2),
        bed.to_host(&i1, &gw("inner")),
        dropped(&i1, &gw("a"), "internal-network"),
    ]);
    // Negative control: with the programs detached (link pins removed)
    // the host forwards between the networks, the bridge between
    // containers of the icc-off network, and an internal network's
    // container reaches another network's gateway. A hostile host's FORWARD
    // policy would drop that too, so only the permissive run can show it.
    if !bed.detach_for_forwarding_control() {
        return;
    }
    netd_tests::traffic::expect(&[
        allow(&a1, &b1),
        allow(&b1, &a1),
        allow(&c1, &c2),
        allow(&c2, &c1),
        allow(&i1, &gw_a),
    ]);
}

/// A container that gives itself another address of its subnet and sends
/// from it (the connected route's preferred source, so ICMPv6, TCP and
/// UDP all leave with it): dropped as `spoofed-source`; from its own
/// address the same probes pass (control, before and after).
#[test]
fn ipv6_spoofed_sources_are_dropped() {
    const SUBNET: &str = "fd00:95:5::/64";
    let bed = Bed::new();
    bed.network(
        "s",
        &["--subnet", "10.95.5.0/24", "--ipv6", "--subnet", SUBNET],
    );
    let s1 = bed.container("s1", &["--network", "s"]);
    let s2 = bed.container("s2", &["--network", "s"]);
    let (own, peer) = (bed.ep6(&s1, "s"), bed.ep6(&s2, "s"));
    let spoofed = Ep::v6("s1/spoofed", &s1.ns, "fd00:95:5::99".parse().unwrap());
    let ip = |args: &[&str]| ip_ns(&s1.ns, args).unwrap_or_else(|e| panic!("{e:#}"));
    let prefer = |src: &str| {
        ip(&[
            "-6", "route", "replace", SUBNET, "dev", "eth0", "proto", "kernel", "metric", "256",
            "src", src,
        ])
    };
    ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", spoofed.ip),
        "dev",
        "eth0",
        "nodad",
    ]);
    prefer(&own.ip.to_string());
    bed.expect(&[allow(&own, &peer), allow(&peer, &own)]);
    prefer(&spoofed.ip.to_string());
    bed.expect(&[dropped(&spoofed, &peer, "spoofed-source")]);
    prefer(&own.ip.to_string());
    bed.expect(&[allow(&own, &peer)]);
}

/// W routes two container IPv6 subnets to the host, a masquerading and a
/// routed (`--masquerade=false`) one: it still cannot reach the
/// containers' addresses with ICMPv6, TCP or UDP (dropped at the uplink,
/// `not-a-reply`), while the containers' own flows to W get their replies
/// (leaving with the uplink's address, and with their own). Negative
/// control: with the programs detached, W reaches both.
#[test]
fn ipv6_world_cannot_reach_a_container_address() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world6();
    route6_via_uplink(&world, &["fd00:95:6::/64", "fd00:95:7::/64"]);
    bed.start_agent();
    bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
    bed.network(
        "r",
        &[
            "--subnet",
            "10.95.6.0/24",
            "--ipv6",
            "--subnet",
            "fd00:95:6::/64",
            "--masquerade=false",
        ],
    );
    bed.network(
        "m",
        &[
            "--subnet",
            "10.95.7.0/24",
            "--ipv6",
            "--subnet",
            "fd00:95:7::/64",
        ],
    );
    let c = bed.container("c", &["--network", "r"]);
    let m = bed.container("m", &["--network", "m"]);
    let (c6, m6) = (bed.ep6(&c, "r"), bed.ep6(&m, "m"));
    let w6 = Ep::v6("world/v6", &world, WORLD6);
    // Controls: the containers' own flows to the world leave (with c's
    // address, with the uplink's for m) and their replies come back.
    bed.expect(&[allow(&c6, &w6)]);
    let seen = [tcp(&m.ns, &w6), udp(&m.ns, &w6)];
    for (p, s) in ["TCP", "UDP"].iter().zip(seen) {
        match s {
            Ok(src) => assert_eq!(src, IpAddr::from(UPLINK6), "{p} m -> world seen from"),
            Err(e) => panic!("control: {p} m -> world: {e:#}"),
        }
    }
    icmp(&m.ns, WORLD6).unwrap_or_else(|e| panic!("control: m pings the world: {e:#}"));
    bed.expect(&[
        dropped(&w6, &c6, "not-a-reply"),
        dropped(&w6, &m6, "not-a-reply"),
    ]);
    if !bed.detach_for_forwarding_control() {
        return;
    }
    netd_tests::traffic::expect(&[allow(&w6, &c6), allow(&w6, &m6)]);
}
