//! A bpffs holding another map layout is refused, never reused.
use std::time::Duration;

use netd_tests::{
    bed::{netd_bin, Bed},
    cmd::run_timeout,
};

/// Starts a second agent on the bed's directories; returns (exit ok, stderr).
fn start_again(bed: &Bed) -> (bool, String) {
    let d = bed.dir();
    let netns = format!("--net=/run/netns/{}", bed.host_ns());
    let bin = netd_bin().display().to_string();
    let (state, run, bpffs) = (d.join("state"), d.join("run2"), bed.bpffs());
    let out = run_timeout(
        "nsenter",
        &[
            &netns,
            &bin,
            "daemon",
            "--state-dir",
            &state.display().to_string(),
            "--run-dir",
            &run.display().to_string(),
            "--bpffs",
            &bpffs.display().to_string(),
            "--cgroup",
            "/nonexistent-cgroup",
            // Never the host's /run/docker/plugins (its lock file would
            // stay behind there).
            "--docker-plugin",
            "none",
        ],
        Duration::from_secs(10),
    );
    (out.success(), out.stderr)
}

#[test]
fn another_layout_version_is_refused_with_what_to_do() {
    let bed = Bed::new();
    bed.network("n1", &["--subnet", "10.90.7.0/24"]);
    assert!(bed.stop_agent().success());
    std::fs::create_dir(bed.bpffs().join("v0")).unwrap();
    let (ok, err) = start_again(&bed);
    assert!(!ok, "an agent must refuse a bpffs with another layout");
    assert!(
        err.contains("layout v0") && err.contains("reset --force"),
        "{err}"
    );
    std::fs::remove_dir(bed.bpffs().join("v0")).unwrap();
}

#[test]
fn a_pinned_map_of_another_shape_is_refused() {
    let bed = Bed::new();
    assert!(bed.stop_agent().success());
    // Replace the ENDPOINTS pin with a map of other key/value sizes.
    let pin = bed.bpffs().join("v1/maps/ENDPOINTS");
    std::fs::remove_file(&pin).unwrap();
    let pin_s = pin.display().to_string();
    let out = run_timeout(
        "bpftool",
        &[
            "map",
            "create",
            &pin_s,
            "type",
            "hash",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "16",
            "name",
            "ENDPOINTS",
        ],
        Duration::from_secs(10),
    );
    assert!(out.success(), "{out}");
    let (ok, err) = start_again(&bed);
    assert!(!ok, "an agent must refuse a pinned map of another shape");
    assert!(
        err.contains("ENDPOINTS") && err.contains("key/value sizes"),
        "{err}"
    );
}
