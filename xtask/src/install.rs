//! `cargo xtask install` / `uninstall`: netd as a host service.
//!
//! Install writes `PREFIX/bin/netd`, `/opt/cni/bin/netd-cni` (when that
//! directory exists and the plugin was built), the systemd unit
//! `PREFIX/lib/systemd/system/netd.service` (its `ExecStart` pointing at
//! `PREFIX/bin/netd`), the commented default config `/etc/netd/netd.toml`
//! (never over an existing one) and a manifest
//! `PREFIX/share/netd/install-manifest` of every file and directory it
//! made. Uninstall removes exactly those (the config only if unchanged),
//! then the manifest. Both take `--destdir DIR` (a staging root: every path
//! above is below it) and can run again with the same result.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, ensure, Context as _, Result};

/// The unit as shipped (for `/usr`); install points it at its prefix.
pub const UNIT: &str = include_str!("../../netd/dist/netd.service");
/// The commented default config.
pub const CONFIG: &str = include_str!("../../netd/dist/netd.toml");
/// Where the shipped unit runs netd from.
const SHIPPED_BIN: &str = "/usr/bin/netd";

/// What to install and where.
pub struct Layout {
    /// Staging root (`/` for a real install).
    pub destdir: PathBuf,
    /// Usually `/usr/local`.
    pub prefix: PathBuf,
}

/// The binaries to install.
pub struct Binaries {
    pub netd: PathBuf,
    /// The CNI plugin, if it was built.
    pub netd_cni: Option<PathBuf>,
}

impl Layout {
    /// `path` (absolute, as on the installed system) below the destdir.
    fn staged(&self, path: &Path) -> PathBuf {
        self.destdir.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn bin(&self) -> PathBuf {
        self.prefix.join("bin/netd")
    }

    fn unit(&self) -> PathBuf {
        self.prefix.join("lib/systemd/system/netd.service")
    }

    fn manifest(&self) -> PathBuf {
        self.prefix.join("share/netd/install-manifest")
    }
}

pub const CONFIG_PATH: &str = "/etc/netd/netd.toml";
pub const CNI_DIR: &str = "/opt/cni/bin";

/// The unit with `ExecStart` on `bin`.
pub fn unit_for(bin: &Path) -> String {
    UNIT.replace(
        &format!("ExecStart={SHIPPED_BIN} "),
        &format!("ExecStart={} ", bin.display()),
    )
}

/// One line per path (as on the installed system): `f PATH` for a file,
/// `d PATH` for a directory install created. Directories come first in the
/// order they were made, so uninstall removes them in reverse.
#[derive(Default)]
struct Manifest {
    entries: Vec<(char, PathBuf)>,
}

impl Manifest {
    fn read(path: &Path) -> Result<Manifest> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut m = Manifest::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match line.split_once(' ') {
                Some((k @ ("f" | "d"), p)) if p.starts_with('/') => {
                    m.add(k.chars().next().unwrap_or('f'), PathBuf::from(p))
                }
                _ => bail!("{}: unexpected line {line:?}", path.display()),
            }
        }
        Ok(m)
    }

    fn add(&mut self, kind: char, path: PathBuf) {
        if !self.entries.iter().any(|(_, p)| *p == path) {
            self.entries.push((kind, path));
        }
    }

    fn text(&self) -> String {
        self.entries
            .iter()
            .map(|(k, p)| format!("{k} {}\n", p.display()))
            .collect()
    }
}

/// Creates `dir` (as on the installed system) and its missing parents,
/// recording each one it made.
fn make_dirs(layout: &Layout, dir: &Path, manifest: &mut Manifest) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir.to_path_buf();
    while !layout.staged(&d).exists() {
        missing.push(d.clone());
        if !d.pop() {
            break;
        }
    }
    for d in missing.into_iter().rev() {
        let staged = layout.staged(&d);
        fs::create_dir(&staged).with_context(|| format!("creating {}", staged.display()))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))?;
        manifest.add('d', d);
    }
    Ok(())
}

/// Writes `content` to `path` (as on the installed system) through a
/// temporary file and a rename, so a running binary is replaced, not
/// overwritten.
fn write_file(layout: &Layout, path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let staged = layout.staged(path);
    let tmp = staged.with_extension("netd-install-tmp");
    fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, &staged)
        .with_context(|| format!("renaming {} to {}", tmp.display(), staged.display()))?;
    eprintln!("xtask: installed {}", staged.display());
    Ok(())
}

/// Installs `bins` into `layout`; returns the paths written (as on the
/// installed system), in manifest order.
pub fn install(layout: &Layout, bins: &Binaries) -> Result<Vec<PathBuf>> {
    ensure!(
        layout.prefix.is_absolute(),
        "--prefix must be absolute, got {}",
        layout.prefix.display()
    );
    let mut manifest = Manifest::read(&layout.staged(&layout.manifest()))?;
    let netd = fs::read(&bins.netd).with_context(|| format!("reading {}", bins.netd.display()))?;
    let bin = layout.bin();
    make_dirs(
        layout,
        bin.parent().unwrap_or(Path::new("/")),
        &mut manifest,
    )?;
    write_file(layout, &bin, &netd, 0o755)?;
    manifest.add('f', bin.clone());

    let cni_dir = Path::new(CNI_DIR);
    match &bins.netd_cni {
        Some(cni) if layout.staged(cni_dir).is_dir() => {
            let content = fs::read(cni).with_context(|| format!("reading {}", cni.display()))?;
            let path = cni_dir.join("netd-cni");
            write_file(layout, &path, &content, 0o755)?;
            manifest.add('f', path);
        }
        Some(_) => eprintln!("xtask: {CNI_DIR} does not exist; netd-cni not installed"),
        None => eprintln!("xtask: netd-cni was not built; not installed"),
    }

    let unit = layout.unit();
    make_dirs(
        layout,
        unit.parent().unwrap_or(Path::new("/")),
        &mut manifest,
    )?;
    write_file(layout, &unit, unit_for(&bin).as_bytes(), 0o644)?;
    manifest.add('f', unit);

    let config = Path::new(CONFIG_PATH);
    if layout.staged(config).exists() {
        eprintln!(
            "xtask: {} exists; left as it is",
            layout.staged(config).display()
        );
    } else {
        make_dirs(
            layout,
            config.parent().unwrap_or(Path::new("/")),
            &mut manifest,
        )?;
        write_file(layout, config, CONFIG.as_bytes(), 0o644)?;
        manifest.add('f', config.to_path_buf());
    }

    let mpath = layout.manifest();
    make_dirs(
        layout,
        mpath.parent().unwrap_or(Path::new("/")),
        &mut manifest,
    )?;
    manifest.add('f', mpath.clone());
    let staged = layout.staged(&mpath);
    fs::write(&staged, manifest.text()).with_context(|| format!("writing {}", staged.display()))?;
    Ok(manifest
        .entries
        .iter()
        .filter(|(k, _)| *k == 'f')
        .map(|(_, p)| p.clone())
        .collect())
}

/// Removes what [`install`] recorded; returns the paths removed.
pub fn uninstall(layout: &Layout) -> Result<Vec<PathBuf>> {
    let mpath = layout.manifest();
    let staged_manifest = layout.staged(&mpath);
    ensure!(
        staged_manifest.exists(),
        "{} not found: nothing was installed with --prefix {}{}",
        staged_manifest.display(),
        layout.prefix.display(),
        if layout.destdir == Path::new("/") {
            String::new()
        } else {
            format!(" --destdir {}", layout.destdir.display())
        }
    );
    let manifest = Manifest::read(&staged_manifest)?;
    let mut removed = Vec::new();
    for (kind, path) in manifest.entries.iter().rev() {
        let staged = layout.staged(path);
        match kind {
            'f' if path == Path::new(CONFIG_PATH)
                && fs::read_to_string(&staged).is_ok_and(|t| t != CONFIG) =>
            {
                eprintln!(
                    "xtask: {} was changed since install; left in place",
                    staged.display()
                );
            }
            'f' => match fs::remove_file(&staged) {
                Ok(()) => removed.push(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", staged.display())),
            },
            _ => {
                // Only if empty: something else may have been put there.
                if fs::remove_dir(&staged).is_ok() {
                    removed.push(path.clone());
                }
            }
        }
    }
    for p in &removed {
        eprintln!("xtask: removed {}", layout.staged(p).display());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file and directory below `root`, relative to it, sorted.
    fn tree(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if p.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut v = Vec::new();
        walk(root, root, &mut v);
        v.sort();
        v
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "netd-xtask-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Stand-ins for the binaries (executable scripts): what is tested here
    /// is where files go.
    fn binaries(dir: &Path) -> Binaries {
        let fake = |name: &str| {
            let p = dir.join(name);
            fs::write(&p, format!("#!/bin/sh\necho {name}\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        Binaries {
            netd: fake("netd"),
            netd_cni: Some(fake("netd-cni")),
        }
    }

    #[test]
    fn install_then_uninstall_leaves_exactly_what_was_there() {
        let work = scratch("install");
        let root = work.join("root");
        fs::create_dir_all(root.join("opt/cni/bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        let before = tree(&root);
        let layout = Layout {
            destdir: root.clone(),
            prefix: PathBuf::from("/usr/local"),
        };
        let bins = binaries(&work);
        let written = install(&layout, &bins).unwrap();
        let expected = [
            "/usr/local/bin/netd",
            "/opt/cni/bin/netd-cni",
            "/usr/local/lib/systemd/system/netd.service",
            "/etc/netd/netd.toml",
            "/usr/local/share/netd/install-manifest",
        ];
        let written_s: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(written_s, expected);
        let after = tree(&root);
        let mut want: Vec<String> = before.clone();
        want.extend(
            [
                "etc/netd/",
                "etc/netd/netd.toml",
                "opt/cni/bin/netd-cni",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/netd",
                "usr/local/lib/",
                "usr/local/lib/systemd/",
                "usr/local/lib/systemd/system/",
                "usr/local/lib/systemd/system/netd.service",
                "usr/local/share/",
                "usr/local/share/netd/",
                "usr/local/share/netd/install-manifest",
            ]
            .map(String::from),
        );
        want.sort();
        assert_eq!(after, want);
        let unit =
            fs::read_to_string(root.join("usr/local/lib/systemd/system/netd.service")).unwrap();
        assert!(
            unit.contains("\nExecStart=/usr/local/bin/netd daemon --config /etc/netd/netd.toml\n"),
            "{unit}"
        );
        let mode = fs::metadata(root.join("usr/local/bin/netd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        // Again: the same files, the config left alone.
        fs::write(root.join("etc/netd/netd.toml"), "log-level = \"debug\"\n").unwrap();
        install(&layout, &bins).unwrap();
        assert_eq!(tree(&root), want);
        assert_eq!(
            fs::read_to_string(root.join("etc/netd/netd.toml")).unwrap(),
            "log-level = \"debug\"\n"
        );

        // An edited config survives uninstall; the rest goes.
        uninstall(&layout).unwrap();
        let mut kept = before.clone();
        kept.extend(["etc/netd/", "etc/netd/netd.toml"].map(String::from));
        kept.sort();
        assert_eq!(tree(&root), kept);

        // Unchanged, it goes too, and the tree is as before.
        fs::remove_file(root.join("etc/netd/netd.toml")).unwrap();
        fs::remove_dir(root.join("etc/netd")).unwrap();
        install(&layout, &bins).unwrap();
        uninstall(&layout).unwrap();
        assert_eq!(tree(&root), before);
        assert!(
            uninstall(&layout).is_err(),
            "a second uninstall has no manifest"
        );
        fs::remove_dir_all(&work).unwrap();
    }

    #[test]
    fn no_cni_dir_no_plugin() {
        let work = scratch("nocni");
        let root = work.join("root");
        fs::create_dir_all(&root).unwrap();
        let layout = Layout {
            destdir: root.clone(),
            prefix: PathBuf::from("/usr"),
        };
        let written = install(&layout, &binaries(&work)).unwrap();
        assert!(
            !written.iter().any(|p| p.ends_with("netd-cni")),
            "{written:?}"
        );
        assert!(!root.join("opt").exists());
        uninstall(&layout).unwrap();
        assert!(tree(&root).is_empty(), "{:?}", tree(&root));
        fs::remove_dir_all(&work).unwrap();
    }

    #[test]
    fn the_shipped_unit_runs_usr_bin_netd() {
        assert!(UNIT.contains(&format!("\nExecStart={SHIPPED_BIN} daemon ")));
        assert_eq!(
            unit_for(Path::new("/opt/x/bin/netd"))
                .matches("ExecStart=/opt/x/bin/netd daemon")
                .count(),
            1
        );
    }

    /// `systemd-analyze verify` accepts the installed unit without a single
    /// warning (it only warns about unknown keys and bad values, so any
    /// output fails the test).
    #[test]
    fn systemd_analyze_verifies_the_unit() {
        let Ok(out) = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
        else {
            eprintln!("SKIP: systemd-analyze is not installed (Debian package systemd)");
            return;
        };
        assert!(out.status.success());
        let work = scratch("verify");
        let root = work.join("root");
        fs::create_dir_all(&root).unwrap();
        let layout = Layout {
            destdir: root.clone(),
            prefix: PathBuf::from("/usr/local"),
        };
        install(&layout, &binaries(&work)).unwrap();
        // The staged unit, pointed at the staged binary (verify checks that
        // ExecStart is executable).
        let bin = root.join("usr/local/bin/netd");
        let unit = work.join("netd.service");
        fs::write(&unit, unit_for(&bin)).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty() && out.stdout.is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            unit.display(),
            out.status
        );
        // A broken copy is caught: the check can fail.
        fs::write(&unit, unit_for(&bin).replace("Type=notify", "Type=notfy")).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        assert!(!out.stderr.is_empty(), "a bad Type= went unnoticed");
        fs::remove_dir_all(&work).unwrap();
    }

    #[test]
    fn the_unit_says_what_the_issue_asks() {
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "KillMode=process",
            "StateDirectory=netd",
            "RuntimeDirectory=netd",
            "Before=docker.service containerd.service",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(UNIT.lines().any(|l| l == line), "no {line:?} in the unit");
        }
        // No mount sandboxing: it would take the bpffs mount with it.
        for key in [
            "ProtectSystem=",
            "PrivateTmp=",
            "ProtectHome=",
            "PrivateMounts=",
        ] {
            assert!(
                !UNIT.lines().any(|l| l.starts_with(key)),
                "{key} in the unit"
            );
        }
    }
}
