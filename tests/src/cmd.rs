//! Running external commands with a bound on their run time.

use std::fmt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Makes the process `cmd` spawns die (SIGKILL) when the test process
/// does: agents, runtimes and holders never outlive a crashed test.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        })
    }
}

/// What a finished (or killed) command produced.
#[derive(Debug, Clone)]
pub struct Out {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal (or by the time bound).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$ {}\n  exit: ", self.cmdline)?;
        match (self.timed_out, self.code) {
            (true, _) => write!(f, "killed after time-out")?,
            (false, Some(c)) => write!(f, "{c}")?,
            (false, None) => write!(f, "signal")?,
        }
        if !self.stdout.trim().is_empty() {
            write!(f, "\n  stdout: {}", self.stdout.trim_end())?;
        }
        if !self.stderr.trim().is_empty() {
            write!(f, "\n  stderr: {}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// Runs `program args...`, killing it if it runs longer than `timeout`.
/// A command that cannot be spawned gives exit code 127 and the reason on
/// stderr.
pub fn run_timeout(program: &str, args: &[&str], timeout: Duration) -> Out {
    let cmdline = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return Out {
                cmdline,
                code: Some(127),
                stdout: String::new(),
                stderr: format!("cannot run {program}: {e}"),
                timed_out: false,
            }
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (res, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (r, false),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            (
                rx.recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("waiter vanished"))),
                true,
            )
        }
    };
    match res {
        Ok(o) => Out {
            cmdline,
            code: if timed_out { None } else { o.status.code() },
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            timed_out,
        },
        Err(e) => Out {
            cmdline,
            code: None,
            stdout: String::new(),
            stderr: format!("wait failed: {e}"),
            timed_out,
        },
    }
}

/// Runs a command (10 s bound) and returns its stdout; any failure is an error.
pub fn run_ok(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = run_timeout(program, args, Duration::from_secs(10));
    if out.success() {
        Ok(out.stdout)
    } else {
        anyhow::bail!("command failed:\n{out}")
    }
}

/// `ip -n NS args...`, must succeed.
pub fn ip_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run_ok("ip", &all)
}
