//! Issue 13's leak, as a regression test: on a host that forwards IPv6,
//! two netd networks without IPv6 whose bridges were given IPv6 addresses
//! by hand (fd00:a::1/64, fd00:b::1/64), and containers given addresses
//! and default routes in those prefixes by hand; the world beyond the
//! uplink has IPv6 and routes both prefixes to the host. a1 (network A)
//! must not reach b1 (network B), nor b1 a1, nor a1 the world: netd drops
//! ICMPv6, TCP and UDP alike, counted as `ipv6-not-enabled`. Negative
//! control: with the programs detached (link pins removed) the same flows
//! go through, since the host forwards.
use netd_tests::{
    bed::Bed,
    cmd::{ip_ns, run_ok},
    traffic::{allow, dropped, Ep},
    world::{route6_via_uplink, WORLD6},
};

const NO_IPV6: &str = "ipv6-not-enabled";

fn bridge(bed: &Bed, net: &str) -> String {
    bed.net_info(net)["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or_else(|| panic!("network {net} has no bridge name"))
        .to_string()
}

fn ip(ns: &str, args: &[&str]) {
    ip_ns(ns, args).unwrap_or_else(|e| panic!("ip -n {ns} {args:?}: {e:#}"));
}

/// Gives `ns`'s eth0 `addr`/64 (no duplicate address detection: usable at
/// once) and a default route via `gw`; returns it as an endpoint.
fn address(name: &str, ns: &str, addr: &str, gw: &str) -> Ep {
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    ip(
        ns,
        &["-6", "route", "add", "default", "via", gw, "dev", "eth0"],
    );
    Ep::v6(name, ns, addr.parse().unwrap())
}

#[test]
fn ipv6_from_networks_without_ipv6_is_dropped() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world6();
    route6_via_uplink(&world, &["fd00:a::/64", "fd00:b::/64"]);
    bed.start_agent();
    bed.network("a", &["--subnet", "10.96.1.0/24"]);
    bed.network("b", &["--subnet", "10.96.2.0/24"]);
    let a1 = bed.container("a1", &["--network", "a"]);
    let b1 = bed.container("b1", &["--network", "b"]);
    let host = bed.host_ns().to_string();
    let net = format!("--net={}", netd_tests::netns::path_of(&host).display());
    run_ok(
        "nsenter",
        &[
            &net,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
        ],
    )
    .unwrap_or_else(|e| panic!("enabling IPv6 forwarding in the host netns: {e:#}"));
    for (net, gw) in [("a", "fd00:a::1/64"), ("b", "fd00:b::1/64")] {
        ip(
            &host,
            &["-6", "addr", "add", gw, "dev", &bridge(&bed, net), "nodad"],
        );
    }
    let a1 = address("a1/hand-made-v6", &a1.ns, "fd00:a::2", "fd00:a::1");
    let b1 = address("b1/hand-made-v6", &b1.ns, "fd00:b::2", "fd00:b::1");
    let w6 = Ep::v6("world/v6", &world, WORLD6);

    bed.expect(&[
        dropped(&a1, &b1, NO_IPV6),
        dropped(&b1, &a1, NO_IPV6),
        dropped(&a1, &w6, NO_IPV6),
    ]);

    // Negative control: without the programs the host forwards them. A
    // hostile host's FORWARD policy would drop them too, so only the
    // permissive run can show it.
    if !bed.detach_for_forwarding_control() {
        return;
    }
    netd_tests::traffic::expect(&[allow(&a1, &b1), allow(&b1, &a1), allow(&a1, &w6)]);
}
