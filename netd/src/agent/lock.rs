//! One agent per state dir, run dir and bpffs (SPEC section 5): an
//! exclusive `flock` on each directory, taken before the agent touches
//! anything else (socket, bridges, pins). A second agent that would share
//! any of them gets one sentence naming the running agent's pid and what
//! they share, and changes nothing.
//!
//! The locks live on the directories themselves (no lock files), so they
//! vanish with the process however it ends, and `/proc/locks` tells who
//! holds them.
use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// The locks an agent holds for as long as it runs.
#[derive(Debug)]
pub struct AgentLock {
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    _lock: Flock<File>,
    dev: u64,
    ino: u64,
}

/// A directory the agent must have to itself, and the flag that names it.
pub struct Claim<'a> {
    pub flag: &'static str,
    pub dir: &'a Path,
}

impl AgentLock {
    /// Locks every directory of `claims` (creating it when missing), or
    /// none: if another process holds any of them, fails naming it and all
    /// that is shared.
    pub fn acquire(claims: &[Claim<'_>]) -> Result<AgentLock> {
        let mut lock = AgentLock { held: Vec::new() };
        let mut conflicts: Vec<(Option<u32>, &'static str, PathBuf)> = Vec::new();
        for c in claims {
            std::fs::create_dir_all(c.dir)
                .with_context(|| format!("failed to create {}", c.dir.display()))?;
            match lock.try_lock(c.dir)? {
                Ok(()) => {}
                Err(holder) => conflicts.push((holder, c.flag, c.dir.to_path_buf())),
            }
        }
        if conflicts.is_empty() {
            return Ok(lock);
        }
        let mut pids: Vec<String> = conflicts
            .iter()
            .map(|(pid, ..)| match pid {
                Some(p) => format!("pid {p}"),
                None => "pid unknown".to_string(),
            })
            .collect();
        pids.dedup();
        let shared: Vec<String> = conflicts
            .iter()
            .map(|(_, flag, dir)| format!("{flag} {}", dir.display()))
            .collect();
        bail!(
            "another netd agent ({}) is already running with {}; stop it first \
             (`systemctl stop netd`, or kill that pid), or give this agent its own \
             --state-dir, --run-dir and --bpffs",
            pids.join(", "),
            shared.join(" and ")
        )
    }

    /// Locks the socket path `socket` (the Docker driver's), before the
    /// agent touches anything: a socket cannot be flocked and is bound anew
    /// at every start, so the lock is on `<socket>.lock` beside it (an
    /// empty file that stays; dockerd only looks at `*.sock`, `*.spec` and
    /// `*.json` there).
    pub fn acquire_socket(flag: &'static str, socket: &Path) -> Result<AgentLock> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = socket_lock_path(socket);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let mut lock = AgentLock { held: Vec::new() };
        match lock.try_lock_file(file, &path)? {
            Ok(()) => Ok(lock),
            Err(holder) => bail!(
                "another netd agent (pid {}) is already running with {flag} {}; stop it \
                 first, or give this agent another {flag} path (or none)",
                holder.map_or("unknown".to_string(), |p| p.to_string()),
                socket.display()
            ),
        }
    }

    /// Locks `dir` again if it now resolves to another directory (a bpffs
    /// mounted on it since): a later agent that opens the path reaches
    /// the mounted root, which must be locked too.
    pub fn relock(&mut self, flag: &'static str, dir: &Path) -> Result<()> {
        let meta =
            std::fs::metadata(dir).with_context(|| format!("failed to stat {}", dir.display()))?;
        if self
            .held
            .iter()
            .any(|h| h.dev == meta.dev() && h.ino == meta.ino())
        {
            return Ok(());
        }
        match self.try_lock(dir)? {
            Ok(()) => Ok(()),
            Err(holder) => bail!(
                "another netd agent (pid {}) is already running with {flag} {}; stop it first",
                holder.map_or("unknown".to_string(), |p| p.to_string()),
                dir.display()
            ),
        }
    }

    /// `Ok(Ok(()))` when locked, `Ok(Err(holder pid))` when someone else
    /// holds it.
    fn try_lock(&mut self, dir: &Path) -> Result<Result<(), Option<u32>>> {
        let file = File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
        self.try_lock_file(file, dir)
    }

    fn try_lock_file(&mut self, file: File, dir: &Path) -> Result<Result<(), Option<u32>>> {
        let meta = file
            .metadata()
            .with_context(|| format!("failed to stat {}", dir.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                self.held.push(Held {
                    _lock: lock,
                    dev: meta.dev(),
                    ino: meta.ino(),
                });
                Ok(Ok(()))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Err(holder(meta.dev(), meta.ino()))),
            Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", dir.display())),
        }
    }

    /// How many directories are locked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

/// `<socket>.lock`: where [`AgentLock::acquire_socket`] locks `socket`.
fn socket_lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// The pid holding a flock on the inode (`dev`, `ino`), from /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF`, device in hex).
fn holder(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let major = libc::major(dev);
    let minor = libc::minor(dev);
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as "1: -> FLOCK ..."; skip them.
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = f.get(4)?.parse().ok()?;
        let mut id = f.get(5)?.split(':');
        let ma = u32::from_str_radix(id.next()?, 16).ok()?;
        let mi = u32::from_str_radix(id.next()?, 16).ok()?;
        let i: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && i == ino).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "netd-lock-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_second_lock_names_the_holder_and_what_is_shared() {
        let (a, b, c) = (tmp("a"), tmp("b"), tmp("c"));
        let first = AgentLock::acquire(&[
            Claim {
                flag: "--state-dir",
                dir: &a,
            },
            Claim {
                flag: "--run-dir",
                dir: &b,
            },
        ])
        .unwrap();
        assert_eq!(first.len(), 2);
        let e = AgentLock::acquire(&[
            Claim {
                flag: "--state-dir",
                dir: &c,
            },
            Claim {
                flag: "--run-dir",
                dir: &b,
            },
        ])
        .unwrap_err()
        .to_string();
        let me = format!("pid {}", std::process::id());
        assert!(e.contains(&me), "{e}");
        assert!(e.contains(&format!("--run-dir {}", b.display())), "{e}");
        assert!(!e.contains("--state-dir /"), "{e}");
        // The failed attempt released what it had taken (c is free).
        let again = AgentLock::acquire(&[Claim {
            flag: "--state-dir",
            dir: &c,
        }])
        .unwrap();
        drop((first, again));
        // Released with the holder.
        AgentLock::acquire(&[Claim {
            flag: "--run-dir",
            dir: &b,
        }])
        .unwrap();
        for d in [a, b, c] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_shared_socket_path_is_refused_until_its_holder_is_gone() {
        let d = tmp("sock");
        let socket = d.join("plugins/netd.sock");
        let first = AgentLock::acquire_socket("--docker-plugin", &socket).unwrap();
        let e = AgentLock::acquire_socket("--docker-plugin", &socket)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(
            e.contains(&format!("--docker-plugin {}", socket.display())),
            "{e}"
        );
        // Another path beside it is another lock.
        let other = AgentLock::acquire_socket("--docker-plugin", &d.join("plugins/b.sock"));
        assert!(other.is_ok(), "{other:?}");
        drop(first);
        AgentLock::acquire_socket("--docker-plugin", &socket).unwrap();
        let _ = std::fs::remove_dir_all(d);
    }
}
