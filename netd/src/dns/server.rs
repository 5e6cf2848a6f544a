//! The listeners: UDP and TCP on GATEWAY:53 of one served network. Each
//! query is checked against the per-source limits, then answered from the
//! current table or forwarded in a task of its own. Dropping a `Listener`
//! aborts its tasks (and with them every forward and connection they own),
//! which closes its sockets.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
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
    forward, Shared,
};

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections one listener serves at once.
const MAX_TCP: usize = 128;
/// How long a listener keeps trying to bind (the address may still be held
/// by the listener of a network that was just removed).
const BIND_RETRY: Duration = Duration::from_secs(10);

pub struct Listener {
    pub gateway: Ipv4Addr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts serving network `via` on `gateway`:53.
pub fn start(shared: Arc<Shared>, via: String, gateway: Ipv4Addr) -> Listener {
    let addr = SocketAddrV4::new(gateway, 53);
    let via: Arc<str> = via.into();
    let udp = {
        let (shared, via) = (shared.clone(), via.clone());
        tokio::spawn(async move {
            let Some(sock) = bind_retrying(addr, bind_udp).await else {
                return;
            };
            let Ok(sock) = UdpSocket::from_std(sock.into()) else {
                return;
            };
            debug!(%addr, "DNS listening (udp)");
            serve_udp(shared, via, Arc::new(sock)).await
        })
    };
    let tcp = tokio::spawn(async move {
        let Some(sock) = bind_retrying(addr, bind_tcp).await else {
            return;
        };
        let Ok(listener) = TcpListener::from_std(sock.into()) else {
            return;
        };
        debug!(%addr, "DNS listening (tcp)");
        serve_tcp(shared, via, listener).await
    });
    Listener {
        gateway,
        tasks: vec![udp, tcp],
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
fn bind_udp(addr: SocketAddrV4) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_freebind_v4(true)?;
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

async fn serve_udp(shared: Arc<Shared>, via: Arc<str>, sock: Arc<UdpSocket>) {
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
        if !shared.limiter.allow(peer.ip()) {
            shared.stats.rate_limited.inc();
            continue;
        }
        let table = shared.table();
        match answer::handle(&table, &via, *peer4.ip(), &buf[..n], false) {
            Outcome::Drop => shared.stats.malformed.inc(),
            Outcome::Reply(bytes) => {
                shared.stats.answered.inc();
                shared.stats.replied(&bytes);
                let _ = sock.try_send_to(&bytes, peer);
            }
            Outcome::Forward(req) => {
                let Some(guard) = shared.begin_forward(peer.ip()) else {
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

async fn serve_tcp(shared: Arc<Shared>, via: Arc<str>, listener: TcpListener) {
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
        let Some(slot) = shared.limiter.begin(peer.ip()) else {
            shared.stats.rate_limited.inc();
            continue;
        };
        let (shared, via) = (shared.clone(), via.clone());
        conns.spawn(async move {
            let _slot = slot;
            serve_tcp_conn(&shared, &via, stream, *peer4.ip()).await;
        });
    }
}

async fn serve_tcp_conn(shared: &Arc<Shared>, via: &str, mut stream: TcpStream, peer: Ipv4Addr) {
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
        if !shared.limiter.allow(IpAddr::V4(peer)) {
            shared.stats.rate_limited.inc();
            return;
        }
        let table = shared.table();
        let reply = match answer::handle(&table, via, peer, &buf, true) {
            Outcome::Drop => {
                shared.stats.malformed.inc();
                return;
            }
            Outcome::Reply(bytes) => {
                shared.stats.answered.inc();
                bytes
            }
            Outcome::Forward(req) => match shared.begin_forward(IpAddr::V4(peer)) {
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
