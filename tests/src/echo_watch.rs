//! What reaches a netns as echo requests: a raw ICMP (IPv4) or ICMPv6
//! socket there records the source address and id of every echo request
//! it sees until [`EchoWatch::finish`] (bounded by [`WATCH_LIMIT`]).
//! For the egress tests, which check the address and echo id the world
//! sees a container's ping arrive with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::libc;

use crate::netns::{join, spawn_in};

/// How long a watch listens at the most.
pub const WATCH_LIMIT: Duration = Duration::from_secs(120);

/// Source address and id of an echo request.
pub type Echo = (IpAddr, u16);

/// A running watch; stops (and is joined) on [`EchoWatch::finish`] or drop.
pub struct EchoWatch {
    stop: Arc<AtomicBool>,
    h: Option<JoinHandle<anyhow::Result<Vec<Echo>>>>,
}

/// The echo request's (source, id) in what a raw socket of the family
/// hands over from `from`: the IPv4 header and the ICMP message for
/// IPv4, the ICMPv6 message alone for IPv6. None for anything else.
fn echo_request(v6: bool, pkt: &[u8], from: &libc::sockaddr_storage) -> Option<Echo> {
    let (icmp, request, src) = if v6 {
        // SAFETY: recvfrom on an AF_INET6 socket fills a sockaddr_in6.
        let sa = unsafe { &*(from as *const _ as *const libc::sockaddr_in6) };
        (pkt, 128, IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
    } else {
        let ihl = usize::from(*pkt.first()? & 0xf) * 4;
        // SAFETY: recvfrom on an AF_INET socket fills a sockaddr_in.
        let sa = unsafe { &*(from as *const _ as *const libc::sockaddr_in) };
        let src = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        (pkt.get(ihl..)?, 8, IpAddr::V4(src))
    };
    if icmp.len() < 8 || icmp[0] != request {
        return None;
    }
    Some((src, u16::from_be_bytes([icmp[4], icmp[5]])))
}

/// Receives on `sock` until `stop` (or [`WATCH_LIMIT`]), keeping the echo
/// requests.
fn watch(sock: &OwnedFd, v6: bool, stop: &AtomicBool) -> Vec<Echo> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) && start.elapsed() < WATCH_LIMIT {
        // SAFETY: buffers and lengths are valid for the call.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut from as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        if n <= 0 {
            continue;
        }
        seen.extend(echo_request(v6, &buf[..n as usize], &from));
    }
    seen
}

/// A raw ICMP (or ICMPv6) socket with a 50 ms receive timeout.
fn raw_socket(v6: bool) -> anyhow::Result<OwnedFd> {
    let (family, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: a raw socket we own; the option's buffer and length are valid.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        bail!(
            "raw ICMP{} socket: {}",
            if v6 { "v6" } else { "" },
            std::io::Error::last_os_error()
        );
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(sock)
}

impl EchoWatch {
    /// Starts watching the echo requests of one family (`v6`: ICMPv6)
    /// that reach netns `ns`; returns once the socket is open.
    pub fn start(ns: &str, v6: bool) -> EchoWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let st = stop.clone();
        let h = spawn_in(ns, move || {
            let sock = raw_socket(v6)?;
            let _ = tx.send(());
            Ok(watch(&sock, v6, &st))
        });
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            stop.store(true, Ordering::SeqCst);
            panic!("echo watch did not start: {:?}", join(h).err());
        }
        EchoWatch { stop, h: Some(h) }
    }

    /// Stops the watch (after a last 100 ms for what is in flight) and
    /// returns what it saw, in order.
    pub fn finish(mut self) -> Vec<Echo> {
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::SeqCst);
        join(self.h.take().unwrap()).unwrap_or_else(|e| panic!("echo watch: {e:#}"))
    }
}

impl Drop for EchoWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.h.take() {
            let _ = join(h);
        }
    }
}
