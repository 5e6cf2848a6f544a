//! SPEC section 4 over IPv6, with real packets (ICMPv6, TCP, UDP) between
//! network namespaces on networks made with `--ipv6`: what is denied is
//! counted by netd under its reason (`Bed::expect`'s witness).
use std::time::Duration;

use netd_tests::{
    bed::Bed,
    cmd::{ip_ns, run_timeout},
    traffic::{allow, dropped, Ep},
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
    // the host forwards between the networks. A hostile host's FORWARD
    // policy would drop that too, so only the permissive run can show it.
    if bed.firewall().drops_input() {
        eprintln!(
            "negative control not run on the {} host: its FORWARD policy drops what the \
             kernel forwards (the permissive run checks it)",
            bed.firewall().name()
        );
        return;
    }
    bed.kill_agent();
    bed.remove_pinned_links();
    netd_tests::traffic::expect(&[allow(&a1, &b1), allow(&b1, &a1)]);
}

/// A container that gives itself another address of its subnet and sends
/// from it: dropped as `spoofed-source`; from its own address the same
/// ping passes (control).
#[test]
fn ipv6_spoofed_sources_are_dropped() {
    const PINGS: u64 = 10;
    let bed = Bed::new();
    bed.network(
        "s",
        &[
            "--subnet",
            "10.95.5.0/24",
            "--ipv6",
            "--subnet",
            "fd00:95:5::/64",
        ],
    );
    let s1 = bed.container("s1", &["--network", "s"]);
    let s2 = bed.container("s2", &["--network", "s"]);
    let (own, peer) = (bed.ip6(&s1, "s"), bed.ip6(&s2, "s"));
    ip_ns(
        &s1.ns,
        &[
            "-6",
            "addr",
            "add",
            "fd00:95:5::99/64",
            "dev",
            "eth0",
            "nodad",
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let ping_from = |src: &str, count: u64| {
        let count = count.to_string();
        let peer = peer.to_string();
        run_timeout(
            "ip",
            &[
                "netns", "exec", &s1.ns, "ping", "-6", "-n", "-c", &count, "-i", "0.05", "-W", "1",
                "-I", src, &peer,
            ],
            Duration::from_secs(15),
        )
        .code
    };
    assert_eq!(
        ping_from(&own.to_string(), 1),
        Some(0),
        "control: from its own address"
    );
    let before = bed.drop_count("spoofed-source");
    assert_eq!(
        ping_from("fd00:95:5::99", PINGS),
        Some(1),
        "from another address of the subnet"
    );
    let grew = bed.drop_count("spoofed-source") - before;
    assert!(
        grew >= PINGS,
        "spoofed-source grew by {grew} for {PINGS} spoofed pings"
    );
}

/// W routes a container's IPv6 subnet to the host: it still cannot reach
/// the container's address (dropped at the uplink, `not-a-reply`), while the
/// container's own flow to W (masquerade off: routed) gets its replies.
#[test]
fn ipv6_world_cannot_reach_a_container_address() {
    const PINGS: u64 = 10;
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    let host = bed.host_ns().to_string();
    for (ns, args) in [
        (
            &world,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:95::1/64",
                "dev",
                "w0",
                "nodad",
            ][..],
        ),
        (
            &host,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:95::2/64",
                "dev",
                "up0",
                "nodad",
            ],
        ),
        (
            &host,
            &["-6", "route", "add", "default", "via", "2001:db8:95::1"],
        ),
        (
            &world,
            &[
                "-6",
                "route",
                "add",
                "fd00:95:6::/64",
                "via",
                "2001:db8:95::2",
            ],
        ),
    ] {
        ip_ns(ns, args).unwrap_or_else(|e| panic!("building the IPv6 uplink: {e:#}"));
    }
    bed.start_agent();
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
    let c = bed.container("c", &["--network", "r"]);
    let c6 = bed.ep6(&c, "r");
    let w6 = Ep::v6("world/v6", &world, "2001:db8:95::1".parse().unwrap());
    // The container's own flows to the world leave with its address and
    // their replies come back.
    bed.expect(&[allow(&c6, &w6)]);
    let before = bed.drop_count("not-a-reply");
    let count = PINGS.to_string();
    let target = c6.ip.to_string();
    let out = run_timeout(
        "ip",
        &[
            "netns", "exec", &world, "ping", "-6", "-n", "-c", &count, "-i", "0.05", "-W", "1",
            &target,
        ],
        Duration::from_secs(15),
    );
    assert_eq!(
        out.code,
        Some(1),
        "the world must not reach {target}:\n{out}"
    );
    let grew = bed.drop_count("not-a-reply") - before;
    assert!(
        grew >= PINGS,
        "not-a-reply grew by {grew} for {PINGS} pings from the world"
    );
}
