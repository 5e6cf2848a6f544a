//! `netd reset --force`: remove everything netd created on this host.
use anyhow::{Context, Result};
use tracing::info;

use super::Agent;

impl Agent {
    /// Deletes every marked link (container veths, bridges), every pin
    /// (which detaches the programs), the bpffs netd mounted, the stored
    /// state and the API socket. The agent must exit afterwards.
    pub async fn reset(&mut self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        self.reservations = Default::default();
        // This host's overlay addresses go back to the cluster (best
        // effort: the next session releases what is left).
        for c in self.containers.values().cloned().collect::<Vec<_>>() {
            self.release_overlay_addresses(&c.id, &c.endpoints).await;
        }
        for (index, name, _) in self.links.owned_links().await? {
            self.links.delete(index).await?;
            removed.push(format!("link {name}"));
        }
        let root = self.datapath.pin_root();
        self.datapath.remove_pins()?;
        removed.push(format!("pins {}", root.display()));
        let bpffs = &self.config.bpffs;
        if is_own_mount(bpffs) {
            nix::mount::umount2(bpffs, nix::mount::MntFlags::MNT_DETACH)
                .with_context(|| format!("failed to unmount {}", bpffs.display()))?;
            removed.push(format!("bpffs {}", bpffs.display()));
        }
        let _ = std::fs::remove_dir(bpffs);
        let store = self.config.state_dir.join("netd.redb");
        let _ = std::fs::remove_file(&store);
        let _ = std::fs::remove_dir(&self.config.state_dir);
        removed.push(format!("state {}", self.config.state_dir.display()));
        let _ = std::fs::remove_file(self.config.run_dir.join("netd.sock"));
        let _ = std::fs::remove_dir(&self.config.run_dir);
        self.networks.clear();
        self.containers.clear();
        info!(?removed, "reset done");
        Ok(removed)
    }
}

/// Is `path` a mount point of its own (a bpffs the agent mounted)?
fn is_own_mount(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}
