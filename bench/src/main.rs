//! `bench`: netd against a Docker-equivalent iptables datapath and bare
//! routed veths, on one network-namespace topology (`cargo xtask bench`).
//!
//! `bench run` is the runner (root); `bench serve|rr|crr` is the load
//! generator it starts inside the namespaces.

mod load;
mod measure;
mod overlay;
mod report;
mod run;
mod sys;
mod topo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "netd vs iptables vs bare veth benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the three datapaths, measure them, write the report (root).
    Run {
        /// Fewer repetitions, shorter runs, smaller scale (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Only the control-plane part (report `<mode>-control.*`).
        #[arg(long)]
        control_only: bool,
        /// The netd binary to benchmark.
        #[arg(long)]
        netd: PathBuf,
        /// Where the report goes.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// The command line to quote in the report.
        #[arg(long, default_value = "cargo xtask bench")]
        command: String,
        /// Only the cross-host (overlay) comparison.
        #[arg(long)]
        overlay_only: bool,
    },
    /// Render the report (markdown, chart) again from a run's JSON.
    Report {
        /// The JSON a run wrote (bench/results/MODE.json).
        json: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Build one datapath's topology (with its servers) and hold it for a
    /// while, for poking at it by hand (root); Ctrl-C tears it down.
    Hold {
        /// netd, netdk, ipt or bare.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        netd: PathBuf,
        /// Seconds to hold it (at most an hour).
        #[arg(long, default_value_t = 600)]
        secs: u64,
    },
    /// Echo server: answers every read with the same bytes.
    Serve {
        #[arg(long)]
        port: u16,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 3600)]
        lifetime: u64,
    },
    /// 1-byte request/response on one persistent connection; prints JSON.
    Rr {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
    /// Connect, 1 byte each way, close, in a loop; prints JSON.
    Crr {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run {
            quick,
            control_only,
            netd,
            out,
            command,
            overlay_only,
        } => run::run(run::Opts {
            quick,
            control_only,
            netd,
            out,
            command,
            overlay_only,
        }),
        Cmd::Report { json, out } => run::rerender(&json, &out),
        Cmd::Hold { kind, netd, secs } => run::hold(&kind, netd, secs),
        Cmd::Serve { port, lifetime } => load::serve(port, Duration::from_secs(lifetime)),
        Cmd::Rr { addr, secs } => load::rr(addr, secs).and_then(print_json),
        Cmd::Crr { addr, secs } => load::crr(addr, secs).and_then(print_json),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(r: load::LoadResult) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
