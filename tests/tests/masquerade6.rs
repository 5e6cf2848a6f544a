//! IPv6 egress (issue 13, SPEC section 4 "A -> W" for IPv6) with real
//! packets: NAT66 to the uplink's global IPv6 address on masquerading
//! networks, the container's own address on `--masquerade=false`
//! networks, nothing from internal networks; the flows in conntrack
//! (`status` `conntrack.flows6`) and expiring there; two containers from
//! one source port to one server port at once on distinct NAT ports;
//! ICMPv6 errors translated back into the container (port unreachable as
//! ECONNREFUSED, Packet Too Big for path MTU discovery); checksums right
//! with offload off; new flows leaving with the uplink's new address when
//! it changes; and the IPv6 fast path of eBPF host routing past a host
//! whose ip6tables FORWARD policy is DROP, with `--host-routing kernel` as
//! the negative control.
//!
//! Every bed's host netns gets the world of `netd_tests::world` with IPv6
//! on the uplink: `up0` 2001:db8:95::2/64 (UPLINK6), the world 2001:db8:95::1
//! (WORLD6), the host's IPv6 default route via the world.

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netd_tests::capture::{ethtool_off, Capture};
use netd_tests::cmd::{ip_ns, run_ok, run_timeout};
use netd_tests::echo_watch::EchoWatch;
use netd_tests::long_udp::LongUdp;
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::ports::{
    ask_from, closed_udp_port, in_ns, parse_answer, udp_echo, udp_refused_from, PortServer, P,
};
use netd_tests::world::{route6_via_uplink, UPLINK6, UPLINK_LIMIT, WORLD6};
use netd_tests::{dropped, icmp, no_tcp, no_udp, one_port, tcp, udp, Bed, Ctr, Ep};

const FAR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x96, 0, 0, 0, 0, 2);
/// The uplink's address after [`uplink_address_changes`].
const UPLINK6_NEW: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x95, 0, 0, 0, 0, 3);
/// The default --snat-ports.
const SNAT: std::ops::RangeInclusive<u16> = 61000..=65535;
/// Ports of the world's [`PortServer`] (TCP and UDP alike).
const WORLD_PORT: u16 = 9160;

/// A bed (agent args `args`) whose uplink has IPv6, the agent following
/// it; `before_agent` runs on the host netns first (a firewall).
fn bed6(args: &[&str], before_agent: impl FnOnce(&Bed)) -> (Bed, String) {
    let bed = Bed::without_agent(args);
    let world = bed.make_world6();
    before_agent(&bed);
    bed.start_agent();
    bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
    (bed, world)
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("expected an IPv6 address, got {a}"),
    }
}

/// Networks `m` (masquerade, the default), `flat` (`--masquerade=false`,
/// the world routes its subnet back via the host) and `int` (internal),
/// each dual-stack.
fn networks(bed: &Bed, world: &str) {
    let nets: [(&str, &str, &str, &[&str]); 3] = [
        ("m", "10.96.1.0/24", "fd00:96:1::/64", &[]),
        (
            "flat",
            "10.96.2.0/24",
            "fd00:96:2::/64",
            &["--masquerade=false"],
        ),
        ("int", "10.96.3.0/24", "fd00:96:3::/64", &["--internal"]),
    ];
    for (name, v4, v6net, extra) in nets {
        let mut args = vec!["--subnet", v4, "--ipv6", "--subnet", v6net];
        args.extend_from_slice(extra);
        bed.network(name, &args);
    }
    route6_via_uplink(world, &["fd00:96:2::/64"]);
}

fn within(a: SocketAddr, ip: Ipv6Addr) -> bool {
    a.ip() == IpAddr::V6(ip) && SNAT.contains(&a.port())
}

/// The world's server that tells each client the address and port it
/// saw (TCP: a line, then the connection closes; UDP: the line followed
/// by the datagram).
fn world_server(world: &str) -> (PortServer<SocketAddr>, SocketAddr) {
    let srv = PortServer::start_dual(world, &[WORLD_PORT], &[WORLD_PORT]);
    (srv, SocketAddr::new(WORLD6.into(), WORLD_PORT))
}

/// A blocking TCP connect to `dst` from local port `port` (connect
/// bounded by SO_SNDTIMEO).
fn connect_from(port: u16, dst: SocketAddr) -> anyhow::Result<TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn6,
    };
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(
        &fd,
        sockopt::SendTimeout,
        &nix::sys::time::TimeVal::new(3, 0),
    )?;
    let local = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(local)).context("bind")?;
    let SocketAddr::V6(remote) = dst else {
        bail!("{dst} is not IPv6");
    };
    connect(fd.as_raw_fd(), &SockaddrIn6::from(remote))
        .with_context(|| format!("connect {dst}"))?;
    Ok(TcpStream::from(fd))
}

/// The address [`world_server`] saw a TCP connection `s` from.
fn tcp_seen(mut s: TcpStream) -> anyhow::Result<SocketAddr> {
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut text = String::new();
    s.read_to_string(&mut text).context("reading the answer")?;
    Ok(parse_answer::<SocketAddr>(text.trim())?.0)
}

/// Sends `payload` from `s` to [`world_server`] `dst` until the answer
/// comes (8 tries); checks the echoed payload and returns the address the
/// server saw.
fn udp_seen(s: &UdpSocket, dst: SocketAddr, payload: &[u8]) -> anyhow::Result<SocketAddr> {
    udp_echo(s, dst, payload, |line| {
        Ok(parse_answer::<SocketAddr>(line)?.0)
    })
}

/// A fresh UDP socket's exchange with [`world_server`] `dst`.
fn udp_from(ns: &str, dst: SocketAddr, payload: Vec<u8>) -> anyhow::Result<SocketAddr> {
    in_ns(ns, move || {
        let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
        udp_seen(&s, dst, &payload)
    })
}

/// TCP, UDP and an echo from `ns` to the world leave as `src`, each with a
/// port (echo id) in the SNAT range.
fn expect_masqueraded(ns: &str, world: &str, dst: SocketAddr, src: Ipv6Addr, what: &str) {
    let mut errs = Vec::new();
    match ask_from(ns, P::Tcp, dst) {
        Ok(a) if within(a.seen, src) => {}
        r => errs.push(format!("TCP: {r:?}")),
    }
    match udp_from(ns, dst, b"netd-nat66".to_vec()) {
        Ok(a) if within(a, src) => {}
        r => errs.push(format!("UDP: {r:?}")),
    }
    let watch = EchoWatch::start(world, true);
    let ping = icmp(ns, WORLD6);
    let echoes = watch.finish();
    if let Err(e) = ping {
        errs.push(format!("ping: {e:#}"));
    } else if !echoes
        .iter()
        .any(|(a, id)| *a == IpAddr::V6(src) && SNAT.contains(id))
    {
        errs.push(format!("ping: echo requests (source, id) {echoes:?}"));
    }
    assert!(
        errs.is_empty(),
        "{what}: expected {src} with ports in 61000-65535:\n  - {}",
        errs.join("\n  - ")
    );
}

/// A TCP upload of `len` bytes from `from_ns` to a server on `ip` in
/// `to_ns`, which counts what it reads and answers the count; returns the
/// count the server read, checked against what the client was told.
fn upload(
    from_ns: &str,
    to_ns: &str,
    ip: Ipv6Addr,
    len: usize,
    limit: Duration,
) -> anyhow::Result<usize> {
    let (ptx, prx) = mpsc::channel::<u16>();
    let server = spawn_in(to_ns, move || {
        let l = TcpListener::bind(SocketAddrV6::new(ip, 0, 0, 0)).context("bind")?;
        let _ = ptx.send(l.local_addr()?.port());
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(e).context("accept"),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(limit))?;
        let mut total = 0usize;
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf).context("read")?;
            if n == 0 {
                break;
            }
            total += n;
        }
        s.write_all(format!("{total}\n").as_bytes())?;
        Ok(total)
    });
    let port = prx
        .recv_timeout(Duration::from_secs(5))
        .context("server port")?;
    let client = spawn_in(from_ns, move || {
        let dst = SocketAddrV6::new(ip, port, 0, 0);
        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(5))?;
        s.set_write_timeout(Some(limit))?;
        s.set_read_timeout(Some(limit))?;
        let chunk: Vec<u8> = (0..len as u32).map(|i| (i * 7 + 13) as u8).collect();
        s.write_all(&chunk).context("upload")?;
        s.shutdown(Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).context("answer")?;
        Ok(answer)
    });
    let answer = join(client);
    let total = join(server).context("server")?;
    let answer = answer.context("client")?;
    if total != len || answer.trim() != len.to_string() {
        bail!("{len} bytes sent, the server read {total} and answered {answer:?}");
    }
    Ok(total)
}

/// IPv6 flows in `netd status`.
fn flows6(bed: &Bed) -> usize {
    bed.status().conntrack.flows6
}

/// Conntrack (timeouts of 2 s for UDP, ICMP and closed TCP): a UDP
/// exchange and a ping from `c` show as IPv6 flows in status, expire, and
/// a new flow afterwards works and is tracked again.
fn flows_tracked_and_expire(bed: &Bed, c: &Ctr, w6: &Ep) {
    let flows = |what: &str| {
        let seen = udp(&c.ns, w6).unwrap_or_else(|e| panic!("{what}: UDP from c: {e:#}"));
        assert_eq!(v6(seen), UPLINK6, "{what}: UDP from c seen from {seen}");
        icmp(&c.ns, WORLD6).unwrap_or_else(|e| panic!("{what}: c pings the world: {e:#}"));
    };
    flows("conntrack");
    let ct = bed.status().conntrack;
    assert!(
        ct.flows6 >= 2 && ct.capacity > 0,
        "status conntrack should hold the UDP and echo flows just made over IPv6: {ct:?}"
    );
    let start = Instant::now();
    loop {
        let n = flows6(bed);
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "conntrack.flows6 still {n} 15 s after the last packet (timeouts 2 s): {:?}",
            bed.status().conntrack
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "IPv6 conntrack empty {:?} after the last packet",
        start.elapsed()
    );
    flows("after expiry");
    assert!(flows6(bed) > 0, "a new IPv6 flow after expiry is tracked");
}

/// A UDP datagram from `ns` to a port nobody listens on in the world: the
/// world's ICMPv6 port unreachable, translated back, gives a connected
/// socket ECONNREFUSED.
fn closed_port_refused(ns: &str, world: &str) -> anyhow::Result<()> {
    let closed = closed_udp_port(world, WORLD6.into())?;
    udp_refused_from(ns, SocketAddr::new(WORLD6.into(), closed))
}

/// Containers `a` and `b`, both from source port 40000, to one server
/// port at once (a barrier after connecting or binding): both leave from
/// the uplink's address on two different ports of the SNAT range, and
/// both get their answers (TCP, and UDP with two datagrams a flow).
fn two_at_once(world: &str, a: &Ctr, b: &Ctr) {
    const SPORT: u16 = 40000;
    let (srv, dst) = world_server(world);
    let uplink = IpAddr::V6(UPLINK6);
    let (ta, tb) = one_port::tcp(&a.ns, &b.ns, SPORT, dst, connect_from, tcp_seen);
    one_port::assert_two_ports("TCP", (ta, tb), uplink, &SNAT);
    let (ua, ub) = one_port::udp(&a.ns, &b.ns, SPORT, dst, udp_seen);
    one_port::assert_two_ports("UDP", (ua, ub), uplink, &SNAT);
    let peers: Vec<(P, SocketAddr)> = srv.hits().iter().map(|h| (h.proto, h.peer)).collect();
    for want in [(P::Tcp, ta), (P::Tcp, tb), (P::Udp, ua), (P::Udp, ub)] {
        assert!(
            peers.contains(&want),
            "server peers {peers:?} lack {want:?}"
        );
    }
}

/// A 256 KB upload, a 1200-byte UDP datagram and its answer, and pings of
/// 1000 bytes from `c` to the world, masqueraded.
fn exchange(c: &Ctr, world: &str, what: &str) {
    let (_srv, dst) = world_server(world);
    let mut errs = Vec::new();
    if let Err(e) = upload(&c.ns, world, WORLD6, 256 * 1024, Duration::from_secs(10)) {
        errs.push(format!("TCP: {e:#}"));
    }
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 31 + 5) as u8).collect();
    match udp_from(&c.ns, dst, payload) {
        Ok(a) if within(a, UPLINK6) => {}
        r => errs.push(format!("UDP: {r:?}")),
    }
    let net = format!("--net={}", path_of(&c.ns).display());
    let w = WORLD6.to_string();
    let args = [
        &net, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-s", "1000", &w,
    ];
    let ping = run_timeout("nsenter", &args, Duration::from_secs(10));
    if !ping.success() {
        errs.push(format!("ping -s 1000: {ping}"));
    }
    assert!(errs.is_empty(), "{what}:\n  - {}", errs.join("\n  - "));
}

/// Checksums after NAT66 and its reverse: with tx/rx checksum offload
/// off on `c`'s eth0 and the world's w0 the exchange still works, and
/// tcpdump on both (which then sees complete checksums) finds no TCP,
/// UDP or ICMPv6 checksum wrong.
fn checksums_without_offload(bed: &Bed, world: &str, c: &Ctr) {
    exchange(c, world, "with default offloads");
    ethtool_off(&c.ns, "eth0");
    ethtool_off(world, "w0");
    let at_world = Capture::start(bed, world, "w0");
    let at_ctr = Capture::start(bed, &c.ns, "eth0");
    exchange(c, world, "with checksum offload off on c/eth0 and world/w0");
    let mut errs = Vec::new();
    for (where_, cap) in [
        ("world w0 (after NAT66)", at_world),
        ("c eth0 (after reverse NAT66)", at_ctr),
    ] {
        let k = cap.checksums();
        if !k.bad.is_empty() {
            errs.push(format!(
                "{where_}: bad checksums:\n    {}",
                k.bad.join("\n    ")
            ));
        }
        if !(k.tcp_ok && k.udp_ok && k.icmp6_ok) {
            errs.push(format!(
                "{where_}: tcpdump did not verify every kind: {k:?}"
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// The uplink's IPv6 address changes to [`UPLINK6_NEW`] while the agent
/// runs: within a few seconds new flows (TCP, UDP, echo) leave with the new
/// address, and so does the next datagram of a UDP socket of `c` that
/// lived across the change.
fn uplink_address_changes(bed: &Bed, world: &str, c: &Ctr) {
    let (_srv, dst) = world_server(world);
    expect_masqueraded(&c.ns, world, dst, UPLINK6, "before the change");
    let long = LongUdp::start(&c.ns, dst, udp_seen);
    let before = long
        .ask()
        .unwrap_or_else(|e| panic!("long-lived UDP socket: {e:#}"));
    assert!(
        within(before, UPLINK6),
        "long-lived UDP socket seen as {before}"
    );

    let host = bed.host_ns();
    let (old, new) = (format!("{UPLINK6}/64"), format!("{UPLINK6_NEW}/64"));
    ip_ns(host, &["-6", "addr", "del", &old, "dev", "up0"]).unwrap();
    ip_ns(host, &["-6", "addr", "add", &new, "dev", "up0", "nodad"]).unwrap();
    let via = WORLD6.to_string();
    ip_ns(host, &["-6", "route", "replace", "default", "via", &via]).unwrap();
    let changed = Instant::now();
    loop {
        let last = match ask_from(&c.ns, P::Tcp, dst) {
            Ok(a) if a.seen.ip() == IpAddr::V6(UPLINK6_NEW) => break,
            r => r,
        };
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "10 s after the uplink's IPv6 address changed to {UPLINK6_NEW}, a new TCP flow \
             still gives {last:?}; uplinks = {:?}",
            bed.status().uplinks
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("new flows use {UPLINK6_NEW} after {:?}", changed.elapsed());
    bed.wait_uplink6(UPLINK6_NEW, Duration::from_secs(5));
    expect_masqueraded(&c.ns, world, dst, UPLINK6_NEW, "after the change");
    let after = long.ask();
    drop(long);
    let after = after
        .unwrap_or_else(|e| panic!("long-lived UDP socket after the change (was {before}): {e:#}"));
    assert!(
        within(after, UPLINK6_NEW),
        "long-lived UDP socket: seen as {before} before the change, {after} after; expected {UPLINK6_NEW}"
    );
}

#[test]
fn ipv6_egress_is_masqueraded_routed_or_refused_by_network() {
    let (bed, world) = bed6(
        &[
            "--ct-timeout",
            "udp=2",
            "--ct-timeout",
            "udp-unreplied=2",
            "--ct-timeout",
            "icmp=2",
            "--ct-timeout",
            "tcp-closed=2",
            "--ct-timeout",
            "tcp-unreplied=2",
        ],
        |_| {},
    );
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let c2 = bed.container("c2", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let i = bed.container("i", &["--network", "int"]);
    let (c6, r6, i6) = (bed.ep6(&c, "m"), bed.ep6(&r, "flat"), bed.ep6(&i, "int"));
    let w6 = Ep::v6("world/v6", &world, WORLD6);

    // Masquerade: TCP, UDP and echo leave with the uplink's IPv6 address,
    // and their replies come back to the container.
    let seen = tcp(&c.ns, &w6).expect("c -> world over TCP");
    assert_eq!(v6(seen), UPLINK6, "TCP from c seen from {seen}");
    let seen = udp(&c.ns, &w6).expect("c -> world over UDP");
    assert_eq!(v6(seen), UPLINK6, "UDP from c seen from {seen}");
    let watch = EchoWatch::start(&world, true);
    icmp(&c.ns, WORLD6).expect("c pings the world");
    let sources: Vec<IpAddr> = watch.finish().into_iter().map(|(s, _)| s).collect();
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == UPLINK6),
        "echo requests from c arrived from {sources:?}, expected {UPLINK6} only"
    );
    assert!(!sources.contains(&c6.ip));

    // --masquerade=false: the container's own address.
    let seen = tcp(&r.ns, &w6).expect("r -> world over TCP (routed)");
    assert_eq!(seen, r6.ip, "routed TCP from r");
    let seen = udp(&r.ns, &w6).expect("r -> world over UDP (routed)");
    assert_eq!(seen, r6.ip, "routed UDP from r");

    // Internal: nothing leaves, and netd is the one that drops it.
    bed.expect(&[dropped(&i6, &w6, "internal-network")]);
    assert_eq!(bed.status().uplinks["up0"].address6, Some(UPLINK6));

    flows_tracked_and_expire(&bed, &c, &w6);

    // ICMPv6 errors other than Packet Too Big: port unreachable reaches
    // the socket, masqueraded and routed alike.
    for (name, ns) in [("c (masqueraded)", &c.ns), ("r (routed)", &r.ns)] {
        closed_port_refused(ns, &world).unwrap_or_else(|e| {
            panic!(
                "UDP from {name} to a closed port: {e:#} (drops = {:?})",
                bed.drops()
            )
        });
    }

    two_at_once(&world, &c, &c2);
    checksums_without_offload(&bed, &world, &c);
}

/// `ip6tables -P FORWARD DROP` in the bed's host netns.
fn forward_drop(bed: &Bed) {
    let net = format!("--net={}", path_of(bed.host_ns()).display());
    let out = run_timeout(
        "nsenter",
        &[&net, "ip6tables", "-P", "FORWARD", "DROP"],
        Duration::from_secs(20),
    );
    assert!(out.success(), "ip6tables FORWARD DROP: {out}");
}

fn shortcuts(bed: &Bed, name: &str) -> u64 {
    bed.status()
        .host_routing
        .shortcuts
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no shortcut {name} in status"))
}

fn firewall_fixture_usable() -> bool {
    if !matches!(
        std::env::var("NETD_TEST_FIREWALL").as_deref(),
        Err(_) | Ok("" | "none")
    ) {
        eprintln!("SKIPPED: this test builds its own firewall; run it without NETD_TEST_FIREWALL");
        return false;
    }
    if !PathBuf::from("/usr/sbin/ip6tables").exists() {
        eprintln!("SKIPPED: ip6tables is missing (cargo xtask setup installs iptables)");
        return false;
    }
    true
}

#[test]
fn ipv6_fast_path_passes_a_forward_drop_host_and_kernel_routing_does_not() {
    if !firewall_fixture_usable() {
        return;
    }
    let (bed, world) = bed6(&["--host-routing", "ebpf"], forward_drop);
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let r6 = bed.ep6(&r, "flat");
    let w6 = Ep::v6("world/v6", &world, WORLD6);
    let fib = shortcuts(&bed, "fib-redirect") + shortcuts(&bed, "fib-redirect-neigh");
    let peer = shortcuts(&bed, "peer-routed");
    assert_eq!(
        v6(tcp(&c.ns, &w6).expect("c -> world, FORWARD DROP")),
        UPLINK6
    );
    assert_eq!(v6(udp(&c.ns, &w6).expect("c -> world UDP")), UPLINK6);
    assert_eq!(tcp(&r.ns, &w6).expect("r -> world (routed)"), r6.ip);
    assert!(
        shortcuts(&bed, "fib-redirect") + shortcuts(&bed, "fib-redirect-neigh") > fib,
        "container -> world over IPv6 should take the fib redirect"
    );
    assert!(
        shortcuts(&bed, "peer-routed") > peer,
        "replies should be delivered into the containers"
    );
    drop(bed);

    // Negative control: the kernel forwards, and the FORWARD policy drops.
    let (bed, world) = bed6(&["--host-routing", "kernel"], forward_drop);
    networks(&bed, &world);
    let c = bed.container("c", &["--network", "m"]);
    let r = bed.container("r", &["--network", "flat"]);
    let w6 = Ep::v6("world/v6", &world, WORLD6);
    no_tcp(&c.ns, &w6).expect("kernel routing: c -> world dropped by FORWARD");
    no_udp(&c.ns, &w6).expect("kernel routing: c -> world UDP dropped by FORWARD");
    no_tcp(&r.ns, &w6).expect("kernel routing: r -> world dropped by FORWARD");
}

/// World router -> far netns over a 1280-byte link; far's route
/// advertises a 1440-byte MSS, so the container's full-size segments make
/// the world send Packet Too Big to the uplink's address. Translated back
/// (outer destination and quoted source), it reaches the container, which
/// lowers its path MTU, and a 1 MB upload completes. Then, in the same
/// bed, the uplink's IPv6 address changes ([`uplink_address_changes`]).
#[test]
fn packet_too_big_reaches_the_container_and_uplink_address_changes() {
    let (bed, world) = bed6(&[], |_| {});
    let far = bed.new_netns("far");
    let steps: &[(&str, &[&str])] = &[
        (
            &world,
            &[
                "link", "add", "wf0", "mtu", "1280", "type", "veth", "peer", "name", "f0", "netns",
                &far,
            ],
        ),
        (
            &world,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:96::1/64",
                "dev",
                "wf0",
                "nodad",
            ],
        ),
        (&world, &["link", "set", "wf0", "up"]),
        (&far, &["link", "set", "lo", "up"]),
        (&far, &["link", "set", "f0", "mtu", "1280"]),
        (
            &far,
            &[
                "-6",
                "addr",
                "add",
                "2001:db8:96::2/64",
                "dev",
                "f0",
                "nodad",
            ],
        ),
        (&far, &["link", "set", "f0", "up"]),
        (
            &far,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                "2001:db8:96::1",
                "advmss",
                "1440",
            ],
        ),
    ];
    for (ns, args) in steps {
        ip_ns(ns, args).unwrap_or_else(|e| panic!("building the far side: {e:#}"));
    }
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &world,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )
    .expect("forwarding in the world");
    bed.network(
        "m",
        &[
            "--subnet",
            "10.96.4.0/24",
            "--ipv6",
            "--subnet",
            "fd00:96:4::/64",
        ],
    );
    let a = bed.container("a", &["--network", "m"]);
    let f6 = Ep::v6("far/v6", &far, FAR);
    // Control: the path works at all, masqueraded.
    let seen = tcp(&a.ns, &f6).expect("control: a -> far over TCP");
    assert_eq!(v6(seen), UPLINK6);

    const LEN: usize = 1 << 20;
    let r = upload(&a.ns, &far, FAR, LEN, Duration::from_secs(30));
    let route = ip_ns(&a.ns, &["-6", "route", "get", &FAR.to_string()]).unwrap_or_default();
    if let Err(e) = r {
        panic!(
            "1 MB upload from a to {FAR} across the 1280-byte hop: {e:#}\n\
             a's route: {route}\ndrops = {:?}",
            bed.drops()
        );
    }
    assert!(
        route.contains("mtu 1280"),
        "a's route to {FAR} has no learned path MTU 1280 (Packet Too Big did not reach the \
         container?): {route}"
    );

    // Last, as it changes the uplink: its address changes live.
    uplink_address_changes(&bed, &world, &a);
}
