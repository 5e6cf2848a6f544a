//! The hostile-host passes of `cargo xtask test`: the packet test binaries
//! of `HOSTILE_TESTS`, built once, run again on each firewall variant
//! (`NETD_TEST_FIREWALL`). The variants run at the same time, one thread
//! each, every binary in turn: each test builds its own namespaces under a
//! random id and its firewall inside its own host netns, so two variants
//! never meet, and the tests mostly wait on agents and packets (the two
//! passes took about 300 s one after the other).
//!
//! Each binary's output goes to `target/xtask/hostile-FW-TEST.log` while it
//! runs and is printed whole when the passes end, variant by variant.

use std::{
    ffi::OsString,
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

/// One test binary's run on one variant.
struct Outcome {
    test: String,
    ok: bool,
    secs: f64,
    log: PathBuf,
}

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
    let logs = crate::target_dir(root).join("xtask");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    eprintln!(
        "xtask: the packet tests again, on hostile hosts ({}), the variants side by side",
        firewalls.join(", ")
    );
    let passes: Vec<(String, Result<Vec<Outcome>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = firewalls
            .iter()
            .map(|fw| {
                let (bins, logs) = (&bins, &logs);
                let h = s.spawn(move || pass(root, netd_bin, fw, bins, logs, args));
                (fw.to_string(), h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(fw, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the {fw} pass panicked")));
                (fw, r)
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (fw, outcomes) in passes {
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                eprintln!("xtask: hostile host ({fw}): {e:#}");
                failed.push(format!("hostile host ({fw})"));
                continue;
            }
        };
        for o in &outcomes {
            let text = fs::read_to_string(&o.log).unwrap_or_else(|e| format!("({e})"));
            eprintln!(
                "\nxtask: NETD_TEST_FIREWALL={fw} tests/{}.rs: {} in {:.1} s ({})\n{text}",
                o.test,
                if o.ok { "ok" } else { "FAILED" },
                o.secs,
                o.log.display()
            );
        }
        let bad: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.ok)
            .map(|o| o.test.as_str())
            .collect();
        if !bad.is_empty() {
            eprintln!("xtask: hostile host ({fw}): failed: {}", bad.join(", "));
            failed.push(format!("hostile host ({fw})"));
        }
    }
    Ok(failed)
}

/// Every binary of `bins` in turn on the firewall `fw`.
fn pass(
    root: &Path,
    netd_bin: &Path,
    fw: &str,
    bins: &[(String, PathBuf)],
    logs: &Path,
    args: &[OsString],
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for (test, exe) in bins {
        let log = logs.join(format!("hostile-{fw}-{test}.log"));
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .current_dir(root.join("tests"))
            .env("NETD_BIN", netd_bin)
            .env("NETD_TEST_FIREWALL", fw)
            .stdin(Stdio::null())
            .stderr(file.try_clone().context("duplicating a log file handle")?)
            .stdout(file);
        crate::print_cmd(&cmd);
        let start = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("starting {}", exe.display()))?;
        out.push(Outcome {
            test: test.clone(),
            ok: status.success(),
            secs: start.elapsed().as_secs_f64(),
            log,
        });
    }
    Ok(out)
}

/// The executables of netd-tests' test targets `tests`, in that order.
/// Asked of `cargo test --no-run` with the workspace pass's own package
/// selection: features unify the same way, so the binaries it built are
/// reused (`--package netd-tests` alone would build every dependency again).
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
