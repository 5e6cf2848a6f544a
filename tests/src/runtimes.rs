//! Real container runtimes driving `netd-cni` inside a test bed, following
//! the verified recipes of shared/RUNTIMES.md: podman 4.3 with the CNI
//! backend, and containerd 1.6 with `ctr run --cni`.
//!
//! Each runtime lives in one holder process per test: it shares the bed's
//! host netns, and a mount namespace of its own (`unshare --mount
//! --propagation unchanged`, so `/sys`, the cgroups and `/run/netns` stay
//! shared with the root namespace while its own mounts stay private).
//! Every later command runs with `nsenter -t HOLDER -m -n`. On drop: the
//! runtime's containers are removed, the holder killed, the runtime's
//! cgroups (a parent of the test's own, in every hierarchy) removed; the
//! files live below the bed's directory and go with it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

use crate::cmd::{run_timeout, Out};
use crate::wait::within;
use crate::Bed;

/// Why a runtime test cannot run here (a missing package), or `None`.
pub fn missing(tools: &[(&str, &str)]) -> Option<String> {
    let absent: Vec<String> = tools
        .iter()
        .filter(|(bin, _)| !Path::new(bin).exists())
        .map(|(bin, pkg)| format!("{bin} (Debian package {pkg})"))
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "SKIPPED: {} missing; `cargo xtask setup` installs it",
            absent.join(", ")
        )
    })
}

/// A process sharing the bed's host netns with a private mount namespace,
/// after `setup` (shell commands) ran in it.
pub struct Holder {
    child: Child,
}

impl Holder {
    pub fn start(bed: &Bed, setup: &str) -> anyhow::Result<Holder> {
        let script = format!("set -e; {setup}; echo ready; exec sleep 3600");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", bed.host_ns()))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "unchanged",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        crate::cmd::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("spawning the holder")?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("holder setup failed: {setup}");
        }
        Ok(Holder { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `env... program args...` in the holder's namespaces (bounded).
    pub fn run(&self, env: &[String], program: &str, args: &[&str], timeout: Duration) -> Out {
        let pid = self.pid().to_string();
        let mut all: Vec<&str> = vec!["-t", &pid, "-m", "-n", "env"];
        all.extend(env.iter().map(String::as_str));
        all.push(program);
        all.extend_from_slice(args);
        run_timeout("nsenter", &all, timeout)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes cgroup `name` (and what is below it) from every hierarchy.
pub fn remove_cgroups(name: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for root in roots.flatten() {
        let dir = root.path().join(name);
        within(Duration::from_secs(5), || {
            !dir.exists() || remove_tree(&dir)
        });
    }
}

/// rmdir depth-first (cgroup directories only hold pseudo-files).
fn remove_tree(dir: &Path) -> bool {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok()
}

/// A busybox-static rootfs (`sh`, `httpd`, `nc`, `ping`, `sleep`) at `dir`.
pub fn busybox_rootfs(dir: &Path) -> anyhow::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copying /bin/busybox")?;
    for applet in ["sh", "httpd", "nc", "ping", "sleep", "cat", "ip", "wget"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for d in ["etc", "tmp", "proc", "sys", "dev", "www"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(dir.join("www/index.html"), "netd-cni via podman\n")?;
    Ok(())
}

/// podman 4.3 (CNI backend) with its own storage, config, network configs
/// and cgroup parent, `netd-cni` as the only plugin of its networks.
pub struct Podman {
    holder: Holder,
    dir: PathBuf,
    socket: PathBuf,
    pub cgroup_parent: String,
}

impl Podman {
    pub const TOOLS: &'static [(&'static str, &'static str)] = &[
        ("/usr/bin/podman", "podman"),
        ("/usr/sbin/runc", "runc"),
        ("/bin/busybox", "busybox-static"),
        ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ];

    pub fn new(bed: &Bed) -> anyhow::Result<Podman> {
        let dir = bed.dir().join("podman");
        for sub in ["net.d", "plugins", "tmp", "graph", "run", "runc", "rootfs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::copy(crate::cni::cni_bin(), dir.join("plugins/netd-cni"))
            .context("copying netd-cni (build netd first)")?;
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend=\"cni\"\ncni_plugin_dirs=[\"{d}/plugins\",\"/usr/lib/cni\"]\n\
                 network_config_dir=\"{d}/net.d\"\n\
                 [engine]\ncgroup_manager=\"cgroupfs\"\nevents_logger=\"file\"\ntmp_dir=\"{d}/tmp\"\n\
                 [containers]\ndefault_ulimits=[\"nofile=20000:20000\",\"nproc=32768:32768\"]\n"
            ),
        )?;
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver=\"overlay\"\ngraphroot=\"{d}/graph\"\nrunroot=\"{d}/run\"\n"
            ),
        )?;
        // podman's lock file (/dev/shm), libcni's result cache
        // (/var/lib/cni) and its blob cache (/var/lib/containers,
        // /var/cache/containers) stay in the holder's own mounts.
        let holder = Holder::start(
            bed,
            "mount -t tmpfs tmpfs /dev/shm; mount -t tmpfs tmpfs /var/lib; mkdir /var/lib/cni; \
             mount -t tmpfs tmpfs /var/cache",
        )?;
        let podman = Podman {
            holder,
            dir,
            socket: bed.socket(),
            cgroup_parent: format!("netd-podman-{}", bed.id()),
        };
        busybox_rootfs(&podman.dir.join("rootfs"))?;
        let tar = podman.dir.join("rootfs.tar");
        crate::cmd::run_ok(
            "tar",
            &[
                "-C",
                &podman.dir.join("rootfs").display().to_string(),
                "-cf",
                &tar.display().to_string(),
                ".",
            ],
        )?;
        let out = podman.run(&["import", &tar.display().to_string(), "localhost/busybox"]);
        if !out.success() {
            bail!("podman import failed:\n{out}");
        }
        Ok(podman)
    }

    /// A CNI network `name` served by netd-cni (created on first use).
    pub fn network(&self, name: &str, subnet: &str) -> anyhow::Result<()> {
        self.network_with(name, serde_json::json!({ "subnet": subnet }))
    }

    /// [`Podman::network`] with netd-cni keys of its own (`subnet`,
    /// `ipv6`, `subnet6`, ...).
    pub fn network_with(&self, name: &str, keys: serde_json::Value) -> anyhow::Result<()> {
        let mut plugin = serde_json::json!({
            "type": "netd-cni",
            "socket": self.socket,
            "capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true},
        });
        if let (Some(p), serde_json::Value::Object(keys)) = (plugin.as_object_mut(), keys) {
            p.extend(keys);
        }
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [plugin],
        });
        std::fs::write(
            self.dir.join(format!("net.d/{name}.conflist")),
            conf.to_string(),
        )?;
        Ok(())
    }

    /// `podman ARGS...` (60 s bound) with this instance's config.
    pub fn run(&self, args: &[&str]) -> Out {
        let d = self.dir.display();
        let env = [
            format!("CONTAINERS_CONF={d}/containers.conf"),
            format!("CONTAINERS_STORAGE_CONF={d}/storage.conf"),
        ];
        let root = format!("root={d}/runc");
        let mut all = vec!["--runtime-flag", &root];
        all.extend_from_slice(args);
        self.holder
            .run(&env, "podman", &all, Duration::from_secs(60))
    }

    /// `podman ARGS...` that must succeed; trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "podman failed:\n{out}");
        out.stdout.trim().to_string()
    }

    /// `podman run -d --cgroup-parent … ARGS... localhost/busybox CMD...`.
    pub fn start(&self, args: &[&str], cmd: &[&str]) -> String {
        let parent = format!("/{}", self.cgroup_parent);
        let mut all = vec!["run", "-d", "--cgroup-parent", &parent];
        all.extend_from_slice(args);
        all.push("localhost/busybox");
        all.extend_from_slice(cmd);
        self.ok(&all)
    }

    /// The netns name (under /run/netns) podman made for container `name`.
    pub fn netns(&self, name: &str) -> String {
        let key = self.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name]);
        key.rsplit('/').next().unwrap_or_default().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let out = self.run(&["rm", "-a", "-f", "-t", "0"]);
        if !out.success() {
            eprintln!("warning: podman rm -a failed:\n{out}");
        }
        remove_cgroups(&self.cgroup_parent);
    }
}

/// A private containerd 1.6 for `ctr run --cni`: `ctr` reads the first
/// config in the fixed `/etc/cni/net.d` and runs plugins from
/// `/opt/cni/bin`, so the holder gets an overlay on `/etc` (with its own
/// `cni/net.d`), a tmpfs on `/opt` (netd-cni in `cni/bin`), on `/var/lib`
/// (libcni's cache) and on `/run` (containerd's shim sockets and runc
/// state); containerd runs there with root, state and `opt` under the
/// bed's directory.
pub struct Containerd {
    holder: Holder,
    dir: PathBuf,
    pub cgroup_parent: String,
}

impl Containerd {
    pub const TOOLS: &'static [(&'static str, &'static str)] = &[
        ("/usr/bin/containerd", "containerd"),
        ("/usr/bin/ctr", "containerd"),
        ("/usr/sbin/runc", "runc"),
        ("/bin/busybox", "busybox-static"),
    ];

    /// containerd with the CNI network `name` (netd-cni on `subnet`).
    pub fn new(bed: &Bed, name: &str, subnet: &str) -> anyhow::Result<Containerd> {
        let dir = bed.dir().join("containerd");
        for sub in ["net.d", "bin", "root", "state", "opt", "etc-up", "etc-work"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::copy(crate::cni::cni_bin(), dir.join("bin/netd-cni"))
            .context("copying netd-cni (build netd first)")?;
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{"type": "netd-cni", "subnet": subnet, "socket": bed.socket()}],
        });
        std::fs::write(
            dir.join(format!("net.d/10-{name}.conflist")),
            conf.to_string(),
        )?;
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
            ),
        )?;
        let setup = format!(
            "mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/lib; mkdir -p /var/lib/cni; \
             mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work /etc; \
             mkdir -p /etc/cni/net.d; cp {d}/net.d/* /etc/cni/net.d/; \
             mount -t tmpfs tmpfs /opt; mkdir -p /opt/cni/bin; cp {d}/bin/netd-cni /opt/cni/bin/; \
             containerd --root {d}/root --state {d}/state --address {d}/containerd.sock \
               --config {d}/config.toml >{d}/containerd.log 2>&1 & echo $! >{d}/containerd.pid; \
             i=0; while [ ! -S {d}/containerd.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
             [ -S {d}/containerd.sock ]"
        );
        let holder = Holder::start(bed, &setup)?;
        Ok(Containerd {
            holder,
            dir,
            cgroup_parent: format!("netd-ctr-{}", bed.id()),
        })
    }

    /// `ctr --address … ARGS...` (60 s bound).
    pub fn ctr(&self, args: &[&str]) -> Out {
        let sock = format!("{}/containerd.sock", self.dir.display());
        let mut all = vec!["--address", &sock];
        all.extend_from_slice(args);
        self.holder.run(&[], "ctr", &all, Duration::from_secs(60))
    }

    /// A busybox rootfs for container `id` whose `/bin/probe` is `script`.
    pub fn rootfs(&self, id: &str, script: &str) -> anyhow::Result<PathBuf> {
        let root = self.dir.join(format!("rootfs-{id}"));
        busybox_rootfs(&root)?;
        let probe = root.join("bin/probe");
        std::fs::write(&probe, format!("#!/bin/sh\n{script}\n"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755))?;
        Ok(root)
    }

    /// `ctr run --cni --rootfs ROOT [-d|--rm] ID /bin/probe`.
    pub fn run(&self, id: &str, root: &Path, detach: bool) -> Out {
        let cgroup = format!("/{}/{id}", self.cgroup_parent);
        let root = root.display().to_string();
        let mode = if detach { "-d" } else { "--rm" };
        self.ctr(&[
            "run",
            mode,
            "--cni",
            "--cgroup",
            &cgroup,
            "--rootfs",
            &root,
            id,
            "/bin/probe",
        ])
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
        for id in tasks.split_whitespace() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
        }
        let containers = self.ctr(&["container", "ls", "-q"]).stdout;
        for id in containers.split_whitespace() {
            let _ = self.ctr(&["container", "rm", id]);
        }
        let pid = std::fs::read_to_string(self.dir.join("containerd.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            within(Duration::from_secs(5), || {
                nix::sys::signal::kill(pid, None).is_err()
            });
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        remove_cgroups(&self.cgroup_parent);
    }
}
