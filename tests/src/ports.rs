//! Published-port probes: a [`PortServer`] answering on fixed ports inside
//! a netns, clients that read its answer (who it saw, which port answered,
//! where the answer came from), clients that must get no answer, and
//! [`Errs`] to collect failed expectations. Used by the publish tests and
//! by the runtime (Docker) tests.
//!
//! Addresses are IPv4 ([`SocketAddrV4`], the default) or either family
//! ([`SocketAddr`]: [`PortServer::start_dual`] listens on `[::]` for both,
//! an IPv4 client showing as `::ffff:a.b.c.d`).

use std::fmt::{Debug, Display};
use std::io::{ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::libc;

use crate::netns::{join, spawn_in};

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

pub fn v4(a: SocketAddr) -> anyhow::Result<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => bail!("unexpected IPv6 address {a}"),
    }
}

/// The address type of servers, clients and answers: [`SocketAddrV4`]
/// (IPv4 only) or [`SocketAddr`].
pub trait PeerAddr:
    Copy + Debug + Display + PartialEq + FromStr + Into<SocketAddr> + Send + 'static
where
    <Self as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    type Ip: PartialEq + Debug;
    /// The address servers listen on.
    const ANY: IpAddr;
    fn from_sock(a: SocketAddr) -> anyhow::Result<Self>;
    fn host(&self) -> Self::Ip;
}

impl PeerAddr for SocketAddrV4 {
    type Ip = Ipv4Addr;
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    fn from_sock(a: SocketAddr) -> anyhow::Result<Self> {
        v4(a)
    }
    fn host(&self) -> Ipv4Addr {
        *self.ip()
    }
}

impl PeerAddr for SocketAddr {
    type Ip = IpAddr;
    const ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    fn from_sock(a: SocketAddr) -> anyhow::Result<Self> {
        Ok(a)
    }
    fn host(&self) -> IpAddr {
        self.ip()
    }
}

/// The unspecified address of `dst`'s family (a client socket's bind).
pub fn any_of(dst: SocketAddr) -> IpAddr {
    if dst.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    }
}

// ---------------------------------------------------------------- server

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P {
    Tcp,
    Udp,
}

/// One connection or datagram a [`PortServer`] answered.
#[derive(Debug, Clone, Copy)]
pub struct Hit<A = SocketAddrV4> {
    pub proto: P,
    pub port: u16,
    pub peer: A,
}

/// TCP and UDP servers on 0.0.0.0:`ports` in a netns, all in one thread
/// (poll). Each TCP connection gets `PEER a:p PORT n\n` and is closed; each
/// datagram is answered with that line followed by the datagram. Every hit
/// is recorded. Stopped on drop; lives at most two minutes.
pub struct PortServer<A = SocketAddrV4> {
    pub hits: Arc<Mutex<Vec<Hit<A>>>>,
    pub stop: Arc<AtomicBool>,
    pub h: Option<JoinHandle<anyhow::Result<()>>>,
}

pub const SERVER_LIFETIME: Duration = Duration::from_secs(120);

pub fn answer_line(peer: impl Display, port: u16) -> String {
    format!("PEER {peer} PORT {port}\n")
}

impl PortServer {
    /// On 0.0.0.0 (IPv4 only).
    pub fn start(ns: &str, tcp: &[u16], udp: &[u16]) -> PortServer {
        PortServer::serve(ns, tcp, udp)
    }
}

impl PortServer<SocketAddr> {
    /// On `[::]`, for IPv6 and IPv4 clients alike.
    pub fn start_dual(ns: &str, tcp: &[u16], udp: &[u16]) -> PortServer<SocketAddr> {
        PortServer::serve(ns, tcp, udp)
    }
}

impl<A: PeerAddr> PortServer<A>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    fn serve(ns: &str, tcp: &[u16], udp: &[u16]) -> PortServer<A> {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let (tcp, udp) = (tcp.to_vec(), udp.to_vec());
        let (h2, st) = (hits.clone(), stop.clone());
        let h = spawn_in(ns, move || {
            let mut ls = Vec::new();
            for &p in &tcp {
                let l = TcpListener::bind((A::ANY, p)).with_context(|| format!("bind tcp {p}"))?;
                l.set_nonblocking(true)?;
                ls.push((l, p));
            }
            let mut us = Vec::new();
            for &p in &udp {
                let s = UdpSocket::bind((A::ANY, p)).with_context(|| format!("bind udp {p}"))?;
                s.set_nonblocking(true)?;
                us.push((s, p));
            }
            let _ = tx.send(());
            let mut fds: Vec<libc::pollfd> = ls
                .iter()
                .map(|(l, _)| l.as_raw_fd())
                .chain(us.iter().map(|(s, _)| s.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let start = Instant::now();
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
                // SAFETY: a valid array of pollfds.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
                if n <= 0 {
                    continue;
                }
                for (i, pfd) in fds.iter_mut().enumerate() {
                    if pfd.revents == 0 {
                        continue;
                    }
                    pfd.revents = 0;
                    if i < ls.len() {
                        let (l, port) = &ls[i];
                        while let Ok((mut s, peer)) = l.accept() {
                            let peer = A::from_sock(peer)?;
                            h2.lock().unwrap().push(Hit {
                                proto: P::Tcp,
                                port: *port,
                                peer,
                            });
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                            let _ = s.write_all(answer_line(peer, *port).as_bytes());
                            // Dropped: FIN after the line (nothing unread).
                        }
                    } else {
                        let (s, port) = &us[i - ls.len()];
                        // Errors: would-block and queued ICMP errors.
                        while let Ok((n, src)) = s.recv_from(&mut buf) {
                            let src = A::from_sock(src)?;
                            h2.lock().unwrap().push(Hit {
                                proto: P::Udp,
                                port: *port,
                                peer: src,
                            });
                            let mut reply = answer_line(src, *port).into_bytes();
                            reply.extend_from_slice(&buf[..n]);
                            let _ = s.send_to(&reply, src.into());
                        }
                    }
                }
            }
            Ok(())
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            stop.store(true, Ordering::SeqCst);
            panic!("port server in {ns} did not start: {:?}", join(h).err());
        }
        PortServer {
            hits,
            stop,
            h: Some(h),
        }
    }

    pub fn hits(&self) -> Vec<Hit<A>> {
        self.hits.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

impl<A> Drop for PortServer<A> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.h.take() {
            if let Err(e) = join(h) {
                eprintln!("warning: port server: {e:#}");
            }
        }
    }
}

// ---------------------------------------------------------------- clients

/// What a client got back from a [`PortServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<A = SocketAddrV4> {
    /// The client address the server saw.
    pub seen: A,
    /// The server (container) port that answered.
    pub port: u16,
    /// Where the answer came from as the client sees it (TCP peer address,
    /// UDP source address).
    pub from: A,
    /// The client socket's own address.
    pub local: A,
}

pub const PAYLOAD: &[u8] = b"netd-publish-probe";

pub fn parse_answer<A: PeerAddr>(line: &str) -> anyhow::Result<(A, u16)>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["PEER", peer, "PORT", port] => Ok((
            peer.parse()
                .with_context(|| format!("bad peer in {line:?}"))?,
            port.parse()
                .with_context(|| format!("bad port in {line:?}"))?,
        )),
        _ => bail!("expected `PEER a:p PORT n`, got {line:?}"),
    }
}

/// TCP connect to `dst` and read the server's answer.
pub fn tcp_ask<A: PeerAddr>(dst: A) -> anyhow::Result<Answer<A>>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
        .with_context(|| format!("TCP connect to {dst}"))?;
    let from = A::from_sock(s.peer_addr()?)?;
    let local = A::from_sock(s.local_addr()?)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .with_context(|| format!("TCP {dst}: reading the answer"))?;
    let (seen, port) = parse_answer(text.trim()).with_context(|| format!("TCP {dst}"))?;
    Ok(Answer {
        seen,
        port,
        from,
        local,
    })
}

/// UDP datagram to `dst` from an unconnected socket (sendmsg/recvmsg);
/// returns the answer and the source it came from (any source is taken,
/// so that a wrong one is reported rather than ignored).
pub fn udp_ask<A: PeerAddr>(dst: A) -> anyhow::Result<Answer<A>>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    let s = UdpSocket::bind((any_of(dst.into()), 0))?;
    s.set_read_timeout(Some(Duration::from_millis(400)))?;
    let local = A::from_sock(s.local_addr()?)?;
    let mut buf = vec![0u8; 65536];
    let mut last = String::from("no answer");
    for _ in 0..6 {
        if let Err(e) = s.send_to(PAYLOAD, dst.into()) {
            last = format!("send: {e}");
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        match s.recv_from(&mut buf) {
            Ok((n, src)) => {
                let msg = &buf[..n];
                let nl = msg
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or_else(|| anyhow!("UDP {dst}: answer without a line: {msg:?}"))?;
                let (seen, port) = parse_answer(&String::from_utf8_lossy(&msg[..nl]))
                    .with_context(|| format!("UDP {dst}"))?;
                if &msg[nl + 1..] != PAYLOAD {
                    bail!("UDP {dst}: the payload did not come back intact");
                }
                return Ok(Answer {
                    seen,
                    port,
                    from: A::from_sock(src)?,
                    local,
                });
            }
            Err(e) => last = format!("recv: {e}"),
        }
    }
    bail!("UDP to {dst}: {last}")
}

pub fn ask<A: PeerAddr>(p: P, dst: A) -> anyhow::Result<Answer<A>>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    match p {
        P::Tcp => tcp_ask(dst),
        P::Udp => udp_ask(dst),
    }
}

/// TCP to `dst` must not get an answer; returns how the connect failed.
pub fn tcp_unanswered<A: PeerAddr>(dst: A) -> anyhow::Result<ErrorKind>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    match TcpStream::connect_timeout(&dst.into(), Duration::from_secs(1)) {
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {
            bail!("harness: no route to {dst}: {e}")
        }
        Err(e) => Ok(e.kind()),
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            bail!(
                "TCP to {dst} connected (local {:?}, peer {:?}), answer {text:?}",
                s.local_addr(),
                s.peer_addr()
            )
        }
    }
}

/// No UDP answer comes back for datagrams to `dst`.
pub fn udp_unanswered<A: PeerAddr>(dst: A) -> anyhow::Result<ErrorKind>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    let s = UdpSocket::bind((any_of(dst.into()), 0))?;
    s.set_read_timeout(Some(Duration::from_millis(250)))?;
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        if let Err(e) = s.send_to(PAYLOAD, dst.into()) {
            if e.raw_os_error() == Some(libc::ENETUNREACH) {
                bail!("harness: no route to {dst}: {e}");
            }
        }
        if let Ok((n, src)) = s.recv_from(&mut buf) {
            bail!(
                "UDP to {dst} was answered from {src}: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
    Ok(ErrorKind::TimedOut)
}

pub fn unanswered<A: PeerAddr>(p: P, dst: A) -> anyhow::Result<ErrorKind>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    match p {
        P::Tcp => tcp_unanswered(dst),
        P::Udp => udp_unanswered(dst),
    }
}

/// Runs `f` on a thread in netns `ns` and waits for it.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    join(spawn_in(ns, f))
}

pub fn ask_from<A: PeerAddr>(ns: &str, p: P, dst: A) -> anyhow::Result<Answer<A>>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    in_ns(ns, move || ask(p, dst))
}

pub fn unanswered_from<A: PeerAddr>(ns: &str, p: P, dst: A) -> anyhow::Result<ErrorKind>
where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    in_ns(ns, move || unanswered(p, dst))
}

/// One exchange with a [`PortServer`] started for it: the server on
/// `0.0.0.0:port` (`p`) in `server_ns`, the client in `client_ns` asking
/// `dst` (a published port, a gateway, …) up to three times. The answer
/// must come from container port `port`; stopped before it returns.
///
/// ```ignore
/// let a = ask_via(P::Tcp, &ctr.ns, 80, &world, sa(UPLINK, 8080))?;
/// assert_eq!(*a.seen.ip(), WORLD); // the client address the container saw
/// ```
pub fn ask_via(
    p: P,
    server_ns: &str,
    port: u16,
    client_ns: &str,
    dst: SocketAddrV4,
) -> anyhow::Result<Answer> {
    let (tcp, udp) = match p {
        P::Tcp => (vec![port], vec![]),
        P::Udp => (vec![], vec![port]),
    };
    let _server = PortServer::start(server_ns, &tcp, &udp);
    let mut last = None;
    for _ in 0..3 {
        match ask_from(client_ns, p, dst) {
            Ok(a) if a.port == port => return Ok(a),
            Ok(a) => bail!("{p:?} {dst}: answered by port {}, expected {port}", a.port),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .expect("three tries")
        .context(format!("{p:?} from {client_ns} to {dst}")))
}

/// Sends `payload` from `s` to `dst` until an answer from `dst` comes (8
/// tries, 400 ms each): a line that `peer` reads the address the server
/// saw from, then `payload` echoed intact. Returns that address.
pub fn udp_echo<A>(
    s: &UdpSocket,
    dst: A,
    payload: &[u8],
    peer: fn(&str) -> anyhow::Result<A>,
) -> anyhow::Result<A>
where
    A: Copy + Display + Into<SocketAddr>,
{
    s.set_read_timeout(Some(Duration::from_millis(400)))?;
    let mut buf = vec![0u8; 65536];
    let mut last = String::from("no answer");
    for _ in 0..8 {
        if let Err(e) = s.send_to(payload, dst.into()) {
            last = format!("send: {e}");
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        match s.recv_from(&mut buf) {
            Ok((n, src)) if src == dst.into() => {
                let msg = &buf[..n];
                let Some(nl) = msg.iter().position(|&b| b == b'\n') else {
                    bail!("answer without a line: {:?}", String::from_utf8_lossy(msg));
                };
                let seen = peer(&String::from_utf8_lossy(&msg[..nl]))?;
                if &msg[nl + 1..] != payload {
                    bail!(
                        "the {}-byte payload did not come back intact ({} bytes back)",
                        payload.len(),
                        n - nl - 1
                    );
                }
                return Ok(seen);
            }
            Ok((_, src)) => last = format!("datagram from unexpected {src}"),
            Err(e) => last = format!("recv: {e}"),
        }
    }
    bail!("UDP to {dst}: {last}")
}

/// A UDP port of `ip` in netns `ns` that nobody listens on (bound there
/// and closed again).
pub fn closed_udp_port(ns: &str, ip: IpAddr) -> anyhow::Result<u16> {
    in_ns(ns, move || {
        Ok(UdpSocket::bind((ip, 0))?.local_addr()?.port())
    })
}

/// From netns `ns`, a UDP socket connected to `dst` (a closed port) sends
/// until the ICMP port unreachable coming back fails it with
/// ECONNREFUSED (5 datagrams, 700 ms for each answer).
pub fn udp_refused_from(ns: &str, dst: SocketAddr) -> anyhow::Result<()> {
    in_ns(ns, move || {
        let s = UdpSocket::bind((any_of(dst), 0))?;
        s.connect(dst)?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        let mut buf = [0u8; 64];
        let mut last = String::new();
        for _ in 0..5 {
            match s.send(b"anyone?") {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                Err(e) => last = format!("send: {e}"),
                Ok(_) => match s.recv(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                    Err(e) => last = format!("recv: {e}"),
                    Ok(n) => last = format!("unexpected {n}-byte answer"),
                },
            }
        }
        bail!("no ECONNREFUSED after 5 datagrams to {dst}; last: {last}")
    })
}

// ---------------------------------------------------------------- checks

/// Collects failed expectations and panics with all of them.
#[derive(Default)]
pub struct Errs(pub Vec<String>);

impl Errs {
    /// `r` must be an answer from container port `port`, coming from
    /// `from`, with the server seeing one of `seen` as client address.
    pub fn answer<A: PeerAddr>(
        &mut self,
        what: &str,
        r: anyhow::Result<Answer<A>>,
        port: u16,
        from: A,
        seen: &[A::Ip],
    ) -> Option<Answer<A>>
    where
        <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
    {
        match r {
            Err(e) => {
                self.0.push(format!("{what}: {e:#}"));
                None
            }
            Ok(a) => {
                if a.port != port {
                    self.0.push(format!(
                        "{what}: answered by container port {}, expected {port}",
                        a.port
                    ));
                }
                if a.from != from {
                    self.0.push(format!(
                        "{what}: the answer came from {}, expected {from}",
                        a.from
                    ));
                }
                if !seen.contains(&a.seen.host()) {
                    self.0.push(format!(
                        "{what}: the container saw client {}, expected one of {seen:?}",
                        a.seen
                    ));
                }
                Some(a)
            }
        }
    }

    pub fn ok<T>(&mut self, what: &str, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{what}: {e:#}"));
                None
            }
        }
    }

    pub fn check(&mut self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.0.push(msg());
        }
    }

    pub fn done(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} failed:\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// An address of `port` (a host's, a container's own).
pub type At<A> = fn(u16) -> A;

/// The checks of range `9000-9004:7000-7004` (TCP and UDP) published at
/// `host(port)`, container `name` (netns `ns`) serving `srv` on
/// 6999..=7005: from `world` each host port is answered by its own
/// container port, the server seeing one of `seen`; the neighbours 8999
/// and 9005 by nothing; no container port outside the range is reached;
/// and the container itself reaches 6999 and 7005 at `lo(port)` (control).
pub fn range_one_to_one<A: PeerAddr>(
    errs: &mut Errs,
    world: &str,
    (name, ns): (&str, &str),
    srv: &PortServer<A>,
    (host, lo): (At<A>, At<A>),
    seen: &[A::Ip],
) where
    <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    for i in 0..5u16 {
        for p in [P::Tcp, P::Udp] {
            let dst = host(9000 + i);
            errs.answer(
                &format!("{p:?} world -> {dst}"),
                ask_from(world, p, dst),
                7000 + i,
                dst,
                seen,
            );
        }
    }
    // Just outside the range: nothing, though 6999 and 7005 listen.
    for port in [8999, 9005] {
        for p in [P::Tcp, P::Udp] {
            let dst = host(port);
            errs.ok(
                &format!("{p:?} world -> {dst} (outside the range)"),
                unanswered_from(world, p, dst),
            );
        }
    }
    let strays: Vec<Hit<A>> = srv
        .hits()
        .into_iter()
        .filter(|h| !(7000..=7004).contains(&h.port))
        .collect();
    errs.check(strays.is_empty(), || {
        format!("container ports outside the range were reached: {strays:?}")
    });
    // The neighbours do listen: the container itself reaches them.
    for port in [6999, 7005] {
        let dst = lo(port);
        errs.ok(
            &format!("TCP {name} -> {dst} (control)"),
            ask_from(ns, P::Tcp, dst),
        );
    }
}

/// What one side of [`big_udp_exchange`] got: the datagram's length, its
/// sender, and whether every byte was the one sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigDatagram {
    pub len: usize,
    pub from: SocketAddr,
    pub intact: bool,
}

/// A UDP datagram of `len` bytes (0x5a) from a client in `client_ns` to
/// `to`, answered by a server in `server_ns` bound to `bind` with `len`
/// bytes of 0xa5: larger than a 1500-byte link carries, both leave their
/// sender in fragments. The client sends up to three times (a datagram
/// lost to neighbour discovery is sent again), each wait bounded. Returns
/// what the server got and what the client got back; an error says which
/// side got nothing.
pub fn big_udp_exchange(
    server_ns: &str,
    bind: SocketAddr,
    client_ns: &str,
    to: SocketAddr,
    len: usize,
) -> (anyhow::Result<BigDatagram>, anyhow::Result<BigDatagram>) {
    let server = spawn_in(server_ns, move || {
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = vec![0u8; 65536];
        let (n, from) = s
            .recv_from(&mut buf)
            .context("the server got no datagram")?;
        let got = BigDatagram {
            len: n,
            from,
            intact: buf[..n].iter().all(|&b| b == 0x5a),
        };
        // The first answer, and one for each datagram the client sends
        // again (its answer lost), until it stops.
        s.send_to(&vec![0xa5; len], from)?;
        s.set_read_timeout(Some(Duration::from_millis(1500)))?;
        while let Ok((_, again)) = s.recv_from(&mut buf) {
            s.send_to(&vec![0xa5; len], again)?;
        }
        Ok(got)
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = in_ns(client_ns, move || {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            s.send_to(&vec![0x5a; len], to)?;
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                return Ok(BigDatagram {
                    len: n,
                    from,
                    intact: buf[..n].iter().all(|&b| b == 0xa5),
                });
            }
        }
        bail!("the client got no answer from {to}")
    });
    (join(server), client)
}
