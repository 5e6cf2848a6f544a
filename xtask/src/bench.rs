//! `cargo xtask bench [--quick] [--overlay-only] [--control-only]`: installs what the benchmark needs, builds
//! netd and the `bench` crate in release mode, then becomes `bench run`
//! (exec, so Ctrl-C reaches the runner, which cleans up after itself).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context as _, Result};

/// Debian packages the benchmark uses on top of the test set.
/// etcd-server: the cluster store of the cross-host (overlay) comparison.
const BENCH_PACKAGES: &[&str] = &[
    "iperf3",
    "iptables",
    "nftables",
    "iproute2",
    "util-linux",
    "etcd-server",
];

pub fn bench(root: &Path, quick: bool, overlay_only: bool, control_only: bool) -> Result<()> {
    ensure!(
        crate::effective_uid()? == 0,
        "the benchmark builds network namespaces, bridges and iptables rules: run `cargo xtask bench` as root"
    );
    crate::build(root, true)?;
    install_missing(root)?;
    crate::run_ok(crate::cargo(root).args(["build", "--release", "--package", "bench"]))
        .context("building the bench crate")?;

    let release = crate::target_dir(root).join("release");
    let mut cmd = Command::new(release.join("bench"));
    cmd.current_dir(root)
        .arg("run")
        .arg("--netd")
        .arg(release.join("netd"))
        .arg("--out")
        .arg(root.join("bench").join("results"))
        .arg("--command")
        .arg(format!(
            "cargo xtask bench{}{}{}",
            if quick { " --quick" } else { "" },
            if overlay_only { " --overlay-only" } else { "" },
            if control_only { " --control-only" } else { "" }
        ));
    if quick {
        cmd.arg("--quick");
    }
    if overlay_only {
        cmd.arg("--overlay-only");
    }
    if control_only {
        cmd.arg("--control-only");
    }
    crate::print_cmd(&cmd);
    let err = cmd.exec();
    Err(err).context("executing the bench runner")
}

fn install_missing(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for &pkg in BENCH_PACKAGES {
        if !crate::dpkg_installed(pkg)? {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    crate::apt_install(root, &missing)?;
    Ok(())
}
