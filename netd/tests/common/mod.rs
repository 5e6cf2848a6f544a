//! What the BPF test-run tests share: a private bpffs per test, and the
//! Internet checksum their crafted frames need.
use std::path::PathBuf;

use netd::datapath::ensure_bpffs;

/// A private bpffs, unmounted and removed on drop.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netd-testrun-{tag}-{}", std::process::id()));
        ensure_bpffs(&dir).expect("mount bpffs (run as root)");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Internet checksum of `data`, starting from the partial sum `init`.
#[allow(dead_code)]
pub fn csum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
