//! What the BPF test-run tests share: a private bpffs per test.
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
