//! Masquerade (issue 3, SPEC section 4 rows "A -> W" and "W -> A directly")
//! with real packets.
//!
//! Every test gives its bed's host netns an uplink: veth `up0`
//! (203.0.113.2/24) to a "world" netns (`w0`, 203.0.113.1/24), with the
//! host's default route via 203.0.113.1. The world runs servers that tell
//! each client the source address and port they see (TCP and UDP), and a raw
//! ICMP socket that records the source address and id of echo requests.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use netd_tests::capture::{ethtool_off, Capture};
use netd_tests::cmd::{ip_ns, run_ok, run_timeout};
use netd_tests::echo_watch::EchoWatch;
use netd_tests::long_udp::LongUdp;
use netd_tests::netns::{join, path_of, spawn_in};
use netd_tests::ports::{closed_udp_port, udp_echo, udp_refused_from};
use netd_tests::traffic::{icmp, no_icmp, no_tcp, no_udp};
use netd_tests::world::{UPLINK, UPLINK_LIMIT, WORLD};
use netd_tests::{one_port, Bed, Ctr};
use nix::libc;
use serde_json::Value;

const UPLINK2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
/// The default --snat-ports.
const SNAT: std::ops::RangeInclusive<u16> = 61000..=65535;

// ---------------------------------------------------------------- topology

/// A bed whose uplink exists before the agent starts.
fn bed_with_uplink(daemon_args: &[&str]) -> (Bed, String) {
    Bed::with_world(daemon_args)
}

fn status(bed: &Bed) -> Value {
    bed.json(&["status", "--format", "json"])
}

fn conntrack_flows(bed: &Bed) -> u64 {
    let st = status(bed);
    st["conntrack"]["flows"]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no conntrack.flows: {}", st["conntrack"]))
}

/// `sysctl -w KEY=VALUE` inside netns `ns`.
fn sysctl_w(ns: &str, kv: &str) {
    run_ok("ip", &["netns", "exec", ns, "sysctl", "-q", "-w", kv])
        .unwrap_or_else(|e| panic!("{e:#}"));
}

fn within(addr: &SocketAddrV4, ip: Ipv4Addr) -> bool {
    *addr.ip() == ip && SNAT.contains(&addr.port())
}

// ---------------------------------------------------------------- servers

fn parse_peer(line: &str) -> anyhow::Result<SocketAddrV4> {
    let a = line
        .trim()
        .strip_prefix("PEER ")
        .ok_or_else(|| anyhow!("expected `PEER ADDR:PORT`, got {line:?}"))?;
    a.parse().with_context(|| format!("bad peer {a:?}"))
}

fn v4(a: SocketAddr) -> anyhow::Result<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => bail!("unexpected IPv6 address {a}"),
    }
}

/// Servers in a netns, listening on `ip`: TCP (each connection gets
/// `PEER ADDR:PORT\n`, then the server counts the bytes it reads until EOF
/// and answers `BYTES N\n`) and UDP (each datagram is answered with
/// `PEER ADDR:PORT\n` followed by the datagram). Both record every peer.
/// Stopped and joined on drop; every loop is bounded.
struct Servers {
    ip: Ipv4Addr,
    tcp_port: u16,
    udp_port: u16,
    tcp_peers: Arc<Mutex<Vec<SocketAddrV4>>>,
    udp_peers: Arc<Mutex<Vec<SocketAddrV4>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

const SERVER_LIFETIME: Duration = Duration::from_secs(120);

impl Servers {
    fn start(ns: &str, ip: Ipv4Addr) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_peers = Arc::new(Mutex::new(Vec::new()));
        let udp_peers = Arc::new(Mutex::new(Vec::new()));
        let (ptx, prx) = mpsc::channel::<(char, u16)>();

        let (st, peers, tx) = (stop.clone(), tcp_peers.clone(), ptx.clone());
        let tcp = spawn_in(ns, move || {
            let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind tcp {ip}"))?;
            let _ = tx.send(('t', l.local_addr()?.port()));
            l.set_nonblocking(true)?;
            let start = Instant::now();
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
                match l.accept() {
                    Ok((s, peer)) => {
                        let peer = v4(peer)?;
                        peers.lock().unwrap().push(peer);
                        let st = st.clone();
                        conns.push(std::thread::spawn(move || serve_tcp(s, peer, &st)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => return Err(e).context("accept"),
                }
            }
            for c in conns {
                let _ = c.join();
            }
            Ok(())
        });

        let (st, peers, tx) = (stop.clone(), udp_peers.clone(), ptx);
        let udp = spawn_in(ns, move || {
            let s = UdpSocket::bind((ip, 0)).with_context(|| format!("bind udp {ip}"))?;
            let _ = tx.send(('u', s.local_addr()?.port()));
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let start = Instant::now();
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
                // Errors are time-outs and queued ICMP errors: read on.
                if let Ok((n, src)) = s.recv_from(&mut buf) {
                    let src = v4(src)?;
                    peers.lock().unwrap().push(src);
                    let mut reply = format!("PEER {src}\n").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = s.send_to(&reply, src);
                }
            }
            Ok(())
        });

        let mut srv = Servers {
            ip,
            tcp_port: 0,
            udp_port: 0,
            tcp_peers,
            udp_peers,
            stop,
            threads: vec![tcp, udp],
        };
        for _ in 0..2 {
            match prx.recv_timeout(Duration::from_secs(5)) {
                Ok(('t', p)) => srv.tcp_port = p,
                Ok((_, p)) => srv.udp_port = p,
                Err(_) => {
                    srv.stop.store(true, Ordering::SeqCst);
                    let errs: Vec<String> = srv
                        .threads
                        .drain(..)
                        .filter_map(|h| join(h).err().map(|e| format!("{e:#}")))
                        .collect();
                    panic!("world servers did not start: {errs:?}");
                }
            }
        }
        srv
    }

    fn tcp(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.tcp_port)
    }

    fn udp(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.udp_port)
    }

    fn tcp_peers(&self) -> Vec<SocketAddrV4> {
        self.tcp_peers.lock().unwrap().clone()
    }

    fn udp_peers(&self) -> Vec<SocketAddrV4> {
        self.udp_peers.lock().unwrap().clone()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            if let Err(e) = join(h) {
                eprintln!("warning: world server: {e:#}");
            }
        }
    }
}

/// One TCP connection on the server side (bounded by `stop` and a minute).
fn serve_tcp(mut s: TcpStream, peer: SocketAddrV4, stop: &AtomicBool) -> anyhow::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("PEER {peer}\n").as_bytes())?;
    let start = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(60) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    s.write_all(format!("BYTES {total}\n").as_bytes())?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------- clients

/// Runs `f` on a thread in netns `ns` and waits for it.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    join(spawn_in(ns, f))
}

/// A client connection to a [`Servers`] TCP port, after the `PEER` line.
struct TcpClient {
    s: TcpStream,
    r: BufReader<TcpStream>,
    seen: SocketAddrV4,
}

impl TcpClient {
    /// Connects (from `local_port` if given, else an ephemeral port) and
    /// reads the address the server saw. Call on a thread in the client's
    /// netns.
    fn open(dst: SocketAddrV4, local_port: Option<u16>) -> anyhow::Result<TcpClient> {
        let s = match local_port {
            None => TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3)),
            Some(p) => connect_from(p, dst),
        }
        .with_context(|| format!("connect to {dst}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        let mut r = BufReader::new(s.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line).context("reading PEER line")?;
        let seen = parse_peer(&line)?;
        Ok(TcpClient { s, r, seen })
    }

    /// Sends `len` bytes, closes the sending side and checks that the
    /// server counted exactly `len`.
    fn send(mut self, len: usize, read_timeout: Duration) -> anyhow::Result<SocketAddrV4> {
        let chunk: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 13) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            self.s
                .write_all(&chunk[..n])
                .with_context(|| format!("sending ({} of {len} bytes sent)", len - left))?;
            left -= n;
        }
        self.s.shutdown(Shutdown::Write)?;
        self.s.set_read_timeout(Some(read_timeout))?;
        let mut line = String::new();
        self.r.read_line(&mut line).context("reading BYTES line")?;
        let n: u64 = line
            .trim()
            .strip_prefix("BYTES ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("expected `BYTES N`, got {line:?}"))?;
        if n != len as u64 {
            bail!("server counted {n} bytes, {len} were sent");
        }
        Ok(self.seen)
    }
}

/// One TCP exchange (`len` bytes up); returns the address the server saw.
fn tcp_exchange(dst: SocketAddrV4, len: usize) -> anyhow::Result<SocketAddrV4> {
    TcpClient::open(dst, None)?.send(len, Duration::from_secs(5))
}

/// A blocking TCP connect from local port `port` (SO_REUSEADDR; connect
/// bounded by SO_SNDTIMEO).
fn connect_from(port: u16, dst: SocketAddrV4) -> std::io::Result<TcpStream> {
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own, with valid
    // pointers and lengths.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let tv = libc::timeval {
            tv_sec: 3,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let local = sin(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sin(dst);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(TcpStream::from(sock))
    }
}

/// [`udp_echo`] to a [`Servers`] UDP port: the address the server saw.
fn udp_ask(s: &UdpSocket, dst: SocketAddrV4, payload: &[u8]) -> anyhow::Result<SocketAddrV4> {
    udp_echo(s, dst, payload, parse_peer)
}

/// One UDP exchange from a fresh socket; returns the address the server saw.
fn udp_exchange(dst: SocketAddrV4, payload: &[u8]) -> anyhow::Result<SocketAddrV4> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    udp_ask(&s, dst, payload)
}

/// TCP and UDP from container netns `ns` to `srv`; returns what the server
/// saw for each.
fn tcp_udp_from(
    ns: &str,
    srv: &Servers,
) -> (anyhow::Result<SocketAddrV4>, anyhow::Result<SocketAddrV4>) {
    let (t, u) = (srv.tcp(), srv.udp());
    let tcp = in_ns(ns, move || tcp_exchange(t, 1000));
    let udp = in_ns(ns, move || udp_exchange(u, b"netd-masquerade-probe"));
    (tcp, udp)
}

/// Asserts that TCP, UDP and ping from `ns` reach the world server and are
/// seen from `src` (and, when `snat`, from a port/echo id in the SNAT range).
fn expect_egress(ns: &str, world: &str, srv: &Servers, src: Ipv4Addr, snat: bool, what: &str) {
    let watch = EchoWatch::start(world, false);
    let ping = icmp(ns, srv.ip);
    let echoes = watch.finish();
    let (tcp, udp) = tcp_udp_from(ns, srv);
    let mut errs = Vec::new();
    for (p, r) in [("TCP", tcp), ("UDP", udp)] {
        match r {
            Ok(a) if *a.ip() == src && (!snat || SNAT.contains(&a.port())) => {}
            Ok(a) => errs.push(format!(
                "{p}: world saw source {a}, expected {src}{}",
                if snat {
                    " with a port in 61000-65535"
                } else {
                    ""
                }
            )),
            Err(e) => errs.push(format!("{p}: {e:#}")),
        }
    }
    match ping {
        Err(e) => errs.push(format!("ping {}: {e:#}", srv.ip)),
        Ok(()) => {
            if !echoes
                .iter()
                .any(|(a, id)| *a == IpAddr::V4(src) && (!snat || SNAT.contains(id)))
            {
                errs.push(format!(
                    "ping: the world saw echo requests (source, id) {echoes:?}, expected source {src}{}",
                    if snat { " with an id in 61000-65535" } else { "" }
                ));
            }
        }
    }
    assert!(errs.is_empty(), "{what}:\n  - {}", errs.join("\n  - "));
}

// ---------------------------------------------------------------- tests

/// Uplink made before the agent starts: TCP, UDP and ping from a container
/// on a masquerading network leave with the uplink's address (and a SNAT
/// port / echo id), and the answers come back.
#[test]
fn egress_uses_uplink_address() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.31.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    expect_egress(
        &a.ns,
        &world,
        &srv,
        UPLINK,
        true,
        "container a on a masquerading network -> world",
    );
    // The default network masquerades too.
    let d = bed.container("d", &[]);
    expect_egress(
        &d.ns,
        &world,
        &srv,
        UPLINK,
        true,
        "container d on the default network -> world",
    );
    let st = status(&bed);
    assert!(
        st["conntrack"]["flows"].as_u64().is_some_and(|n| n > 0)
            && st["conntrack"]["capacity"].as_u64().is_some_and(|n| n > 0),
        "status conntrack should count the flows just made: {}",
        st["conntrack"]
    );
}

/// Two containers bound to the same source port talk to the same server
/// port at once: both arrive from the uplink address, on different ports in
/// the SNAT range (TCP and UDP).
#[test]
fn two_containers_same_server_port_at_once() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.32.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let b = bed.container("b", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    const SPORT: u16 = 40000;

    // TCP: both connections open at the same time (barrier), then finish.
    let (ta, tb) = one_port::tcp(
        &a.ns,
        &b.ns,
        SPORT,
        srv.tcp(),
        |p, dst| TcpClient::open(dst, Some(p)),
        |c| c.send(100, Duration::from_secs(5)),
    );
    one_port::assert_two_ports("TCP", (ta.into(), tb.into()), UPLINK.into(), &SNAT);
    let peers = srv.tcp_peers();
    assert!(
        peers.contains(&ta) && peers.contains(&tb),
        "server peers {peers:?}"
    );

    // UDP: both sockets bound to the same port (before either sends), both
    // flows alive together.
    let (ua, ub) = one_port::udp(&a.ns, &b.ns, SPORT, srv.udp(), udp_ask);
    one_port::assert_two_ports("UDP", (ua.into(), ub.into()), UPLINK.into(), &SNAT);
    let peers = srv.udp_peers();
    assert!(
        peers.contains(&ua) && peers.contains(&ub),
        "server peers {peers:?}"
    );
}

/// 200 short TCP connections in a row from one container to one server
/// port all succeed, each from the uplink address and a SNAT port.
#[test]
fn many_short_connections_in_a_row() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.33.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    let dst = srv.tcp();
    let seen = in_ns(&a.ns, move || {
        let mut seen = Vec::new();
        for i in 0..200 {
            let s =
                tcp_exchange(dst, 10).with_context(|| format!("connection {} of 200", i + 1))?;
            seen.push(s);
        }
        Ok(seen)
    })
    .unwrap_or_else(|e| panic!("200 sequential TCP connections to {dst}: {e:#}"));
    let bad: Vec<_> = seen.iter().filter(|s| !within(s, UPLINK)).collect();
    assert!(
        bad.is_empty(),
        "connections not from {UPLINK}:61000-65535: {bad:?}"
    );
    // The connections are the container's own, one after the other: the
    // server saw each once.
    let mut ports: Vec<u16> = srv.tcp_peers().iter().map(|p| p.port()).collect();
    assert_eq!(
        ports.len(),
        200,
        "server accepted {} connections",
        ports.len()
    );
    ports.sort();
    ports.dedup();
    assert!(
        ports.len() > 1,
        "200 connections all got the same SNAT port {ports:?} (port reuse while the old flow may still be in TIME_WAIT)"
    );
}

/// A UDP datagram to a closed port in the world: the ICMP port unreachable
/// is translated back, so a connected socket gets ECONNREFUSED.
#[test]
fn udp_to_closed_port_gets_port_unreachable() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.34.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    // Control: an open port answers.
    let (_, u) = tcp_udp_from(&a.ns, &srv);
    u.unwrap_or_else(|e| panic!("control: UDP to an open port in the world: {e:#}"));
    // A port nobody listens on in the world (bound and closed again there).
    let closed = closed_udp_port(&world, WORLD.into()).unwrap();
    let dst = SocketAddrV4::new(WORLD, closed);
    let r = udp_refused_from(&a.ns, dst.into());
    if let Err(e) = r {
        panic!(
            "UDP from a to closed port {dst}: {e:#} (drops = {:?})",
            bed.drops()
        );
    }
}

/// World beyond an MTU-limited hop: a router netns forwards to a "far"
/// netns over a link with MTU 1280 (the far host advertises MSS 1460 via
/// `ip route ... advmss`), so full-size segments from the container make the
/// router answer "fragmentation needed". Translated back, it lets the
/// container lower its path MTU, and a 4 MB upload completes.
#[test]
fn mtu_limited_hop_fragmentation_needed() {
    let (bed, world) = bed_with_uplink(&[]);
    let far = bed.new_netns("far");
    let far_ip = Ipv4Addr::new(198, 51, 100, 2);
    let steps: &[(&str, &[&str])] = &[
        (
            &world,
            &[
                "link", "add", "wf0", "mtu", "1280", "type", "veth", "peer", "name", "f0", "netns",
                &far,
            ],
        ),
        (&world, &["addr", "add", "198.51.100.1/24", "dev", "wf0"]),
        (&world, &["link", "set", "wf0", "up"]),
        (&far, &["link", "set", "lo", "up"]),
        (&far, &["link", "set", "f0", "mtu", "1280"]),
        (&far, &["addr", "add", "198.51.100.2/24", "dev", "f0"]),
        (&far, &["link", "set", "f0", "up"]),
        (
            &far,
            &[
                "route",
                "add",
                "default",
                "via",
                "198.51.100.1",
                "advmss",
                "1460",
            ],
        ),
    ];
    for (ns, args) in steps {
        ip_ns(ns, args).unwrap_or_else(|e| panic!("building the far side: {e:#}"));
    }
    sysctl_w(&world, "net.ipv4.ip_forward=1");
    bed.network("mq", &["--subnet", "10.91.35.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let srv = Servers::start(&far, far_ip);
    // Small exchanges first: the path works at all.
    let (t, u) = tcp_udp_from(&a.ns, &srv);
    let t = t.unwrap_or_else(|e| panic!("control: small TCP exchange with {far_ip}: {e:#}"));
    u.unwrap_or_else(|e| panic!("control: UDP with {far_ip}: {e:#}"));
    assert!(
        within(&t, UPLINK),
        "far server saw {t}, expected {UPLINK}:61000-65535"
    );

    const LEN: usize = 4 << 20;
    let dst = srv.tcp();
    let r = in_ns(&a.ns, move || {
        TcpClient::open(dst, None)?.send(LEN, Duration::from_secs(20))
    });
    let route = ip_ns(&a.ns, &["route", "get", &far_ip.to_string()]).unwrap_or_default();
    if let Err(e) = r {
        panic!(
            "4 MB upload from a to {dst} across the 1280-byte hop: {e:#}\n\
             a's route to {far_ip}: {route}\ndrops = {:?}",
            bed.drops()
        );
    }
    assert!(
        route.contains("mtu 1280"),
        "a's route to {far_ip} has no learned path MTU 1280 (the \"fragmentation needed\" \
         did not reach the container?): {route}"
    );
}

/// A network with --masquerade=false forwards with the container's own
/// address; the world routes the subnet back via the host.
#[test]
fn masquerade_off_keeps_container_address() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network(
        "routed",
        &["--subnet", "10.91.36.0/24", "--masquerade=false"],
    );
    ip_ns(
        &world,
        &["route", "add", "10.91.36.0/24", "via", "203.0.113.2"],
    )
    .unwrap();
    let a = bed.container("a", &["--network", "routed"]);
    let a_ip = bed.ip(&a, "routed");
    let srv = Servers::start(&world, WORLD);
    expect_egress(
        &a.ns,
        &world,
        &srv,
        a_ip,
        false,
        "container a on a --masquerade=false network -> world",
    );
    // A masquerading network next to it still masquerades.
    bed.network("mq", &["--subnet", "10.91.37.0/24"]);
    let b = bed.container("b", &["--network", "mq"]);
    expect_egress(
        &b.ns,
        &world,
        &srv,
        UPLINK,
        true,
        "container b on a masquerading network -> world",
    );
}

/// SPEC "W -> A directly": the world cannot open connections to container
/// addresses, even when it routes their subnets via the host, on
/// masquerading and routed networks alike; counted as "not-a-reply".
#[test]
fn world_cannot_reach_container_addresses() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.38.0/24"]);
    bed.network(
        "routed",
        &["--subnet", "10.91.39.0/24", "--masquerade=false"],
    );
    for net in ["10.91.38.0/24", "10.91.39.0/24"] {
        ip_ns(&world, &["route", "add", net, "via", "203.0.113.2"]).unwrap();
    }
    let a = bed.container("a", &["--network", "mq"]);
    let r = bed.container("r", &["--network", "routed"]);
    let (ae, re) = (bed.ep(&a, "mq"), bed.ep(&r, "routed"));
    // Controls in the same topology: both containers reach the world.
    let srv = Servers::start(&world, WORLD);
    expect_egress(&a.ns, &world, &srv, UPLINK, true, "control: a -> world");
    expect_egress(&r.ns, &world, &srv, re.ip4(), false, "control: r -> world");
    // The world reaches the host itself (the uplink address; a hostile
    // host's INPUT chain drops and counts it).
    bed.ping_host(&world, UPLINK)
        .unwrap_or_else(|e| panic!("control: world -> host {UPLINK}: {e:#}"));

    let before = bed.drop_count("not-a-reply");
    let mut errs = Vec::new();
    for ep in [&ae, &re] {
        let checks: [(&str, anyhow::Result<()>); 3] = [
            ("ping", no_icmp(&world, ep.ip)),
            ("TCP", no_tcp(&world, ep)),
            ("UDP", no_udp(&world, ep)),
        ];
        for (p, res) in checks {
            if let Err(e) = res {
                errs.push(format!("{p} world -> {ep} should be dropped: {e:#}"));
            }
        }
    }
    let after = bed.drop_count("not-a-reply");
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(
        after > before,
        "drops[\"not-a-reply\"] should grow when the world opens connections to containers: \
         {before} -> {after}; drops = {:?}",
        bed.drops()
    );
}

/// Uplink made while the agent runs: the agent picks it up (status shows
/// it) and masquerade works; then the uplink address changes mid-run and
/// new flows (and an existing UDP socket's next datagram) leave with the new
/// address within a few seconds.
#[test]
fn uplink_appears_and_changes_address_live() {
    let bed = Bed::new();
    bed.network("mq", &["--subnet", "10.91.40.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let world = bed.make_world();
    let took = bed.wait_uplink(UPLINK, UPLINK_LIMIT);
    eprintln!("agent picked up uplink up0 after {took:?}");
    let srv = Servers::start(&world, WORLD);
    expect_egress(
        &a.ns,
        &world,
        &srv,
        UPLINK,
        true,
        "after the uplink appeared",
    );

    // A UDP socket that lives across the change.
    let dst = srv.udp();
    let long = LongUdp::start(&a.ns, dst, udp_ask);
    let before = long.ask();
    let before = before.unwrap_or_else(|e| panic!("long-lived UDP socket, first datagram: {e:#}"));
    assert!(
        within(&before, UPLINK),
        "long-lived UDP socket seen as {before}"
    );

    let host = bed.host_ns();
    ip_ns(host, &["addr", "del", "203.0.113.2/24", "dev", "up0"]).unwrap();
    ip_ns(host, &["addr", "add", "203.0.113.3/24", "dev", "up0"]).unwrap();
    ip_ns(host, &["route", "replace", "default", "via", "203.0.113.1"]).unwrap();
    let changed = Instant::now();
    let seen = loop {
        let last = match tcp_udp_from(&a.ns, &srv).0 {
            Ok(s) if *s.ip() == UPLINK2 => break s,
            r => r,
        };
        if changed.elapsed() > Duration::from_secs(10) {
            panic!(
                "10 s after the uplink address changed to {UPLINK2}, a new TCP flow still gives {last:?}; \
                 status uplinks = {}",
                status(&bed)["uplinks"]
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("new flows use {UPLINK2} after {:?}", changed.elapsed());
    assert!(SNAT.contains(&seen.port()), "new flow seen as {seen}");
    bed.wait_uplink(UPLINK2, Duration::from_secs(5));
    expect_egress(
        &a.ns,
        &world,
        &srv,
        UPLINK2,
        true,
        "after the uplink address changed",
    );

    let after = long.ask();
    drop(long);
    let after = after.unwrap_or_else(|e| {
        panic!("long-lived UDP socket after the address change (was {before}): {e:#}")
    });
    assert!(
        within(&after, UPLINK2),
        "long-lived UDP socket: seen as {before} before the change, {after} after; expected {UPLINK2}"
    );
}

/// With short timeouts, UDP and ICMP conntrack entries expire: status
/// `conntrack.flows` drops back to 0, and new flows work afterwards.
#[test]
fn conntrack_entries_expire() {
    let (bed, world) = bed_with_uplink(&[
        "--ct-timeout",
        "udp=2",
        "--ct-timeout",
        "udp-unreplied=2",
        "--ct-timeout",
        "icmp=2",
    ]);
    bed.network("mq", &["--subnet", "10.91.41.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let b = bed.container("b", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    let flows_of = |c: &Ctr| {
        let dst = srv.udp();
        let u = in_ns(&c.ns, move || udp_exchange(dst, b"ct"));
        let s = u.unwrap_or_else(|e| panic!("UDP from {}: {e:#}", c.name));
        assert!(within(&s, UPLINK), "UDP from {} seen as {s}", c.name);
        icmp(&c.ns, WORLD).unwrap_or_else(|e| panic!("ping from {}: {e:#}", c.name));
    };
    flows_of(&a);
    flows_of(&b);
    let n = conntrack_flows(&bed);
    assert!(
        n > 0,
        "status conntrack.flows should count the UDP and ICMP flows just made, got {n}"
    );
    let start = Instant::now();
    loop {
        let n = conntrack_flows(&bed);
        if n == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!(
                "conntrack.flows still {n} 15 s after the last packet (timeouts 2 s): {}",
                status(&bed)["conntrack"]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "conntrack empty {:?} after the last packet",
        start.elapsed()
    );
    flows_of(&a);
    assert!(
        conntrack_flows(&bed) > 0,
        "a new flow after expiry is tracked again"
    );
}

// ---------------------------------------------------------------- checksums

/// A TCP upload, a UDP exchange with a large datagram and a large ping,
/// from container `ns`; all must arrive from the uplink address.
fn exchange(ns: &str, srv: &Servers, what: &str) {
    let (t, u) = (srv.tcp(), srv.udp());
    let tcp = in_ns(ns, move || {
        TcpClient::open(t, None)?.send(256 * 1024, Duration::from_secs(10))
    });
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 31 + 5) as u8).collect();
    let udp = in_ns(ns, move || udp_exchange(u, &payload));
    let net = format!("--net={}", path_of(ns).display());
    let ping = run_timeout(
        "nsenter",
        &[
            &net,
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "-s",
            "1000",
            &WORLD.to_string(),
        ],
        Duration::from_secs(10),
    );
    let mut errs = Vec::new();
    for (p, r) in [("TCP", tcp), ("UDP", udp)] {
        match r {
            Ok(a) if within(&a, UPLINK) => {}
            Ok(a) => errs.push(format!("{p}: seen as {a}")),
            Err(e) => errs.push(format!("{p}: {e:#}")),
        }
    }
    if !ping.success() {
        errs.push(format!("ping -s 1000: {ping}"));
    }
    assert!(errs.is_empty(), "{what}:\n  - {}", errs.join("\n  - "));
}

/// Checksums stay right with and without checksum offload: the exchange
/// works with the veths' default offloads, and again with tx/rx checksum
/// offload off on the container's eth0 and the world's w0 — where tcpdump
/// on both ends (which then sees complete checksums) finds none wrong
/// after SNAT and reverse NAT.
#[test]
fn checksums_with_and_without_offload() {
    let (bed, world) = bed_with_uplink(&[]);
    bed.network("mq", &["--subnet", "10.91.42.0/24"]);
    let a = bed.container("a", &["--network", "mq"]);
    let srv = Servers::start(&world, WORLD);
    exchange(&a.ns, &srv, "with default offloads");

    ethtool_off(&a.ns, "eth0");
    ethtool_off(&world, "w0");
    let at_world = Capture::start(&bed, &world, "w0");
    let at_ctr = Capture::start(&bed, &a.ns, "eth0");
    exchange(
        &a.ns,
        &srv,
        "with checksum offload off on a/eth0 and world/w0",
    );
    let mut errs = Vec::new();
    for (where_, cap) in [
        ("world w0 (after SNAT)", at_world),
        ("a eth0 (after reverse NAT)", at_ctr),
    ] {
        let (bad, tcp_ok, udp_ok) = cap.finish();
        if !bad.is_empty() {
            errs.push(format!(
                "{where_}: bad checksums:\n    {}",
                bad.join("\n    ")
            ));
        }
        if !tcp_ok || !udp_ok {
            errs.push(format!(
                "{where_}: tcpdump verified no TCP ({tcp_ok}) or UDP ({udp_ok}) checksum"
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}
