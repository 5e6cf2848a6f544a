//! `netd daemon`: start the agent and serve the API until SIGTERM/SIGINT.
//! The datapath (pinned programs and maps) keeps running after exit.
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use super::args::DaemonArgs;
use crate::{
    agent::{Agent, AgentConfig},
    api::server,
    datapath::CtTimeouts,
};

/// The agent holds one socket per published port: lift the soft limit on
/// open files to the hard one (a systemd default of 1024 would cap it).
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, "cannot raise the open files limit");
            }
        }
    }
}

/// The cgroup2 mount: /sys/fs/cgroup on unified hosts, else
/// /sys/fs/cgroup/unified (hybrid hierarchy).
fn cgroup2_root() -> Result<std::path::PathBuf> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(fs) = nix::sys::statfs::statfs(dir) {
            if fs.filesystem_type() == nix::sys::statfs::FsType(CGROUP2_SUPER_MAGIC as _) {
                return Ok(dir.into());
            }
        }
    }
    anyhow::bail!("no cgroup2 hierarchy found; give --cgroup")
}

/// How often upkeep runs when no routing change wakes it earlier.
const MAINTENANCE_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows routes, addresses and links (rtnetlink notifications, and a
/// periodic sweep) and expires conntrack entries.
async fn maintenance(agent: Arc<tokio::sync::Mutex<Agent>>) {
    use futures::StreamExt;
    use rtnetlink::MulticastGroup;
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
    ];
    let mut events = match rtnetlink::new_multicast_connection(&groups) {
        Ok((conn, _handle, events)) => {
            tokio::spawn(conn);
            Some(events)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no rtnetlink notifications; polling only");
            None
        }
    };
    loop {
        let tick = tokio::time::sleep(MAINTENANCE_PERIOD);
        match events.as_mut() {
            Some(ev) => {
                tokio::select! {
                    _ = tick => {}
                    msg = ev.next() => {
                        if msg.is_none() {
                            events = None;
                        } else {
                            // One pass for a burst of changes.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::ZERO, ev.next()).await {}
                        }
                    }
                }
            }
            None => tick.await,
        }
        agent.lock().await.maintain().await;
    }
}

pub fn run(args: DaemonArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {}", args.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut ct_timeouts = CtTimeouts::default();
        for spec in &args.ct_timeouts {
            ct_timeouts.set(spec).map_err(anyhow::Error::msg)?;
        }
        let config = AgentConfig {
            state_dir: args.state_dir,
            run_dir: args.run_dir,
            bpffs: args.bpffs,
            dns_upstreams: if args.dns_upstreams.is_empty() {
                crate::dns::forward::host_upstreams()
            } else {
                args.dns_upstreams
            },
            default_pools: args.default_pools,
            default_bridge: !args.no_default_bridge,
            uplinks: args.uplinks,
            snat_ports: args.snat_ports,
            ct_size: args.ct_size,
            ct_timeouts,
            cgroup: match args.cgroup {
                Some(dir) => dir,
                None => cgroup2_root()?,
            },
        };
        let socket = config.run_dir.join("netd.sock");
        let agent = Agent::start(config)
            .await
            .context("agent failed to start")?;
        info!(socket = %socket.display(), "netd agent ready");
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            info!("shutting down; the datapath stays in place");
        };
        let agent = Arc::new(tokio::sync::Mutex::new(agent));
        tokio::spawn(maintenance(agent.clone()));
        server::serve(agent, &socket, shutdown).await
    })
}
