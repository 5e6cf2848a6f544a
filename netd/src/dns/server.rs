//! The listeners: UDP and TCP on GATEWAY:53 of one served network, or on
//! 127.0.0.11:53 inside one container's netns. Each query is checked
//! against the per-source limits, then answered from the current table or
//! forwarded in a task of its own. Dropping a `Listener` aborts its tasks
//! (and with them every forward and connection they own), which closes its
//! sockets.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::{JoinHandle, JoinSet},
    time::{sleep, timeout},
};
use tracing::{debug, warn};

use super::{
    answer::{self, Outcome, MAX_QUERY},
    forward,
    records::Table,
    Shared, CONTAINER_RESOLVER,
};

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections one listener serves at once.
const MAX_TCP: usize = 128;
/// How long a listener keeps trying to bind (the address may still be held
/// by the listener of a network that was just removed).
const BIND_RETRY: Duration = Duration::from_secs(10);
/// How often a listener inside a container netns that could not bind tries
/// again (for as long as the container is on a served network).
const NETNS_RETRY: Duration = Duration::from_secs(1);

pub struct Listener {
    tasks: Vec<JoinHandle<()>>,
    /// Both sockets are bound and served.
    bound: Arc<AtomicBool>,
}

impl Listener {
    pub fn bound(&self) -> bool {
        self.bound.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Who a query on a listener comes from.
#[derive(Clone)]
enum Asker {
    /// A gateway listener of network `via`: whoever the source address
    /// says.
    BySource { via: Arc<str> },
    /// The listener inside container `id`'s netns: that container, whatever
    /// the (loopback) source address.
    Container { id: Arc<str> },
}

impl Asker {
    /// The network the query came through and the address it counts as
    /// coming from. A container no longer on a served network asks through
    /// no network (REFUSED) until its listener is stopped.
    fn identify(&self, table: &Table, peer: Ipv4Addr) -> (Arc<str>, IpAddr) {
        match self {
            Asker::BySource { via } => (via.clone(), peer.into()),
            Asker::Container { id } => match table.resolver(id) {
                Some((net, ip)) => (net.into(), ip),
                None => ("".into(), peer.into()),
            },
        }
    }
}

/// Starts serving network `via` on `gateway`:53.
pub fn start(shared: Arc<Shared>, via: String, gateway: Ipv4Addr) -> Listener {
    let addr = SocketAddrV4::new(gateway, 53);
    let via: Arc<str> = via.into();
    let bound = Arc::new(AtomicBool::new(false));
    let asker = Asker::BySource { via };
    let udp = {
        let (shared, asker) = (shared.clone(), asker.clone());
        tokio::spawn(async move {
            let Some(sock) = bind_retrying(addr, bind_udp).await else {
                return;
            };
            let Ok(sock) = UdpSocket::from_std(sock.into()) else {
                return;
            };
            debug!(%addr, "DNS listening (udp)");
            serve_udp(shared, asker, Arc::new(sock)).await
        })
    };
    let tcp = {
        let bound = bound.clone();
        tokio::spawn(async move {
            let Some(sock) = bind_retrying(addr, bind_tcp).await else {
                return;
            };
            let Ok(listener) = TcpListener::from_std(sock.into()) else {
                return;
            };
            debug!(%addr, "DNS listening (tcp)");
            bound.store(true, Ordering::Relaxed);
            serve_tcp(shared, asker, listener).await
        })
    };
    Listener {
        tasks: vec![udp, tcp],
        bound,
    }
}

/// Starts serving container `id` on 127.0.0.11:53 inside its netns at
/// `netns` (UDP and TCP). Until both sockets are bound it tries again every
/// second, warning once: a process of the container may hold the port.
pub fn start_in_netns(shared: Arc<Shared>, id: String, netns: PathBuf) -> Listener {
    let addr = SocketAddrV4::new(CONTAINER_RESOLVER, 53);
    let bound = Arc::new(AtomicBool::new(false));
    let flag = bound.clone();
    let task = tokio::spawn(async move {
        let mut warned = false;
        let (udp, tcp) = loop {
            let ns = netns.clone();
            let made = tokio::task::spawn_blocking(move || {
                let udp = super::netns::bind_in(&ns, addr, bind_udp)?;
                let tcp = super::netns::bind_in(&ns, addr, bind_tcp)?;
                let udp = UdpSocket::from_std(udp.into())?;
                let tcp = TcpListener::from_std(tcp.into())?;
                // (from_std registers with the runtime, which the blocking
                // pool's threads have entered.)
                io::Result::Ok((udp, tcp))
            });
            match made.await {
                Ok(Ok(socks)) => break socks,
                Ok(Err(e)) if !warned => {
                    warned = true;
                    warn!(container = %id, netns = %netns.display(), error = %e,
                        "DNS listener on 127.0.0.11:53 in the container could not bind; retrying every second");
                }
                Ok(Err(e)) => debug!(container = %id, error = %e, "DNS bind in netns failed"),
                Err(_) => return,
            }
            sleep(NETNS_RETRY).await;
        };
        debug!(container = %id, netns = %netns.display(), "DNS listening on 127.0.0.11:53 (udp, tcp)");
        flag.store(true, Ordering::Relaxed);
        let asker = Asker::Container { id: id.into() };
        tokio::join!(
            serve_udp(shared.clone(), asker.clone(), Arc::new(udp)),
            serve_tcp(shared, asker, tcp)
        );
    });
    Listener {
        tasks: vec![task],
        bound,
    }
}

async fn bind_retrying(
    addr: SocketAddrV4,
    bind: fn(SocketAddrV4) -> io::Result<Socket>,
) -> Option<Socket> {
    let start = tokio::time::Instant::now();
    loop {
        match bind(addr) {
            Ok(s) => return Some(s),
            Err(e) if start.elapsed() < BIND_RETRY => {
                debug!(%addr, error = %e, "DNS bind failed; retrying");
                sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                warn!(%addr, error = %e, "DNS listener could not bind; no name service on this network");
                return None;
            }
        }
    }
}

/// IP_FREEBIND: the gateway address may be added to the bridge a moment
/// after the listener starts.
/// SO_REUSEADDR: inside a container, a process that also sets it may still
/// bind the wildcard address on port 53 next to 127.0.0.11:53.
fn bind_udp(addr: SocketAddrV4) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_freebind_v4(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s)
}

fn bind_tcp(addr: SocketAddrV4) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_freebind_v4(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(addr).into())?;
    s.listen(128)?;
    Ok(s)
}

async fn serve_udp(shared: Arc<Shared>, asker: Asker, sock: Arc<UdpSocket>) {
    // One byte more than the largest query, to tell "oversized" apart.
    let mut buf = vec![0u8; MAX_QUERY + 1];
    let mut forwards = JoinSet::new();
    loop {
        while forwards.try_join_next().is_some() {}
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "DNS recv failed");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let SocketAddr::V4(peer4) = peer else {
            continue;
        };
        shared.stats.queries.inc();
        let table = shared.table();
        let (via, src) = asker.identify(&table, *peer4.ip());
        if !shared.limiter.allow(src) {
            shared.stats.rate_limited.inc();
            continue;
        }
        match answer::handle(&table, &via, src, &buf[..n], false) {
            Outcome::Drop => shared.stats.malformed.inc(),
            Outcome::Reply(bytes) => {
                shared.stats.answered.inc();
                shared.stats.replied(&bytes);
                let _ = sock.try_send_to(&bytes, peer);
            }
            Outcome::Forward(req) => {
                let Some(guard) = shared.begin_forward(src) else {
                    shared.stats.rate_limited.inc();
                    let reply = req.servfail();
                    shared.stats.replied(&reply);
                    let _ = sock.try_send_to(&reply, peer);
                    continue;
                };
                let (shared, sock) = (shared.clone(), sock.clone());
                forwards.spawn(async move {
                    let _guard = guard;
                    let reply = forwarded(&shared, &req, false).await;
                    shared.stats.replied(&reply);
                    let _ = sock.send_to(&reply, peer).await;
                });
            }
        }
    }
}

/// The upstream's reply, or SERVFAIL.
async fn forwarded(shared: &Shared, req: &answer::Request, tcp: bool) -> Vec<u8> {
    shared.stats.forwarded.inc();
    match forward::forward(&shared.upstreams(), req, tcp).await {
        Some(reply) => reply,
        None => {
            shared.stats.upstream_failures.inc();
            req.servfail()
        }
    }
}

async fn serve_tcp(shared: Arc<Shared>, asker: Asker, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "DNS accept failed");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let SocketAddr::V4(peer4) = peer else {
            continue;
        };
        if conns.len() >= MAX_TCP {
            shared.stats.rate_limited.inc();
            continue;
        }
        // Each connection holds one of its source's in-flight slots.
        let (_, src) = asker.identify(&shared.table(), *peer4.ip());
        let Some(slot) = shared.limiter.begin(src) else {
            shared.stats.rate_limited.inc();
            continue;
        };
        let (shared, asker) = (shared.clone(), asker.clone());
        conns.spawn(async move {
            let _slot = slot;
            serve_tcp_conn(&shared, &asker, stream, *peer4.ip()).await;
        });
    }
}

async fn serve_tcp_conn(
    shared: &Arc<Shared>,
    asker: &Asker,
    mut stream: TcpStream,
    peer: Ipv4Addr,
) {
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        shared.stats.queries.inc();
        let table = shared.table();
        let (via, src) = asker.identify(&table, peer);
        if !shared.limiter.allow(src) {
            shared.stats.rate_limited.inc();
            return;
        }
        let reply = match answer::handle(&table, &via, src, &buf, true) {
            Outcome::Drop => {
                shared.stats.malformed.inc();
                return;
            }
            Outcome::Reply(bytes) => {
                shared.stats.answered.inc();
                bytes
            }
            Outcome::Forward(req) => match shared.begin_forward(src) {
                Some(_guard) => forwarded(shared, &req, true).await,
                None => req.servfail(),
            },
        };
        shared.stats.replied(&reply);
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        if !matches!(timeout(TCP_IDLE, stream.write_all(&out)).await, Ok(Ok(_))) {
            return;
        }
    }
}
