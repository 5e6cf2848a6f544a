//! Builds the eBPF programs (netd-ebpf) with the nightly toolchain and
//! bpf-linker; the agent embeds the object from OUT_DIR. Also embeds the
//! source hash (`NETD_SOURCE_HASH`, shown by `netd version`) that the test
//! harness compares with its own to refuse a stale binary.
#[path = "source_hash.rs"]
mod source_hash;

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    source_hash::rerun_if_changed(&root);
    println!(
        "cargo::rustc-env=NETD_SOURCE_HASH={}",
        source_hash::source_hash(&root)
    );
    git_revision();
    let package = aya_build::Package {
        name: "netd-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}

/// `NETD_GIT_REVISION` for `netd version`: the short commit of HEAD,
/// `unknown` outside a git checkout (a source tarball).
fn git_revision() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves (a commit, a checkout): watch HEAD and the
    // branch it names (when that is a loose ref; a missing file would make
    // every build rerun this script).
    let mut watch = vec!["HEAD".to_string()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo::rerun-if-changed={path}");
            }
        }
    }
    println!("cargo::rustc-env=NETD_GIT_REVISION={rev}");
}
