//! A UDP socket that lives across a change (the uplink's address): on a
//! thread in a container's netns, it exchanges one datagram with a server
//! each time it is asked. Generic over the address type.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{join, spawn_in};
use crate::ports::any_of;

/// The socket's thread; stopped and joined on drop.
pub struct LongUdp<A> {
    to_sock: Sender<bool>,
    seen: Receiver<anyhow::Result<A>>,
    h: Option<JoinHandle<anyhow::Result<()>>>,
}

impl<A: Copy + Into<SocketAddr> + Send + 'static> LongUdp<A> {
    /// A socket in netns `ns` (the unspecified address of `dst`'s family,
    /// an ephemeral port) whose exchanges with `dst` go through `ask`
    /// (which returns the address the server saw). It waits at most a
    /// minute for each request.
    pub fn start(ns: &str, dst: A, ask: fn(&UdpSocket, A, &[u8]) -> anyhow::Result<A>) -> Self {
        let any = any_of(dst.into());
        let (to_sock, sock_rx) = channel::<bool>();
        let (seen_tx, seen) = channel::<anyhow::Result<A>>();
        let h = spawn_in(ns, move || {
            let s = UdpSocket::bind((any, 0))?;
            while let Ok(true) = sock_rx.recv_timeout(Duration::from_secs(60)) {
                let _ = seen_tx.send(ask(&s, dst, b"long-lived"));
            }
            Ok(())
        });
        LongUdp {
            to_sock,
            seen,
            h: Some(h),
        }
    }

    /// One exchange: the address the server saw. Panics when the thread
    /// gives no result within 10 s.
    pub fn ask(&self) -> anyhow::Result<A> {
        self.to_sock.send(true).unwrap();
        self.seen
            .recv_timeout(Duration::from_secs(10))
            .expect("long-lived UDP socket")
    }
}

impl<A> Drop for LongUdp<A> {
    fn drop(&mut self) {
        let _ = self.to_sock.send(false);
        if let Some(h) = self.h.take() {
            let _ = join(h);
        }
    }
}
