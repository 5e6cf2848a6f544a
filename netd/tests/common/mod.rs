//! What the BPF test-run tests share: a private bpffs per test, and the
//! frames they send (`packet`) with the Internet checksum.
pub mod packet;

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

/// Runs a fixture command (iproute2 and the like), which must succeed;
/// returns its stdout.
#[allow(dead_code)]
pub fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Test-runs classifier `program` on `frame`: (verdict, frame as left).
#[allow(dead_code)]
pub fn run_classifier(
    dp: &mut netd::datapath::Datapath,
    program: &str,
    frame: &[u8],
) -> (u32, Vec<u8>) {
    use aya::programs::{TestRun, TestRunOptions};
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    let r = dp
        .program(program)
        .unwrap()
        .test_run(opts)
        .expect("test_run");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// A counter by name: a drop reason, a host-routing shortcut or fallback.
#[allow(dead_code)]
pub fn counter(dp: &netd::datapath::Datapath, name: &str) -> u64 {
    if let Some(d) = dp.drop_counts().unwrap().iter().find(|d| d.reason == name) {
        return d.packets;
    }
    let c = dp.routing_counts().unwrap();
    c.shortcuts
        .iter()
        .chain(c.fallbacks.iter())
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}
