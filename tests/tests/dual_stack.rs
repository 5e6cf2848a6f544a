//! Dual-stack networks (issue 13, control plane): `network create --ipv6`
//! with a given or a picked IPv6 subnet, containers with an IPv6 address
//! and default route, Docker's IPv6 inspect fields, AAAA and ip6.arpa PTR
//! records, both families checked with real ICMP, TCP and UDP (IPv6
//! between networks dropped by netd, with its drop counter as witness), and
//! all of it kept across an agent restart.
use std::net::Ipv6Addr;
use std::time::Duration;

use netd_tests::cmd::{ip_ns, run_timeout};
use netd_tests::names::arpa;
use netd_tests::traffic::{allow, dropped, icmp, no_icmp, Ep};
use netd_tests::{Bed, Ctr};
use serde_json::Value;

const ISOLATION: &str = "network-isolation";

fn dig(c: &Ctr, name: &str, qtype: &str) -> Vec<String> {
    netd_tests::names::dig(&c.ns, name, qtype)
}

/// The IPv6 default route and global addresses of `eth0` in `ns`, as
/// iproute2 shows them.
fn kernel_v6(ns: &str) -> (String, String) {
    let route = ip_ns(ns, &["-6", "route", "show", "default"]).unwrap_or_else(|e| panic!("{e:#}"));
    let addrs = ip_ns(
        ns,
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    (route, addrs)
}

/// `ADDR/LEN` of an IPv6 subnet.
fn net6(s: &str) -> (Ipv6Addr, u8) {
    let (addr, len) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("not a CIDR: {s:?}"));
    (addr.parse().unwrap(), len.parse().unwrap())
}

fn ipam(net: &Value) -> Vec<(String, String)> {
    net["IPAM"]["Config"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["Subnet"].as_str().unwrap_or_default().to_string(),
                c["Gateway"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn dual_stack_network_both_families_dns_and_restart() {
    let bed = Bed::new();
    bed.network(
        "ds",
        &[
            "--subnet",
            "10.96.1.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:1::/64",
        ],
    );
    // No IPv6 subnet given: a /64 of this host's ULA prefix.
    bed.network("auto", &["--subnet", "10.96.2.0/24", "--ipv6"]);
    let ds = bed.net_info("ds");
    assert_eq!(ds["EnableIPv6"], true, "{ds}");
    assert_eq!(
        ipam(&ds),
        [
            ("10.96.1.0/24".to_string(), "10.96.1.1".to_string()),
            ("fd00:96:1::/64".to_string(), "fd00:96:1::1".to_string())
        ]
    );
    let auto = bed.net_info("auto");
    let auto6 = net6(&ipam(&auto)[1].0);
    assert!(
        auto6.1 == 64 && auto6.0.octets()[0] == 0xfd,
        "a picked IPv6 subnet is a /64 of fd00::/8: {auto}"
    );

    let x = bed.container("x", &["--network", "ds"]);
    let y = bed.container("y", &["--network", "ds", "--ip6", "fd00:96:1::99"]);
    let z = bed.container("z", &["--network", "auto"]);
    let xi = bed.ctr_info("x");
    let xe = &xi["Networks"]["ds"];
    assert_eq!(xe["GlobalIPv6Address"], "fd00:96:1::2", "{xi}");
    assert_eq!(xe["GlobalIPv6PrefixLen"], 64, "{xi}");
    assert_eq!(xe["IPv6Gateway"], "fd00:96:1::1", "{xi}");
    assert_eq!(
        bed.ip6(&y, "ds"),
        "fd00:96:1::99".parse::<Ipv6Addr>().unwrap()
    );
    let ds = bed.net_info("ds");
    assert_eq!(
        ds["Containers"][&x.id]["IPv6Address"], "fd00:96:1::2/64",
        "{ds}"
    );
    // The kernel has what inspect says: the address and the default route
    // via the IPv6 gateway in the container, the gateway on the bridge.
    let (route, addrs) = kernel_v6(&x.ns);
    assert!(route.contains("via fd00:96:1::1 dev eth0"), "{route}");
    assert!(addrs.contains("fd00:96:1::2/64"), "{addrs}");
    let bridge = ds["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let on_bridge = ip_ns(bed.host_ns(), &["-6", "-o", "addr", "show", "dev", &bridge])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(on_bridge.contains("fd00:96:1::1/64"), "{on_bridge}");
    // No duplicate address detection on the bridge: while its link-local
    // address is tentative the host solicits no neighbours on it.
    assert!(!on_bridge.contains("tentative"), "{on_bridge}");
    let accept_dad = run_timeout(
        "nsenter",
        &[
            &format!("--net={}", bed.host_ns_path().display()),
            "cat",
            &format!("/proc/sys/net/ipv6/conf/{bridge}/accept_dad"),
        ],
        Duration::from_secs(5),
    );
    assert_eq!(accept_dad.stdout.trim(), "0", "{accept_dad}");

    // Both families, every protocol, source addresses kept.
    let (x4, y4) = (bed.ep(&x, "ds"), bed.ep(&y, "ds"));
    let (x6, y6, z6) = (bed.ep6(&x, "ds"), bed.ep6(&y, "ds"), bed.ep6(&z, "auto"));
    let host6 = Ep::v6("host/v6", bed.host_ns(), bed.gateway6("ds"));
    // Another IPv6 address of the host, on no bridge.
    ip_ns(
        bed.host_ns(),
        &["-6", "addr", "add", "2001:db8:96:ff::1/128", "dev", "lo"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let other6 = Ep::v6(
        "host/other-v6",
        bed.host_ns(),
        "2001:db8:96:ff::1".parse().unwrap(),
    );
    let flows = [
        allow(&x4, &y4),
        allow(&y4, &x4),
        allow(&x6, &y6),
        allow(&y6, &x6),
        // A -> H: the gateway and any other host address (a socket of
        // the host itself: its INPUT chain decides) ...
        bed.to_host(&x6, &host6),
        bed.to_host(&x6, &other6),
        // ... and H -> A: the container sees the gateway's address.
        allow(&host6, &x6),
    ];
    bed.expect(&flows);
    // Different networks: netd drops IPv6 both ways, as IPv4.
    bed.expect(&[dropped(&x6, &z6, ISOLATION), dropped(&z6, &x6, ISOLATION)]);

    // Names: AAAA and PTR for IPv6 addresses, A as before; a name on
    // another network stays invisible for AAAA too.
    assert_eq!(dig(&x, "y", "AAAA"), ["fd00:96:1::99"]);
    assert_eq!(dig(&x, "y", "A"), [y4.ip.to_string()]);
    assert_eq!(dig(&y, "x", "AAAA"), ["fd00:96:1::2"]);
    assert_eq!(dig(&x, &arpa(bed.ip6(&y, "ds")), "PTR"), ["y."]);
    assert_eq!(dig(&x, "z", "AAAA"), ["NXDOMAIN"]);
    assert_eq!(dig(&z, "x", "AAAA"), ["NXDOMAIN"]);
    assert_eq!(dig(&z, "z", "AAAA"), [z6.ip.to_string()]);

    // Bad input is refused with its reason and changes nothing.
    let nets = ["ds", "auto"];
    let ctrs = ["x", "y", "z"];
    let before = bed.snapshot(&nets, &ctrs);
    for (args, why) in [
        (
            vec!["network", "create", "v6nope", "--subnet", "fd00:96:9::/64"],
            "needs --ipv6",
        ),
        (
            vec![
                "network",
                "create",
                "v6twice",
                "--ipv6",
                "--subnet",
                "fd00:96:9::/64",
                "--subnet",
                "fd00:96:8::/64",
            ],
            "given twice for IPv6",
        ),
        (
            vec![
                "network",
                "create",
                "v6clash",
                "--ipv6",
                "--subnet",
                "fd00:96:1:0:1::/80",
            ],
            "overlaps network ds",
        ),
        (
            vec![
                "network",
                "create",
                "v6gw",
                "--ipv6",
                "--subnet",
                "fd00:96:9::/64",
                "--gateway",
                "fd00:96:8::1",
            ],
            "not a usable address",
        ),
        (
            vec!["network", "connect", "--ip6", "fd00:96:1::99", "auto", "x"],
            "not a usable address in subnet",
        ),
    ] {
        let err = bed.fail(&args);
        assert!(err.contains(why), "{args:?}: expected {why:?} in {err:?}");
    }
    bed.assert_unchanged(&before, &nets, &ctrs, "refused IPv6 input");
    let err = bed.fail(&["network", "connect", "--ip6", "fd00:96:1::99", "ds", "z"]);
    assert!(err.contains("already in use"), "{err}");
    let plain = bed.container("plain", &["--network", "bridge"]);
    let err = bed.fail(&["network", "connect", "--ip6", "fd00::5", "bridge", "z"]);
    assert!(err.contains("has no IPv6"), "{err}");
    let ns = bed.new_netns("p6");
    let path = netd_tests::netns::path_of(&ns).display().to_string();
    let err = bed.fail(&[
        "container",
        "add",
        "p6",
        "--netns",
        &path,
        "--network",
        "bridge",
        "-p",
        "[::]:8080:80",
    ]);
    assert!(
        err.contains("has no IPv6 address") && err.contains("--ipv6"),
        "an IPv6 host address for a container without IPv6 is refused with why: {err}"
    );
    assert_eq!(
        bed.ctr_info(&plain.name)["Networks"]["bridge"]["GlobalIPv6Address"],
        ""
    );

    // A restart keeps every IPv6 address, route and record, and the same
    // picked subnet; the next container takes the next free address.
    let ctrs = ["x", "y", "z", "plain"];
    let before = bed.snapshot(&nets, &ctrs);
    let kernel_before = kernel_v6(&x.ns);
    let st = bed.stop_agent();
    assert!(st.success(), "agent should exit 0 on SIGTERM, got {st}");
    icmp(&x.ns, y6.ip).unwrap_or_else(|e| panic!("x -> y over IPv6 while stopped: {e:#}"));
    no_icmp(&x.ns, z6.ip).unwrap_or_else(|e| panic!("x -> z over IPv6 while stopped: {e:#}"));
    bed.start_agent();
    bed.assert_unchanged(&before, &nets, &ctrs, "agent restart");
    assert_eq!(
        kernel_v6(&x.ns),
        kernel_before,
        "x's IPv6 after the restart"
    );
    bed.expect(&[
        allow(&x6, &y6),
        allow(&y6, &x6),
        allow(&x4, &y4),
        dropped(&x6, &z6, ISOLATION),
    ]);
    assert_eq!(dig(&x, "y", "AAAA"), ["fd00:96:1::99"]);
    let w = bed.container("w", &["--network", "ds"]);
    assert_eq!(
        bed.ip6(&w, "ds"),
        "fd00:96:1::3".parse::<Ipv6Addr>().unwrap()
    );
    bed.network("auto2", &["--subnet", "10.96.3.0/24", "--ipv6"]);
    let auto2 = net6(&ipam(&bed.net_info("auto2"))[1].0);
    assert!(
        auto2 != auto6 && auto2.0.segments()[..3] == auto6.0.segments()[..3],
        "the next picked subnet is another /64 of the same stored ULA /48: {auto6:?} then {auto2:?}"
    );
}

/// `netd daemon --ipv6 --default-pool-v6`: the default bridge is dual
/// stack, subnets come from the pool in order, skipping one that is in use
/// and one routed on the host.
#[test]
fn default_bridge_with_ipv6_and_a_v6_pool() {
    let bed = Bed::with_daemon_args(&["--ipv6", "--default-pool-v6", "fd00:97::/48"]);
    let bridge = bed.net_info("bridge");
    assert_eq!(bridge["EnableIPv6"], true, "{bridge}");
    assert_eq!(
        ipam(&bridge)[1],
        ("fd00:97::/64".to_string(), "fd00:97::1".to_string())
    );
    let c = bed.container("c", &[]);
    assert_eq!(
        bed.ip6(&c, "bridge"),
        "fd00:97::2".parse::<Ipv6Addr>().unwrap()
    );
    ip_ns(
        bed.host_ns(),
        &["-6", "route", "add", "unreachable", "fd00:97:0:1::/64"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    bed.network("n", &["--ipv6"]);
    assert_eq!(ipam(&bed.net_info("n"))[1].0, "fd00:97:0:2::/64");
    let d = bed.container("d", &["--network", "n"]);
    let (c6, d6) = (bed.ep6(&c, "bridge"), bed.ep6(&d, "n"));
    let gw = Ep::v6("host/v6", bed.host_ns(), bed.gateway6("n"));
    bed.expect(&[
        bed.to_host(&d6, &gw),
        dropped(&c6, &d6, ISOLATION),
        dropped(&d6, &c6, ISOLATION),
    ]);
}

/// What the IPv6 upstream answers for every A question.
const UPSTREAM_ANSWER: &str = "203.0.113.66";

/// A DNS server on `[addr]:53` in a new netns linked to the bed's host
/// netns (host side `host_addr`), answering every A question with
/// [`UPSTREAM_ANSWER`]; stops when the flag is set.
fn ipv6_upstream(
    bed: &Bed,
    host_addr: &str,
    addr: Ipv6Addr,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<anyhow::Result<()>>,
) {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    use std::sync::atomic::{AtomicBool, Ordering};
    let ns = bed.new_netns("up6");
    let ip = |ns: &str, args: &[&str]| ip_ns(ns, args).unwrap_or_else(|e| panic!("{e:#}"));
    ip(
        bed.host_ns(),
        &[
            "link", "add", "up6a", "type", "veth", "peer", "name", "up6b", "netns", &ns,
        ],
    );
    ip(
        bed.host_ns(),
        &["-6", "addr", "add", host_addr, "dev", "up6a", "nodad"],
    );
    ip(bed.host_ns(), &["link", "set", "up6a", "up"]);
    ip(
        &ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            "up6b",
            "nodad",
        ],
    );
    ip(&ns, &["link", "set", "up6b", "up"]);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = netd_tests::netns::spawn_in(&ns, move || {
        let sock = std::net::UdpSocket::bind((addr, 53))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let _ = tx.send(());
        let mut buf = [0u8; 4096];
        while !s.load(Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = req.queries.first().cloned() else {
                continue;
            };
            let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.add_query(q.clone());
            if q.query_type() == RecordType::A {
                let a = UPSTREAM_ANSWER.parse()?;
                resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(a))));
            }
            sock.send_to(&resp.to_vec()?, peer)?;
        }
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the IPv6 upstream did not start");
    (stop, server)
}

/// Names netd does not know go to an IPv6 upstream (`--dns-upstream
/// [V6]:53`), from the host netns.
#[test]
fn forwards_to_an_ipv6_upstream() {
    let upstream: Ipv6Addr = "fd00:253::2".parse().unwrap();
    let bed = Bed::with_daemon_args(&["--dns-upstream", "[fd00:253::2]:53"]);
    let (stop, server) = ipv6_upstream(&bed, "fd00:253::1/64", upstream);
    bed.network("n", &["--subnet", "10.96.5.0/24", "--ipv6"]);
    let c = bed.container("c", &["--network", "n"]);
    let got = dig(&c, "far.example", "A");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    netd_tests::netns::join(server).unwrap_or_else(|e| panic!("IPv6 upstream: {e:#}"));
    assert_eq!(got, [UPSTREAM_ANSWER], "forwarded to {upstream}");
}
