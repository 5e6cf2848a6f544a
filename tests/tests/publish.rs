//! Published ports (issue 4, SPEC sections 2 and 4: rows "W -> H:HOST_PORT",
//! "C or H -> H_addr:HOST_PORT", "published on a specific HOST_IP" and the
//! conflict rules) with real packets.
//!
//! Every test gets a bed whose host netns has an uplink, as in
//! `masquerade.rs`: veth `up0` (203.0.113.2/24) to a "world" netns (`w0`,
//! 203.0.113.1/24), default route via the world. Its agent attaches the
//! host-socket programs to a cgroup2 directory made for the test
//! (`--cgroup`), never to the real root; host-process clients run as child
//! processes inside that cgroup and the bed's host netns (this test binary,
//! re-executed as [`host_client_helper`]). The cgroup is removed after the
//! bed (and so the agent) is gone.
//!
//! Containers run a [`PortServer`]: TCP and UDP on the container ports, one
//! thread, answering every connection/datagram with
//! `PEER <client addr:port> PORT <local port>`.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use netd_tests::cmd::ip_ns;
use netd_tests::host_client::HostClient;
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::ports::*;
use netd_tests::traffic::blocked_both;
use netd_tests::world::{UPLINK, WORLD};
use netd_tests::Bed;
use nix::libc;
use serde_json::Value;

/// A second address on the uplink (host-IP-specific mappings).
const ADDR2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 4);
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ---------------------------------------------------------------- topology

/// A bed with an uplink to a world netns (the agent's socket programs are
/// on the bed's own cgroup).
struct PubBed {
    bed: Bed,
    world: String,
}

fn pub_bed() -> PubBed {
    let (bed, world) = Bed::with_world(&[]);
    PubBed { bed, world }
}

/// Raises this process's soft open-files limit (agents started later
/// inherit it).
fn raise_nofile(want: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

// ------------------------------------------------------- host-process client

const CLIENT: HostClient = HostClient {
    test: "host_client_helper",
    env: "NETD_PUBLISH_TEST_CLIENT",
};

/// Not a test: the host-process client of [`CLIENT`] when this binary is
/// re-executed for it; without its variable it does nothing.
#[test]
fn host_client_helper() {
    CLIENT.helper::<SocketAddrV4>();
}

impl PubBed {
    /// A client in the test's cgroup and the bed's host netns.
    fn host_ask(&self, p: P, dst: SocketAddrV4) -> anyhow::Result<Answer> {
        CLIENT.ask(Some(self.bed.cgroup()), self.bed.host_ns(), p, dst)
    }

    /// Like [`PubBed::host_ask`], must not be answered; returns how it failed.
    fn host_unanswered(&self, p: P, dst: SocketAddrV4) -> anyhow::Result<String> {
        CLIENT.unanswered(Some(self.bed.cgroup()), self.bed.host_ns(), p, dst)
    }
}

fn netd_port(bed: &Bed, args: &[&str]) -> Vec<String> {
    let mut a = vec!["port"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = bed.ok(&a).lines().map(|l| l.trim().to_string()).collect();
    v.sort();
    v
}

/// Binds `port` in the host netns (TCP or UDP, wildcard address) and
/// releases it again: whether a host process could take it now.
fn host_can_bind(bed: &Bed, p: P, port: u16) -> anyhow::Result<()> {
    in_ns(bed.host_ns(), move || {
        match p {
            P::Tcp => drop(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?),
            P::Udp => drop(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?),
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- tests

/// W -> H:8080 reaches container port 80 (TCP and UDP); the container sees
/// the world's own address and port; the answers come from H:8080. `netd
/// port` and inspect show the mappings; the world still cannot reach the
/// container's address (nor port 80) directly.
#[test]
fn world_reaches_published_port() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.1.0/24"]);
    let a = bed.container(
        "a",
        &["--network", "pa", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let a_ip = bed.ip(&a, "pa");
    let srv = PortServer::start(&a.ns, &[80], &[80]);

    assert_eq!(
        netd_port(bed, &["a"]),
        vec!["80/tcp -> 0.0.0.0:8080", "80/udp -> 0.0.0.0:8080"],
        "netd port a"
    );
    assert_eq!(
        netd_port(bed, &["a", "80/udp"]),
        vec!["80/udp -> 0.0.0.0:8080"]
    );
    let ports = bed.ctr_info("a")["Ports"].clone();
    let mut ports: Vec<Value> = ports.as_array().cloned().unwrap_or_default();
    ports.sort_by_key(|p| p.to_string());
    assert_eq!(
        Value::Array(ports.clone()),
        serde_json::json!([
            {"HostIp": "0.0.0.0", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"},
            {"HostIp": "0.0.0.0", "HostPort": 8080, "ContainerPort": 80, "Protocol": "udp"},
        ]),
        "container inspect a: Ports"
    );

    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        let what = format!("{p:?} world -> {UPLINK}:8080");
        if let Some(ans) = errs.answer(
            &what,
            ask_from(&t.world, p, sa(UPLINK, 8080)),
            80,
            sa(UPLINK, 8080),
            &[WORLD],
        ) {
            errs.check(ans.seen.port() == ans.local.port(), || {
                format!(
                    "{what}: the container saw port {}, the client used {}",
                    ans.seen.port(),
                    ans.local.port()
                )
            });
        }
    }
    // A few more TCP connections in a row (new flows each time).
    for i in 0..5 {
        errs.answer(
            &format!("TCP world -> {UPLINK}:8080 #{}", i + 2),
            ask_from(&t.world, P::Tcp, sa(UPLINK, 8080)),
            80,
            sa(UPLINK, 8080),
            &[WORLD],
        );
    }
    errs.done("world -> published port");
    let hits = srv.hits();
    assert!(
        hits.iter().all(|h| *h.peer.ip() == WORLD) && hits.len() >= 7,
        "server hits {hits:?}"
    );

    // Direct access to the container (even to its published port 80) stays
    // closed, with a route to its subnet in the world.
    ip_ns(
        &t.world,
        &["route", "add", "10.92.1.0/24", "via", "203.0.113.2"],
    )
    .unwrap();
    let before = (srv.count(), bed.drop_count("not-a-reply"));
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} world -> {a_ip}:80 directly"),
            unanswered_from(&t.world, p, sa(a_ip, 80)),
        );
    }
    let after = (srv.count(), bed.drop_count("not-a-reply"));
    errs.check(after.0 == before.0, || {
        format!("the server got {} direct hits", after.0 - before.0)
    });
    errs.check(after.1 > before.1, || {
        format!(
            "drops[\"not-a-reply\"] did not grow: {} -> {}",
            before.1, after.1
        )
    });
    errs.done("world -> container directly");
}

/// A range maps one to one: 9000-9004 -> 7000-7004, TCP and UDP, each host
/// port answered by its own container port. The container listens on the
/// neighbours 6999 and 7005 too, so a range widened by one at either end
/// (8999 -> 6999, 9005 -> 7005) would be answered.
#[test]
fn port_range_all_answer() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.2.0/24"]);
    let a = bed.container(
        "a",
        &[
            "--network",
            "pa",
            "-p",
            "9000-9004:7000-7004",
            "-p",
            "9000-9004:7000-7004/udp",
        ],
    );
    let cports: Vec<u16> = (6999..=7005).collect();
    let srv = PortServer::start(&a.ns, &cports, &cports);
    let lines = netd_port(bed, &["a"]);
    assert_eq!(lines.len(), 10, "netd port a: {lines:?}");
    assert_eq!(
        netd_port(bed, &["a", "7003"]),
        vec!["7003/tcp -> 0.0.0.0:9003"]
    );
    let mut errs = Errs::default();
    range_one_to_one(
        &mut errs,
        &t.world,
        ("a", &a.ns),
        &srv,
        (|p| sa(UPLINK, p), |p| sa(LOCALHOST, p)),
        &[WORLD],
    );
    errs.done("published range");
}

/// A mapping published on one host address (ADDR2, a second address of the
/// uplink, added while the agent runs) answers there, from the world, other
/// containers and host processes alike, and on no other address (uplink
/// address, a gateway, 127.0.0.1).
#[test]
fn host_ip_mapping_only_on_that_address() {
    let t = pub_bed();
    let bed = &t.bed;
    ip_ns(
        bed.host_ns(),
        &["addr", "add", "203.0.113.4/24", "dev", "up0"],
    )
    .unwrap();
    bed.network("pa", &["--subnet", "10.92.3.0/24"]);
    bed.network("pb", &["--subnet", "10.92.4.0/24"]);
    let a = bed.container(
        "a",
        &[
            "--network",
            "pa",
            "-p",
            "203.0.113.4:8082:80",
            "-p",
            "203.0.113.4:8082:80/udp",
        ],
    );
    let b = bed.container("b", &["--network", "pb"]);
    let (b_ip, gw_b) = (bed.ip(&b, "pb"), bed.gateway("pb"));
    let srv = PortServer::start(&a.ns, &[80], &[80]);
    assert_eq!(
        netd_port(bed, &["a"]),
        vec!["80/tcp -> 203.0.113.4:8082", "80/udp -> 203.0.113.4:8082"]
    );
    let on2 = sa(ADDR2, 8082);

    // The new address reaches the agent through rtnetlink: allow it a few
    // seconds before the first answer.
    let start = Instant::now();
    while ask_from(&t.world, P::Tcp, on2).is_err() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        errs.answer(
            &format!("{p:?} world -> {on2}"),
            ask_from(&t.world, p, on2),
            80,
            on2,
            &[WORLD],
        );
        errs.answer(
            &format!("{p:?} b -> {on2}"),
            ask_from(&b.ns, p, on2),
            80,
            on2,
            &[b_ip],
        );
        let (what, r, seen) = (
            format!("{p:?} host process -> {on2}"),
            t.host_ask(p, on2),
            [bed.gateway("pa"), ADDR2, UPLINK],
        );
        errs.answer(&what, r, 80, on2, &seen);
    }
    errs.done("host-IP mapping on its own address");

    let before = srv.count();
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        let other = sa(UPLINK, 8082);
        errs.ok(
            &format!("{p:?} world -> {other}"),
            unanswered_from(&t.world, p, other),
        );
        errs.ok(
            &format!("{p:?} b -> {other}"),
            unanswered_from(&b.ns, p, other),
        );
        errs.ok(
            &format!("{p:?} b -> {gw_b}:8082"),
            unanswered_from(&b.ns, p, sa(gw_b, 8082)),
        );
        errs.ok(
            &format!("{p:?} host process -> 127.0.0.1:8082"),
            t.host_unanswered(p, sa(LOCALHOST, 8082)),
        );
        errs.ok(
            &format!("{p:?} host process -> {other}"),
            t.host_unanswered(p, other),
        );
    }
    errs.check(srv.count() == before, || {
        format!(
            "the container's server was reached: {:?}",
            &srv.hits()[before..]
        )
    });
    errs.done("host-IP mapping via other addresses");
}

/// A container on another network reaches the published port via the
/// host's uplink address, its own gateway and the publishing network's
/// gateway, and is seen with its own address; it still cannot reach the
/// publishing container directly (not even its port 80).
#[test]
fn other_network_reaches_published_port_not_container() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.5.0/24"]);
    bed.network("pb", &["--subnet", "10.92.6.0/24"]);
    let a = bed.container(
        "a",
        &["--network", "pa", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let b = bed.container("b", &["--network", "pb"]);
    let (a_ip, b_ip) = (bed.ip(&a, "pa"), bed.ip(&b, "pb"));
    let (gw_a, gw_b) = (bed.gateway("pa"), bed.gateway("pb"));
    let srv = PortServer::start(&a.ns, &[80], &[80]);

    let mut errs = Errs::default();
    for host in [UPLINK, gw_b, gw_a] {
        for p in [P::Tcp, P::Udp] {
            let dst = sa(host, 8080);
            errs.answer(
                &format!("{p:?} b -> {dst}"),
                ask_from(&b.ns, p, dst),
                80,
                dst,
                &[b_ip],
            );
        }
    }
    errs.done("other network -> published port");

    let before = (srv.count(), bed.drop_count("network-isolation"));
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} b -> {a_ip}:80 directly"),
            unanswered_from(&b.ns, p, sa(a_ip, 80)),
        );
    }
    let after = (srv.count(), bed.drop_count("network-isolation"));
    errs.check(after.0 == before.0, || {
        format!("direct hits: {:?}", &srv.hits()[before.0..])
    });
    errs.check(after.1 > before.1, || {
        format!(
            "drops[\"network-isolation\"] did not grow: {} -> {}",
            before.1, after.1
        )
    });
    errs.done("other network -> container directly");
    drop(srv);
    // Every protocol, both ways, on fresh ports.
    blocked_both(&bed.ep(&b, "pb"), &bed.ep(&a, "pa"));
}

/// Hairpin: the publishing container reaches its own published port via
/// its gateway and via the uplink address; the answers come from the
/// address it dialled.
#[test]
fn hairpin_from_publishing_container() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.7.0/24"]);
    let a = bed.container(
        "a",
        &["--network", "pa", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let (a_ip, gw_a) = (bed.ip(&a, "pa"), bed.gateway("pa"));
    let _srv = PortServer::start(&a.ns, &[80], &[80]);
    let mut errs = Errs::default();
    for host in [gw_a, UPLINK] {
        for p in [P::Tcp, P::Udp] {
            let dst = sa(host, 8080);
            // SPEC: a hairpin may appear as the gateway address.
            for i in 0..2 {
                errs.answer(
                    &format!("{p:?} a -> {dst} #{}", i + 1),
                    ask_from(&a.ns, p, dst),
                    80,
                    dst,
                    &[gw_a, a_ip],
                );
            }
        }
    }
    errs.done("hairpin");
}

/// Host processes (in the agent's netns and the --cgroup) reach the
/// published port via 127.0.0.1 and the uplink address (TCP and UDP; UDP
/// answers carry the address dialled as source). A process outside the
/// cgroup, or inside it but in another netns, is not translated.
#[test]
fn host_process_reaches_published_port() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.8.0/24"]);
    let a = bed.container(
        "a",
        &["--network", "pa", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let gw_a = bed.gateway("pa");
    let srv = PortServer::start(&a.ns, &[80], &[80]);
    let seen = [gw_a, UPLINK, LOCALHOST];
    let mut errs = Errs::default();
    let mut tcp_from = Vec::new();
    for host in [LOCALHOST, UPLINK, gw_a] {
        let dst = sa(host, 8080);
        let r = t.host_ask(P::Tcp, dst);
        if let Ok(a) = &r {
            tcp_from.push((dst, a.from));
        }
        errs.answer(&format!("TCP host process -> {dst}"), r, 80, dst, &seen);
        errs.answer(
            &format!("UDP host process -> {dst}"),
            t.host_ask(P::Udp, dst),
            80,
            dst,
            &seen,
        );
    }
    errs.done("host process -> published port");
    // The TCP peer the client sees (getpeername) is the address it dialled.
    assert!(
        tcp_from.iter().all(|(dst, from)| dst == from),
        "{tcp_from:?}"
    );

    let before = srv.count();
    let mut errs = Errs::default();
    // Outside the cgroup (this test process, in the host netns): untouched;
    // the agent's reservation socket is bound, not listening: refused.
    match unanswered_from(bed.host_ns(), P::Tcp, sa(LOCALHOST, 8080)) {
        Ok(ErrorKind::ConnectionRefused) => {}
        r => errs.0.push(format!(
            "TCP 127.0.0.1:8080 from outside the cgroup: expected refused, got {r:?}"
        )),
    }
    // In the cgroup but in the world's netns: the programs ignore it.
    match CLIENT.unanswered(Some(t.bed.cgroup()), &t.world, P::Tcp, sa(LOCALHOST, 8080)) {
        Ok(k) if k == "ConnectionRefused" => {}
        r => errs.0.push(format!(
            "TCP 127.0.0.1:8080 in the cgroup from another netns: expected refused, got {r:?}"
        )),
    }
    errs.check(srv.count() == before, || {
        format!("server hits: {:?}", &srv.hits()[before..])
    });
    errs.done("clients the socket programs must leave alone");
}

/// Conflicts are refused with one clear error line and nothing changes:
/// a (host IP, port, protocol) already published (by another container,
/// twice in one request, or overlapping a wildcard), a host port a host
/// process holds (TCP listener, UDP socket), and a request whose later
/// spec fails keeps none of its earlier ports. The same port with another
/// protocol is fine.
#[test]
fn conflicts_refused_nothing_changes() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.9.0/24"]);
    let a = bed.container("a", &["--network", "pa", "-p", "8080:80"]);
    let srv = PortServer::start(&a.ns, &[80], &[80]);
    // Host processes listening in the host netns.
    let held_tcp = in_ns(bed.host_ns(), || {
        Ok(TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8090))?)
    })
    .unwrap();
    let held_udp = in_ns(bed.host_ns(), || {
        Ok(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 8091))?)
    })
    .unwrap();
    let before = bed.snapshot(&["pa"], &["a"]);

    let cases: &[(&[&str], &[&str])] = &[
        (&["-p", "8080:80"], &["8080", "already published", "a"]),
        (&["-p", "8080:81"], &["8080", "already published"]),
        (
            &["-p", "203.0.113.2:8080:80"],
            &["8080", "already published"],
        ),
        (
            &["-p", "8085:80", "-p", "8085:81"],
            &["8085", "already published"],
        ),
        (&["-p", "8090:80"], &["8090", "in use"]),
        (&["-p", "8091:80/udp"], &["8091", "in use"]),
        (
            &["-p", "8095:80", "-p", "8080:80"],
            &["8080", "already published"],
        ),
        (&["-p", "8096:80", "-p", "8090:80"], &["8090", "in use"]),
    ];
    let mut errs = Errs::default();
    for (i, (specs, words)) in cases.iter().enumerate() {
        let name = format!("c{i}");
        let ns = bed.new_netns(&name);
        let path = path_of(&ns).display().to_string();
        let mut args = vec![
            "container",
            "add",
            name.as_str(),
            "--netns",
            path.as_str(),
            "--network",
            "pa",
        ];
        args.extend_from_slice(specs);
        match bed.refusal(&args) {
            Ok(line) => {
                let low = line.to_lowercase();
                let missing: Vec<_> = words
                    .iter()
                    .filter(|w| !low.contains(&w.to_lowercase()))
                    .collect();
                errs.check(missing.is_empty(), || {
                    format!("{specs:?}: error {line:?} should mention {missing:?}")
                });
            }
            Err(e) => errs.0.push(format!("{specs:?}: {e}")),
        }
        if let Err(e) = bed.check_unchanged(&before, &["pa"], &["a"], &format!("refused {specs:?}"))
        {
            errs.0.push(e);
        }
    }
    // The refused requests hold no port: host processes can take them.
    for (p, port) in [(P::Tcp, 8085), (P::Tcp, 8095), (P::Tcp, 8096)] {
        errs.ok(
            &format!("{p:?} host bind {port} after the refusals"),
            host_can_bind(bed, p, port),
        );
        errs.ok(
            &format!("TCP world -> {UPLINK}:{port}"),
            unanswered_from(&t.world, P::Tcp, sa(UPLINK, port)),
        );
    }
    // a's mapping is intact; the host's own listener is not hijacked.
    errs.answer(
        "TCP world -> 8080 after the refusals",
        ask_from(&t.world, P::Tcp, sa(UPLINK, 8080)),
        80,
        sa(UPLINK, 8080),
        &[WORLD],
    );
    held_tcp.set_nonblocking(true).unwrap();
    let c = in_ns(&t.world, || {
        Ok(TcpStream::connect_timeout(
            &sa(UPLINK, 8090).into(),
            Duration::from_secs(2),
        )?)
    });
    if bed.firewall().drops_input() {
        // A host listener is the host's own service: a hostile host's INPUT
        // chain drops the world's connection to it.
        errs.ok(
            "TCP world -> 8090 (a host listener) dropped by the host's INPUT chain",
            c.map_or(Ok(()), |_| Err(anyhow!("connected"))),
        );
        std::thread::sleep(Duration::from_millis(100));
        errs.ok(
            "the host listener on 8090 gets nothing",
            held_tcp
                .accept()
                .map_or(Ok(()), |_| Err(anyhow!("accepted"))),
        );
    } else {
        errs.ok("TCP world -> 8090 (a host listener)", c.map(drop));
        std::thread::sleep(Duration::from_millis(100));
        errs.ok(
            "the host listener on 8090 accepts the world's connection",
            held_tcp.accept().map(drop).map_err(Into::into),
        );
    }
    drop(held_udp);
    errs.done("conflicts");
    let hits_before = srv.count();

    // Another protocol on the same port is not a conflict.
    let b = bed.container("b", &["--network", "pa", "-p", "8080:80/udp"]);
    let bsrv = PortServer::start(&b.ns, &[80], &[80]);
    let mut errs = Errs::default();
    errs.answer(
        "UDP world -> 8080 (b)",
        ask_from(&t.world, P::Udp, sa(UPLINK, 8080)),
        80,
        sa(UPLINK, 8080),
        &[WORLD],
    );
    errs.answer(
        "TCP world -> 8080 (a)",
        ask_from(&t.world, P::Tcp, sa(UPLINK, 8080)),
        80,
        sa(UPLINK, 8080),
        &[WORLD],
    );
    // The UDP client resends until it hears back (a slow first reply means
    // more than one hit), but every hit is UDP and from that one socket.
    let bhits = bsrv.hits();
    errs.check(
        !bhits.is_empty()
            && bhits
                .iter()
                .all(|h| h.proto == P::Udp && h.peer == bhits[0].peer),
        || format!("b's hits {bhits:?}"),
    );
    errs.check(
        srv.hits()[hits_before..].iter().all(|h| h.proto == P::Tcp),
        || format!("a's hits {:?}", srv.hits()),
    );
    errs.done("same port, other protocol");
}

/// `container rm` ends the mapping at once: the next connection is refused
/// (TCP) or unanswered (UDP), also when a new container has the old
/// address and serves the same port; the host port is free again and can
/// be published by another container.
#[test]
fn container_rm_ends_mapping() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.10.0/24"]);
    let a = bed.container(
        "a",
        &["--network", "pa", "-p", "8080:80", "-p", "8080:80/udp"],
    );
    let a_ip = bed.ip(&a, "pa");
    let asrv = PortServer::start(&a.ns, &[80], &[80]);
    let mut errs = Errs::default();
    for p in [P::Tcp, P::Udp] {
        errs.answer(
            &format!("{p:?} world -> 8080 before rm"),
            ask_from(&t.world, p, sa(UPLINK, 8080)),
            80,
            sa(UPLINK, 8080),
            &[WORLD],
        );
    }
    errs.done("control before rm");
    // UDP resends until answered, so count what a got rather than assume one.
    let a_hits = asrv.count();

    bed.ok(&["container", "rm", "a"]);
    let mut errs = Errs::default();
    // Nothing is published: the host's own stack refuses, unless its INPUT
    // chain drops the SYN first (a hostile host).
    let want = if bed.firewall().drops_input() {
        ErrorKind::TimedOut
    } else {
        ErrorKind::ConnectionRefused
    };
    match unanswered_from(&t.world, P::Tcp, sa(UPLINK, 8080)) {
        Ok(k) if k == want => {}
        r => errs.0.push(format!(
            "TCP world -> 8080 right after rm: expected {want:?}, got {r:?}"
        )),
    }
    errs.ok(
        "UDP world -> 8080 right after rm",
        unanswered_from(&t.world, P::Udp, sa(UPLINK, 8080)),
    );
    errs.ok(
        "TCP host process -> 127.0.0.1:8080 right after rm",
        t.host_unanswered(P::Tcp, sa(LOCALHOST, 8080)),
    );

    // A new container with a's old address serving port 80 gets nothing.
    let ip = a_ip.to_string();
    let c = bed.container("c", &["--network", "pa", "--ip", &ip]);
    let csrv = PortServer::start(&c.ns, &[80], &[80]);
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} world -> 8080 with {a_ip} reused"),
            unanswered_from(&t.world, p, sa(UPLINK, 8080)),
        );
    }
    errs.ok(
        "TCP host process -> 127.0.0.1:8080 with the address reused",
        t.host_unanswered(P::Tcp, sa(LOCALHOST, 8080)),
    );
    errs.check(csrv.count() == 0, || {
        format!("the reused address got {:?}", csrv.hits())
    });
    errs.check(asrv.count() == a_hits, || {
        format!("a's server after rm: {:?}", asrv.hits())
    });
    // The host port is free again...
    for p in [P::Tcp, P::Udp] {
        errs.ok(
            &format!("{p:?} host bind 8080 after rm"),
            host_can_bind(bed, p, 8080),
        );
    }
    errs.done("after container rm");
    // ... and another container can publish it.
    let d = bed.container("d", &["--network", "pa", "-p", "8080:80"]);
    let _dsrv = PortServer::start(&d.ns, &[80], &[]);
    let mut errs = Errs::default();
    errs.answer(
        "TCP world -> 8080 published again by d",
        ask_from(&t.world, P::Tcp, sa(UPLINK, 8080)),
        80,
        sa(UPLINK, 8080),
        &[WORLD],
    );
    errs.done("republished");
}

/// Publishing a port of a container on an internal network is refused;
/// nothing changes and the port stays free.
#[test]
fn publish_on_internal_network_refused() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pi", &["--subnet", "10.92.11.0/24", "--internal"]);
    let before = bed.snapshot(&["pi"], &[]);
    let ns = bed.new_netns("i");
    let path = path_of(&ns).display().to_string();
    let line = bed.fail(&[
        "container",
        "add",
        "i",
        "--netns",
        &path,
        "--network",
        "pi",
        "-p",
        "8080:80",
    ]);
    assert!(
        line.to_lowercase().contains("internal"),
        "error should say why: {line:?}"
    );
    bed.assert_unchanged(
        &before,
        &["pi"],
        &[],
        "refused publish on an internal network",
    );
    host_can_bind(bed, P::Tcp, 8080)
        .unwrap_or_else(|e| panic!("port 8080 after the refusal: {e:#}"));
    // Without -p the container is accepted.
    bed.container("j", &["--network", "pi"]);
}

/// 1,000 ports published by one container (20000-20999 -> 30000-30999):
/// every host port is answered by its own container port, in bounded time.
#[test]
fn thousand_published_ports_all_answer() {
    // The agent keeps the open-files limit it inherits (it holds one socket
    // per published port); only this process, which runs the 1000
    // listeners, raises its own.
    let t = pub_bed();
    raise_nofile(4096);
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.12.0/24"]);
    let start = Instant::now();
    let a = bed.container("a", &["--network", "pa", "-p", "20000-20999:30000-30999"]);
    let added = start.elapsed();
    let cports: Vec<u16> = (30000..=30999).collect();
    let srv = PortServer::start(&a.ns, &cports, &[]);
    assert_eq!(
        netd_port(bed, &["a"]).len(),
        1000,
        "netd port a should list 1000 mappings"
    );
    let hs: Vec<_> = (0..4u16)
        .map(|k| {
            spawn_in(&t.world, move || {
                let mut bad = Vec::new();
                for i in (k * 250)..(k * 250 + 250) {
                    let dst = sa(UPLINK, 20000 + i);
                    match tcp_ask(dst) {
                        Ok(a) if a.port == 30000 + i && *a.seen.ip() == WORLD && a.from == dst => {}
                        r => bad.push(format!("{dst}: {r:?}")),
                    }
                }
                Ok(bad)
            })
        })
        .collect();
    let bad: Vec<String> = hs.into_iter().flat_map(|h| join(h).unwrap()).collect();
    let took = start.elapsed();
    assert!(
        bad.is_empty(),
        "{} of 1000 published ports failed (first 10):\n  {}",
        bad.len(),
        bad[..bad.len().min(10)].join("\n  ")
    );
    let mut hit: Vec<u16> = srv.hits().iter().map(|h| h.port).collect();
    hit.sort();
    hit.dedup();
    assert_eq!(
        (srv.count(), hit.len()),
        (1000, 1000),
        "server hits, distinct ports hit"
    );
    assert!(
        took < Duration::from_secs(30),
        "1000 ports: container add took {added:?}, all checks {took:?} (limit 30 s)"
    );
    eprintln!("1000 ports: container add {added:?}, total {took:?}");
}

/// An omitted host port is chosen by netd, reported by `netd port` and
/// inspect, held on the host, and works (TCP and UDP).
#[test]
fn omitted_host_port_chosen_and_works() {
    let t = pub_bed();
    let bed = &t.bed;
    bed.network("pa", &["--subnet", "10.92.13.0/24"]);
    let a = bed.container("a", &["--network", "pa", "-p", "80", "-p", "80/udp"]);
    let _srv = PortServer::start(&a.ns, &[80], &[80]);
    let chosen = |spec: &str| -> u16 {
        let lines = netd_port(bed, &["a", spec]);
        let want = if spec.contains('/') {
            spec.to_string()
        } else {
            format!("{spec}/tcp")
        };
        assert_eq!(lines.len(), 1, "netd port a {spec}: {lines:?}");
        let port = lines[0]
            .strip_prefix(&format!("{want} -> 0.0.0.0:"))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("netd port a {spec}: unexpected {:?}", lines[0]));
        assert!(port != 0 && port != 80, "netd port a {spec}: chose {port}");
        port
    };
    let (tp, up) = (chosen("80"), chosen("80/udp"));
    let ports = bed.ctr_info("a")["Ports"].clone();
    for (port, proto) in [(tp, "tcp"), (up, "udp")] {
        assert!(
            ports
                .as_array()
                .is_some_and(|v| v.iter().any(|m| m["HostPort"] == port
                    && m["Protocol"] == proto
                    && m["ContainerPort"] == 80)),
            "inspect Ports {ports} should show {port}/{proto}"
        );
    }
    let mut errs = Errs::default();
    errs.answer(
        &format!("TCP world -> {UPLINK}:{tp}"),
        ask_from(&t.world, P::Tcp, sa(UPLINK, tp)),
        80,
        sa(UPLINK, tp),
        &[WORLD],
    );
    errs.answer(
        &format!("UDP world -> {UPLINK}:{up}"),
        ask_from(&t.world, P::Udp, sa(UPLINK, up)),
        80,
        sa(UPLINK, up),
        &[WORLD],
    );
    errs.answer(
        &format!("TCP host process -> 127.0.0.1:{tp}"),
        t.host_ask(P::Tcp, sa(LOCALHOST, tp)),
        80,
        sa(LOCALHOST, tp),
        &[bed.gateway("pa"), UPLINK, LOCALHOST],
    );
    // Held on the host: no host process can take it.
    errs.check(host_can_bind(bed, P::Tcp, tp).is_err(), || {
        format!("a host process could bind the chosen TCP port {tp}")
    });
    errs.check(host_can_bind(bed, P::Udp, up).is_err(), || {
        format!("a host process could bind the chosen UDP port {up}")
    });
    errs.done("omitted host port");
}
