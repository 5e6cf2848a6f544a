//! Commands with time bounds, and the guards that undo what the bench made:
//! network namespaces, child processes, a bpffs mount. Ctrl-C / SIGTERM only
//! set a flag; the runner checks it between steps and returns an error, so
//! every guard is dropped on the way out.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP set the interrupt flag instead of killing us.
pub fn install_signal_handlers() -> Result<()> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &act) }.with_context(|| format!("installing a {sig} handler"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error if Ctrl-C (or SIGTERM) was seen.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// What a finished command printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub elapsed: Duration,
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` (stdin closed) and kills it after `timeout`; `elapsed` is the
/// wall time from spawn to exit.
pub fn output(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = describe(cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((child.wait_with_output(), Instant::now()));
    });
    let (res, end) = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = rx.recv();
            bail!("`{line}` did not finish within {timeout:?}");
        }
    };
    let out = res.with_context(|| format!("waiting for `{line}`"))?;
    Ok(Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        elapsed: end.duration_since(start),
    })
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let line = describe(cmd);
    let out = output(cmd, timeout)?;
    if !out.success {
        bail!("`{line}` failed: {}", out.stderr.trim());
    }
    Ok(out.stdout)
}

/// `program args...` (30 s bound), must succeed.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_cmd(Command::new(program).args(args), Duration::from_secs(30))
}

/// A command that runs `program args...` inside netns `ns`.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns_path(ns).display()))
        .arg("--")
        .arg(program);
    c
}

/// The CPU every server and client is pinned to (the last one), so that a
/// transaction never pays a cross-CPU wake-up whose cost depends on where
/// the scheduler happened to put the two ends. `None` on one CPU.
pub fn load_cpu() -> Option<usize> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (n > 1).then(|| n - 1)
}

/// A command that runs `program` inside netns `ns`, pinned to
/// [`load_cpu`], and — when `cgroup` is given — inside that cgroup (netd
/// translates published ports only for host sockets in its cgroup).
pub fn load_cmd(ns: &str, cgroup: Option<&Path>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpu) = load_cpu() {
        argv.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
    }
    argv.push("nsenter".into());
    argv.push(format!("--net={}", netns_path(ns).display()).into());
    argv.push("--".into());
    argv.push(program.as_ref().to_owned());
    let mut c = match cgroup {
        Some(cg) => {
            let mut c = Command::new("sh");
            c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                .arg(cg.join("cgroup.procs"));
            c.args(&argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    c.stdin(Stdio::null());
    c
}

/// A cgroup2 directory of our own, `netd-bench-<pid>` under the cgroup2
/// root, where netd attaches its host-socket programs instead of the root;
/// removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn cgroup2_root() -> Result<PathBuf> {
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(fs) = nix::sys::statfs::statfs(dir) {
            if fs.filesystem_type() == nix::sys::statfs::FsType(CGROUP2_SUPER_MAGIC as _) {
                return Ok(dir.into());
            }
        }
    }
    bail!("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

impl Cgroup {
    pub fn create() -> Result<Cgroup> {
        let path = cgroup2_root()?.join(format!("netd-bench-{}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Cgroup { path })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "bench: warning: could not remove cgroup {}",
            self.path.display()
        );
    }
}

/// `program args...` inside netns `ns` (30 s bound), must succeed.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    run_cmd(in_ns(ns, program).args(args), Duration::from_secs(30))
}

/// `ip -n NS args...`, must succeed.
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Several `ip` commands in one `ip -batch` inside `ns`.
pub fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(["-n", ns, "-batch", "-"]);
    with_stdin(&mut c, &lines.join("\n"), Duration::from_secs(60))?;
    Ok(())
}

/// `sysctl -w KEY=VALUE` inside `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    run_in(ns, "sysctl", &["-qw", &format!("{key}={value}")])?;
    Ok(())
}

/// Runs `cmd` with `input` on its stdin; must succeed.
pub fn with_stdin(cmd: &mut Command, input: &str, timeout: Duration) -> Result<Output> {
    let line = describe(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    {
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("feeding `{line}`"))?;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(r) => r.with_context(|| format!("waiting for `{line}`"))?,
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = rx.recv();
            bail!("`{line}` did not finish within {timeout:?}");
        }
    };
    let o = Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        elapsed: start.elapsed(),
    };
    if !o.success {
        bail!("`{line}` failed: {}", o.stderr.trim());
    }
    Ok(o)
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Every name the bench gives a netns starts with this, then our pid.
pub const PREFIX: &str = "nbx";

/// A named netns, deleted on drop (with every interface in it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        run("ip", &["netns", "add", name]).with_context(|| format!("creating netns {name}"))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ip(name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for _ in 0..3 {
            let ok = run("ip", &["netns", "del", &self.name]).is_ok();
            if ok || !netns_path(&self.name).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("bench: warning: could not delete netns {}", self.name);
    }
}

/// A child process, terminated (then killed) on drop. Its pid is recorded in
/// the run directory's `pids` file so a later run can end it if we die
/// without unwinding (SIGKILL).
pub struct Proc {
    pub what: String,
    child: Child,
}

impl Proc {
    pub fn spawn(what: &str, cmd: &mut Command, log: &Path, pids: &Path) -> Result<Proc> {
        let logf = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(pids) {
            let _ = writeln!(f, "{}", child.id());
        }
        Ok(Proc {
            what: what.to_string(),
            child,
        })
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.alive() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} ignored SIGTERM; killing it", self.what);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The run directory `/tmp/netd-bench-<pid>`: logs, pid list, agents'
/// state and bpffs. On drop it unmounts what is mounted below it and goes.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create() -> Result<RunDir> {
        let path = PathBuf::from(format!("/tmp/netd-bench-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir { path })
    }

    pub fn pids(&self) -> PathBuf {
        self.path.join("pids")
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Lazily unmounts everything at or below `dir`.
pub fn umount_below(dir: &Path) {
    for _ in 0..10 {
        let m = mounts_below(dir);
        if m.is_empty() {
            return;
        }
        for p in m {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
    }
}

fn remove_run_dir(path: &Path) {
    umount_below(path);
    if mounts_below(path).is_empty() {
        if let Err(e) = fs::remove_dir_all(path) {
            eprintln!("bench: warning: removing {}: {e}", path.display());
        }
    } else {
        eprintln!(
            "bench: warning: {} still has mounts; left in place",
            path.display()
        );
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        remove_run_dir(&self.path);
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what an earlier bench run left behind when it was killed without
/// unwinding: its child processes, netns and run directory. Only touches
/// names the bench makes (`nbx<pid>-…`, `/tmp/netd-bench-<pid>`) of pids
/// that no longer run.
pub fn clean_stale() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && !pid_alive(p))
    };
    if let Ok(rd) = fs::read_dir("/tmp") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("netd-bench-") else {
                continue;
            };
            if !dead(pid) {
                continue;
            }
            let dir = e.path();
            let pids = fs::read_to_string(dir.join("pids")).unwrap_or_default();
            for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // Only our own kind of process: the pid may have been reused.
                let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("netd")
                    || cmdline.contains("iperf3")
                    || cmdline.contains("bench")
                {
                    eprintln!("bench: ending stale process {p} of run {pid}");
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            eprintln!("bench: removing stale {}", dir.display());
            remove_run_dir(&dir);
        }
    }
    if let Ok(root) = cgroup2_root() {
        if let Ok(rd) = fs::read_dir(&root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.strip_prefix("netd-bench-").is_some_and(dead) {
                    eprintln!("bench: removing stale cgroup {}", e.path().display());
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
    }
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if dead(pid) {
                eprintln!("bench: removing stale netns {name}");
                drop(Netns { name });
            }
        }
    }
}
