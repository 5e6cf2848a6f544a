//! Published-port clients run as host processes (the cgroup hooks judge
//! processes, not threads): the test binary runs again as a child in a
//! cgroup and netns, only its helper test, which runs one client
//! ([`ask`] or [`unanswered`]) and prints `RESULT ...` for the parent.
//!
//! A test binary declares its [`HostClient`] once and a helper test that
//! calls [`HostClient::helper`]:
//!
//! ```ignore
//! const CLIENT: HostClient = HostClient { test: "host_client_helper", env: "NETD_X_CLIENT" };
//! #[test]
//! fn host_client_helper() { CLIENT.helper::<SocketAddrV4>() }
//! ```

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::cmd::run_timeout;
use crate::netns::path_of;
use crate::ports::{ask, unanswered, Answer, PeerAddr, P};

/// The helper test of a test binary and the variable that hands it the
/// client to run.
pub struct HostClient {
    /// The helper test's name (run with `--exact`).
    pub test: &'static str,
    /// `MODE,ADDR:PORT`; MODE is tcp, udp, no-tcp or no-udp.
    pub env: &'static str,
}

/// What a host-process client reported.
#[derive(Debug)]
pub enum HostResult<A> {
    Answered(Answer<A>),
    /// No answer; how the client failed (an `io::ErrorKind` name).
    Unanswered(String),
}

impl HostClient {
    /// The helper test's body: with [`HostClient::env`] set, runs that one
    /// client and prints `RESULT ...`; without it, nothing.
    pub fn helper<A: PeerAddr>(&self)
    where
        <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
    {
        let env = self.env;
        let Ok(spec) = std::env::var(env) else {
            return;
        };
        let res = (|| -> anyhow::Result<String> {
            let (mode, dst) = spec
                .split_once(',')
                .ok_or_else(|| anyhow!("bad {env} {spec:?}"))?;
            let dst: A = dst.parse()?;
            let p = if mode.ends_with("tcp") {
                P::Tcp
            } else {
                P::Udp
            };
            if mode.starts_with("no-") {
                let k = unanswered(p, dst)?;
                Ok(format!("NONE {k:?}"))
            } else {
                let a = ask(p, dst)?;
                Ok(format!("OK {} {} {} {}", a.seen, a.port, a.from, a.local))
            }
        })();
        match res {
            Ok(s) => println!("RESULT {s}"),
            Err(e) => println!("RESULT ERR {}", format!("{e:#}").replace('\n', " ")),
        }
    }

    /// Runs client `mode` to `dst` as a host process: a child in cgroup
    /// `cg` (or the test's own) and netns `ns`.
    pub fn run<A: PeerAddr>(
        &self,
        cg: Option<&Path>,
        ns: &str,
        mode: &str,
        dst: A,
    ) -> anyhow::Result<HostResult<A>>
    where
        <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
    {
        let exe = std::env::current_exe()?;
        let exe = exe.to_str().unwrap();
        let procs = cg
            .map(|c| c.join("cgroup.procs").display().to_string())
            .unwrap_or_default();
        let net = format!("--net={}", path_of(ns).display());
        let env = format!("{}={mode},{dst}", self.env);
        let script =
            r#"if [ -n "$1" ]; then echo $$ > "$1" || exit 97; fi; shift; exec nsenter "$@""#;
        let out = run_timeout(
            "sh",
            &[
                "-c",
                script,
                "sh",
                &procs,
                &net,
                "env",
                &env,
                exe,
                "--exact",
                self.test,
                "--nocapture",
                "--test-threads=1",
            ],
            Duration::from_secs(20),
        );
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.find("RESULT ").map(|i| &l[i + "RESULT ".len()..]))
            .ok_or_else(|| anyhow!("host client printed no RESULT line:\n{out}"))?
            .to_string();
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["OK", seen, port, from, local] => Ok(HostResult::Answered(Answer {
                seen: seen.parse()?,
                port: port.parse()?,
                from: from.parse()?,
                local: local.parse()?,
            })),
            ["NONE", kind] => Ok(HostResult::Unanswered(kind.to_string())),
            _ => bail!("host client {mode} {dst}: {line}"),
        }
    }

    /// [`HostClient::run`] of `p` that must be answered.
    pub fn ask<A: PeerAddr>(
        &self,
        cg: Option<&Path>,
        ns: &str,
        p: P,
        dst: A,
    ) -> anyhow::Result<Answer<A>>
    where
        <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
    {
        let mode = if p == P::Tcp { "tcp" } else { "udp" };
        match self.run(cg, ns, mode, dst)? {
            HostResult::Answered(a) => Ok(a),
            HostResult::Unanswered(k) => bail!("unexpected {k}"),
        }
    }

    /// [`HostClient::run`] of `p` that must not be answered; returns how
    /// it failed.
    pub fn unanswered<A: PeerAddr>(
        &self,
        cg: Option<&Path>,
        ns: &str,
        p: P,
        dst: A,
    ) -> anyhow::Result<String>
    where
        <A as FromStr>::Err: std::error::Error + Send + Sync + 'static,
    {
        let mode = if p == P::Tcp { "no-tcp" } else { "no-udp" };
        match self.run(cg, ns, mode, dst)? {
            HostResult::Unanswered(k) => Ok(k),
            HostResult::Answered(a) => bail!("answered: {a:?}"),
        }
    }
}
