//! Making sure `--bpffs` is a BPF filesystem.
use std::path::Path;

use anyhow::{Context, Result};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, FsType},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == FsType(BPF_FS_MAGIC as _))
        .unwrap_or(false)
}

/// Mounts a private bpffs on `path` unless it already lives on one.
pub fn ensure_bpffs(path: &Path) -> Result<()> {
    if path.exists() && is_bpffs(path) {
        return Ok(());
    }
    std::fs::create_dir_all(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    if is_bpffs(path) {
        return Ok(());
    }
    mount(
        Some("bpffs"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("failed to mount a bpffs on {}", path.display()))
}
