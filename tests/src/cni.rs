//! Driving `netd-cni` exactly as a runtime does: environment variables,
//! the network configuration on stdin, the result (or CNI error) on stdout.
//!
//! [`Runtime`] reproduces what podman 4.3 (CNI backend) and containerd 1.6
//! (`ctr run --cni`) send, as recorded in shared/RUNTIMES.md.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ports::{self, P};

/// The plugin under test: `$NETD_CNI_BIN`, else `netd-cni` next to the
/// netd binary. Like `netd`, it must be built from these sources
/// (`netd-cni version` shows the source hash): a stale plugin fails the
/// test rather than being tested.
pub fn cni_bin() -> PathBuf {
    let bin = match std::env::var_os("NETD_CNI_BIN") {
        Some(p) => PathBuf::from(p),
        None => crate::bed::netd_bin().with_file_name("netd-cni"),
    };
    if let Err(e) = crate::bed::check_binary(&bin) {
        panic!("{e:#}");
    }
    bin
}

/// One plugin call's outcome.
#[derive(Debug, Clone)]
pub struct CniOut {
    pub call: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CniOut {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as JSON (panics with the transcript when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{} printed no JSON ({e}):\n{self:?}", self.call))
    }

    /// The result of a call that must succeed.
    pub fn ok(&self) -> Value {
        assert!(self.success(), "{} failed:\n{self:#?}", self.call);
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// The CNI error of a call that must fail: exit non-zero, the spec's
    /// error object on stdout. Returns (code, msg, details).
    pub fn error(&self) -> (u64, String, String) {
        assert!(
            !self.success() && self.code.is_some(),
            "{} should fail cleanly:\n{self:#?}",
            self.call
        );
        let v = self.json();
        let code = v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}"));
        let msg = v["msg"].as_str().unwrap_or_else(|| panic!("no msg: {v}"));
        assert!(
            v["cniVersion"].as_str().is_some_and(|s| !s.is_empty()),
            "no cniVersion in {v}"
        );
        assert!(!msg.is_empty(), "empty msg in {v}");
        let details = v["details"].as_str().unwrap_or_default().to_string();
        (code, msg.to_string(), details)
    }
}

/// Runs `netd-cni` with exactly `env` (plus PATH) and `stdin`; bounded.
pub fn call(env: &[(String, String)], stdin: &str) -> CniOut {
    let bin = cni_bin();
    let cmd_name = env
        .iter()
        .find(|(k, _)| k == "CNI_COMMAND")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let call = format!("netd-cni {cmd_name}");
    let mut child = match Command::new(&bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run {} (build netd first): {e}", bin.display()),
    };
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    if crate::wait::wait_exit(&mut child, Duration::from_secs(90)).is_none() {
        let _ = child.kill();
    }
    let _ = writer.join();
    let out = child.wait_with_output().expect("waiting for netd-cni");
    CniOut {
        call,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The environment each runtime sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// podman 4.3, CNI backend: 64-hex ids, `/run/netns/netns-<uuid>`,
    /// `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<name>`, runtimeConfig.
    Podman,
    /// `ctr run --cni`: id `<namespace>-<id>`, `/proc/PID/ns/net`,
    /// `CNI_ARGS=""`, `CNI_NETNS=""` on DEL.
    Containerd,
}

/// One CNI attachment as a runtime sees it.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub runtime: Runtime,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// podman's container name (K8S_POD_NAME).
    pub name: String,
    /// Extra `CNI_ARGS` pairs (podman's `IP=`/`MAC=`).
    pub extra_args: Vec<String>,
}

impl Attachment {
    pub fn podman(name: &str, netns: &Path, ifname: &str) -> Attachment {
        let id: String = (0..4)
            .map(|_| format!("{:016x}", rand::random::<u64>()))
            .collect();
        Attachment {
            runtime: Runtime::Podman,
            container_id: id,
            netns: netns.display().to_string(),
            ifname: ifname.to_string(),
            name: name.to_string(),
            extra_args: Vec::new(),
        }
    }

    pub fn containerd(id: &str, netns: &Path) -> Attachment {
        Attachment {
            runtime: Runtime::Containerd,
            container_id: format!("default-{id}"),
            netns: netns.display().to_string(),
            ifname: "eth0".into(),
            name: id.into(),
            extra_args: Vec::new(),
        }
    }

    /// The same container, another interface (a second network's ADD).
    pub fn with_ifname(&self, ifname: &str) -> Attachment {
        Attachment {
            ifname: ifname.into(),
            ..self.clone()
        }
    }

    /// The environment of `command` for this attachment.
    pub fn env(&self, command: &str) -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: &str| e.push((k.to_string(), v.to_string()));
        put("CNI_COMMAND", command);
        put("CNI_CONTAINERID", &self.container_id);
        put("CNI_IFNAME", &self.ifname);
        put("CNI_PATH", "/opt/cni/bin:/usr/lib/cni");
        match self.runtime {
            Runtime::Podman => {
                put("CNI_NETNS", &self.netns);
                let mut args = vec![
                    "IgnoreUnknown=1".to_string(),
                    format!("K8S_POD_NAME={}", self.name),
                ];
                args.extend(self.extra_args.iter().cloned());
                put("CNI_ARGS", &args.join(";"));
            }
            Runtime::Containerd => {
                put("CNI_NETNS", if command == "DEL" { "" } else { &self.netns });
                put("CNI_ARGS", "");
            }
        }
        e
    }

    pub fn run(&self, command: &str, stdin: &str) -> CniOut {
        call(&self.env(command), stdin)
    }
}

/// Environment of a call without an attachment (VERSION, STATUS, GC), as
/// podman sends VERSION: `CNI_NETNS=dummy`, `CNI_IFNAME=dummy`.
pub fn plain_env(command: &str) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "dummy"),
        ("CNI_NETNS", "dummy"),
        ("CNI_IFNAME", "dummy"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A plugin config object: `{"cniVersion", "name", "type": "netd-cni",
/// "socket"}` plus `extra`'s keys.
pub fn conf(version: &str, name: &str, socket: &Path, extra: Value) -> Value {
    let mut v = json!({
        "cniVersion": version,
        "name": name,
        "type": "netd-cni",
        "socket": socket,
    });
    if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), extra) {
        o.extend(extra);
    }
    v
}

/// What podman adds to the plugin's object on ADD/DEL: runtimeConfig with
/// its aliases (network → [short id]) and port mappings.
pub fn with_runtime_config(mut conf: Value, runtime_config: Value) -> Value {
    conf["runtimeConfig"] = runtime_config;
    conf
}

/// One TCP exchange from `client_ns` to `dst` served in `server_ns` on
/// `0.0.0.0:port` ([`ports::ask_via`]); returns the client address the
/// server saw.
pub fn tcp_via(
    server_ns: &str,
    port: u16,
    client_ns: &str,
    dst: SocketAddrV4,
) -> anyhow::Result<Ipv4Addr> {
    Ok(*ports::ask_via(P::Tcp, server_ns, port, client_ns, dst)?
        .seen
        .ip())
}

/// One UDP exchange from `client_ns` to `dst` answered in `server_ns` on
/// `0.0.0.0:port` ([`ports::ask_via`]); returns the client address the
/// server saw.
pub fn udp_via(
    server_ns: &str,
    port: u16,
    client_ns: &str,
    dst: SocketAddrV4,
) -> anyhow::Result<Ipv4Addr> {
    Ok(*ports::ask_via(P::Udp, server_ns, port, client_ns, dst)?
        .seen
        .ip())
}
