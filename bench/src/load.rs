//! The load generator: a poll-driven echo server and two bounded clients.
//!
//! - `rr`: one persistent TCP connection, 1-byte request / 1-byte response in
//!   a loop (netperf TCP_RR); every transaction's latency is recorded.
//! - `crr`: connect, 1 byte each way, close, in a loop (netperf TCP_CRR).
//!
//! Every loop is bounded in time (and the server by a lifetime), so nothing
//! here runs on by itself. Clients print one JSON line ([`LoadResult`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

/// Longest a client may run, whatever it is asked.
pub const MAX_SECS: f64 = 60.0;
/// Latency samples kept (the rest are counted, not stored).
const MAX_SAMPLES: usize = 4_000_000;
/// A crr client gives up after this many failed connections.
const MAX_ERRORS: u64 = 200;

/// What a client measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// Completed transactions (rr) or connections (crr).
    pub ops: u64,
    pub secs: f64,
    /// ops per second.
    pub rate: f64,
    /// Latency of one transaction (rr) or one whole connection (crr), µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
}

/// Echo server on [::]:`port` (IPv4 too: a dual-stack socket) until `lifetime` has passed: each read of
/// N bytes is answered with the same N bytes; a connection ends at EOF.
pub fn serve(port: u16, lifetime: Duration) -> Result<()> {
    let listener = TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding :{port}"))?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + lifetime;
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let (listen_ready, ready) = {
            let mut fds = Vec::with_capacity(conns.len() + 1);
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
            for c in &conns {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => bail!("poll: {e}"),
            }
            let is_ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<bool> = fds[1..].iter().map(is_ready).collect();
            (is_ready(&fds[0]), ready)
        };
        let mut closed = vec![false; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match c.read(&mut buf) {
                Ok(0) => closed[i] = true,
                Ok(n) => {
                    if write_all_retry(c, &buf[..n]).is_err() {
                        closed[i] = true;
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => closed[i] = true,
            }
        }
        let mut i = 0;
        conns.retain(|_| {
            let keep = !closed[i];
            i += 1;
            keep
        });
        if listen_ready {
            loop {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        if s.set_nonblocking(true).is_ok() && conns.len() < 10_000 {
                            conns.push(s);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // E.g. ECONNABORTED or EMFILE: try again on the next poll.
                    Err(_) => break,
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `data` on a non-blocking socket, waiting briefly (bounded)
/// when its buffer is full.
fn write_all_retry(c: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        match c.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() > deadline {
                    return Err(ErrorKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

fn finish(
    ops: u64,
    start: Instant,
    mut lat_ns: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
) -> LoadResult {
    let secs = start.elapsed().as_secs_f64();
    lat_ns.sort_unstable();
    LoadResult {
        ops,
        secs,
        rate: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
        p50_us: percentile(&lat_ns, 0.50),
        p99_us: percentile(&lat_ns, 0.99),
        errors,
        first_error,
    }
}

fn bounded(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.clamp(0.05, MAX_SECS))
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Request/response on one persistent connection for `secs`.
pub fn rr(addr: SocketAddr, secs: f64) -> Result<LoadResult> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut lat = Vec::with_capacity(1 << 16);
    let mut ops = 0u64;
    let mut b = [1u8; 1];
    let start = Instant::now();
    let end = start + bounded(secs);
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        s.write_all(&b)
            .with_context(|| format!("rr write to {addr} after {ops} transactions"))?;
        s.read_exact(&mut b)
            .with_context(|| format!("rr read from {addr} after {ops} transactions"))?;
        if lat.len() < MAX_SAMPLES {
            lat.push(nanos(t0.elapsed()));
        }
        ops += 1;
    }
    Ok(finish(ops, start, lat, 0, None))
}

/// Connect, 1 byte each way, close — in a loop for `secs`.
pub fn crr(addr: SocketAddr, secs: f64) -> Result<LoadResult> {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut ops = 0u64;
    let mut errors = 0u64;
    let mut first_error = None;
    let start = Instant::now();
    let end = start + bounded(secs);
    loop {
        let t0 = Instant::now();
        if t0 >= end || errors >= MAX_ERRORS {
            break;
        }
        match one_connection(addr) {
            Ok(()) => {
                if lat.len() < MAX_SAMPLES {
                    lat.push(nanos(t0.elapsed()));
                }
                ops += 1;
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if ops == 0 {
        bail!(
            "crr to {addr}: no connection completed ({errors} errors; first: {})",
            first_error.unwrap_or_default()
        );
    }
    Ok(finish(ops, start, lat, errors, first_error))
}

fn one_connection(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).context("connect")?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut b = [1u8; 1];
    s.write_all(&b).context("write")?;
    s.read_exact(&mut b).context("read")?;
    Ok(())
}
