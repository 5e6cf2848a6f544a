//! The hostile-host passes of `cargo xtask test`: the packet test binaries
//! of `HOSTILE_TESTS` run again on each firewall variant
//! (`NETD_TEST_FIREWALL`), one variant after the other.
//!
//! The binaries are the ones the workspace pass built: asked of `cargo test
//! --no-run` with the workspace pass's own package selection, so features
//! unify the same way (`cargo test --package netd-tests` built every
//! dependency again first). Running the two variants side by side was
//! tried and was slower: the tests' cost is mostly the kernel's (the
//! verifier at each agent start, namespaces), which two passes share on
//! the same cores (each binary took 2-4 times as long).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Result};

/// Runs `tests` on every one of `firewalls`; returns the variants with a
/// failed binary.
pub fn run(
    root: &Path,
    netd_bin: &Path,
    firewalls: &[&str],
    tests: &[&str],
    args: &[OsString],
) -> Result<Vec<String>> {
    if firewalls.is_empty() {
        return Ok(Vec::new());
    }
    let bins = executables(root, tests)?;
    let mut failed = Vec::new();
    for fw in firewalls {
        eprintln!("xtask: the packet tests again, on a hostile host: NETD_TEST_FIREWALL={fw}");
        let mut bad = Vec::new();
        for (test, exe) in &bins {
            let mut cmd = Command::new(exe);
            cmd.args(args)
                .current_dir(root.join("tests"))
                .env("NETD_BIN", netd_bin)
                .env("NETD_TEST_FIREWALL", fw);
            crate::print_cmd(&cmd);
            let start = Instant::now();
            let ok = match cmd.status() {
                Ok(s) => s.success(),
                Err(e) => {
                    eprintln!("xtask: starting {}: {e}", exe.display());
                    false
                }
            };
            eprintln!(
                "xtask: NETD_TEST_FIREWALL={fw} tests/{test}.rs: {} in {:.1} s",
                if ok { "ok" } else { "FAILED" },
                start.elapsed().as_secs_f64()
            );
            if !ok {
                bad.push(test.as_str());
            }
        }
        if !bad.is_empty() {
            eprintln!("xtask: hostile host ({fw}): failed: {}", bad.join(", "));
            failed.push(format!("hostile host ({fw})"));
        }
    }
    Ok(failed)
}

/// The executables of netd-tests' test targets `tests`, in that order.
fn executables(root: &Path, tests: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = crate::cargo(root);
    cmd.args(crate::WORKSPACE_TEST_SELECTION)
        .args(["--no-run", "--message-format=json-render-diagnostics"]);
    let json = crate::output_of(&mut cmd)?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for line in json.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let from_tests = v["package_id"]
            .as_str()
            .is_some_and(|id| id.contains("#netd-tests@"));
        if v["reason"] != "compiler-artifact" || !from_tests {
            continue;
        }
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
        else {
            continue;
        };
        if tests.contains(&name) && !found.iter().any(|(n, _)| n == name) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    let mut ordered = Vec::new();
    for t in tests {
        match found.iter().find(|(n, _)| n == t) {
            Some(b) => ordered.push(b.clone()),
            None => bail!("`cargo test --no-run` named no executable for tests/{t}.rs"),
        }
    }
    Ok(ordered)
}
