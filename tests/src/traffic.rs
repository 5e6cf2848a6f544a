//! Real ICMP, TCP and UDP probes between namespaces.
//!
//! A positive probe returns the source address the receiver saw (TCP peer
//! address, UDP `recv_from` address); a negative probe succeeds only when
//! nothing got through. Negative probes fail loudly on harness problems
//! (bind errors, missing routes) so that "dropped" never passes by accident.
//! Every probe is bounded: positive ones by a few seconds, negative ones by
//! about 1.5 s. Addresses may be IPv4 or IPv6 (ICMPv6 echo, TCP and UDP
//! over IPv6 alike).

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::cmd::run_timeout;
use crate::netns::{join, path_of, spawn_in};

/// An address inside a namespace: where a probe is sent from or to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ep {
    /// Label for messages, e.g. `a/net1` or `host/10.91.1.1`.
    pub name: String,
    /// Netns name (under /run/netns).
    pub ns: String,
    pub ip: IpAddr,
}

impl Ep {
    pub fn new(name: &str, ns: &str, ip: Ipv4Addr) -> Ep {
        Ep::at(name, ns, ip.into())
    }

    /// An endpoint by its IPv6 address.
    pub fn v6(name: &str, ns: &str, ip: Ipv6Addr) -> Ep {
        Ep::at(name, ns, ip.into())
    }

    pub fn at(name: &str, ns: &str, ip: IpAddr) -> Ep {
        Ep {
            name: name.to_string(),
            ns: ns.to_string(),
            ip,
        }
    }

    /// The IPv4 address (panics on an IPv6 endpoint: a test bug).
    pub fn ip4(&self) -> Ipv4Addr {
        match self.ip {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => panic!("{} has IPv6 address {ip}, not IPv4", self.name),
        }
    }
}

/// The unspecified address of `ip`'s family (what a sender binds).
fn any_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// A peer address as IPv4 or IPv6 (an IPv4-mapped IPv6 peer as IPv4).
fn plain(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(a) => IpAddr::V4(*a.ip()),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(*a.ip()), IpAddr::V4),
    }
}

impl fmt::Display for Ep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.ip)
    }
}

const TOKEN: &[u8] = b"netd-probe-7f3a";
const POS_CONNECT: Duration = Duration::from_secs(2);
const NEG_CONNECT: Duration = Duration::from_secs(1);
const SERVER_MAX: Duration = Duration::from_secs(8);
const GRACE: Duration = Duration::from_millis(300);
/// Echo requests [`no_icmp`] sends.
const NEG_PINGS: u64 = 2;
/// Rounds of datagrams [`no_udp`] sends (250 ms apart), and datagrams per
/// round.
const NEG_UDP_ROUNDS: u64 = 3;
const NEG_UDP_BURST: u64 = 6;

/// Packets the probes of one denied flow send that the first hop drops
/// (each counted once by netd): [`NEG_PINGS`] echo requests, the UDP
/// datagrams and at least one TCP SYN. Well above what the containers' own
/// background traffic (IPv6 router solicitations, MLD) adds to a counter
/// during a check, so a drop counter cannot be met by that alone.
pub const DENY_PACKETS: u64 = NEG_PINGS + NEG_UDP_ROUNDS * NEG_UDP_BURST + 1;

fn no_route(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ENETUNREACH)
}

/// Waits until `stop` is set (plus a grace period) or `max` passes.
fn stop_reached(stop: &AtomicBool, stopped_at: &mut Option<Instant>, start: Instant) -> bool {
    if start.elapsed() > SERVER_MAX {
        return true;
    }
    if stop.load(Ordering::SeqCst) {
        let t = *stopped_at.get_or_insert_with(Instant::now);
        return t.elapsed() > GRACE;
    }
    false
}

/// Starts a TCP server on `to` that accepts one connection, echoes what it
/// reads and returns the peer address. Returns the port and the handle.
fn tcp_server(
    to: &Ep,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(u16, std::thread::JoinHandle<anyhow::Result<Option<IpAddr>>>)> {
    let (ptx, prx) = mpsc::channel::<u16>();
    let ip = to.ip;
    let h = spawn_in(&to.ns, move || {
        let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind tcp {ip}"))?;
        let _ = ptx.send(l.local_addr()?.port());
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let mut stopped_at = None;
        loop {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf) {
                        let _ = s.write_all(&buf[..n]);
                    }
                    return Ok(Some(plain(peer)));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if stop_reached(&stop, &mut stopped_at, start) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("accept"),
            }
        }
    });
    match prx.recv_timeout(Duration::from_secs(5)) {
        Ok(p) => Ok((p, h)),
        Err(_) => Err(join(h)
            .err()
            .unwrap_or_else(|| anyhow!("tcp server did not start"))),
    }
}

/// TCP from `from_ns` to `to`; returns the peer address the server saw.
pub fn tcp(from_ns: &str, to: &Ep) -> anyhow::Result<IpAddr> {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, server) = tcp_server(to, stop.clone()).context("harness")?;
    let addr = SocketAddr::from((to.ip, port));
    let client = spawn_in(from_ns, move || {
        let mut last = None;
        for _ in 0..2 {
            match TcpStream::connect_timeout(&addr, POS_CONNECT) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(TOKEN)?;
                    let mut buf = vec![0u8; TOKEN.len()];
                    s.read_exact(&mut buf).context("reading echo")?;
                    if buf != TOKEN {
                        bail!("echo mismatch");
                    }
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow!("connect to {addr}: {}", last.unwrap()))
    });
    let c = join(client);
    stop.store(true, Ordering::SeqCst);
    let s = join(server);
    match (c, s) {
        (Ok(()), Ok(Some(peer))) => Ok(peer),
        (c, s) => bail!("client: {c:?}; server: {s:?}"),
    }
}

/// TCP from `from_ns` to `to` must not connect, and the server must accept
/// nothing.
pub fn no_tcp(from_ns: &str, to: &Ep) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, server) = tcp_server(to, stop.clone()).context("harness")?;
    let addr = SocketAddr::from((to.ip, port));
    let client = spawn_in(from_ns, move || {
        match TcpStream::connect_timeout(&addr, NEG_CONNECT) {
            Ok(s) => Ok(Some(s.local_addr()?)),
            Err(e) if no_route(&e) => Err(anyhow!("harness: no route to {addr}: {e}")),
            Err(_) => Ok(None),
        }
    });
    let c = join(client);
    stop.store(true, Ordering::SeqCst);
    let s = join(server).context("harness: tcp server")?;
    match (c?, s) {
        (None, None) => Ok(()),
        (c, s) => bail!("TCP got through: client connected from {c:?}, server accepted peer {s:?}"),
    }
}

/// Starts a UDP receiver on `to`: returns the first datagram's source,
/// echoing it back when `echo`.
fn udp_receiver(
    to: &Ep,
    echo: bool,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(u16, std::thread::JoinHandle<anyhow::Result<Option<IpAddr>>>)> {
    let (ptx, prx) = mpsc::channel::<u16>();
    let ip = to.ip;
    let h = spawn_in(&to.ns, move || {
        let s = UdpSocket::bind((ip, 0)).with_context(|| format!("bind udp {ip}"))?;
        let _ = ptx.send(s.local_addr()?.port());
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let start = Instant::now();
        let mut stopped_at = None;
        let mut buf = [0u8; 256];
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, src)) => {
                    if &buf[..n] != TOKEN {
                        continue;
                    }
                    if echo {
                        let _ = s.send_to(&buf[..n], src);
                    }
                    return Ok(Some(plain(src)));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop_reached(&stop, &mut stopped_at, start) {
                        return Ok(None);
                    }
                }
                // ICMP errors queued on the socket: ignore and keep reading.
                Err(_) => {
                    if stop_reached(&stop, &mut stopped_at, start) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    });
    match prx.recv_timeout(Duration::from_secs(5)) {
        Ok(p) => Ok((p, h)),
        Err(_) => Err(join(h)
            .err()
            .unwrap_or_else(|| anyhow!("udp receiver did not start"))),
    }
}

fn udp_probe(from_ns: &str, to: &Ep, echo: bool) -> anyhow::Result<IpAddr> {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, rx) = udp_receiver(to, echo, stop.clone()).context("harness")?;
    let addr = SocketAddr::from((to.ip, port));
    let sender = spawn_in(from_ns, move || {
        let s = UdpSocket::bind((any_of(addr.ip()), 0))?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut last = String::from("no reply");
        let mut buf = [0u8; 256];
        for _ in 0..8 {
            if let Err(e) = s.send_to(TOKEN, addr) {
                last = format!("send: {e}");
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            if !echo {
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            match s.recv_from(&mut buf) {
                Ok((n, src)) if src == addr && &buf[..n] == TOKEN => return Ok(()),
                Ok((_, src)) => last = format!("unexpected datagram from {src}"),
                Err(e) => last = format!("recv: {e}"),
            }
        }
        if echo {
            bail!("no echo from {addr}: {last}")
        }
        Ok(())
    });
    let c = join(sender);
    stop.store(true, Ordering::SeqCst);
    let r = join(rx);
    match (c, r) {
        (Ok(()), Ok(Some(src))) => Ok(src),
        (c, r) => bail!("sender: {c:?}; receiver saw: {r:?}"),
    }
}

/// A UDP datagram from `from_ns` reaches `to` and the echo comes back.
/// Returns the source address the receiver saw.
pub fn udp(from_ns: &str, to: &Ep) -> anyhow::Result<IpAddr> {
    udp_probe(from_ns, to, true)
}

/// A UDP datagram from `from_ns` reaches `to` (no reply needed). Returns
/// the source address the receiver saw.
pub fn udp_oneway(from_ns: &str, to: &Ep) -> anyhow::Result<IpAddr> {
    udp_probe(from_ns, to, false)
}

/// No UDP datagram from `from_ns` arrives at `to`.
pub fn no_udp(from_ns: &str, to: &Ep) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, rx) = udp_receiver(to, false, stop.clone()).context("harness")?;
    let addr = SocketAddr::from((to.ip, port));
    let sender = spawn_in(from_ns, move || {
        let s = UdpSocket::bind((any_of(addr.ip()), 0))?;
        for i in 0..NEG_UDP_ROUNDS * NEG_UDP_BURST {
            if i > 0 && i % NEG_UDP_BURST == 0 {
                std::thread::sleep(Duration::from_millis(250));
            }
            if let Err(e) = s.send_to(TOKEN, addr) {
                if no_route(&e) {
                    bail!("harness: no route to {addr}: {e}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    });
    let c = join(sender);
    stop.store(true, Ordering::SeqCst);
    let r = join(rx).context("harness: udp receiver")?;
    c?;
    match r {
        None => Ok(()),
        Some(src) => bail!("UDP datagram arrived at {addr} from {src}"),
    }
}

fn ping(from_ns: &str, args: &[&str]) -> crate::cmd::Out {
    let net = format!("--net={}", path_of(from_ns).display());
    let mut all = vec![net.as_str(), "ping", "-n"];
    all.extend_from_slice(args);
    run_timeout("nsenter", &all, Duration::from_secs(10))
}

/// `ping` from `from_ns` to `to` gets a reply (3 tries, 2 s each at most);
/// ICMPv6 echo for an IPv6 address.
pub fn icmp(from_ns: &str, to: impl Into<IpAddr>) -> anyhow::Result<()> {
    let dst = to.into().to_string();
    let mut last = None;
    for _ in 0..3 {
        let out = ping(from_ns, &["-c", "1", "-W", "2", &dst]);
        if out.success() {
            return Ok(());
        }
        last = Some(out);
    }
    bail!("no echo reply:\n{}", last.unwrap())
}

/// `ping` from `from_ns` to `to` gets no reply (exit code 1: sent, nothing
/// came back). Any other failure is reported as a harness problem.
pub fn no_icmp(from_ns: &str, to: impl Into<IpAddr>) -> anyhow::Result<()> {
    let dst = to.into().to_string();
    let count = NEG_PINGS.to_string();
    let out = ping(from_ns, &["-c", &count, "-i", "0.2", "-W", "1", &dst]);
    match out.code {
        Some(1) => Ok(()),
        Some(0) => bail!("ICMP echo got a reply:\n{out}"),
        _ => bail!("harness: ping failed to run properly:\n{out}"),
    }
}

/// An expected outcome between two endpoints.
#[derive(Debug, Clone)]
pub struct Flow {
    pub from: Ep,
    pub to: Ep,
    pub allowed: bool,
    /// For a denied flow checked by [`crate::Bed::expect`]: the drop reason
    /// (as `netd status` names it) whose counter must grow by at least
    /// [`DENY_PACKETS`] for this flow.
    pub reason: Option<String>,
}

/// `from` reaches `to` with ICMP, TCP and UDP (and the replies come back).
pub fn allow(from: &Ep, to: &Ep) -> Flow {
    Flow {
        from: from.clone(),
        to: to.clone(),
        allowed: true,
        reason: None,
    }
}

/// Nothing from `from` reaches `to`: no ICMP reply, no TCP connection, no
/// UDP datagram.
pub fn deny(from: &Ep, to: &Ep) -> Flow {
    Flow {
        from: from.clone(),
        to: to.clone(),
        allowed: false,
        reason: None,
    }
}

/// Nothing from `from` reaches `to`, and netd is the one that drops it:
/// [`crate::Bed::expect`] wants `drops[reason]` to grow by what the probes
/// of this flow sent ([`DENY_PACKETS`]), so a path that carries nothing
/// anyway (a broken topology, a drop elsewhere) fails the check.
pub fn dropped(from: &Ep, to: &Ep, reason: &str) -> Flow {
    Flow {
        reason: Some(reason.to_string()),
        ..deny(from, to)
    }
}

fn check_flow(f: &Flow) -> Vec<String> {
    let what = |p: &str| {
        format!(
            "{p} {} -> {} should be {}",
            f.from,
            f.to,
            if f.allowed { "allowed" } else { "dropped" }
        )
    };
    let mut errs = Vec::new();
    std::thread::scope(|s| {
        if f.allowed {
            let i = s.spawn(|| icmp(&f.from.ns, f.to.ip));
            let t = s.spawn(|| tcp(&f.from.ns, &f.to));
            let u = s.spawn(|| udp(&f.from.ns, &f.to));
            if let Err(e) = i.join().unwrap() {
                errs.push(format!("{}: {e:#}", what("ICMP")));
            }
            for (p, r) in [("TCP", t.join().unwrap()), ("UDP", u.join().unwrap())] {
                match r {
                    Ok(src) if src == f.from.ip => {}
                    Ok(src) => errs.push(format!(
                        "{}: receiver saw source {src}, expected {}",
                        what(p),
                        f.from.ip
                    )),
                    Err(e) => errs.push(format!("{}: {e:#}", what(p))),
                }
            }
        } else {
            let i = s.spawn(|| no_icmp(&f.from.ns, f.to.ip));
            let t = s.spawn(|| no_tcp(&f.from.ns, &f.to));
            let u = s.spawn(|| no_udp(&f.from.ns, &f.to));
            for (p, r) in [
                ("ICMP", i.join().unwrap()),
                ("TCP", t.join().unwrap()),
                ("UDP", u.join().unwrap()),
            ] {
                if let Err(e) = r {
                    errs.push(format!("{}: {e:#}", what(p)));
                }
            }
        }
    });
    errs
}

/// Checks all flows concurrently; returns what failed (empty: all as
/// expected). For an allowed flow the TCP and UDP receivers must see
/// `from.ip` as the source address.
pub fn check(flows: &[Flow]) -> Vec<String> {
    std::thread::scope(|s| {
        let hs: Vec<_> = flows.iter().map(|f| s.spawn(|| check_flow(f))).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Like [`check`], panicking with every flow that failed.
pub fn expect(flows: &[Flow]) {
    let errs = check(flows);
    if !errs.is_empty() {
        panic!(
            "{} of the expected flows failed:\n  - {}",
            errs.len(),
            errs.join("\n  - ")
        );
    }
}

/// `from` reaches `to` (all protocols).
pub fn reach(from: &Ep, to: &Ep) {
    expect(&[allow(from, to)]);
}

/// `a` and `b` reach each other (all protocols, both directions).
pub fn reach_both(a: &Ep, b: &Ep) {
    expect(&[allow(a, b), allow(b, a)]);
}

/// Nothing from `from` reaches `to`.
pub fn blocked(from: &Ep, to: &Ep) {
    expect(&[deny(from, to)]);
}

/// Nothing gets through between `a` and `b`, either way.
pub fn blocked_both(a: &Ep, b: &Ep) {
    expect(&[deny(a, b), deny(b, a)]);
}
