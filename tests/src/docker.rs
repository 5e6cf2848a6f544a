//! A real dockerd (Debian docker.io 20.10) inside a bed's host netns, with
//! netd as its network driver (shared/RUNTIMES.md has the recipe).
//!
//! One holder process per dockerd (`nsenter --net=HOST unshare --mount`)
//! owns a private mount namespace: a tmpfs on /run (so nothing of
//! containerd, runc or dockerd lands in the host's /run) and the bed's
//! plugin directory bind-mounted on /run/docker/plugins, where dockerd looks
//! for `netd.sock`. containerd and dockerd run in that namespace with every
//! directory under `<bed>/docker`, their processes in a cgroup of their own
//! and the containers under a cgroup parent of the test's. Dropping
//! [`Dockerd`] removes the containers, ends the daemons by PID, kills what is
//! left in those cgroups and removes the cgroups, even when the test panics.
//! Create it after the [`Bed`] so it is dropped first.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::bed::Bed;
use crate::cmd::{run_timeout, Out};
use crate::netns::Netns;
use crate::traffic::Ep;

/// docker.io's client (a newer docker in /usr/local/bin may shadow it).
pub const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const CONTAINERD: &str = "/usr/bin/containerd";
const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
/// The image every container runs: a busybox-static rootfs.
pub const IMAGE: &str = "netd-busybox";
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Why docker tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    let absent: Vec<&str> = [DOCKER, DOCKERD, CONTAINERD, RUNC, BUSYBOX]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "SKIP: {} missing (Debian docker.io, containerd, runc, busybox-static; `cargo xtask setup` installs them)",
            absent.join(", ")
        )
    })
}

/// dockerd's settings that tests vary.
#[derive(Clone, Debug)]
pub struct Options {
    /// dockerd's `--iptables` (its default, true, sets FORWARD DROP and
    /// br_netfilter in the host netns when it turns ip_forward on).
    pub iptables: bool,
    /// Containers keep running while dockerd restarts.
    pub live_restore: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            iptables: true,
            live_restore: false,
        }
    }
}

/// A process this harness started, ended by its PID.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps it.
    fn stop(&mut self, grace: Duration) {
        if !self.running() {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        if crate::wait::wait_exit(&mut self.child, grace).is_some() {
            return;
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM; killing it",
            self.name,
            self.pid()
        );
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A container dockerd runs, with its netns named on the host for probes.
#[derive(Debug, Clone)]
pub struct DCtr {
    pub name: String,
    /// Netns name under /run/netns (an `ip netns attach` of its PID).
    pub ns: String,
}

pub struct Dockerd<'b> {
    bed: &'b Bed,
    dir: PathBuf,
    opts: Options,
    holder: Mutex<Option<Daemon>>,
    containerd: Mutex<Option<Daemon>>,
    dockerd: Mutex<Option<Daemon>>,
    /// cgroup (relative to each hierarchy) of the daemons and of containers.
    daemon_cgroup: String,
    ctr_cgroup: String,
}

/// Where the dockerd of `bed` serves its API (for the agent's
/// `docker-host`).
pub fn api_socket(bed: &Bed) -> PathBuf {
    bed.dir().join("docker/docker.sock")
}

impl<'b> Dockerd<'b> {
    /// Starts containerd and dockerd in `bed`'s host netns and imports the
    /// image; `None` (after printing why) where docker.io is not installed.
    pub fn start(bed: &'b Bed, opts: Options) -> Option<Dockerd<'b>> {
        if let Some(why) = missing() {
            eprintln!("{why}");
            return None;
        }
        let d = Dockerd {
            bed,
            dir: bed.dir().join("docker"),
            opts,
            holder: Mutex::new(None),
            containerd: Mutex::new(None),
            dockerd: Mutex::new(None),
            daemon_cgroup: format!("netd-test-{}-dockerd", bed.id()),
            ctr_cgroup: format!("netd-test-{}-ctr", bed.id()),
        };
        if let Err(e) = d.try_start() {
            panic!("starting dockerd: {e:#}\n{}", d.logs());
        }
        Some(d)
    }

    fn try_start(&self) -> anyhow::Result<()> {
        let d = &self.dir;
        for sub in [
            "data",
            "exec",
            "cd/root",
            "cd/state",
            "cd/opt",
            "rootfs/bin",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        std::fs::create_dir_all(unified().join(&self.daemon_cgroup))?;
        std::fs::write(
            d.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{d}/cd/root"
state = "{d}/cd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/cd/opt"
"#,
                d = d.display()
            ),
        )?;
        std::fs::write(
            d.join("daemon.json"),
            serde_json::json!({
                "deprecated-key-path": d.join("key.json"),
                "live-restore": self.opts.live_restore,
            })
            .to_string(),
        )?;
        // The holder: private mounts, then it just waits.
        std::fs::write(
            d.join("holder.sh"),
            format!(
                "mount -t tmpfs netd-test-run /run && mkdir -p /run/docker/plugins && \
                 mount --bind {plugins} /run/docker/plugins && echo ready > {d}/holder.ready && \
                 exec sleep 1000000\n",
                plugins = self.bed.plugin_dir().display(),
                d = d.display()
            ),
        )?;
        let mut holder = Command::new("nsenter");
        holder
            .arg(format!("--net=/run/netns/{}", self.bed.host_ns()))
            .args(["unshare", "--mount", "--propagation", "private", "sh"])
            .arg(d.join("holder.sh"));
        let child = self.spawn(holder, "holder.log")?;
        *self.holder.lock().unwrap() = Some(Daemon {
            name: "holder",
            child,
        });
        wait_for("the mount holder", Duration::from_secs(10), || {
            d.join("holder.ready").exists()
        })?;
        self.start_containerd()?;
        self.start_dockerd()?;
        self.import_image()
    }

    /// `nsenter -t HOLDER -m -n program args...`, in the daemons' cgroup,
    /// output to `log`; dies with the test process.
    fn in_holder(&self, program: &str, args: &[String], log: &str) -> anyhow::Result<Child> {
        let pid = self
            .holder
            .lock()
            .unwrap()
            .as_ref()
            .map(|h| h.child.id())
            .context("no holder")?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "-m", "-n", program])
            .args(args);
        self.spawn(cmd, log)
    }

    fn spawn(&self, mut cmd: Command, log: &str) -> anyhow::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))?;
        let procs = OpenOptions::new()
            .write(true)
            .open(unified().join(&self.daemon_cgroup).join("cgroup.procs"))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::write(&procs, b"0").map_err(std::io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        cmd.spawn().context("spawning")
    }

    fn start_containerd(&self) -> anyhow::Result<()> {
        let cfg = self.dir.join("containerd.toml").display().to_string();
        let child = self.in_holder(CONTAINERD, &["--config".into(), cfg], "containerd.log")?;
        *self.containerd.lock().unwrap() = Some(Daemon {
            name: "containerd",
            child,
        });
        let sock = self.dir.join("containerd.sock");
        wait_for("containerd", Duration::from_secs(20), || sock.exists())
    }

    /// Starts dockerd (again) and waits until it answers.
    pub fn start_dockerd(&self) -> anyhow::Result<()> {
        let d = &self.dir;
        let p = |s: &str| d.join(s).display().to_string();
        let args = vec![
            "--containerd".into(),
            p("containerd.sock"),
            "--data-root".into(),
            p("data"),
            "--exec-root".into(),
            p("exec"),
            "--pidfile".into(),
            p("docker.pid"),
            "-H".into(),
            format!("unix://{}", p("docker.sock")),
            "--config-file".into(),
            p("daemon.json"),
            "--cgroup-parent".into(),
            format!("/{}", self.ctr_cgroup),
            format!("--iptables={}", self.opts.iptables),
        ];
        let child = self.in_holder(DOCKERD, &args, "dockerd.log")?;
        *self.dockerd.lock().unwrap() = Some(Daemon {
            name: "dockerd",
            child,
        });
        wait_for("dockerd", Duration::from_secs(30), || {
            self.docker_quiet(&["version", "--format", "{{.Server.Version}}"])
                .success()
        })
    }

    /// SIGTERM dockerd and wait for it to exit.
    pub fn stop_dockerd(&self) {
        if let Some(mut d) = self.dockerd.lock().unwrap().take() {
            d.stop(Duration::from_secs(20));
        }
    }

    /// Stops and starts dockerd (containers stay up with `live_restore`).
    pub fn restart_dockerd(&self) {
        self.stop_dockerd();
        if let Err(e) = self.start_dockerd() {
            panic!("restarting dockerd: {e:#}\n{}", self.logs());
        }
    }

    fn import_image(&self) -> anyhow::Result<()> {
        let root = self.dir.join("rootfs");
        std::fs::copy(BUSYBOX, root.join("bin/busybox"))?;
        let list = run_timeout(BUSYBOX, &["--list"], Duration::from_secs(10));
        for applet in list
            .stdout
            .lines()
            .filter(|a| *a != "busybox" && !a.is_empty())
        {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        let tar = self.dir.join("rootfs.tar");
        let out = run_timeout(
            "tar",
            &[
                "-C",
                &root.display().to_string(),
                "-cf",
                &tar.display().to_string(),
                ".",
            ],
            Duration::from_secs(30),
        );
        if !out.success() {
            bail!("packing the rootfs:\n{out}");
        }
        let tar = tar.display().to_string();
        let out = self.docker(&["import", "--change", "ENV PATH=/bin", &tar, IMAGE]);
        if !out.success() {
            bail!("importing the image:\n{out}");
        }
        Ok(())
    }

    fn base_args(&self) -> Vec<String> {
        vec![
            "-H".into(),
            format!("unix://{}", api_socket(self.bed).display()),
        ]
    }

    fn docker_quiet(&self, args: &[&str]) -> Out {
        let mut all = self.base_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_timeout(DOCKER, &all, Duration::from_secs(5))
    }

    /// Runs the docker CLI (bounded); notes it in the bed's transcript.
    pub fn docker(&self, args: &[&str]) -> Out {
        let mut all = self.base_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run_timeout(DOCKER, &all, CLI_TIMEOUT);
        self.bed.note(format!("{out}"));
        out
    }

    /// A docker command that must succeed; its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.success(),
            "docker command failed:\n{out}\n{}",
            self.logs()
        );
        out.stdout.trim().to_string()
    }

    /// A docker command that must fail; its stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.success() && !out.timed_out,
            "docker command should have failed:\n{out}"
        );
        out.stderr.trim().to_string()
    }

    /// `docker network create -d netd extra... NAME`; returns the id.
    pub fn network(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", "-d", "netd"];
        args.extend_from_slice(extra);
        args.push(name);
        self.ok(&args)
    }

    /// `docker run -d --name NAME extra... IMAGE sleep` and names its netns.
    pub fn run(&self, name: &str, extra: &[&str]) -> DCtr {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "100000"]);
        self.ok(&args);
        self.attach(name)
    }

    /// Names the netns of running container `name` on the host.
    pub fn attach(&self, name: &str) -> DCtr {
        let pid: u32 = self
            .ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .unwrap_or_else(|e| panic!("pid of {name}: {e}"));
        let ns_name = format!("nt-{}-d-{name}", self.bed.id());
        self.bed.drop_netns(&ns_name);
        let ns = Netns::attach(&ns_name, pid).unwrap_or_else(|e| panic!("{e:#}"));
        DCtr {
            name: name.to_string(),
            ns: self.bed.adopt_netns(ns),
        }
    }

    /// `docker inspect NAME` → the one object.
    pub fn inspect(&self, name: &str) -> Value {
        let s = self.ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("inspect {name}: {e}"));
        v[0].clone()
    }

    /// The address Docker gave container `c` on network `net`.
    pub fn ip(&self, c: &DCtr, net: &str) -> std::net::Ipv4Addr {
        let v = self.inspect(&c.name);
        let ip = v["NetworkSettings"]["Networks"][net]["IPAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no address on {net}", c.name));
        ip.parse().unwrap_or_else(|e| panic!("address {ip:?}: {e}"))
    }

    /// The IPv6 address Docker gave container `c` on network `net`.
    pub fn ip6(&self, c: &DCtr, net: &str) -> std::net::Ipv6Addr {
        let v = self.inspect(&c.name);
        let ip = v["NetworkSettings"]["Networks"][net]["GlobalIPv6Address"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no IPv6 address on {net}", c.name));
        ip.parse()
            .unwrap_or_else(|e| panic!("IPv6 address {ip:?} of {}: {e}", c.name))
    }

    /// `c` on network `net` as an IPv6 probe endpoint.
    pub fn ep6(&self, c: &DCtr, net: &str) -> Ep {
        Ep::v6(&format!("{}/{net}/v6", c.name), &c.ns, self.ip6(c, net))
    }

    /// `c` on network `net` as a probe endpoint.
    pub fn ep(&self, c: &DCtr, net: &str) -> Ep {
        Ep::new(&format!("{}/{net}", c.name), &c.ns, self.ip(c, net))
    }

    /// The netd container of `c`'s endpoint on `net` (named by the first 12
    /// hex digits of Docker's endpoint id).
    pub fn endpoint_name(&self, c: &DCtr, net: &str) -> String {
        let v = self.inspect(&c.name);
        let id = v["NetworkSettings"]["Networks"][net]["EndpointID"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no endpoint on {net}", c.name));
        id.chars().take(12).collect()
    }

    /// `docker rm -f` (the netns name goes first so it keeps nothing alive).
    pub fn rm(&self, c: &DCtr) {
        self.bed.drop_netns(&c.ns);
        self.ok(&["rm", "-f", &c.name]);
    }

    /// Panics unless dockerd left its firewall in the host netns: FORWARD
    /// policy DROP and br_netfilter's bridge-nf-call-iptables on (what it
    /// does on a fresh host with `--iptables=true`).
    pub fn assert_docker_firewall(&self) {
        let host = self.bed.host_ns();
        let net = format!("--net=/run/netns/{host}");
        let rules = run_timeout("nsenter", &[&net, "iptables", "-S", "FORWARD"], CLI_TIMEOUT);
        assert!(
            rules.stdout.lines().any(|l| l.trim() == "-P FORWARD DROP"),
            "dockerd should have set FORWARD DROP in {host}:\n{rules}"
        );
        let nf = Bed::sysctl(host, "net.bridge.bridge-nf-call-iptables")
            .unwrap_or_else(|e| panic!("br_netfilter sysctl: {e:#}"));
        assert_eq!(
            nf, "1",
            "dockerd should have turned br_netfilter on in {host}"
        );
    }

    /// The daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for log in ["dockerd.log", "containerd.log", "holder.log"] {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s.push_str(&format!(
                "---- {log} (last 40 lines) ----\n{}\n",
                tail.join("\n")
            ));
        }
        s
    }

    fn cleanup(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let running = self
            .dockerd
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(Daemon::running);
        if running {
            let ids = self.docker_quiet(&["ps", "-aq"]);
            for id in ids.stdout.split_whitespace() {
                let _ = self.docker_quiet(&["rm", "-f", id]);
            }
        }
        for slot in [&self.dockerd, &self.containerd, &self.holder] {
            if let Some(mut d) = slot.lock().unwrap().take() {
                d.stop(Duration::from_secs(15));
            }
        }
        // Shims and container processes left behind.
        for rel in [&self.ctr_cgroup, &self.daemon_cgroup] {
            kill_cgroup_everywhere(rel);
        }
        for rel in [&self.ctr_cgroup, &self.daemon_cgroup] {
            remove_cgroup_everywhere(rel);
        }
    }
}

impl Drop for Dockerd<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The cgroup2 mount of this host (unified or hybrid layout).
fn unified() -> PathBuf {
    for dir in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(dir).join("cgroup.procs").exists()
            && Path::new(dir).join("cgroup.controllers").exists()
        {
            return PathBuf::from(dir);
        }
    }
    PathBuf::from("/sys/fs/cgroup")
}

/// Every cgroup hierarchy mounted under /sys/fs/cgroup (or itself).
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Directories of cgroup `rel` and below in `h`, deepest first.
fn subtree(h: &Path, rel: &str) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(p.to_path_buf());
    }
    let mut out = Vec::new();
    let top = h.join(rel);
    if top.is_dir() {
        walk(&top, &mut out);
    }
    out
}

fn kill_cgroup_everywhere(rel: &str) {
    let empty = crate::wait::within(Duration::from_secs(2), || {
        let mut any = false;
        for h in hierarchies() {
            for dir in subtree(&h, rel) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    any = true;
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        !any
    });
    if !empty {
        eprintln!("warning: processes survive in cgroup {rel}");
    }
}

fn remove_cgroup_everywhere(rel: &str) {
    for h in hierarchies() {
        for dir in subtree(&h, rel) {
            let removed = crate::wait::within(Duration::from_secs(3), || {
                std::fs::remove_dir(&dir).is_ok() || !dir.exists()
            });
            if !removed {
                eprintln!("warning: could not remove cgroup {}", dir.display());
            }
        }
    }
}

fn wait_for(what: &str, timeout: Duration, ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    crate::wait::within(timeout, ready)
        .then_some(())
        .ok_or_else(|| anyhow::anyhow!("{what} not ready after {timeout:?}"))
}
