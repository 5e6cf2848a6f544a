//! Issue 13's leak, as a regression test: on a host that forwards IPv6,
//! two netd networks without IPv6 whose bridges were given IPv6 addresses
//! by hand (fd00:a::1/64, fd00:b::1/64), and containers given addresses
//! and default routes in those prefixes by hand. a1 (network A) must not
//! reach b1 (network B): netd drops it, counted as `ipv6-not-enabled`,
//! both ways. Negative control: with the programs detached (link pins
//! removed) the same pings flow, since the host forwards.
use std::time::Duration;

use netd_tests::{
    bed::Bed,
    cmd::{ip_ns, run_ok, run_timeout},
};

/// Echo requests of a denied ping; the drop counter must grow by them.
const DENIED_PINGS: u64 = 10;

fn bridge(bed: &Bed, net: &str) -> String {
    bed.net_info(net)["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or_else(|| panic!("network {net} has no bridge name"))
        .to_string()
}

fn ip(ns: &str, args: &[&str]) {
    ip_ns(ns, args).unwrap_or_else(|e| panic!("ip -n {ns} {args:?}: {e:#}"));
}

/// Gives `ns`'s eth0 `addr` (no duplicate address detection: usable at
/// once) and a default route via `gw`.
fn address(ns: &str, addr: &str, gw: &str) {
    ip(ns, &["-6", "addr", "add", addr, "dev", "eth0", "nodad"]);
    ip(
        ns,
        &["-6", "route", "add", "default", "via", gw, "dev", "eth0"],
    );
}

fn ping6(ns: &str, to: &str, count: u64) -> Option<i32> {
    let count = count.to_string();
    run_timeout(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-6", "-n", "-c", &count, "-i", "0.05", "-W", "1", to,
        ],
        Duration::from_secs(15),
    )
    .code
}

/// The ping from `from` to `to` gets through (a few tries: neighbour
/// discovery and the host's routes settle first).
fn reaches(from: &str, to: &str) -> bool {
    (0..5).any(|_| ping6(from, to, 1) == Some(0))
}

#[test]
fn ipv6_between_networks_without_ipv6_is_dropped() {
    let bed = Bed::new();
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
    ip(
        &host,
        &[
            "-6",
            "addr",
            "add",
            "fd00:a::1/64",
            "dev",
            &bridge(&bed, "a"),
            "nodad",
        ],
    );
    ip(
        &host,
        &[
            "-6",
            "addr",
            "add",
            "fd00:b::1/64",
            "dev",
            &bridge(&bed, "b"),
            "nodad",
        ],
    );
    address(&a1.ns, "fd00:a::2/64", "fd00:a::1");
    address(&b1.ns, "fd00:b::2/64", "fd00:b::1");

    let before = bed.drop_count("ipv6-not-enabled");
    for (from, to) in [(&a1.ns, "fd00:b::2"), (&b1.ns, "fd00:a::2")] {
        match ping6(from, to, DENIED_PINGS) {
            Some(1) => {}
            Some(0) => panic!("IPv6 from {from} reached {to} across networks: the leak is back"),
            other => panic!("harness: ping -6 {to} from {from} exited {other:?}"),
        }
    }
    let grew = bed.drop_count("ipv6-not-enabled") - before;
    assert!(
        grew >= 2 * DENIED_PINGS,
        "drops[\"ipv6-not-enabled\"] grew by {grew} during {} denied pings: they were lost \
         somewhere else; drops = {:?}",
        2 * DENIED_PINGS,
        bed.drops()
    );

    // Negative control: without the programs the host forwards them.
    bed.kill_agent();
    bed.remove_pinned_links();
    assert!(
        reaches(&a1.ns, "fd00:b::2"),
        "negative control: with the programs detached a1 should reach b1 over IPv6"
    );
    assert!(
        reaches(&b1.ns, "fd00:a::2"),
        "negative control: with the programs detached b1 should reach a1 over IPv6"
    );
}
