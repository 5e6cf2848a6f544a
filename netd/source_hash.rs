//! The source hash of the agent: one number over every file the `netd`
//! binary is built from (netd, netd-common, netd-ebpf, the lock file).
//!
//! Included with `#[path]` by two build scripts: netd's, which embeds the
//! hash in the binary (`netd version` prints it), and the tests crate's,
//! which compiles the same hash into the harness so it can refuse a binary
//! built from other sources (a stale `target/debug/netd`).

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};

/// What the binary is built from, relative to the workspace root. A
/// directory stands for every file below it.
pub const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "netd/Cargo.toml",
    "netd/build.rs",
    "netd/source_hash.rs",
    "netd/src",
    "netd-common/Cargo.toml",
    "netd-common/src",
    "netd-ebpf/Cargo.toml",
    "netd-ebpf/src",
];

/// Every file of [`SOURCES`] under `root`, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = SOURCES.iter().map(|s| root.join(s)).collect();
    while let Some(p) = todo.pop() {
        match std::fs::read_dir(&p) {
            Ok(rd) => todo.extend(rd.filter_map(|e| e.ok().map(|e| e.path()))),
            Err(_) if p.is_file() => out.push(p),
            Err(_) => {}
        }
    }
    out.sort();
    out
}

/// The hash (16 hex digits) of the files' relative paths and contents.
/// `DefaultHasher::new()` is the same function for every build script one
/// toolchain compiles; after a toolchain change the numbers differ, and
/// netd is rebuilt anyway.
pub fn source_hash(root: &Path) -> String {
    let mut h = DefaultHasher::new();
    for f in files(root) {
        let rel = f.strip_prefix(root).unwrap_or(&f);
        h.write(rel.to_string_lossy().as_bytes());
        h.write_u8(0);
        let bytes = std::fs::read(&f).unwrap_or_default();
        h.write_u64(bytes.len() as u64);
        h.write(&bytes);
    }
    format!("{:016x}", h.finish())
}

/// Tells cargo to run the build script again when any source changes
/// (directories are scanned recursively).
pub fn rerun_if_changed(root: &Path) {
    for s in SOURCES {
        println!("cargo::rerun-if-changed={}", root.join(s).display());
    }
}
