//! IPv6-only networks (`network create --ipv6 --ipv4=false`, Docker 28's
//! semantics), with real packets: containers get only an IPv6 address and
//! default route (no IPv4 but `lo`), the bridge only the IPv6 gateway;
//! same network allowed, another network and the world dropped by netd
//! (witnessed), the world reached from the containers masqueraded (NAT66),
//! IPv4 a container gives itself dropped as spoofed, names over
//! 127.0.0.11 (AAAA, PTR, no A), a container with an IPv4 network
//! connected to one, bad input refused, and all of it across an agent
//! restart; default routes per family (Docker 28) when an IPv6-only
//! container is connected to IPv4 and dual-stack networks.

use std::net::IpAddr;

use std::net::Ipv6Addr;

use netd_tests::cmd::ip_ns;
use netd_tests::echo_watch::EchoWatch;
use netd_tests::names::{arpa, dig};
use netd_tests::traffic::{allow, dropped, icmp, tcp, udp, Ep};
use netd_tests::world::{UPLINK, UPLINK_LIMIT, WORLD};
use netd_tests::Bed;

const ISOLATION: &str = "network-isolation";
/// The host's address on the uplink, `up0` ([`ipv6_uplink`]).
const UPLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 2);

fn ip(ns: &str, args: &[&str]) -> String {
    ip_ns(ns, args).unwrap_or_else(|e| panic!("ip {args:?} in {ns}: {e:#}"))
}

/// The world reaches the host over IPv6 (2001:db8:96::/64 on the uplink)
/// and routes `routed` to it.
fn ipv6_uplink(bed: &Bed, world: &str, routed: &str) {
    let host = bed.host_ns().to_string();
    ip(
        world,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:96::1/64",
            "dev",
            "w0",
            "nodad",
        ],
    );
    ip(
        &host,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:96::2/64",
            "dev",
            "up0",
            "nodad",
        ],
    );
    ip(
        &host,
        &["-6", "route", "add", "default", "via", "2001:db8:96::1"],
    );
    ip(
        world,
        &["-6", "route", "add", routed, "via", "2001:db8:96::2"],
    );
}

#[test]
fn ipv6_only_networks() {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    ipv6_uplink(&bed, &world, "fd00:96:10::/64");
    bed.start_agent();
    let only6 = |subnet: &'static str| ["--ipv6", "--ipv4=false", "--subnet", subnet];
    bed.network("six", &only6("fd00:96:10::/64"));
    bed.network("six2", &only6("fd00:96:11::/64"));
    bed.network("four", &["--subnet", "10.96.12.0/24"]);

    // Inspect as Docker shows an IPv6-only network.
    let v = bed.net_info("six");
    assert_eq!(v["EnableIPv4"], false, "{v}");
    assert_eq!(v["EnableIPv6"], true, "{v}");
    assert_eq!(
        v["IPAM"]["Config"],
        serde_json::json!([{"Subnet": "fd00:96:10::/64", "Gateway": "fd00:96:10::1", "IPRange": null}]),
        "{v}"
    );
    let s1 = bed.container("s1", &["--network", "six"]);
    let s2 = bed.container("s2", &["--network", "six"]);
    let t1 = bed.container("t1", &["--network", "six2"]);
    let f1 = bed.container("f1", &["--network", "four"]);
    let info = bed.ctr_info("s1");
    let e = &info["Networks"]["six"];
    assert_eq!(e["IPAddress"], "", "{info}");
    assert_eq!(e["Gateway"], "", "{info}");
    assert_eq!(e["IPPrefixLen"], 0, "{info}");
    assert_eq!(e["GlobalIPv6Address"], "fd00:96:10::2", "{info}");
    assert_eq!(e["IPv6Gateway"], "fd00:96:10::1", "{info}");
    assert_eq!(e["MacAddress"], "02:42:00:00:00:02", "{info}");
    let v = bed.net_info("six");
    assert_eq!(v["Containers"][&s1.id]["IPv4Address"], "", "{v}");

    // The kernel: no IPv4 on the container side but lo, an IPv6 address
    // and default route; the bridge has only the IPv6 gateway, and the MAC
    // the datapath knows it by.
    let v4 = ip(&s1.ns, &["-4", "-o", "addr", "show"]);
    assert!(
        v4.lines().all(|l| l.contains(" lo ")),
        "only lo has IPv4 in s1: {v4}"
    );
    assert_eq!(
        ip(&s1.ns, &["-4", "route", "show"]).trim(),
        "",
        "no IPv4 routes"
    );
    let route6 = ip(&s1.ns, &["-6", "route", "show", "default"]);
    assert!(route6.contains("via fd00:96:10::1 dev eth0"), "{route6}");
    let bridge = v["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let host = bed.host_ns().to_string();
    assert_eq!(
        ip(&host, &["-4", "-o", "addr", "show", "dev", &bridge]).trim(),
        "",
        "no IPv4 on bridge {bridge}"
    );
    assert!(ip(&host, &["-6", "-o", "addr", "show", "dev", &bridge]).contains("fd00:96:10::1/64"));
    assert!(ip(&host, &["link", "show", &bridge]).contains("link/ether 02:42:00:00:00:01"));

    // Same network allowed (every protocol, own addresses), another
    // network dropped both ways by netd, the gateway (the host) allowed.
    let (s1_6, s2_6, t1_6) = (
        bed.ep6(&s1, "six"),
        bed.ep6(&s2, "six"),
        bed.ep6(&t1, "six2"),
    );
    let gw = Ep::v6("gateway/six", &host, bed.gateway6("six"));
    bed.expect(&[
        allow(&s1_6, &s2_6),
        allow(&s2_6, &s1_6),
        bed.to_host(&s1_6, &gw),
        dropped(&s1_6, &t1_6, ISOLATION),
        dropped(&t1_6, &s1_6, ISOLATION),
    ]);

    // IPv4 the container gives itself (and a neighbour entry for the
    // bridge) is dropped by netd as spoofed: the endpoint has no IPv4.
    let f1_4 = bed.ep(&f1, "four");
    ip(
        &s1.ns,
        &["-4", "addr", "add", "10.96.99.5/32", "dev", "eth0"],
    );
    ip(
        &s1.ns,
        &["-4", "route", "add", "10.96.12.0/24", "dev", "eth0"],
    );
    ip(
        &s1.ns,
        &[
            "neigh",
            "replace",
            &f1_4.ip.to_string(),
            "lladdr",
            "02:42:00:00:00:01",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let s1_4 = Ep::new("s1/self-made-v4", &s1.ns, "10.96.99.5".parse().unwrap());
    bed.expect(&[dropped(&s1_4, &f1_4, "spoofed-source")]);
    ip(
        &s1.ns,
        &["-4", "addr", "del", "10.96.99.5/32", "dev", "eth0"],
    );
    let _ = ip_ns(
        &s1.ns,
        &["-4", "route", "del", "10.96.12.0/24", "dev", "eth0"],
    );

    // The world: s1's ICMPv6, TCP and UDP to it leave masqueraded, from
    // the uplink's IPv6 address (the world routes the subnet to the host,
    // so unmasqueraded ones would be answered too).
    let w6 = Ep::v6("world/v6", &world, "2001:db8:96::1".parse().unwrap());
    bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
    for (p, seen) in [("TCP", tcp(&s1.ns, &w6)), ("UDP", udp(&s1.ns, &w6))] {
        let seen = seen.unwrap_or_else(|e| panic!("{p} s1 -> world: {e:#}"));
        assert_eq!(seen, UPLINK6, "{p} from s1 seen from {seen}");
    }
    let watch = EchoWatch::start(&world, true);
    icmp(&s1.ns, w6.ip).unwrap_or_else(|e| panic!("s1 pings the world: {e:#}"));
    let echoes = watch.finish();
    assert!(
        !echoes.is_empty() && echoes.iter().all(|(s, _)| *s == UPLINK6),
        "echo requests from s1 arrived as (source, id) {echoes:?}, expected {UPLINK6} only"
    );

    // Yet ICMPv6, TCP and UDP from the world to s1's address are dropped
    // at the uplink.
    bed.expect(&[dropped(&w6, &s1_6, "not-a-reply")]);

    // Names through 127.0.0.11 on lo: AAAA and PTR, no A data, another
    // network's names hidden.
    assert_eq!(dig(&s1.ns, "s2", "AAAA"), [s2_6.ip.to_string()]);
    assert_eq!(dig(&s1.ns, "s2", "A"), ["NOERROR"]);
    assert_eq!(dig(&s2.ns, "s1", "AAAA"), [s1_6.ip.to_string()]);
    assert_eq!(dig(&s1.ns, &arpa(bed.ip6(&s2, "six")), "PTR"), ["s2."]);
    assert_eq!(dig(&s1.ns, "t1", "AAAA"), ["NXDOMAIN"]);
    assert_eq!(dig(&t1.ns, "s1", "AAAA"), ["NXDOMAIN"]);

    // A container with an IPv4 network connects to the IPv6-only one:
    // IPv4 default route kept on eth0, the IPv6 one via eth1.
    bed.ok(&["network", "connect", "six", "f1"]);
    let f1_6 = bed.ep6(&f1, "six");
    let f1_routes = ip(&f1.ns, &["-4", "route", "show", "default"]);
    assert!(f1_routes.contains("dev eth0"), "{f1_routes}");
    let f1_routes6 = ip(&f1.ns, &["-6", "route", "show", "default"]);
    assert!(
        f1_routes6.contains("via fd00:96:10::1 dev eth1"),
        "{f1_routes6}"
    );
    bed.expect(&[allow(&f1_6, &s1_6), allow(&s1_6, &f1_6)]);
    assert_eq!(dig(&f1.ns, "s1", "AAAA"), [s1_6.ip.to_string()]);
    assert_eq!(dig(&s1.ns, "f1", "AAAA"), [f1_6.ip.to_string()]);

    // Bad input is refused with its reason and changes nothing.
    let nets = ["six", "six2", "four"];
    let ctrs = ["s1", "s2", "t1", "f1"];
    let before = bed.snapshot(&nets, &ctrs);
    let ns = bed.new_netns("bad");
    let path = netd_tests::netns::path_of(&ns).display().to_string();
    let add = |extra: &[&'static str]| {
        let mut args = vec![
            "container",
            "add",
            "x",
            "--netns",
            &path,
            "--network",
            "six",
        ];
        args.extend_from_slice(extra);
        args
    };
    for (args, why) in [
        (
            vec!["network", "create", "x", "--ipv4=false"],
            "needs --ipv6",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--ipv6",
                "--ipv4=false",
                "--subnet",
                "10.96.13.0/24",
            ],
            "takes no IPv4",
        ),
        (add(&["--ip", "10.96.12.9"]), "IPv6-only"),
        (add(&["-p", "0.0.0.0:8080:80"]), "has no IPv4 address"),
        (
            add(&["--ip6", "fd00:96:10:0:1::2"]),
            "would get the MAC of fd00:96:10::2",
        ),
    ] {
        let err = bed.fail(&args);
        assert!(err.contains(why), "{args:?}: expected {why:?} in {err:?}");
    }
    bed.assert_unchanged(&before, &nets, &ctrs, "refused IPv6-only input");

    // A restart keeps it all: traffic while the agent is down, then the
    // same state, rows and names.
    let st = bed.stop_agent();
    assert!(st.success(), "agent should exit 0 on SIGTERM, got {st}");
    icmp(&s1.ns, s2_6.ip).unwrap_or_else(|e| panic!("s1 -> s2 while stopped: {e:#}"));
    bed.start_agent();
    bed.assert_unchanged(&before, &nets, &ctrs, "agent restart");
    bed.expect(&[
        allow(&s1_6, &s2_6),
        allow(&f1_6, &s1_6),
        dropped(&s1_6, &t1_6, ISOLATION),
    ]);
    assert_eq!(dig(&s1.ns, "s2", "AAAA"), [s2_6.ip.to_string()]);
    let s3 = bed.container("s3", &["--network", "six"]);
    assert_eq!(bed.ip6(&s3, "six").to_string(), "fd00:96:10::5");

    per_family_default_routes(&bed, &world, &s1);
}

/// The world's IPv6 address (the host's on the uplink is [`UPLINK6`]).
const WORLD6: &str = "2001:db8:96::1";

/// `ns` reaches `to` (in the world) with ICMP, TCP and UDP, and the world
/// sees the host's uplink address `seen` (masquerade).
fn reaches_world(ns: &str, to: &Ep, seen: IpAddr, what: &str) {
    icmp(ns, to.ip).unwrap_or_else(|e| panic!("{what}: ICMP {ns} -> {to}: {e:#}"));
    for (p, r) in [("TCP", tcp(ns, to)), ("UDP", udp(ns, to))] {
        match r {
            Ok(src) => assert_eq!(src, seen, "{what}: {p} {ns} -> {to} seen from"),
            Err(e) => panic!("{what}: {p} {ns} -> {to}: {e:#}"),
        }
    }
}

/// `ns` has one default route of family `flag` (`-4`, `-6`): `via`
/// (`via GATEWAY dev IFNAME`).
fn default_via(ns: &str, flag: &str, via: &str, what: &str) {
    let r = ip(ns, &[flag, "route", "show", "default"]);
    assert!(
        r.lines().count() == 1 && r.starts_with(&format!("default {via}")),
        "{what}: `ip {flag} route show default` in {ns} should be one route {via}, is {r:?}"
    );
}

/// Docker 28 picks the default gateway per family: s1 (IPv6-only first)
/// connected to `four` gets its IPv4 default route via four's gateway and
/// keeps IPv6 on eth0; a later dual-stack network takes neither; a
/// restart that recreates the IPv4 carrier's veth puts its route back;
/// disconnecting a family's carrier moves that family alone to the next
/// network with it. Traffic to the world and the host follows each move.
fn per_family_default_routes(bed: &Bed, world: &str, s1: &netd_tests::Ctr) {
    bed.network(
        "both",
        &[
            "--subnet",
            "10.96.14.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:14::/64",
        ],
    );
    let w4 = Ep::new("world", world, WORLD);
    let w6 = Ep::v6("world/v6", world, WORLD6.parse().unwrap());
    let (up4, up6): (IpAddr, IpAddr) = (UPLINK.into(), UPLINK6.into());
    // A host address on no bridge: reached by the default route alone.
    ip(
        bed.host_ns(),
        &["addr", "add", "192.0.2.96/32", "dev", "lo"],
    );
    let other = bed.host("192.0.2.96".parse().unwrap());

    bed.ok(&["network", "connect", "four", "s1"]);
    let s1_4 = bed.ep(s1, "four");
    default_via(
        &s1.ns,
        "-4",
        "via 10.96.12.1 dev eth1",
        "s1's IPv4 default route by four, its first network with IPv4",
    );
    default_via(
        &s1.ns,
        "-6",
        "via fd00:96:10::1 dev eth0",
        "s1 keeps IPv6 on eth0",
    );
    reaches_world(&s1.ns, &w4, up4, "s1 over four");
    reaches_world(&s1.ns, &w6, up6, "s1 over six");
    bed.expect(&[bed.to_host(&s1_4, &other)]);
    let info = bed.ctr_info("s1");
    let shown = |net: &str| {
        let e = &info["Networks"][net];
        (e["DefaultRoute"].clone(), e["DefaultRoute6"].clone())
    };
    assert_eq!(shown("four"), (true.into(), false.into()), "{info}");
    assert_eq!(shown("six"), (false.into(), true.into()), "{info}");
    assert_eq!(info["Networks"]["four"]["Gateway"], "10.96.12.1", "{info}");

    // A later dual-stack network takes neither route.
    bed.ok(&["network", "connect", "both", "s1"]);
    default_via(
        &s1.ns,
        "-4",
        "via 10.96.12.1 dev eth1",
        "a later dual-stack network takes no IPv4 route",
    );
    default_via(
        &s1.ns,
        "-6",
        "via fd00:96:10::1 dev eth0",
        "s1 keeps IPv6 on eth0",
    );

    // Four's veth deleted while the agent is down (the IPv4 route goes
    // with it): the restart recreates it with the IPv4 default route;
    // the IPv6 one on eth0 is kept.
    let host_if = bed.ctr_info("s1")["Networks"]["four"]["HostInterface"]
        .as_str()
        .unwrap()
        .to_string();
    let st = bed.stop_agent();
    assert!(st.success(), "agent should exit 0 on SIGTERM, got {st}");
    ip(bed.host_ns(), &["link", "del", &host_if]);
    assert_eq!(ip(&s1.ns, &["-4", "route", "show", "default"]).trim(), "");
    bed.start_agent();
    default_via(
        &s1.ns,
        "-4",
        "via 10.96.12.1 dev eth1",
        "the recreated veth of four carries s1's IPv4 default route again",
    );
    default_via(
        &s1.ns,
        "-6",
        "via fd00:96:10::1 dev eth0",
        "s1 keeps IPv6 on eth0",
    );
    reaches_world(&s1.ns, &w4, up4, "s1 over four after the restart");
    reaches_world(&s1.ns, &w6, up6, "s1 over six after the restart");

    // Disconnecting four moves IPv4 alone, to both; then disconnecting
    // six moves IPv6 to both too.
    bed.ok(&["network", "disconnect", "four", "s1"]);
    let s1_both = bed.ep(s1, "both");
    default_via(
        &s1.ns,
        "-4",
        "via 10.96.14.1 dev eth2",
        "disconnecting four moves IPv4 to both",
    );
    default_via(
        &s1.ns,
        "-6",
        "via fd00:96:10::1 dev eth0",
        "s1 keeps IPv6 on eth0",
    );
    reaches_world(&s1.ns, &w4, up4, "s1 over both");
    reaches_world(&s1.ns, &w6, up6, "s1 still over six");
    bed.expect(&[bed.to_host(&s1_both, &other)]);
    bed.ok(&["network", "disconnect", "six", "s1"]);
    default_via(
        &s1.ns,
        "-4",
        "via 10.96.14.1 dev eth2",
        "disconnecting six leaves IPv4 on both",
    );
    default_via(
        &s1.ns,
        "-6",
        "via fd00:96:14::1 dev eth2",
        "s1's IPv6 default route moves to both",
    );
    reaches_world(&s1.ns, &w6, up6, "s1 over both (IPv6)");
    let info = bed.ctr_info("s1");
    let e = &info["Networks"]["both"];
    assert_eq!(
        (&e["DefaultRoute"], &e["DefaultRoute6"]),
        (&true.into(), &true.into()),
        "{info}"
    );
}
