//! `netd-cni`: a CNI 1.1 plugin (ADD, DEL, CHECK, VERSION, STATUS, GC) that
//! is a thin client of the agent's API. A CNI attachment becomes a netd
//! container (origin `cni`, labelled with the CNI container id) whose
//! interface is `CNI_IFNAME`; a second attachment of the same container is
//! a network connect. No datapath work happens here.
//!
//! - `env`: the runtime's environment (`CNI_*`).
//! - `config`: the network configuration on stdin.
//! - `attach`: ADD and DEL.
//! - `maintain`: CHECK and GC.
//! - `result`: the ADD result in the spec's shape.
//! - `agent`: bounded calls to the agent, failures as CNI errors.
//! - `error`: the spec's error object and codes.
pub mod agent;
pub mod attach;
pub mod config;
pub mod env;
pub mod error;
pub mod maintain;
pub mod result;

use std::io::{Read, Write};

use serde_json::{json, Value};

use self::{
    agent::AgentApi,
    config::{NetConf, LATEST_VERSION, SUPPORTED_VERSIONS},
    env::{Command, Env},
    error::{CniError, CniResult, IO_FAILURE, NOT_AVAILABLE},
};

/// Runs one plugin call: the result (if the verb has one) or the error.
/// Also returns the cniVersion to answer in.
pub fn run(env: &Env, stdin: &[u8]) -> (String, CniResult<Option<Value>>) {
    if env.command == Command::Version {
        let asked = config::version_of(stdin).filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()));
        let version = asked.unwrap_or_else(|| LATEST_VERSION.to_string());
        let out = json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS });
        return (version, Ok(Some(out)));
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => {
            let version = config::version_of(stdin)
                .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| LATEST_VERSION.to_string());
            return (version, Err(e));
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return (
                conf.cni_version,
                Err(CniError::new(IO_FAILURE, format!("cannot start: {e}"))),
            )
        }
    };
    let api = AgentApi::new(&conf.socket);
    let out = rt.block_on(async {
        match env.command {
            Command::Add => attach::add(&api, env, &conf).await.map(Some),
            Command::Del => attach::del(&api, env, &conf).await.map(|_| None),
            Command::Check => maintain::check(&api, env, &conf).await.map(|_| None),
            Command::Gc => maintain::gc(&api, &conf).await.map(|_| None),
            Command::Status => api.status().await.map(|_| None).map_err(|f| {
                CniError::new(NOT_AVAILABLE, f.error.msg).with_details(f.error.details)
            }),
            Command::Version => unreachable!("answered above"),
        }
    });
    (conf.cni_version, out)
}

/// The executable: environment and stdin in, result or error JSON out.
/// Runtimes pass no arguments; `netd-cni version` (or `--version`) prints
/// the build, as `netd version` does, for people and the test harness.
pub fn main() -> i32 {
    if let Some(arg) = std::env::args().nth(1) {
        if arg == "version" || arg == "--version" {
            println!("netd-cni {}", env!("CARGO_PKG_VERSION"));
            println!("source hash:  {}", crate::SOURCE_HASH);
            println!("CNI versions: {}", SUPPORTED_VERSIONS.join(", "));
            return 0;
        }
    }
    let mut stdin = Vec::new();
    let env = Env::read(|k| std::env::var(k).ok());
    let read = std::io::stdin().read_to_end(&mut stdin);
    let (version, out) = match (env, read) {
        (Err(e), _) => (
            config::version_of(&stdin).unwrap_or_else(|| LATEST_VERSION.to_string()),
            Err(e),
        ),
        (Ok(_), Err(e)) => (
            LATEST_VERSION.to_string(),
            Err(CniError::new(
                IO_FAILURE,
                format!("cannot read the network configuration from stdin: {e}"),
            )),
        ),
        (Ok(env), Ok(_)) => run(&env, &stdin),
    };
    let mut stdout = std::io::stdout().lock();
    match out {
        Ok(result) => {
            if let Some(v) = result {
                let _ = writeln!(stdout, "{v}");
            }
            0
        }
        Err(e) => {
            let _ = writeln!(stdout, "{}", e.to_json(&version));
            1
        }
    }
}
