//! `cargo xtask deb`: the Debian package, built by cargo-deb from the
//! `[package.metadata.deb]` of netd/Cargo.toml (binaries, unit, conffile,
//! maintainer scripts in netd/dist/debian/).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{anyhow, Context as _, Result};

/// Installs cargo-deb from crates.io when `cargo deb` does not work.
pub fn setup_cargo_deb() -> Result<()> {
    let works = Command::new("cargo")
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        crate::report("cargo-deb", false);
        return Ok(());
    }
    crate::run_ok(Command::new("cargo").args(["install", "--locked", "cargo-deb"]))?;
    crate::report("cargo-deb", true);
    Ok(())
}

/// Release build and package; returns the .deb's path.
pub fn build(root: &Path) -> Result<PathBuf> {
    crate::build(root, true)?;
    package(root, "release")
}

/// Packages what `profile` (`release`, or `dev` for tests) already built,
/// into target/debian/; returns the .deb's path.
pub fn package(root: &Path, profile: &str) -> Result<PathBuf> {
    let mut cmd = crate::cargo(root);
    cmd.args([
        "deb",
        "--package",
        "netd",
        "--no-build",
        "--profile",
        profile,
    ]);
    if profile != "release" {
        // Test packages: a larger file, made much faster.
        cmd.arg("--fast");
    }
    let out = crate::output_of(&mut cmd).context("building the Debian package")?;
    let path = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .ok_or_else(|| anyhow!("cargo deb printed no .deb path:\n{out}"))?;
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _};

    use super::*;

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A root dpkg can install into: its database, and /bin/sh (dash and
    /// the two libraries it needs) and rm for the maintainer scripts, which dpkg
    /// runs chrooted into it; a fake `systemctl` that records its calls.
    fn throwaway_root(dir: &Path) {
        for d in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "bin",
            "lib/x86_64-linux-gnu",
            "lib64",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
        for (from, to) in [
            ("/bin/dash", "bin/sh"),
            ("/bin/rm", "bin/rm"),
            (
                "/lib/x86_64-linux-gnu/libc.so.6",
                "lib/x86_64-linux-gnu/libc.so.6",
            ),
            ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        ] {
            fs::copy(from, dir.join(to)).unwrap_or_else(|e| panic!("copying {from}: {e}"));
        }
        let fake = dir.join("bin/systemctl");
        fs::write(
            &fake,
            "#!/bin/sh\necho \"systemctl $*\" >> /systemctl-calls\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(dir: &Path) -> String {
        fs::read_to_string(dir.join("systemctl-calls")).unwrap_or_default()
    }

    /// The package holds the binaries, the unit, the config (as a conffile)
    /// and the maintainer scripts; it installs into a throwaway root with
    /// dpkg, where (no systemd running) the scripts call no systemctl; with
    /// systemd running they enable and start it; purge removes every file.
    #[test]
    fn the_package_lists_and_installs_into_a_throwaway_root() {
        let root = crate::workspace_root();
        let debug = crate::target_dir(&root).join("debug");
        if !Command::new("cargo")
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("SKIP: cargo-deb is not installed (`cargo xtask setup` installs it)");
            return;
        }
        if !debug.join("netd").is_file() || !debug.join("netd-cni").is_file() {
            eprintln!(
                "SKIP: {} has no netd and netd-cni (`cargo xtask test` builds them first)",
                debug.display()
            );
            return;
        }
        if Command::new("dpkg").arg("--version").output().is_err() {
            eprintln!("SKIP: dpkg is missing");
            return;
        }
        let deb = package(&root, "dev").unwrap();

        let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
        let files: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|p| !p.ends_with('/'))
            .collect();
        let mut want = vec![
            "./etc/netd/netd.toml",
            "./lib/systemd/system/netd.service",
            "./usr/bin/netd",
            "./usr/lib/cni/netd-cni",
            "./usr/share/doc/netd/README.md",
            "./usr/share/doc/netd/copyright",
        ];
        let mut got = files.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "dpkg-deb -c:\n{listing}");
        let conffiles = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package"));
        assert_eq!(conffiles.trim(), "netd");
        let work = std::env::temp_dir().join(format!("netd-deb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        run(Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(work.join("control")));
        assert_eq!(
            fs::read_to_string(work.join("control/conffiles"))
                .unwrap()
                .trim(),
            "/etc/netd/netd.toml"
        );
        for s in ["postinst", "prerm", "postrm"] {
            assert!(work.join("control").join(s).is_file(), "no {s}");
        }

        // Installed where systemd is not running: nothing is started.
        let r = work.join("root");
        throwaway_root(&r);
        let dpkg = |args: &[&str]| {
            let mut c = Command::new("dpkg");
            c.arg(format!("--root={}", r.display()))
                .arg("--force-depends")
                .args(args);
            run(&mut c)
        };
        dpkg(&["-i", deb.to_str().unwrap()]);
        for f in &want {
            assert!(r.join(f).is_file(), "{f} not installed");
        }
        let st = dpkg(&["-s", "netd"]);
        assert!(st.contains("Status: install ok installed"), "{st}");
        assert_eq!(
            calls(&r),
            "",
            "systemctl was called without systemd running"
        );
        dpkg(&["--purge", "netd"]);
        for f in &want {
            assert!(!r.join(f).exists(), "{f} left after purge");
        }
        assert_eq!(
            calls(&r),
            "",
            "systemctl was called without systemd running"
        );

        // With systemd running, the scripts do their job: the check above
        // could fail.
        fs::create_dir_all(r.join("run/systemd/system")).unwrap();
        dpkg(&["-i", deb.to_str().unwrap()]);
        let c = calls(&r);
        assert!(
            c.contains("systemctl enable netd.service")
                && c.contains("systemctl start netd.service"),
            "{c}"
        );
        dpkg(&["--purge", "netd"]);
        assert!(
            calls(&r).contains("systemctl stop netd.service"),
            "{}",
            calls(&r)
        );
        fs::remove_dir_all(&work).unwrap();
    }
}
