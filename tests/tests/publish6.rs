//! Published ports over IPv6 (issue 13) with real packets.
//!
//! The bed's uplink carries IPv6 too: `up0` has 2001:db8:96::2/64 (H6), the
//! world `w0` 2001:db8:96::1/64 (W6), the host's IPv6 default route via the
//! world. The world has no route to the containers' subnets: what reaches a
//! container is translated by netd. Containers run a dual-stack
//! [`PortServer`] on `[::]` (an IPv4 client shows as `::ffff:a.b.c.d`).
//! Host-process clients run as children in the bed's cgroup (the agent's
//! `--cgroup`) and host netns: this binary re-executed as
//! [`host_client6_helper`]. Containers reach published ports through the
//! host's IPv6 addresses (hairpin). Fragmented datagrams to published
//! IPv6 ports: `fragments.rs`, next to their IPv4 rows.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use netd_tests::cmd::ip_ns;
use netd_tests::host_client::HostClient;
use netd_tests::netns::path_of;
use netd_tests::ports::*;
use netd_tests::world::{UPLINK, WORLD};
use netd_tests::Bed;
use serde_json::Value;

const H6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 2);
const W6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 1);
/// A second IPv6 address of the uplink, added while the agent runs.
const H6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 4);

fn s6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn s4(port: u16) -> SocketAddr {
    SocketAddr::new(UPLINK.into(), port)
}

/// How an IPv4 client shows to a server on `[::]`.
fn mapped(ip: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V6(ip.to_ipv6_mapped())
}

/// A bed whose uplink has IPv4 and IPv6, its agent running.
fn bed6() -> (Bed, String) {
    let bed = Bed::without_agent(&[]);
    let world = bed.make_world();
    let host = bed.host_ns().to_string();
    let steps: [(&str, &[&str]); 3] = [
        (
            &world,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:96::1/64",
                "dev",
                "w0",
                "nodad",
            ],
        ),
        (
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
        ),
        (
            &host,
            &["-6", "route", "add", "default", "via", "2001:db8:96::1"],
        ),
    ];
    for (ns, args) in steps {
        ip_ns(ns, args).unwrap_or_else(|e| panic!("building the IPv6 uplink: {e:#}"));
    }
    bed.start_agent();
    bed.wait_uplink(UPLINK, netd_tests::world::UPLINK_LIMIT);
    (bed, world)
}

// ------------------------------------------------------- host-process client

const CLIENT: HostClient = HostClient {
    test: "host_client6_helper",
    env: "NETD_PUBLISH6_TEST_CLIENT",
};

/// Not a test: the host-process client of [`CLIENT`] when this binary is
/// re-executed for it; without its variable it does nothing.
#[test]
fn host_client6_helper() {
    CLIENT.helper::<SocketAddr>();
}

/// IPv4 from the world to host port `port` reaches nothing: TCP is
/// refused by the host (nothing listens there; unless its INPUT chain
/// drops the SYN first, on a hostile host), UDP unanswered, and container
/// port `cport` of `srv` gets no hit.
fn ipv4_reaches_nothing(
    bed: &Bed,
    world: &str,
    errs: &mut Errs,
    srv: &PortServer<SocketAddr>,
    port: u16,
    cport: u16,
) {
    let hits = || srv.hits().iter().filter(|h| h.port == cport).count();
    let before = hits();
    let want = if bed.firewall().drops_input() {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::ConnectionRefused
    };
    match unanswered_from(world, P::Tcp, s4(port)) {
        Ok(kind) => errs.check(kind == want, || {
            format!("TCP world -> {}: {kind:?}, expected {want:?}", s4(port))
        }),
        Err(e) => errs.0.push(format!("TCP world -> {}: {e:#}", s4(port))),
    }
    errs.ok(
        &format!("UDP world -> {}", s4(port)),
        unanswered_from(world, P::Udp, s4(port)),
    );
    let after = hits();
    errs.check(after == before, || {
        format!(
            "container port {cport} got {} hits over IPv4",
            after - before
        )
    });
}

/// Binds `port` in the host netns on `[::]` (TCP or UDP, both families:
/// not IPv6-only) and releases it again: whether a host process could take
/// it on either family now.
fn host_can_bind(bed: &Bed, p: P, port: u16) -> anyhow::Result<()> {
    in_ns(bed.host_ns(), move || {
        match p {
            P::Tcp => drop(TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))?),
            P::Udp => drop(std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))?),
        }
        Ok(())
    })
}

/// On network p6 of [`ipv6_published_ports`]: `-p [::]:9000-9004:7000-7004`
/// (TCP, UDP) maps one to one over IPv6, each host port answered by its
/// own container port, the neighbours 8999 and 9005 by nothing (though
/// 6999 and 7005 listen), and not over IPv4. `-p 90` (no host port) gets
/// one port netd picks, the same on both families as Docker does, that the
/// world reaches over each, held on the host.
fn ipv6_ranges_and_chosen_ports(bed: &Bed, world: &str) {
    let r = bed.container(
        "r",
        &[
            "--network",
            "p6",
            "-p",
            "[::]:9000-9004:7000-7004",
            "-p",
            "[::]:9000-9004:7000-7004/udp",
            "-p",
            "90",
            "-p",
            "90/udp",
        ],
    );
    let mut cports: Vec<u16> = (6999..=7005).collect();
    cports.push(90);
    let srv = PortServer::start_dual(&r.ns, &cports, &cports);
    let lines = bed.port_lines("r");
    assert_eq!(lines.len(), 14, "netd port r: {lines:?}");
    assert_eq!(
        bed.ok(&["port", "r", "7003"]),
        "7003/tcp -> [::]:9003",
        "netd port r 7003"
    );
    let mut errs = Errs::default();
    range_one_to_one(
        &mut errs,
        world,
        ("r", &r.ns),
        &srv,
        (|p| s6(H6, p), |p| s6(Ipv6Addr::LOCALHOST, p)),
        &[W6.into()],
    );
    ipv4_reaches_nothing(bed, world, &mut errs, &srv, 9002, 7002);
    errs.done("IPv6 published range");

    let mut errs = Errs::default();
    for (spec, p) in [("90", P::Tcp), ("90/udp", P::Udp)] {
        let shown = bed.ok(&["port", "r", spec]);
        let ports: Vec<(String, u16)> = shown
            .lines()
            .filter_map(|l| {
                let (host, port) = l.split(" -> ").nth(1)?.rsplit_once(':')?;
                Some((host.to_string(), port.parse().ok()?))
            })
            .collect();
        let hosts: Vec<&str> = ports.iter().map(|(h, _)| h.as_str()).collect();
        if hosts != ["0.0.0.0", "[::]"] || ports[0].1 != ports[1].1 {
            errs.0.push(format!(
                "netd port r {spec}: one chosen port on both families, got {shown:?}"
            ));
            continue;
        }
        let port = ports[0].1;
        errs.check(port != 0 && port != 90, || {
            format!("netd port r {spec}: chose {port}")
        });
        errs.answer(
            &format!("{p:?} world -> [{H6}]:{port} (chosen)"),
            ask_from(world, p, s6(H6, port)),
            90,
            s6(H6, port),
            &[W6.into()],
        );
        errs.answer(
            &format!("{p:?} world -> {UPLINK}:{port} (chosen)"),
            ask_from(world, p, s4(port)),
            90,
            s4(port),
            &[mapped(WORLD)],
        );
        errs.check(host_can_bind(bed, p, port).is_err(), || {
            format!("a host process could bind the chosen {p:?} port {port}")
        });
    }
    errs.done("IPv6 chosen host ports");
}

/// With a's ports of [`ipv6_published_ports`] published (8080 both
/// families, `[::]:8081`, `[H6]:8082`, TCP and UDP) and host processes on
/// `[::]:8090` (TCP) and `[::]:8091` (UDP): IPv6 conflicts are refused with
/// one error line and nothing changes (the same port on `[::]`, an address
/// under a `[::]` wildcard, a wildcard over an address, both families
/// against an IPv6-only one, twice in one request, a port a host process
/// holds), and a refused request keeps none of its ports. The same port on
/// the other family, or on another IPv6 address, is fine.
fn ipv6_conflicts_refused(bed: &Bed, world: &str) {
    let held_tcp = in_ns(bed.host_ns(), || {
        Ok(TcpListener::bind((Ipv6Addr::UNSPECIFIED, 8090))?)
    })
    .unwrap();
    let held_udp = in_ns(bed.host_ns(), || {
        Ok(std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 8091))?)
    })
    .unwrap();
    let before = bed.snapshot(&["p6"], &["a", "r"]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["-p", "[::]:8080:80"],
            &["[::]:8080", "already published", "a"],
        ),
        (
            &["-p", "[2001:db8:96::2]:8081:80/udp"],
            &["[::]:8081/udp", "already published"],
        ),
        (&["-p", "8081:80"], &["[::]:8081", "already published"]),
        (
            &["-p", "[::]:8082:80"],
            &["[2001:db8:96::2]:8082", "already published"],
        ),
        (
            &["-p", "[::]:8085:80", "-p", "[::1]:8085:81"],
            &["8085", "already published", "this request"],
        ),
        (&["-p", "[::]:8090:80"], &["[::]:8090", "in use"]),
        (&["-p", "8090:80"], &["8090", "in use"]),
        (&["-p", "[::]:8091:80/udp"], &["[::]:8091", "in use"]),
        (
            &["-p", "[::]:8095:80", "-p", "[::]:8080:80"],
            &["8080", "already published"],
        ),
        (
            &["-p", "8096:80", "-p", "[::]:8090:80"],
            &["8090", "in use"],
        ),
    ];
    let mut errs = Errs::default();
    for (i, (specs, words)) in cases.iter().enumerate() {
        let name = format!("k{i}");
        let ns = bed.new_netns(&name);
        let path = path_of(&ns).display().to_string();
        let mut args = vec!["container", "add", &name, "--netns", &path];
        args.extend(["--network", "p6"]);
        args.extend_from_slice(specs);
        match bed.refusal(&args) {
            Ok(line) => {
                let missing: Vec<_> = words.iter().filter(|w| !line.contains(*w)).collect();
                errs.check(missing.is_empty(), || {
                    format!("{specs:?}: error {line:?} should mention {missing:?}")
                });
            }
            Err(e) => errs.0.push(format!("{specs:?}: {e}")),
        }
        if let Err(e) =
            bed.check_unchanged(&before, &["p6"], &["a", "r"], &format!("refused {specs:?}"))
        {
            errs.0.push(e);
        }
    }
    // The refused requests hold no port, on either family.
    for port in [8085, 8095, 8096] {
        errs.ok(
            &format!("TCP host bind [::]:{port} after the refusals"),
            host_can_bind(bed, P::Tcp, port),
        );
        errs.ok(
            &format!("TCP world -> [{H6}]:{port} after the refusals"),
            unanswered_from(world, P::Tcp, s6(H6, port)),
        );
    }
    drop((held_tcp, held_udp));
    errs.done("IPv6 conflicts");

    // IPv4 alone on a's IPv6-only port, another address on a's [H6] one.
    let b = bed.container(
        "b",
        &[
            "--network",
            "p6",
            "-p",
            "0.0.0.0:8081:83",
            "-p",
            "[2001:db8:96::4]:8082:83",
        ],
    );
    let bsrv = PortServer::start_dual(&b.ns, &[83], &[]);
    let mut errs = Errs::default();
    errs.answer(
        "TCP world -> 8081 over IPv4 (b)",
        ask_from(world, P::Tcp, s4(8081)),
        83,
        s4(8081),
        &[mapped(WORLD)],
    );
    errs.answer(
        "TCP world -> [2001:db8:96::4]:8082 (b)",
        ask_from(world, P::Tcp, s6(H6_2, 8082)),
        83,
        s6(H6_2, 8082),
        &[W6.into()],
    );
    for (port, cport) in [(8081, 81), (8082, 82)] {
        errs.answer(
            &format!("TCP world -> [{H6}]:{port} (still a)"),
            ask_from(world, P::Tcp, s6(H6, port)),
            cport,
            s6(H6, port),
            &[W6.into()],
        );
    }
    errs.done("the same ports on another family or address");
    bed.ok(&["container", "rm", "b"]);
    drop(bsrv);
}

// ---------------------------------------------------------------- tests

/// A dual-stack container publishes `-p 8080:80` on both families,
/// `[::]:8081:81` on IPv6 only and `[H6]:8082:82` on that address only.
/// The world reaches them over IPv6 (TCP and UDP) and the container sees
/// the world's own IPv6 address and port; the answers come from the
/// published address. `[::]` is not reachable over IPv4 (refused by the
/// host, never reaching the container); `[H6]` not on another host
/// address. Host processes reach `[::1]:8081` and see it as the peer
/// (getpeername6, recvmsg6). The ports survive an agent restart and go
/// with the container.
#[test]
fn ipv6_published_ports() {
    let (bed, world) = bed6();
    bed.network(
        "p6",
        &[
            "--subnet",
            "10.96.1.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:1::/64",
        ],
    );
    let a = bed.container(
        "a",
        &[
            "--network",
            "p6",
            "-p",
            "8080:80",
            "-p",
            "8080:80/udp",
            "-p",
            "[::]:8081:81",
            "-p",
            "[::]:8081:81/udp",
            "-p",
            "[2001:db8:96::2]:8082:82",
            "-p",
            "[2001:db8:96::2]:8082:82/udp",
        ],
    );
    let srv = PortServer::start_dual(&a.ns, &[80, 81, 82], &[80, 81, 82]);
    assert_eq!(
        bed.port_lines("a"),
        vec![
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
            "80/udp -> 0.0.0.0:8080",
            "80/udp -> [::]:8080",
            "81/tcp -> [::]:8081",
            "81/udp -> [::]:8081",
            "82/tcp -> [2001:db8:96::2]:8082",
            "82/udp -> [2001:db8:96::2]:8082",
        ],
        "netd port a"
    );
    let ports = bed.ctr_info("a")["Ports"].clone();
    let ports: Vec<Value> = ports.as_array().cloned().unwrap_or_default();
    assert!(
        ports.contains(&serde_json::json!(
            {"HostIp": "::", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"}
        )),
        "container inspect a: Ports {ports:?}"
    );

    let world_sees = |errs: &mut Errs, what: &str| {
        for p in [P::Tcp, P::Udp] {
            for (port, cport) in [(8080, 80), (8081, 81)] {
                let dst = s6(H6, port);
                let w = format!("{what}: {p:?} world -> {dst}");
                if let Some(a) = errs.answer(&w, ask_from(&world, p, dst), cport, dst, &[W6.into()])
                {
                    errs.check(a.seen.port() == a.local.port(), || {
                        format!(
                            "{w}: the container saw port {}, the client used {}",
                            a.seen.port(),
                            a.local.port()
                        )
                    });
                }
            }
        }
    };
    let mut errs = Errs::default();
    world_sees(&mut errs, "IPv6");
    let dst = s6(H6, 8082);
    for p in [P::Tcp, P::Udp] {
        errs.answer(
            &format!("{p:?} world -> {dst}"),
            ask_from(&world, p, dst),
            82,
            dst,
            &[W6.into()],
        );
    }
    // -p 8080:80 is IPv4 too.
    for p in [P::Tcp, P::Udp] {
        errs.answer(
            &format!("{p:?} world -> {}", s4(8080)),
            ask_from(&world, p, s4(8080)),
            80,
            s4(8080),
            &[mapped(WORLD)],
        );
    }
    // [::] is IPv6 only: nothing reaches container port 81 over IPv4;
    // nor [H6] port 82.
    ipv4_reaches_nothing(&bed, &world, &mut errs, &srv, 8081, 81);
    ipv4_reaches_nothing(&bed, &world, &mut errs, &srv, 8082, 82);

    // [H6]:8082 only there; the wildcard ones on a new address as well.
    ip_ns(
        bed.host_ns(),
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:96::4/64",
            "dev",
            "up0",
            "nodad",
        ],
    )
    .unwrap();
    let start = Instant::now();
    while ask_from(&world, P::Tcp, s6(H6_2, 8080)).is_err()
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    errs.answer(
        "TCP world -> [2001:db8:96::4]:8080 (a new host address)",
        ask_from(&world, P::Tcp, s6(H6_2, 8080)),
        80,
        s6(H6_2, 8080),
        &[W6.into()],
    );
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} world -> [2001:db8:96::4]:8082 (published on another address)"),
            unanswered_from(&world, p, s6(H6_2, 8082)),
        );
    }
    // Nor for host processes on [::1].
    errs.ok(
        "TCP host process -> [::1]:8082 (published on another address)",
        CLIENT.unanswered(
            Some(bed.cgroup()),
            bed.host_ns(),
            P::Tcp,
            s6(Ipv6Addr::LOCALHOST, 8082),
        ),
    );

    // Host processes: [::1] and the host's own IPv6 address; the peer
    // they see is the address they dialled.
    let gw6: IpAddr = bed.gateway6("p6").into();
    for (p, dst) in [
        (P::Tcp, s6(Ipv6Addr::LOCALHOST, 8081)),
        (P::Udp, s6(Ipv6Addr::LOCALHOST, 8081)),
        (P::Tcp, s6(H6, 8080)),
    ] {
        let what = format!("{p:?} host process -> {dst}");
        let r = CLIENT.ask(Some(bed.cgroup()), bed.host_ns(), p, dst);
        let cport = if dst.port() == 8081 { 81 } else { 80 };
        errs.answer(&what, r, cport, dst, &[gw6]);
    }
    // An IPv6 socket's IPv4 peers (`[::ffff:a.b.c.d]`) reach the IPv4
    // ports (8080; not the IPv6-only 8081) and see the address dialled.
    let gw4 = mapped(bed.gateway("p6"));
    let loopback = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    for (p, dst) in [
        (P::Tcp, s6(loopback, 8080)),
        (P::Udp, s6(loopback, 8080)),
        (P::Tcp, s6(UPLINK.to_ipv6_mapped(), 8080)),
    ] {
        let what = format!("{p:?} host process, IPv6 socket -> {dst}");
        let r = CLIENT.ask(Some(bed.cgroup()), bed.host_ns(), p, dst);
        errs.answer(&what, r, 80, dst, &[gw4]);
    }
    errs.done("IPv6 published ports");
    ipv6_ranges_and_chosen_ports(&bed, &world);
    ipv6_conflicts_refused(&bed, &world);

    // An agent restart keeps them.
    bed.stop_agent();
    bed.start_agent();
    let mut errs = Errs::default();
    world_sees(&mut errs, "after a restart");
    errs.done("IPv6 published ports after an agent restart");

    // Removing the container removes them and frees the host ports.
    bed.ok(&["container", "rm", "a"]);
    drop(srv);
    let mut errs = Errs::default();
    for port in [8080, 8081] {
        errs.ok(
            &format!("TCP world -> [{H6}]:{port} after rm"),
            unanswered_from(&world, P::Tcp, s6(H6, port)),
        );
    }
    let free = in_ns(bed.host_ns(), || {
        drop(TcpListener::bind((Ipv6Addr::UNSPECIFIED, 8081))?);
        Ok(())
    });
    errs.ok("a host process binds [::]:8081 after rm", free);
    errs.done("IPv6 published ports after container rm");
}

/// A container without IPv6 is refused an IPv6 host address with what to
/// do, and nothing of it stays; `-p 8080:80` publishes on IPv4 only.
#[test]
fn ipv6_host_address_refused_without_ipv6() {
    let bed = Bed::new();
    bed.network("p4", &["--subnet", "10.96.2.0/24"]);
    let ns = bed.new_netns("x");
    let path = path_of(&ns).display().to_string();
    let err = bed.fail(&[
        "container",
        "add",
        "x",
        "--netns",
        &path,
        "--network",
        "p4",
        "-p",
        "[::1]:8080:80",
    ]);
    assert!(
        err.contains("the container has no IPv6 address")
            && err.contains("network p4 is IPv4 only")
            && err.contains("--ipv6"),
        "refusal: {err}"
    );
    let ls = bed.ok(&["container", "ls"]);
    assert!(!ls.contains(" x"), "container ls after the refusal: {ls}");
    bed.container("y", &["--network", "p4", "-p", "8080:80"]);
    assert_eq!(bed.port_lines("y"), vec!["80/tcp -> 0.0.0.0:8080"]);
}

/// Docker's semantics (userland proxy off) over IPv6: a container on
/// another network reaches `-p 8080:80` (TCP, UDP) through the host's
/// uplink address, its own gateway and the publishing network's gateway,
/// and the target sees the client container's own address; the publishing
/// container reaches its own port through the uplink address and its
/// gateway and is seen as its gateway; the answers come from the address
/// dialled. The client still cannot reach the target directly, and an
/// internal network's container is refused the published port
/// (`internal-network`) without reaching the target. Publishing a port
/// of a container on the dual-stack internal network is refused (both
/// families and `[::]`), nothing changes and the ports stay free.
#[test]
fn ipv6_containers_reach_a_published_port_through_host_addresses() {
    let (bed, _world) = bed6();
    let dual = |v4: &'static str, v6: &'static str| ["--subnet", v4, "--ipv6", "--subnet", v6];
    bed.network("ha", &dual("10.96.3.0/24", "fd00:96:3::/64"));
    bed.network("hb", &dual("10.96.4.0/24", "fd00:96:4::/64"));
    bed.network(
        "hi",
        &[
            &dual("10.96.5.0/24", "fd00:96:5::/64")[..],
            &["--internal"][..],
        ]
        .concat(),
    );
    let c1 = bed.container(
        "c1",
        &["--network", "ha", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let c2 = bed.container("c2", &["--network", "hb"]);
    let ci = bed.container("ci", &["--network", "hi"]);
    let (c1_ip, c2_ip) = (bed.ip6(&c1, "ha"), bed.ip6(&c2, "hb"));
    let (gw_a, gw_b) = (bed.gateway6("ha"), bed.gateway6("hb"));
    let srv = PortServer::start_dual(&c1.ns, &[80], &[80]);

    let mut errs = Errs::default();
    for host in [H6, gw_b, gw_a] {
        for p in [P::Tcp, P::Udp] {
            let dst = s6(host, 8080);
            errs.answer(
                &format!("{p:?} c2 -> {dst}"),
                ask_from(&c2.ns, p, dst),
                80,
                dst,
                &[c2_ip.into()],
            );
        }
    }
    for host in [H6, gw_a] {
        for p in [P::Tcp, P::Udp] {
            let dst = s6(host, 8080);
            // Twice: the second takes the tracked flow's path.
            for i in 0..2 {
                errs.answer(
                    &format!("{p:?} c1 -> {dst} (hairpin) #{}", i + 1),
                    ask_from(&c1.ns, p, dst),
                    80,
                    dst,
                    &[gw_a.into()],
                );
            }
        }
    }
    errs.done("IPv6 containers -> published port through host addresses");

    let before = (
        srv.count(),
        bed.drop_count("network-isolation"),
        bed.drop_count("internal-network"),
    );
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} c2 -> [{c1_ip}]:80 directly"),
            unanswered_from(&c2.ns, p, s6(c1_ip, 80)),
        );
        for host in [H6, gw_a] {
            errs.ok(
                &format!("{p:?} internal ci -> [{host}]:8080"),
                unanswered_from(&ci.ns, p, s6(host, 8080)),
            );
        }
    }
    let after = (
        srv.count(),
        bed.drop_count("network-isolation"),
        bed.drop_count("internal-network"),
    );
    errs.check(after.0 == before.0, || {
        format!("the target got hits: {:?}", &srv.hits()[before.0..])
    });
    errs.check(after.1 > before.1, || {
        format!(
            "drops[\"network-isolation\"] did not grow: {} -> {}",
            before.1, after.1
        )
    });
    errs.check(after.2 > before.2, || {
        format!(
            "drops[\"internal-network\"] did not grow: {} -> {}",
            before.2, after.2
        )
    });
    errs.done("IPv6 direct and internal flows to the target");

    let before = bed.snapshot(&["hi"], &["ci"]);
    for spec in ["9090:80", "[::]:9091:80", "[fd00:96:5::1]:9092:80/udp"] {
        let ns = bed.new_netns("i2");
        let path = path_of(&ns).display().to_string();
        let line = bed.fail(&[
            "container",
            "add",
            "i2",
            "--netns",
            &path,
            "--network",
            "hi",
            "-p",
            spec,
        ]);
        assert!(
            line.contains("internal network hi"),
            "-p {spec} on an internal network: the error should say why: {line:?}"
        );
        bed.drop_netns(&ns);
        bed.assert_unchanged(&before, &["hi"], &["ci"], &format!("refused -p {spec}"));
    }
    for (p, port) in [(P::Tcp, 9090), (P::Tcp, 9091), (P::Udp, 9092)] {
        host_can_bind(&bed, p, port)
            .unwrap_or_else(|e| panic!("{p:?} port {port} after the refusals: {e:#}"));
    }
}

/// A container whose first network is IPv6-only (`--ipv6 --ipv4=false`)
/// publishes as Docker 28: `-p 8080:80` on `[::]` alone (`netd port` and
/// inspect show only that). The world reaches `[H6]:8080` (TCP, UDP) and
/// the container sees the world's own IPv6 address; IPv4 to the same host
/// port reaches nothing; host processes reach `[::1]:8080`. An IPv4 host
/// address is refused with what to do and nothing of the request stays
/// (its other ports not held). The ports survive an agent restart.
#[test]
fn ipv6_only_container_publishes_on_ipv6() {
    let (bed, world) = bed6();
    bed.network(
        "o6",
        &["--ipv6", "--ipv4=false", "--subnet", "fd00:96:7::/64"],
    );
    let o = bed.container(
        "o",
        &["--network", "o6", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let srv = PortServer::start_dual(&o.ns, &[80], &[80]);
    assert_eq!(
        bed.port_lines("o"),
        vec!["80/tcp -> [::]:8080", "80/udp -> [::]:8080"],
        "netd port o"
    );
    let ports = bed.ctr_info("o")["Ports"].clone();
    let ports: Vec<Value> = ports.as_array().cloned().unwrap_or_default();
    assert_eq!(ports.len(), 2, "container inspect o: Ports {ports:?}");
    assert!(
        ports.iter().all(|p| p["HostIp"] == "::"),
        "container inspect o: Ports {ports:?}"
    );

    let world_sees = |errs: &mut Errs, what: &str| {
        for p in [P::Tcp, P::Udp] {
            let dst = s6(H6, 8080);
            errs.answer(
                &format!("{what}: {p:?} world -> {dst}"),
                ask_from(&world, p, dst),
                80,
                dst,
                &[W6.into()],
            );
        }
    };
    let mut errs = Errs::default();
    world_sees(&mut errs, "IPv6-only");
    // IPv4 to the same port reaches nothing.
    ipv4_reaches_nothing(&bed, &world, &mut errs, &srv, 8080, 80);
    // Host processes reach [::1]:8080 and are seen as the gateway.
    let gw6: IpAddr = bed.gateway6("o6").into();
    for p in [P::Tcp, P::Udp] {
        let dst = s6(Ipv6Addr::LOCALHOST, 8080);
        let r = CLIENT.ask(Some(bed.cgroup()), bed.host_ns(), p, dst);
        errs.answer(&format!("{p:?} host process -> {dst}"), r, 80, dst, &[gw6]);
    }
    errs.done("IPv6-only published ports");

    // An IPv4 host address is refused; nothing of the request stays.
    let ns = bed.new_netns("x");
    let path = path_of(&ns).display().to_string();
    let uplink = format!("{UPLINK}:8081:81");
    for host_ip in ["0.0.0.0:8081:81", "127.0.0.1:8081:81", uplink.as_str()] {
        let mut args = vec!["container", "add", "x", "--netns", &path];
        args.extend(["--network", "o6", "-p", "7070:70", "-p", host_ip]);
        let err = bed.fail(&args);
        assert!(
            err.contains("the container has no IPv4 address")
                && err.contains("network o6 is IPv6-only")
                && err.contains("[::]:8081:81"),
            "-p {host_ip}: {err}"
        );
    }
    let ls = bed.ok(&["container", "ls"]);
    assert!(!ls.contains(" x"), "container ls after the refusals: {ls}");
    assert_eq!(bed.port_lines("o").len(), 2, "o's ports after the refusals");
    let free = in_ns(bed.host_ns(), || {
        drop(TcpListener::bind((Ipv6Addr::UNSPECIFIED, 7070))?);
        drop(TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 8081))?);
        Ok(())
    });
    free.expect("the refused requests' ports are not held");

    // An agent restart keeps them.
    bed.stop_agent();
    bed.start_agent();
    assert_eq!(
        bed.port_lines("o"),
        vec!["80/tcp -> [::]:8080", "80/udp -> [::]:8080"],
        "netd port o after a restart"
    );
    let mut errs = Errs::default();
    world_sees(&mut errs, "after a restart");
    errs.done("IPv6-only published ports after an agent restart");
}
