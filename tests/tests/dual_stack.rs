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

/// [`dig`] over TCP.
fn dig_tcp(c: &Ctr, name: &str, qtype: &str) -> Vec<String> {
    netd_tests::names::dig_with(&c.ns, name, qtype, &["+tcp"])
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

/// Network `opt6` (made by the caller) with `--gateway fd00:96:4::100
/// --ip-range fd00:96:4::100/120`: inspect shows both in the IPv6 IPAM
/// entry, the bridge has the gateway, containers get addresses from the
/// range past the gateway (or a given one outside it) and their default
/// route via that gateway, and talk to each other and to the host.
fn opt6_gateway_and_range(bed: &Bed) {
    let net = bed.net_info("opt6");
    let entry = &net["IPAM"]["Config"][1];
    assert_eq!(
        (&entry["Subnet"], &entry["Gateway"], &entry["IPRange"]),
        (
            &Value::from("fd00:96:4::/64"),
            &Value::from("fd00:96:4::100"),
            &Value::from("fd00:96:4::100/120")
        ),
        "{net}"
    );
    let bridge = net["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let on_bridge = ip_ns(bed.host_ns(), &["-6", "-o", "addr", "show", "dev", &bridge])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(on_bridge.contains("fd00:96:4::100/64"), "{on_bridge}");
    let r1 = bed.container("r1", &["--network", "opt6"]);
    let r2 = bed.container("r2", &["--network", "opt6"]);
    let r3 = bed.container("r3", &["--network", "opt6", "--ip6", "fd00:96:4::20"]);
    for (c, want) in [
        (&r1, "fd00:96:4::101"),
        (&r2, "fd00:96:4::102"),
        (&r3, "fd00:96:4::20"),
    ] {
        assert_eq!(bed.ip6(c, "opt6"), want.parse::<Ipv6Addr>().unwrap());
        let (route, addrs) = kernel_v6(&c.ns);
        assert!(
            route.contains("via fd00:96:4::100 dev eth0"),
            "{}: {route}",
            c.name
        );
        assert!(addrs.contains(&format!("{want}/64")), "{}: {addrs}", c.name);
    }
    let (e1, e2, e3) = (
        bed.ep6(&r1, "opt6"),
        bed.ep6(&r2, "opt6"),
        bed.ep6(&r3, "opt6"),
    );
    let gw =
        netd_tests::traffic::Ep::v6("host/v6", bed.host_ns(), "fd00:96:4::100".parse().unwrap());
    bed.expect(&[
        allow(&e1, &e2),
        allow(&e2, &e1),
        allow(&e3, &e1),
        bed.to_host(&e2, &gw),
    ]);
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
    // A given IPv6 gateway and ip-range: the gateway is the range's first
    // address, so containers start at the second.
    bed.network(
        "opt6",
        &[
            "--subnet",
            "10.96.4.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:4::/64",
            "--gateway",
            "fd00:96:4::100",
            "--ip-range",
            "fd00:96:4::100/120",
        ],
    );
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

    let x = bed.container("x", &["--network", "ds", "--alias", "pair"]);
    let y = bed.container(
        "y",
        &[
            "--network",
            "ds",
            "--ip6",
            "fd00:96:1::99",
            "--alias",
            "pair",
            "--alias",
            "yv6",
        ],
    );
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
    opt6_gateway_and_range(&bed);

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
    // Aliases answer AAAA too (a shared one with every address), and TCP
    // answers as UDP does.
    assert_eq!(dig(&x, "yv6", "AAAA"), ["fd00:96:1::99"]);
    let mut pair = dig(&z, "pair", "AAAA");
    assert_eq!(pair, ["NXDOMAIN"], "an alias on another network");
    pair = dig(&x, "pair", "AAAA");
    pair.sort();
    assert_eq!(pair, ["fd00:96:1::2", "fd00:96:1::99"]);
    assert_eq!(dig_tcp(&y, "x", "AAAA"), ["fd00:96:1::2"]);
    assert_eq!(dig_tcp(&x, "yv6", "AAAA"), ["fd00:96:1::99"]);
    assert_eq!(dig_tcp(&x, &arpa(bed.ip6(&y, "ds")), "PTR"), ["y."]);
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
    // The next picked subnet is another /64 of the same stored ULA /48,
    // skipping the next one, routed on the host (without any
    // --default-pool-v6).
    let nth64 = |n: u16| {
        let mut seg = auto6.0.segments();
        seg[3] += n;
        Ipv6Addr::from(seg)
    };
    ip_ns(
        bed.host_ns(),
        &[
            "-6",
            "route",
            "add",
            "unreachable",
            &format!("{}/64", nth64(1)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    bed.network("auto2", &["--subnet", "10.96.3.0/24", "--ipv6"]);
    let auto2 = net6(&ipam(&bed.net_info("auto2"))[1].0);
    assert_eq!(
        auto2,
        (nth64(2), 64),
        "after {auto6:?}, {}/64 is routed on the host",
        nth64(1)
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
/// What it answers for every AAAA question.
const UPSTREAM_ANSWER6: &str = "2001:db8:66::66";

/// A DNS server on `[addr]:53` (UDP) in a new netns linked to the bed's
/// host netns (host side `host_addr`), answering every A question with
/// [`UPSTREAM_ANSWER`] and every AAAA one with [`UPSTREAM_ANSWER6`]; its
/// log has the (lower-case, dotless) names asked. Stops when the flag is
/// set.
struct Upstream6 {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Upstream6 {
    fn start(bed: &Bed, host_addr: &str, addr: Ipv6Addr) -> Upstream6 {
        use hickory_proto::op::{Message, MessageType, OpCode};
        use hickory_proto::rr::{rdata::A, rdata::AAAA, RData, Record, RecordType};
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
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, log) = (stop.clone(), asked.clone());
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
                let name = q.name().to_ascii().trim_end_matches('.').to_lowercase();
                log.lock().unwrap().push(name);
                let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                resp.add_query(q.clone());
                let data = match q.query_type() {
                    RecordType::A => Some(RData::A(A(UPSTREAM_ANSWER.parse()?))),
                    RecordType::AAAA => Some(RData::AAAA(AAAA(UPSTREAM_ANSWER6.parse()?))),
                    _ => None,
                };
                if let Some(data) = data {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                }
                sock.send_to(&resp.to_vec()?, peer)?;
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the IPv6 upstream did not start");
        Upstream6 {
            stop,
            asked,
            server: Some(server),
        }
    }

    fn was_asked(&self, name: &str) -> bool {
        self.asked.lock().unwrap().iter().any(|n| n == name)
    }

    /// Stops the server; its error, if it failed.
    fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.server.take() {
            Some(h) => netd_tests::netns::join(h),
            None => Ok(()),
        }
    }
}

impl Drop for Upstream6 {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Names netd does not know go to an IPv6 upstream (`--dns-upstream
/// [V6]:53`), from the host netns: A and AAAA questions. A container's
/// AAAA and PTR records (and its alias's) go at once with it: after a
/// disconnect it is hidden (NXDOMAIN, not forwarded: it is still on
/// another network), after `container rm` its name is forwarded (the
/// upstream answers it) and its address's PTR is NXDOMAIN.
#[test]
fn forwards_to_an_ipv6_upstream_and_names_go_at_once() {
    let upstream: Ipv6Addr = "fd00:253::2".parse().unwrap();
    let bed = Bed::with_daemon_args(&["--dns-upstream", "[fd00:253::2]:53"]);
    let up = Upstream6::start(&bed, "fd00:253::1/64", upstream);
    bed.network("n", &["--subnet", "10.96.5.0/24", "--ipv6"]);
    bed.network("m", &["--subnet", "10.96.6.0/24", "--ipv6"]);
    let c = bed.container("c", &["--network", "n"]);
    let g = bed.container("g", &["--network", "n", "--alias", "gee"]);
    let h = bed.container("h", &["--network", "n", "--alias", "aitch"]);
    let (g6, h6) = (bed.ip6(&g, "n"), bed.ip6(&h, "n"));
    assert_eq!(
        dig(&c, "far.example", "A"),
        [UPSTREAM_ANSWER],
        "A via {upstream}"
    );
    assert_eq!(
        dig(&c, "far.example", "AAAA"),
        [UPSTREAM_ANSWER6],
        "AAAA via {upstream}"
    );
    for (name, ip) in [("g", g6), ("gee", g6), ("h", h6), ("aitch", h6)] {
        assert_eq!(dig(&c, name, "AAAA"), [ip.to_string()], "{name}");
    }
    assert_eq!(dig(&c, &arpa(g6), "PTR"), ["g."]);
    assert_eq!(dig(&c, &arpa(h6), "PTR"), ["h."]);

    bed.ok(&["network", "connect", "m", "h"]);
    bed.ok(&["network", "disconnect", "n", "h"]);
    assert_eq!(dig(&c, "h", "AAAA"), ["NXDOMAIN"], "h is on m only");
    assert_eq!(dig(&c, &arpa(h6), "PTR"), ["NXDOMAIN"], "h's old address");
    bed.ok(&["container", "rm", "g"]);
    assert_eq!(
        dig(&c, &arpa(g6), "PTR"),
        ["NXDOMAIN"],
        "g's address after rm"
    );
    for name in ["g", "gee", "aitch"] {
        assert!(
            !up.was_asked(name),
            "{name} was answered by netd, yet forwarded"
        );
        assert_eq!(
            dig(&c, name, "AAAA"),
            [UPSTREAM_ANSWER6],
            "{name} is unknown now: forwarded"
        );
        assert!(up.was_asked(name), "{name} should have been forwarded");
    }
    assert!(!up.was_asked("h"), "h is hidden, never forwarded");
    up.finish()
        .unwrap_or_else(|e| panic!("IPv6 upstream: {e:#}"));
}
