//! The `netd` command line: `netd daemon` runs the agent; every other verb
//! is a thin client of the agent's API (one file per verb group).
mod args;
mod config;
mod container;
mod daemon;
mod explain;
mod logs;
mod monitor;
mod network;
mod notify;
mod output;
mod status;

use std::path::PathBuf;

use anyhow::Result;
pub use args::Cli;
use args::Command;

use crate::api::client::Client;

pub const DEFAULT_RUN_DIR: &str = "/run/netd";

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Daemon(_) = cli.command {
        // Parsed again with the config file in front (flags win).
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        return daemon::run(config::load(&config::daemon_argv(&argv))?);
    }
    let socket = cli
        .host
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR).join("netd.sock"));
    let client = Client::new(&socket);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Daemon(_) => unreachable!("handled above"),
            Command::Network { command } => network::run(&client, command).await,
            Command::Container { command } => container::run(&client, command).await,
            Command::Status(args) => status::run(&client, args).await,
            Command::Explain(args) => explain::run(&client, args).await,
            Command::Monitor(args) => monitor::run(&client, args).await,
            Command::Port { container, port } => container::port(&client, &container, port.as_deref()).await,
            Command::Reset { force } => {
                if !force {
                    anyhow::bail!(
                        "reset removes every network, container interface, pinned program and the stored state; run `netd reset --force`"
                    );
                }
                let out: crate::schema::Removed = client.post("/v1/reset", &()).await?;
                for item in out.removed {
                    println!("removed {item}");
                }
                Ok(())
            }
            Command::Version => {
                println!("netd {}", env!("CARGO_PKG_VERSION"));
                println!("git revision: {}", crate::GIT_REVISION);
                println!("map layout:   v{}", netd_common::MAP_LAYOUT_VERSION);
                println!("source hash:  {}", crate::SOURCE_HASH);
                Ok(())
            }
        }
    })
}
