//! Long-lived TCP streams and ping floods that run while the agent is
//! killed and restarted: each stream is one connection whose receiver
//! reports what it got and the longest gap between two reads.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use netd_tests::cmd::{run_timeout, Out};
use netd_tests::netns::{join, path_of, spawn_in};

/// What a stream receiver saw on its one connection.
#[derive(Debug)]
pub struct RxReport {
    pub peer: SocketAddr,
    pub bytes: u64,
    /// The longest time between two reads that returned data.
    pub max_gap: Duration,
}

/// A stream receiver in `ns` on `ip:port` (0: any port): accepts exactly
/// one connection (within 10 s), reads until EOF (at most 90 s) keeping the
/// longest gap between reads, then answers `BYTES n\n`. Returns the port.
pub fn stream_rx(ns: &str, ip: IpAddr, port: u16) -> (u16, JoinHandle<anyhow::Result<RxReport>>) {
    let (ptx, prx) = mpsc::channel::<anyhow::Result<u16>>();
    let h = spawn_in(ns, move || {
        let l = match TcpListener::bind((ip, port)) {
            Ok(l) => l,
            Err(e) => {
                let _ = ptx.send(Err(anyhow!("bind {ip}:{port}: {e}")));
                bail!("bind {ip}:{port}: {e}");
            }
        };
        let _ = ptx.send(Ok(l.local_addr()?.port()));
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let (mut s, peer) = loop {
            match l.accept() {
                Ok(x) => break x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if start.elapsed() > Duration::from_secs(10) {
                        bail!("no connection within 10 s");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("accept"),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = vec![0u8; 65536];
        let (mut bytes, mut max_gap, mut last) = (0u64, Duration::ZERO, None::<Instant>);
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let now = Instant::now();
                    if let Some(t) = last {
                        max_gap = max_gap.max(now - t);
                    }
                    last = Some(now);
                    bytes += n as u64;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if start.elapsed() > Duration::from_secs(90) {
                        bail!("stream from {peer} did not end within 90 s");
                    }
                }
                Err(e) => bail!("stream from {peer} broke after {bytes} bytes: {e}"),
            }
        }
        s.write_all(format!("BYTES {bytes}\n").as_bytes())
            .context("answering BYTES")?;
        let _ = s.shutdown(Shutdown::Write);
        Ok(RxReport {
            peer,
            bytes,
            max_gap,
        })
    });
    match prx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(p)) => (p, h),
        Ok(Err(e)) => panic!("stream receiver in {ns}: {e:#}"),
        Err(_) => panic!("stream receiver in {ns} did not start: {:?}", join(h).err()),
    }
}

/// A stream sender in `ns` to `dst`: one connection, 1 KiB every 5 ms until
/// `stop`, then half-close and check the receiver's `BYTES n` matches what
/// was sent. Returns the bytes sent.
pub fn stream_tx(
    ns: &str,
    dst: SocketAddr,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<u64>> {
    spawn_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .with_context(|| format!("connect to {dst}"))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let chunk = [0x5au8; 1024];
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            s.write_all(&chunk)
                .with_context(|| format!("write to {dst} after {sent} bytes"))?;
            sent += chunk.len() as u64;
            std::thread::sleep(Duration::from_millis(5));
        }
        s.shutdown(Shutdown::Write)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .with_context(|| format!("reading the answer of {dst}"))?;
        if answer.trim() != format!("BYTES {sent}") {
            bail!("{dst} answered {answer:?} after {sent} bytes were sent");
        }
        Ok(sent)
    })
}

/// One stream: `tx_ns` connects to a receiver in `rx_ns` on `rx_ip`
/// (port `rx_port`, 0: any) through `via` (a published address; `None`:
/// the receiver's own), and the receiver must see `peer`.
pub struct Stream {
    pub name: String,
    pub peer: IpAddr,
    tx: JoinHandle<anyhow::Result<u64>>,
    rx: JoinHandle<anyhow::Result<RxReport>>,
}

/// What a stream must look like: its name, where the receiver listens
/// (netns, address, port), the sender's netns, the address it connects to
/// instead of the receiver's (a published one), the peer the receiver must
/// see.
pub struct StreamSpec<'a> {
    pub name: &'a str,
    pub rx: (&'a str, IpAddr, u16),
    pub tx_ns: &'a str,
    pub via: Option<SocketAddr>,
    pub peer: IpAddr,
}

impl Stream {
    pub fn start(s: StreamSpec<'_>, stop: &Arc<AtomicBool>) -> Stream {
        let (rx_ns, rx_ip, rx_port) = s.rx;
        let (port, rx) = stream_rx(rx_ns, rx_ip, rx_port);
        let dst = s.via.unwrap_or(SocketAddr::new(rx_ip, port));
        Stream {
            name: s.name.to_string(),
            peer: s.peer,
            tx: stream_tx(s.tx_ns, dst, stop.clone()),
            rx,
        }
    }

    /// Waits for both ends (stop them first) and returns what went wrong:
    /// bytes lost, a stall longer than `max_stall`, another peer.
    pub fn finish(self, max_stall: Duration) -> Vec<String> {
        let name = self.name;
        let (sent, got) = (join(self.tx), join(self.rx));
        let mut errs = Vec::new();
        match (sent, got) {
            (Ok(n), Ok(rep)) => {
                if rep.bytes != n {
                    errs.push(format!("{name}: {n} bytes sent, {} received", rep.bytes));
                }
                if rep.max_gap > max_stall {
                    errs.push(format!("{name}: stalled for {:?}", rep.max_gap));
                }
                if rep.peer.ip() != self.peer {
                    errs.push(format!(
                        "{name}: the receiver saw {} instead of {}",
                        rep.peer, self.peer
                    ));
                }
                eprintln!(
                    "{name}: {n} bytes, longest gap {:?}, peer {}",
                    rep.max_gap, rep.peer
                );
            }
            (s, r) => errs.push(format!("{name}: sender {s:?}; receiver {r:?}")),
        }
        errs
    }
}

/// A ping flood from `ns` to `dst` (`count` echo requests, 10 ms apart),
/// on its own thread.
pub fn ping_flood(ns: &str, dst: IpAddr, count: u32) -> JoinHandle<Out> {
    let ns = path_of(ns).display().to_string();
    std::thread::spawn(move || {
        run_timeout(
            "nsenter",
            &[
                &format!("--net={ns}"),
                "ping",
                "-n",
                "-q",
                "-i",
                "0.01",
                "-c",
                &count.to_string(),
                &dst.to_string(),
            ],
            Duration::from_secs(90),
        )
    })
}

/// Checks a flood's summary: every one of `count` echo requests answered.
pub fn flood_lossless(what: &str, ping: &Out, count: u32) -> Result<(), String> {
    match ping_counts(&ping.stdout) {
        Some((tx, rx)) if tx == u64::from(count) && rx == tx => Ok(()),
        Some((tx, rx)) => Err(format!(
            "ping flood {what}: {tx} sent, {rx} received:\n{ping}"
        )),
        None => Err(format!("ping flood {what}: no summary:\n{ping}")),
    }
}

/// Parses ping's `N packets transmitted, M received`.
fn ping_counts(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let nums: Vec<u64> = line
        .split(',')
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    Some((*nums.first()?, *nums.get(1)?))
}
