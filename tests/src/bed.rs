//! A test bed: private host netns + its own netd agent + container netns.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::api::{ContainerView, NetworkView, StatusView};
use crate::cmd::{ip_ns, run_timeout, Out};
use crate::firewall::{self, Firewall};
use crate::netns::Netns;
use crate::traffic::{allow, dropped, Ep, Flow, DENY_PACKETS};

/// The netd binary under test: `$NETD_BIN`, else the workspace debug build.
pub fn netd_bin() -> PathBuf {
    match std::env::var_os("NETD_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/netd"),
    }
}

/// The source hash these tests were built with (tests/build.rs, from the
/// same files as netd's own: netd/source_hash.rs).
pub const SOURCE_HASH: &str = env!("NETD_SOURCE_HASH");

/// Refuses to test a binary other than the one the current sources build:
/// `netd version` must show [`SOURCE_HASH`]. Checked once per binary and
/// test process.
pub fn check_binary(bin: &Path) -> anyhow::Result<()> {
    static CHECKED: Mutex<Vec<(PathBuf, Result<(), String>)>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = checked.iter().find(|(p, _)| p == bin) {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let r = binary_source_hash(bin).and_then(|h| {
        if h == SOURCE_HASH {
            Ok(())
        } else {
            Err(format!(
                "{} was built from other sources (source {h}) than these tests \
                 (source {SOURCE_HASH}): it is stale or from another tree; \
                 run cargo build -p netd (or cargo xtask test)",
                bin.display()
            ))
        }
    });
    checked.push((bin.to_path_buf(), r.clone()));
    r.map_err(anyhow::Error::msg)
}

/// The `source hash:` line of `BIN version`.
fn binary_source_hash(bin: &Path) -> Result<String, String> {
    let out = run_timeout(&bin.display().to_string(), &["version"], CLI_TIMEOUT);
    let hash = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("source hash:"))
        .map(str::trim)
        .filter(|h| !h.is_empty());
    match (out.success(), hash) {
        (true, Some(h)) => Ok(h.to_string()),
        _ => Err(format!(
            "{} does not show its source hash in `{} version` (an old build?): \
             run cargo build -p netd (or cargo xtask test)\n{out}",
            bin.display(),
            bin.file_name().unwrap_or_default().to_string_lossy()
        )),
    }
}

/// Loading and attaching the programs takes about a second on a quiet machine and
/// more than 10 s at load 14 on 2 cores (seen with several test files at once).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-test directory `/tmp/netd-test-<id>`: on drop, unmounts anything
/// mounted below it (the agent's bpffs) and removes it.
#[derive(Debug)]
struct TestDir {
    path: PathBuf,
}

impl TestDir {
    fn create(path: PathBuf) -> anyhow::Result<TestDir> {
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let dir = TestDir { path };
        for sub in ["state", "run", "bpffs", "plugins"] {
            std::fs::create_dir(dir.path.join(sub))?;
        }
        Ok(dir)
    }

    /// Mount points at or below this directory, deepest first.
    fn mounts(&self) -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut v: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|m| m.starts_with(&self.path))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        for _ in 0..10 {
            let mounts = self.mounts();
            if mounts.is_empty() {
                break;
            }
            for m in mounts {
                let _ = umount2(&m, MntFlags::MNT_DETACH);
            }
        }
        if self.mounts().is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: removing {}: {e}", self.path.display());
            }
        } else {
            eprintln!(
                "warning: {} still has mounts; left in place",
                self.path.display()
            );
        }
    }
}

/// A running agent process (nsenter execs into netd, so this is netd).
#[derive(Debug)]
struct Agent {
    child: Child,
}

impl Agent {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        crate::wait::wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A container the test made: the agent's name for it and its netns.
#[derive(Debug, Clone)]
pub struct Ctr {
    pub name: String,
    pub id: String,
    /// Netns name (under /run/netns).
    pub ns: String,
    pub netns_path: String,
}

/// What `network ls`, `container ls`, the named inspects and the host's
/// interface list show; bad input must leave it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub networks: Value,
    pub containers: Value,
    pub inspect: BTreeMap<String, Value>,
    pub host_links: Vec<String>,
}

/// One hermetic test bed. Fields drop in order: agent first (killed), then
/// container namespaces, the host namespace, and last the directory (bpffs
/// unmounted, files removed).
pub struct Bed {
    agent: Mutex<Option<Agent>>,
    /// The cgroup the agent's socket programs attach to (never the root).
    cgroup: TestCgroup,
    netns: Mutex<Vec<Netns>>,
    host: Netns,
    dir: TestDir,
    id: String,
    bin: PathBuf,
    /// Extra `netd daemon` flags, on every (re)start.
    daemon_args: Vec<String>,
    /// A command the agent runs under (e.g. `setpriv ...`), before netd.
    wrapper: Vec<String>,
    transcript: Mutex<Vec<String>>,
    /// The host netns's firewall, and its ruleset as installed (compared
    /// when the bed is dropped: netd adds no rule).
    firewall: Firewall,
    firewall_rules: Option<String>,
}

impl Bed {
    /// Builds a host netns (lo up), starts an agent in it and waits until it
    /// answers `status`. Panics (after cleaning up) if that fails.
    pub fn new() -> Bed {
        Bed::with_daemon_args(&[])
    }

    /// Like [`Bed::new`], with extra `netd daemon` flags (kept for restarts).
    pub fn with_daemon_args(args: &[&str]) -> Bed {
        match Bed::try_new(args) {
            Ok(b) => b,
            Err(e) => panic!("setting up the test bed: {e:#}"),
        }
    }

    /// Like [`Bed::with_daemon_args`], but the agent is not started: set up
    /// the host netns first (an uplink, routes), then call
    /// [`Bed::start_agent`].
    pub fn without_agent(args: &[&str]) -> Bed {
        match Bed::try_build(args) {
            Ok(b) => b,
            Err(e) => panic!("setting up the test bed: {e:#}"),
        }
    }

    /// Like [`Bed::without_agent`], with a config file: `text` is written
    /// to [`Bed::config_path`] and the agent gets `--config` that file.
    pub fn with_config(text: &str, args: &[&str]) -> Bed {
        let mut bed = Bed::without_agent(args);
        let path = bed.config_path();
        if let Err(e) = std::fs::write(&path, text) {
            panic!("writing {}: {e}", path.display());
        }
        bed.daemon_args
            .extend(["--config".to_string(), path.display().to_string()]);
        bed
    }

    /// Like [`Bed::without_agent`], the agent started under `wrapper` (a
    /// command line that ends by executing its arguments, e.g. `setpriv
    /// --bounding-set ... --`).
    pub fn with_wrapper(wrapper: &[&str], args: &[&str]) -> Bed {
        let mut bed = Bed::without_agent(args);
        bed.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        bed
    }

    /// `DIR/netd.toml`: the config file of [`Bed::with_config`].
    pub fn config_path(&self) -> PathBuf {
        self.dir.path.join("netd.toml")
    }

    /// Like [`Bed::with_daemon_args`], on a host netns with `firewall`
    /// whatever `NETD_TEST_FIREWALL` says.
    pub fn with_firewall(firewall: Firewall, args: &[&str]) -> Bed {
        let bed = Bed::try_build_on(args, firewall).and_then(|b| {
            b.try_start_agent()?;
            Ok(b)
        });
        match bed {
            Ok(b) => b,
            Err(e) => panic!("setting up the test bed: {e:#}"),
        }
    }

    fn try_new(daemon_args: &[&str]) -> anyhow::Result<Bed> {
        let bed = Bed::try_build(daemon_args)?;
        bed.try_start_agent()?;
        Ok(bed)
    }

    /// The bed without its agent, on the firewall `NETD_TEST_FIREWALL` asks
    /// for.
    fn try_build(daemon_args: &[&str]) -> anyhow::Result<Bed> {
        Bed::try_build_on(daemon_args, Firewall::from_env()?)
    }

    fn try_build_on(daemon_args: &[&str], firewall: Firewall) -> anyhow::Result<Bed> {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let bin = netd_bin();
        if !nix::unistd::geteuid().is_root() {
            bail!("the netns tests need root (they create network namespaces and load eBPF programs); run them as root");
        }
        if !bin.exists() {
            bail!(
                "netd binary {} not found: run cargo build -p netd (or cargo xtask test), or set NETD_BIN",
                bin.display()
            );
        }
        check_binary(&bin)?;
        let dir = TestDir::create(PathBuf::from(format!("/tmp/netd-test-{id}")))?;
        let host = Netns::create(&format!("nt-{id}-host"))?;
        ip_ns(host.name(), &["link", "set", "lo", "up"])?;
        let firewall_rules = firewall.install(host.name(), &dir.path)?;
        let cgroup = TestCgroup::create(&id)?;
        let bed = Bed {
            agent: Mutex::new(None),
            cgroup,
            netns: Mutex::new(Vec::new()),
            host,
            dir,
            id,
            bin,
            daemon_args: daemon_args.iter().map(|a| a.to_string()).collect(),
            wrapper: Vec::new(),
            transcript: Mutex::new(Vec::new()),
            firewall,
            firewall_rules,
        };
        Ok(bed)
    }

    /// The bed's own cgroup2 directory (the agent's `--cgroup`); host
    /// processes that should see published ports join it.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup.path
    }

    /// `--cgroup <this bed's cgroup>` unless the test chose its own.
    fn cgroup_arg(&self) -> Vec<String> {
        if self.daemon_args.iter().any(|a| a == "--cgroup") {
            return Vec::new();
        }
        vec!["--cgroup".into(), self.cgroup.path.display().to_string()]
    }

    /// `--log-level debug` unless the test sets the level itself (a flag,
    /// or a `log-level` key of its config file).
    fn log_level_arg(&self) -> Vec<String> {
        let in_file = self.daemon_args.iter().any(|a| a == "--config")
            && std::fs::read_to_string(self.config_path())
                .unwrap_or_default()
                .lines()
                .any(|l| l.trim_start().starts_with("log-level"));
        if in_file || self.daemon_args.iter().any(|a| a == "--log-level") {
            return Vec::new();
        }
        vec!["--log-level".into(), "debug".into()]
    }

    /// `--docker-plugin <bed>/plugins/netd.sock` unless the test chose its
    /// own: no agent of a test ever serves in the host's /run/docker/plugins.
    fn docker_plugin_arg(&self) -> Vec<String> {
        if self.daemon_args.iter().any(|a| a == "--docker-plugin") {
            return Vec::new();
        }
        vec![
            "--docker-plugin".into(),
            self.plugin_dir().join("netd.sock").display().to_string(),
        ]
    }

    /// Where the agent's Docker driver socket lives (`netd.sock`, driver
    /// `netd`): a test's dockerd sees this directory as /run/docker/plugins.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path.join("plugins")
    }

    /// Gives netns `name` to the bed (deleted at drop), e.g. one made with
    /// `ip netns attach` for a runtime's container.
    pub fn adopt_netns(&self, ns: Netns) -> String {
        let name = ns.name().to_string();
        self.netns.lock().unwrap().push(ns);
        name
    }

    /// Deletes netns `name` of this bed now (for an attached one: only the
    /// name goes, the namespace lives on with its processes).
    pub fn drop_netns(&self, name: &str) {
        self.netns.lock().unwrap().retain(|n| n.name() != name);
    }

    /// Random id of this bed (also in every netns name it makes).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    pub fn bpffs(&self) -> PathBuf {
        self.dir.path.join("bpffs")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path.join("run/netd.sock")
    }

    /// The host netns name (the agent's netns).
    pub fn host_ns(&self) -> &str {
        self.host.name()
    }

    /// The host, as a probe endpoint at one of its addresses.
    pub fn host(&self, ip: Ipv4Addr) -> Ep {
        Ep::new(&format!("host/{ip}"), self.host_ns(), ip)
    }

    /// The firewall of this bed's host netns.
    pub fn firewall(&self) -> Firewall {
        self.firewall
    }

    /// `from` (a container) to a socket of the host itself (`to`, a host
    /// address): governed by the host's INPUT chain, as for Docker. Allowed
    /// on a permissive host; dropped — every protocol, checked — when the
    /// host's INPUT policy is DROP.
    /// The witness of such a drop (checked by [`Bed::expect`]) is the
    /// firewall's own count of what its INPUT policy dropped.
    pub fn to_host(&self, from: &Ep, to: &Ep) -> Flow {
        if self.firewall.drops_input() {
            dropped(from, to, firewall::HOST_INPUT)
        } else {
            allow(from, to)
        }
    }

    /// A ping from `from_ns` reaches host address `ip`: answered on a
    /// permissive host; on a hostile one dropped by the host's INPUT chain,
    /// which counts it (so the path to the host is proven either way).
    pub fn ping_host(&self, from_ns: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        if !self.firewall.drops_input() {
            return crate::traffic::icmp(from_ns, ip);
        }
        let before = self.host_input_drops();
        crate::traffic::no_icmp(from_ns, ip)?;
        let grew = self.host_input_drops() - before;
        if grew < 2 {
            bail!(
                "ping {ip} from {from_ns}: the host's INPUT policy counted {grew} drops, wanted 2"
            );
        }
        Ok(())
    }

    /// IPv4 packets the host firewall's INPUT policy dropped so far (0 on a
    /// permissive host).
    pub fn host_input_drops(&self) -> u64 {
        firewall::input_drops(self.host_ns(), self.firewall)
            .unwrap_or_else(|e| panic!("reading the host firewall's counter: {e:#}"))
    }

    /// Panics when the host netns's netfilter rules differ from those the
    /// bed installed (netd must add none). Also run when the bed drops.
    pub fn assert_firewall_unchanged(&self) {
        if let Err(e) = self.check_firewall() {
            panic!("{e}");
        }
    }

    /// Like [`Bed::assert_firewall_unchanged`], returning the difference.
    pub fn check_firewall(&self) -> Result<(), String> {
        let Some(before) = &self.firewall_rules else {
            return Ok(());
        };
        let now = firewall::ruleset(self.host_ns()).map_err(|e| format!("{e:#}"))?;
        if &now == before {
            return Ok(());
        }
        Err(format!(
            "the host netns's firewall ({}) changed while netd ran:\n--- installed\n{before}\n--- now\n{now}",
            self.firewall.name()
        ))
    }

    /// The agent's stderr and stdout, appended over restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path.join("agent.log")
    }

    /// Starts the agent (again) with this bed's directories; waits until ready.
    pub fn start_agent(&self) {
        if let Err(e) = self.try_start_agent() {
            panic!("starting the agent: {e:#}");
        }
    }

    fn try_start_agent(&self) -> anyhow::Result<()> {
        self.try_start_agent_env(&[])
    }

    /// Like [`Bed::start_agent`], with extra environment variables for this
    /// start only (e.g. `NETD_CRASH_AT`); later starts do not inherit them.
    pub fn start_agent_env(&self, env: &[(&str, &str)]) {
        if let Err(e) = self.try_start_agent_env(env) {
            panic!("starting the agent: {e:#}");
        }
    }

    /// Is an agent process of this bed running (started and not exited)?
    pub fn agent_running(&self) -> bool {
        let mut slot = self.agent.lock().unwrap();
        matches!(slot.as_mut().map(|a| a.child.try_wait()), Some(Ok(None)))
    }

    /// The pid of the running agent (nsenter execs into netd, so it is
    /// netd's), if one is running.
    pub fn agent_pid(&self) -> Option<u32> {
        let mut slot = self.agent.lock().unwrap();
        let a = slot.as_mut()?;
        matches!(a.child.try_wait(), Ok(None)).then(|| a.child.id())
    }

    /// The host netns path (`/run/netns/NAME`), for `nsenter --net=`.
    pub fn host_ns_path(&self) -> PathBuf {
        self.host.path()
    }

    /// Waits (bounded) for the agent to exit on its own (a crash point,
    /// `reset --force`) and reaps it. `None` when no agent was started or it
    /// is still running after `timeout` (then it is left running).
    pub fn wait_agent_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut slot = self.agent.lock().unwrap();
        let st = slot.as_mut()?.wait_exit(timeout)?;
        *slot = None;
        self.note(format!("(agent exited: {st})"));
        Some(st)
    }

    fn try_start_agent_env(&self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut slot = self.agent.lock().unwrap();
        if let Some(a) = slot.as_mut() {
            if let Ok(None) = a.child.try_wait() {
                bail!("agent already running");
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let d = &self.dir.path;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.path().display()))
            .args(&self.wrapper)
            .arg(&self.bin)
            .arg("daemon")
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--run-dir")
            .arg(d.join("run"))
            .arg("--bpffs")
            .arg(d.join("bpffs"))
            .args(self.log_level_arg())
            .args(self.cgroup_arg())
            .args(self.docker_plugin_arg())
            .args(&self.daemon_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // If the test process dies, the agent dies with it.
        crate::cmd::die_with_parent(&mut cmd);
        self.note(format!("(start agent in {} env {env:?})", self.host_ns()));
        let child = cmd.spawn().context("spawning nsenter netd daemon")?;
        let mut agent = Agent { child };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(st)) = agent.child.try_wait() {
                bail!(
                    "agent exited during start-up ({st}); log:\n{}",
                    self.log_tail(60)
                );
            }
            let out = self.netd_quiet(&["status"], Duration::from_secs(2));
            if out.success() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "agent not ready after {READY_TIMEOUT:?}; last status:\n{out}\nlog:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *slot = Some(agent);
        Ok(())
    }

    /// SIGTERM, then waits (≤ 10 s) for the agent to exit; returns its status.
    pub fn stop_agent(&self) -> ExitStatus {
        let mut slot = self.agent.lock().unwrap();
        let agent = slot.as_mut().expect("no agent running");
        self.note("(SIGTERM agent)".into());
        agent.signal(Signal::SIGTERM);
        match agent.wait_exit(STOP_TIMEOUT) {
            Some(st) => {
                *slot = None;
                st
            }
            None => {
                agent.signal(Signal::SIGKILL);
                let _ = agent.wait_exit(STOP_TIMEOUT);
                *slot = None;
                panic!("agent did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
        }
    }

    /// SIGKILL and reap the agent.
    pub fn kill_agent(&self) {
        let mut slot = self.agent.lock().unwrap();
        if let Some(mut a) = slot.take() {
            self.note("(SIGKILL agent)".into());
            a.signal(Signal::SIGKILL);
            let _ = a.wait_exit(STOP_TIMEOUT);
        }
    }

    /// The last `n` lines of the agent log.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn note(&self, s: String) {
        self.transcript.lock().unwrap().push(s);
    }

    fn netd_quiet(&self, args: &[&str], timeout: Duration) -> Out {
        let sock = self.socket();
        let mut all = vec!["-H", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        run_timeout(self.bin.to_str().unwrap(), &all, timeout)
    }

    /// Runs `netd -H SOCK args...` (bounded) and records it in the transcript.
    pub fn netd(&self, args: &[&str]) -> Out {
        let out = self.netd_quiet(args, CLI_TIMEOUT);
        self.note(out.to_string());
        out
    }

    /// Runs a client verb that must succeed; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(out.success(), "netd command failed:\n{out}");
        out.stdout.trim().to_string()
    }

    /// Runs a client verb that must fail with exactly one stderr line
    /// `netd: error: ...`; returns that line.
    pub fn fail(&self, args: &[&str]) -> String {
        self.refusal(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Bed::fail`], returning what was wrong instead of panicking.
    pub fn refusal(&self, args: &[&str]) -> Result<String, String> {
        let out = self.netd(args);
        if out.success() || out.timed_out || out.code.is_none() {
            return Err(format!("expected a clean failure:\n{out}"));
        }
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() == 1 && lines[0].starts_with("netd: error:") {
            Ok(lines[0].to_string())
        } else {
            Err(format!(
                "expected one stderr line `netd: error: ...`:\n{out}"
            ))
        }
    }

    /// Like [`Bed::assert_unchanged`], returning the difference instead.
    pub fn check_unchanged(
        &self,
        before: &Snapshot,
        nets: &[&str],
        ctrs: &[&str],
        what: &str,
    ) -> Result<(), String> {
        let now = self.snapshot(nets, ctrs);
        if now == *before {
            Ok(())
        } else {
            Err(format!(
                "state changed after {what}:\nbefore: {before:#?}\nafter: {now:#?}"
            ))
        }
    }

    /// Parses JSON stdout of a successful verb.
    pub fn json(&self, args: &[&str]) -> Value {
        let s = self.ok(args);
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("`{}` is not JSON: {e}\n{s}", args.join(" ")))
    }

    /// `network create NAME extra...`; returns the id (checked: 64 hex).
    pub fn network(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", name];
        args.extend_from_slice(extra);
        let id = self.ok(&args);
        assert!(
            id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "network create should print a 64-hex id, got {id:?}"
        );
        id
    }

    /// `network inspect NAME` → the one object.
    pub fn net_info(&self, name: &str) -> Value {
        let v = self.json(&["network", "inspect", name]);
        v.get(0).cloned().unwrap_or_else(|| {
            panic!("network inspect {name}: expected a one-element array, got {v}")
        })
    }

    /// `network inspect NAME`, typed as the server writes it.
    pub fn net_view(&self, name: &str) -> NetworkView {
        let v = self.net_info(name);
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("network inspect {name}: not a network view: {e}\n{v}"))
    }

    /// The gateway of network `name` (from inspect).
    pub fn gateway(&self, name: &str) -> Ipv4Addr {
        let v = self.net_view(name);
        v.ipv4()
            .and_then(|p| p.gateway_v4())
            .unwrap_or_else(|| panic!("network {name} has no IPv4 gateway: {v:?}"))
    }

    /// Creates a fresh netns owned by this bed (deleted at drop); returns its
    /// name `nt-<id>-<role>`.
    pub fn new_netns(&self, role: &str) -> String {
        let ns =
            Netns::create(&format!("nt-{}-{role}", self.id)).unwrap_or_else(|e| panic!("{e:#}"));
        let name = ns.name().to_string();
        self.netns.lock().unwrap().push(ns);
        name
    }

    /// Makes a netns and runs `container add NAME --netns PATH extra...`.
    pub fn container(&self, name: &str, extra: &[&str]) -> Ctr {
        let ns = self.new_netns(name);
        let path = crate::netns::path_of(&ns).display().to_string();
        let mut args = vec!["container", "add", name, "--netns", &path];
        args.extend_from_slice(extra);
        let id = self.ok(&args);
        assert!(!id.is_empty(), "container add should print the id");
        Ctr {
            name: name.to_string(),
            id,
            ns,
            netns_path: path,
        }
    }

    /// `netd port NAME` as sorted lines (`80/tcp -> [::]:8080`).
    pub fn port_lines(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(&["port", name])
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        v.sort();
        v
    }

    /// `container inspect NAME` → the one object.
    pub fn ctr_info(&self, name: &str) -> Value {
        let v = self.json(&["container", "inspect", name]);
        v.get(0).cloned().unwrap_or_else(|| {
            panic!("container inspect {name}: expected a one-element array, got {v}")
        })
    }

    /// `container inspect NAME`, typed as the server writes it.
    pub fn ctr_view(&self, name: &str) -> ContainerView {
        let v = self.ctr_info(name);
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("container inspect {name}: not a container view: {e}\n{v}"))
    }

    /// `status --format json`, typed.
    pub fn status(&self) -> StatusView {
        let v = self.json(&["status", "--format", "json"]);
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("status is not a status view: {e}\n{v}"))
    }

    /// The address of container `c` on network `net` (from inspect).
    pub fn ip(&self, c: &Ctr, net: &str) -> Ipv4Addr {
        let v = self.ctr_view(&c.name);
        v.network(net)
            .map(|ep| ep.ip_address)
            .unwrap_or_else(|| panic!("container {} has no address on {net}: {v:?}", c.name))
    }

    /// Container `c` on network `net`, as a probe endpoint.
    pub fn ep(&self, c: &Ctr, net: &str) -> Ep {
        Ep::new(&format!("{}/{net}", c.name), &c.ns, self.ip(c, net))
    }

    /// The IPv6 address of container `c` on network `net` (inspect's
    /// `GlobalIPv6Address`).
    pub fn ip6(&self, c: &Ctr, net: &str) -> std::net::Ipv6Addr {
        let v = self.ctr_info(&c.name);
        let ip = v["Networks"][net]["GlobalIPv6Address"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("container {} has no IPv6 address on {net}: {v}", c.name));
        ip.parse()
            .unwrap_or_else(|e| panic!("bad IPv6 address {ip:?}: {e}"))
    }

    /// Container `c` on network `net` by its IPv6 address, as a probe
    /// endpoint.
    pub fn ep6(&self, c: &Ctr, net: &str) -> Ep {
        Ep::v6(&format!("{}/{net}/v6", c.name), &c.ns, self.ip6(c, net))
    }

    /// The IPv6 gateway of network `name` (its second IPAM entry).
    pub fn gateway6(&self, name: &str) -> std::net::Ipv6Addr {
        let v = self.net_info(name);
        v["IPAM"]["Config"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Gateway"].as_str()?.parse().ok())
            .next()
            .unwrap_or_else(|| panic!("network {name} has no IPv6 gateway: {v}"))
    }

    /// `status --format json`'s `drops` map.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        self.status().drops
    }

    /// One drop counter (0 when absent).
    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops().get(reason).copied().unwrap_or(0)
    }

    /// One drop counter read from the pinned `DROPS` map (`bpftool`),
    /// summed over the CPUs: unlike [`Bed::drop_count`] it needs no agent,
    /// so it witnesses drops while the agent is stopped or killed.
    pub fn pinned_drops(&self, reason: netd_common::DropReason) -> u64 {
        let pin = self.bpffs().join("v1/maps/DROPS").display().to_string();
        let key = (reason as u32).to_ne_bytes().map(|b| b.to_string());
        let mut args = vec!["-j", "map", "lookup", "pinned", &pin, "key"];
        args.extend(key.iter().map(String::as_str));
        let out = run_timeout("bpftool", &args, Duration::from_secs(10));
        assert!(out.success(), "reading DROPS[{reason:?}]:\n{out}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("bpftool output for DROPS is not JSON ({e})"));
        v["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cpu| {
                let bytes: Vec<u8> = cpu["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| {
                        u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok()
                    })
                    .collect();
                bytes.try_into().map(u64::from_ne_bytes).unwrap_or(0)
            })
            .sum()
    }

    /// Checks `flows` as [`crate::traffic::check`] does and, for the denied
    /// flows made with [`crate::traffic::dropped`], that netd dropped them:
    /// per reason, `drops[reason]` must grow by at least
    /// [`DENY_PACKETS`] per flow. Returns every failure.
    /// Flows dropped by the host firewall's INPUT policy
    /// ([`firewall::HOST_INPUT`]) are counted by the firewall instead.
    pub fn check(&self, flows: &[Flow]) -> Vec<String> {
        let hostile = self.firewall.drops_input();
        let mut before = self.drops();
        if hostile {
            before.insert(firewall::HOST_INPUT.into(), self.host_input_drops());
        }
        let mut errs = crate::traffic::check(flows);
        let mut after = self.drops();
        if hostile {
            after.insert(firewall::HOST_INPUT.into(), self.host_input_drops());
        }
        let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for f in flows.iter().filter(|f| !f.allowed) {
            if let Some(r) = &f.reason {
                want.entry(r)
                    .or_default()
                    .push(format!("{} -> {}", f.from, f.to));
            }
        }
        for (reason, rows) in want {
            let Some(&now) = after.get(reason) else {
                errs.push(format!(
                    "status shows no drop counter {reason:?} (it has {:?})",
                    after.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            let grew = now.saturating_sub(before.get(reason).copied().unwrap_or(0));
            let min = DENY_PACKETS * rows.len() as u64;
            self.note(format!("(drops[{reason:?}] grew by {grew}, wanted {min})"));
            if grew < min {
                errs.push(format!(
                    "drops[{reason:?}] grew by {grew}, expected at least {min} ({DENY_PACKETS} \
                     per denied flow: {}): what the probes sent was lost somewhere other \
                     than netd's {reason} check",
                    rows.join(", ")
                ));
            }
        }
        errs
    }

    /// [`Bed::check`], panicking with every failure.
    pub fn expect(&self, flows: &[Flow]) {
        let errs = self.check(flows);
        if !errs.is_empty() {
            panic!(
                "{} of the expected flows failed:\n  - {}",
                errs.len(),
                errs.join("\n  - ")
            );
        }
    }

    /// Interface names in netns `ns`, sorted (`ip -o link`).
    pub fn links(ns: &str) -> Vec<String> {
        let s = ip_ns(ns, &["-o", "link", "show"]).unwrap_or_else(|e| panic!("{e:#}"));
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        v.sort();
        v
    }

    /// Interface names in the host netns.
    pub fn host_links(&self) -> Vec<String> {
        Bed::links(self.host_ns())
    }

    /// What the API and the host netns show: `network ls`, `container ls`,
    /// `network inspect` of `nets`, `container inspect` of `ctrs`, host links.
    pub fn snapshot(&self, nets: &[&str], ctrs: &[&str]) -> Snapshot {
        let sorted = |mut v: Value| {
            if let Value::Array(a) = &mut v {
                a.sort_by_key(|x| x.to_string());
            }
            v
        };
        let mut inspect = BTreeMap::new();
        for n in nets {
            inspect.insert(format!("network {n}"), without_counters(self.net_info(n)));
        }
        for c in ctrs {
            inspect.insert(format!("container {c}"), without_counters(self.ctr_info(c)));
        }
        Snapshot {
            networks: sorted(without_counters(
                self.json(&["network", "ls", "--format", "json"]),
            )),
            containers: sorted(without_counters(self.json(&[
                "container",
                "ls",
                "--format",
                "json",
            ]))),
            inspect,
            host_links: self.host_links(),
        }
    }

    /// Asserts that the current snapshot equals `before` (same arguments).
    pub fn assert_unchanged(&self, before: &Snapshot, nets: &[&str], ctrs: &[&str], what: &str) {
        if let Err(e) = self.check_unchanged(before, nets, ctrs, what) {
            panic!("{e}");
        }
    }

    /// Entries of the pinned map `name` (BPFFS/v1/maps/NAME, `bpftool map
    /// dump`).
    pub fn map_entries(&self, name: &str) -> usize {
        let pin = self.bpffs().join("v1/maps").join(name);
        let pin = pin.display().to_string();
        let out = run_timeout(
            "bpftool",
            &["-j", "map", "dump", "pinned", &pin],
            Duration::from_secs(10),
        );
        assert!(out.success(), "dumping {name}:\n{out}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("bpftool output for {name} is not JSON ({e})"));
        v.as_array().map_or(0, Vec::len)
    }

    /// The agent's program links: the pinned TCX links under
    /// BPFFS/v1/links and, for each host veth whose
    /// `clsact` qdisc is bound to the endpoint filter blocks, one entry per
    /// block named like the pin it replaces
    /// (`BPFFS/v1/links/<veth>_from_container`, `..._to_container`).
    pub fn pinned_links(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .all_pinned_links()
            .into_iter()
            .chain(self.block_links())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Host veths of the host netns bound to the endpoint filter blocks (the
    /// blocks' holder left out), as [`Bed::pinned_links`] names them.
    fn block_links(&self) -> Vec<PathBuf> {
        let out = run_timeout(
            "tc",
            &["-n", self.host_ns(), "-j", "qdisc", "show"],
            Duration::from_secs(10),
        );
        assert!(out.success(), "tc qdisc show:\n{out}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let dir = self.bpffs().join("v1/links");
        let mut links = Vec::new();
        for q in v.as_array().into_iter().flatten() {
            let dev = q["dev"].as_str().unwrap_or_default();
            if q["kind"] != "clsact" || dev == netd_common::programs::BLOCK_HOLDER {
                continue;
            }
            let blocks = [
                (
                    "ingress_block",
                    netd_common::programs::ENDPOINT_INGRESS_BLOCK,
                    "from_container",
                ),
                (
                    "egress_block",
                    netd_common::programs::ENDPOINT_EGRESS_BLOCK,
                    "to_container",
                ),
            ];
            for (key, block, prog) in blocks {
                if q[key].as_u64() == Some(u64::from(block)) {
                    links.push(dir.join(format!("{dev}_{prog}")));
                }
            }
        }
        links
    }

    /// Removes the links of [`Bed::pinned_links`] (the agent stopped): the
    /// pins (nothing holds those programs any more and they detach) and the
    /// veths' `clsact` qdiscs (unbound from the filter blocks), the
    /// negative control of the tests that show a drop is netd's.
    pub fn remove_pinned_links(&self) {
        for l in self.pinned_links() {
            if !l.exists() {
                let name = l
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let (veth, _) = name.split_once('_').expect("a block link names its veth");
                // Both entries of a veth go with its one qdisc.
                let _ = run_timeout(
                    "tc",
                    &["-n", self.host_ns(), "qdisc", "del", "dev", veth, "clsact"],
                    Duration::from_secs(10),
                );
                continue;
            }
            let r = if l.is_dir() {
                std::fs::remove_dir_all(&l)
            } else {
                std::fs::remove_file(&l)
            };
            r.unwrap_or_else(|e| panic!("removing pin {}: {e}", l.display()));
        }
    }

    /// The start of a negative control that the host must forward: on a
    /// host whose firewall drops what the kernel forwards (the FORWARD
    /// policy would drop the control's flows too) it says so and returns
    /// false, the permissive run showing the control; else it kills the
    /// agent, detaches its programs ([`Bed::remove_pinned_links`]) and
    /// returns true.
    pub fn detach_for_forwarding_control(&self) -> bool {
        if self.firewall().drops_input() {
            eprintln!(
                "negative control not run on the {} host: its FORWARD policy drops what the \
                 kernel forwards (the permissive run checks it)",
                self.firewall().name()
            );
            return false;
        }
        self.kill_agent();
        self.remove_pinned_links();
        true
    }

    /// Every pinned link under BPFFS/v1/links.
    pub fn all_pinned_links(&self) -> Vec<PathBuf> {
        let dir = self.bpffs().join("v1/links");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A sysctl as seen from netns `ns` (e.g. `net.ipv4.ip_forward`).
    pub fn sysctl(ns: &str, key: &str) -> anyhow::Result<String> {
        let net = format!("--net={}", crate::netns::path_of(ns).display());
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = crate::cmd::run_ok("nsenter", &[&net, "cat", &path])?;
        Ok(out.trim().to_string())
    }
}

impl Default for Bed {
    fn default() -> Self {
        Bed::new()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== test bed {} (host netns {}, dir {}) ====",
                self.id,
                self.host_ns(),
                self.dir.path.display()
            );
            eprintln!("---- netd commands ----");
            for l in self.transcript.lock().unwrap().iter() {
                eprintln!("{l}");
            }
            eprintln!(
                "---- agent.log (last 200 lines) ----\n{}",
                self.log_tail(200)
            );
            eprintln!("==== end of test bed {} ====", self.id);
        } else if let Err(e) = self.check_firewall() {
            // The fields still drop (agent, namespaces, directory).
            panic!("{e}");
        }
        // Fields drop next: agent (killed), namespaces, host, directory.
    }
}

/// A cgroup2 directory per bed, so no agent of a test attaches programs to
/// the host's root cgroup; removed on drop (after the agent is gone).
struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    fn create(id: &str) -> anyhow::Result<TestCgroup> {
        const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .find(|d| {
                nix::sys::statfs::statfs(*d).is_ok_and(|fs| {
                    fs.filesystem_type() == nix::sys::statfs::FsType(CGROUP2_SUPER_MAGIC as _)
                })
            })
            .context("no cgroup2 hierarchy")?;
        let path = PathBuf::from(root).join(format!("netd-test-{id}"));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TestCgroup { path })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // The last processes of a test may still be leaving it.
        let gone = crate::wait::within(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.path).is_ok() || !self.path.exists()
        });
        if !gone {
            eprintln!("could not remove {}", self.path.display());
        }
    }
}

/// An inspect object without its live traffic counters (`Counters`, at
/// any depth): what a snapshot of the configuration compares.
fn without_counters(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("Counters");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}
