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
};

pub fn run(args: DaemonArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {}", args.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
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
        };
        let socket = config.run_dir.join("netd.sock");
        let agent = Agent::start(config).await.context("agent failed to start")?;
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
        server::serve(Arc::new(tokio::sync::Mutex::new(agent)), &socket, shutdown).await
    })
}
