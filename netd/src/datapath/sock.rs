//! The cgroup socket programs (host processes to published ports).
use std::{fs::File, os::fd::AsRawFd, path::Path};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::Array,
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddr},
};
use netd_common::{SockConfig, MAP_SOCK_CONFIG};

use super::Datapath;

use netd_common::programs::{
    SOCK_CONNECT4, SOCK_CONNECT6, SOCK_GETPEERNAME4, SOCK_GETPEERNAME6, SOCK_RECVMSG4,
    SOCK_RECVMSG6, SOCK_SENDMSG4, SOCK_SENDMSG6,
};

pub const SOCK_PROGRAMS: [&str; 8] = [
    SOCK_CONNECT4,
    SOCK_SENDMSG4,
    SOCK_RECVMSG4,
    SOCK_GETPEERNAME4,
    SOCK_CONNECT6,
    SOCK_SENDMSG6,
    SOCK_RECVMSG6,
    SOCK_GETPEERNAME6,
];

/// Cookie of the calling thread's network namespace (SO_NETNS_COOKIE).
pub fn netns_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: i32 = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
        .context("failed to open a socket for the netns cookie")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket and an out-buffer of the right size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(anyhow!(
            "SO_NETNS_COOKIE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(cookie)
}

impl Datapath {
    /// Points the socket programs at this netns and attaches them to
    /// `cgroup` (a cgroup2 directory). An earlier agent's links are replaced
    /// only after the new ones are attached, so no connect goes untranslated.
    pub fn attach_sock_programs(&mut self, cgroup: &Path) -> Result<()> {
        let cookie = netns_cookie()?;
        let mut config: Array<_, SockConfig> = Array::try_from(self.map_mut(MAP_SOCK_CONFIG)?)?;
        config.set(
            0,
            SockConfig {
                netns_cookie: cookie,
            },
            0,
        )?;
        let dir = File::open(cgroup)
            .with_context(|| format!("cannot open cgroup {}", cgroup.display()))?;
        for name in SOCK_PROGRAMS {
            let pin = self.pins().link("cgroup", name);
            let fresh = self.pins().link("cgroup", &format!("{name}_new"));
            let _ = std::fs::remove_file(&fresh);
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing"))?
                .try_into()?;
            let id = prog
                .attach(&dir, CgroupAttachMode::Single)
                .with_context(|| format!("failed to attach {name} to {}", cgroup.display()))?;
            let link: FdLink = prog.take_link(id)?.try_into()?;
            link.pin(&fresh)?;
            let _ = std::fs::remove_file(&pin);
            std::fs::rename(&fresh, &pin)
                .with_context(|| format!("failed to pin {}", pin.display()))?;
        }
        Ok(())
    }
}
