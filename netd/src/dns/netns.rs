//! Sockets made inside a container's network namespace: a socket belongs to
//! the namespace of the thread that created it, so a thread of its own
//! enters the netns, binds, and ends; the agent keeps the sockets (and
//! serves them from tokio) without ever moving any of its other threads.
use std::{fs::File, io, net::SocketAddrV4, path::Path};

use nix::sched::{setns, CloneFlags};
use socket2::Socket;

/// Runs `bind` on a new thread inside the netns at `path`.
pub fn bind_in(
    path: &Path,
    addr: SocketAddrV4,
    bind: fn(SocketAddrV4) -> io::Result<Socket>,
) -> io::Result<Socket> {
    let ns = File::open(path)?;
    std::thread::Builder::new()
        .name("netd-dns-netns".into())
        .spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            bind(addr)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
}
