//! A multi-host test bed: etcd in its own netns, and N host netns (each a
//! [`Bed`] with its own agent) joined by an underlay: one veth per member
//! on a bridge in an underlay netns, 198.51.100.0/24 (TEST-NET-2; hosts
//! .1 .. .N, etcd .100). Everything lives in namespaces this bed made and
//! goes when it drops (agents first, then etcd, then the underlay).
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::bed::Bed;
use crate::cmd::ip_ns;
use crate::netns::Netns;

/// Debian's etcd-server.
const ETCD: &str = "/usr/bin/etcd";
/// The underlay's prefix length and the etcd member's address on it.
const UNDERLAY_PREFIX: u8 = 24;
pub const ETCD_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const ETCD_PORT: u16 = 2379;
/// The hosts' lease in these tests: a dead host goes from the others
/// within this (plus a renewal period).
pub const LEASE_TTL: u64 = 4;
/// How long the tests wait for a change to reach every host (the agents
/// apply watch events at once; this only bounds a failure).
pub const CONVERGE: Duration = Duration::from_secs(15);

/// Why the cluster tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    (!Path::new(ETCD).exists()).then(|| {
        format!("SKIPPED: {ETCD} missing (Debian etcd-server; `cargo xtask setup` installs it)")
    })
}

/// Host `i`'s (1-based) underlay address.
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, i as u8)
}

/// One etcd member in its own netns, with a private data dir.
pub struct Etcd {
    child: Mutex<Option<Child>>,
    ns: Netns,
    dir: PathBuf,
    log: PathBuf,
}

impl Etcd {
    /// Starts etcd in `ns` (already on the underlay); waits until it serves.
    fn start_in(ns: Netns, dir: PathBuf) -> anyhow::Result<Etcd> {
        std::fs::create_dir_all(&dir)?;
        let etcd = Etcd {
            child: Mutex::new(None),
            log: dir.join("etcd.log"),
            ns,
            dir,
        };
        etcd.start()?;
        Ok(etcd)
    }

    /// Starts (again) on the same data dir; waits until the client port
    /// answers.
    pub fn start(&self) -> anyhow::Result<()> {
        let mut slot = self.child.lock().unwrap();
        if slot.is_some() {
            bail!("etcd already running");
        }
        let client = format!("http://{ETCD_ADDR}:{ETCD_PORT}");
        let peer = "http://127.0.0.1:2380";
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.path().display()))
            .arg(ETCD)
            .args(["--name", "netd-test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("netd-test={peer}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().context("spawning etcd")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                bail!("etcd exited at start ({st}); log:\n{}", self.log_tail());
            }
            if self.answers() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("etcd not serving after 20 s; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *slot = Some(child);
        Ok(())
    }

    /// Does the client port accept a connection (from etcd's netns)?
    fn answers(&self) -> bool {
        let h = crate::netns::spawn_in(self.ns.name(), || {
            let addr = std::net::SocketAddr::from((ETCD_ADDR, ETCD_PORT));
            Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok())
        });
        crate::netns::join(h).unwrap_or(false)
    }

    /// SIGTERM and wait (the data dir stays).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- etcd.log (last 40 lines) ----\n{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// N hosts, etcd and the underlay between them.
pub struct Cluster {
    /// Host `i` (1-based) is `hosts[i - 1]`.
    hosts: Vec<Bed>,
    pub etcd: Etcd,
    underlay: Netns,
}

impl Cluster {
    /// `n` hosts with agents (extra `netd daemon` flags: `args`), or `None`
    /// (after printing why) where etcd is not installed.
    pub fn new(n: usize, args: &[&str]) -> Option<Cluster> {
        Cluster::with_lease(n, LEASE_TTL, args)
    }

    /// Like [`Cluster::new`], the hosts' lease `lease_ttl` seconds (longer
    /// than an agent restart takes, where a test must not see the host go).
    pub fn with_lease(n: usize, lease_ttl: u64, args: &[&str]) -> Option<Cluster> {
        if let Some(why) = missing() {
            eprintln!("{why}");
            return None;
        }
        match Cluster::try_new(n, lease_ttl, args) {
            Ok(c) => Some(c),
            Err(e) => panic!("setting up the cluster bed: {e:#}"),
        }
    }

    fn try_new(n: usize, lease_ttl: u64, args: &[&str]) -> anyhow::Result<Cluster> {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let underlay = Netns::create(&format!("nt-{id}-ul"))?;
        let ul = underlay.name().to_string();
        ip_ns(&ul, &["link", "set", "lo", "up"])?;
        ip_ns(&ul, &["link", "add", "ul", "type", "bridge"])?;
        ip_ns(&ul, &["link", "set", "ul", "up"])?;
        let etcd_ns = Netns::create(&format!("nt-{id}-etcd"))?;
        join_underlay(&ul, "p-etcd", etcd_ns.name(), "e0", ETCD_ADDR)?;
        let etcd = Etcd::start_in(etcd_ns, PathBuf::from(format!("/tmp/netd-etcd-{id}")))?;
        let store = format!("etcd://{ETCD_ADDR}:{ETCD_PORT}");
        let ttl = lease_ttl.to_string();
        let mut hosts = Vec::new();
        for i in 1..=n {
            let addr = host_addr(i).to_string();
            let mut flags = vec![
                "--cluster-store",
                &store,
                "--advertise-addr",
                &addr,
                "--cluster-lease-ttl",
                &ttl,
            ];
            flags.extend_from_slice(args);
            let bed = Bed::without_agent(&flags);
            join_underlay(&ul, &format!("p-h{i}"), bed.host_ns(), "ul0", host_addr(i))?;
            hosts.push(bed);
        }
        let cluster = Cluster {
            hosts,
            etcd,
            underlay,
        };
        for h in &cluster.hosts {
            h.start_agent();
        }
        cluster.wait_hosts(n);
        Ok(cluster)
    }

    /// Host `i` (1-based).
    pub fn host(&self, i: usize) -> &Bed {
        &self.hosts[i - 1]
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Bed> {
        self.hosts.iter()
    }

    /// Takes host `i`'s underlay link down (it is cut off from etcd and
    /// from the other hosts), or brings it back.
    pub fn set_underlay(&self, i: usize, up: bool) {
        let port = format!("p-h{i}");
        let state = if up { "up" } else { "down" };
        ip_ns(self.underlay.name(), &["link", "set", &port, state])
            .unwrap_or_else(|e| panic!("setting {port} {state}: {e:#}"));
    }

    /// `netd status --format json` of host `i`, its `cluster` part.
    pub fn cluster_status(&self, i: usize) -> Value {
        self.host(i).json(&["status", "--format", "json"])["cluster"].clone()
    }

    /// Waits (bounded) until `what` holds for host `i`'s cluster status;
    /// panics with the last status otherwise.
    pub fn wait_for(&self, i: usize, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let s = self.cluster_status(i);
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("host {i}: {what} not seen within {CONVERGE:?}; cluster status:\n{s:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every host sees `n` live hosts and the store.
    pub fn wait_hosts(&self, n: usize) {
        for i in 1..=self.hosts.len() {
            self.wait_for(i, &format!("{n} hosts, store reachable"), |s| {
                s["reachable"] == true && s["hosts"].as_array().map(Vec::len) == Some(n)
            });
        }
    }

    /// Waits until host `i` sees exactly the remote endpoints `want`
    /// (container names, any order).
    pub fn wait_remotes(&self, i: usize, want: &[&str]) -> Value {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        self.wait_for(i, &format!("remote endpoints {want:?}"), |s| {
            remote_names(s) == want
        })
    }
}

/// The container names among a cluster status's remote endpoints, sorted.
pub fn remote_names(status: &Value) -> Vec<String> {
    let mut v: Vec<String> = status["remote_endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["container"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// A veth from bridge `ul` in the underlay netns (`port`) to `ifname` in
/// netns `ns`, with `addr` on it, both ends up.
fn join_underlay(
    ul: &str,
    port: &str,
    ns: &str,
    ifname: &str,
    addr: Ipv4Addr,
) -> anyhow::Result<()> {
    ip_ns(
        ul,
        &[
            "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns,
        ],
    )?;
    ip_ns(ul, &["link", "set", port, "master", "ul"])?;
    ip_ns(ul, &["link", "set", port, "up"])?;
    ip_ns(ns, &["link", "set", "lo", "up"])?;
    ip_ns(
        ns,
        &[
            "addr",
            "add",
            &format!("{addr}/{UNDERLAY_PREFIX}"),
            "dev",
            ifname,
        ],
    )?;
    ip_ns(ns, &["link", "set", ifname, "up"])?;
    Ok(())
}

/// `dig @127.0.0.11 NAME A` from netns `ns` (1 s, one try): the status
/// (`NOERROR`, `NXDOMAIN`, ..., `NO-ANSWER`) and the addresses.
pub fn dig(ns: &str, name: &str) -> (String, Vec<Ipv4Addr>) {
    let opts = ["+time=1", "+tries=1"];
    let out = crate::names::dig_out(ns, name, "A", &opts, Duration::from_secs(10));
    let status = crate::names::dig_status(&out.stdout);
    let mut addrs: Vec<Ipv4Addr> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 5 && w[3] == "A").then(|| w[4].parse().ok())?
        })
        .collect();
    addrs.sort();
    (status, addrs)
}
