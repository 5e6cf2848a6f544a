//! `netd daemon`: start the agent and serve the API until SIGTERM/SIGINT.
//! The datapath (pinned programs and maps) keeps running after exit.
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use super::{
    args::DaemonArgs,
    config::{self, Settings},
    logs, notify,
};
use crate::{
    agent::{Agent, AgentConfig, SharedAgent},
    api::server,
    datapath::CtTimeouts,
    docker,
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
async fn maintenance(agent: Arc<SharedAgent>) {
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
    let mut next = tokio::time::Instant::now() + MAINTENANCE_PERIOD;
    loop {
        match events.as_mut() {
            Some(ev) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    msg = ev.next() => match msg {
                        None => {
                            events = None;
                            continue;
                        }
                        Some((m, _)) if !wakes_upkeep(&m) => continue,
                        Some(_) => {
                            // One pass for a burst of changes.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::ZERO, ev.next()).await {}
                        }
                    }
                }
            }
            None => tokio::time::sleep_until(next).await,
        }
        agent.lock().await.maintain().await;
        next = tokio::time::Instant::now() + MAINTENANCE_PERIOD;
    }
}

/// Does a notification call for upkeep now? Not one about a veth of
/// netd's own making (an endpoint's, made or brought up by the agent
/// itself, hundreds of them while containers come up): the periodic sweep
/// still repairs those if someone else touched them.
fn wakes_upkeep(
    msg: &rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
) -> bool {
    use rtnetlink::{
        packet_core::NetlinkPayload,
        packet_route::{link::LinkAttribute, RouteNetlinkMessage},
    };
    match &msg.payload {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
        ) => !l
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::IfName(n) if crate::agent::is_own_veth_name(n))),
        _ => true,
    }
}

/// Keys whose new value a SIGHUP applies at once; every other changed key
/// waits for a restart (and the reload says so).
const LIVE_KEYS: &[&str] = &["dns-upstream", "ct-timeout", "log-level"];

/// The group `--socket-group` names: a group name or a numeric gid.
fn socket_group(name: &str) -> Result<nix::unistd::Gid> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(gid));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => anyhow::bail!(
            "--socket-group {name}: no such group; create it (`groupadd {name}`) or give a numeric gid"
        ),
        Err(e) => Err(e).with_context(|| format!("failed to look up group {name}")),
    }
}

fn ct_timeouts(args: &DaemonArgs) -> Result<CtTimeouts> {
    let mut t = CtTimeouts::default();
    for spec in &args.ct_timeouts {
        t.set(spec).map_err(anyhow::Error::msg)?;
    }
    Ok(t)
}

fn dns_upstreams(args: &DaemonArgs) -> Vec<std::net::SocketAddr> {
    if args.dns_upstreams.is_empty() {
        crate::dns::forward::host_upstreams()
    } else {
        args.dns_upstreams.clone()
    }
}

fn agent_config(args: &DaemonArgs) -> Result<AgentConfig> {
    if args.advertise_addr.is_some() && args.cluster_store.is_none() {
        anyhow::bail!(
            "--advertise-addr needs --cluster-store (it is this host's address in the cluster)"
        );
    }
    Ok(AgentConfig {
        state_dir: args.state_dir.clone(),
        run_dir: args.run_dir.clone(),
        bpffs: args.bpffs.clone(),
        dns_upstreams: dns_upstreams(args),
        default_pools: args.default_pools.clone(),
        default_pools_v6: args.default_pools_v6.clone(),
        ipv6: args.ipv6,
        default_bridge: !args.no_default_bridge,
        uplinks: args.uplinks.clone(),
        snat_ports: args.snat_ports,
        ct_size: args.ct_size,
        host_routing: args.host_routing,
        ct_timeouts: ct_timeouts(args)?,
        cgroup: match &args.cgroup {
            Some(dir) => dir.clone(),
            None => cgroup2_root()?,
        },
        socket_group: args.socket_group.as_deref().map(socket_group).transpose()?,
        cluster: match &args.cluster_store {
            Some(url) => Some(crate::cluster::ClusterSettings {
                endpoints: crate::cluster::parse_store_url(url).map_err(anyhow::Error::msg)?,
                advertise: args.advertise_addr,
                lease_ttl: args.cluster_lease_ttl,
                reclaim_after: args.cluster_reclaim_after,
            }),
            None => None,
        },
    })
}

/// Threads of the agent's runtime (see [`run`]).
const RUNTIME_THREADS: usize = 8;

pub fn run(settings: Settings) -> Result<()> {
    let levels = logs::init(&settings.args.log_level, settings.args.log_format)?;
    if let Some(file) = &settings.file {
        info!(file = %file.display(), "config file");
    }
    for key in &settings.overridden {
        info!(%key, "config file key overridden by the command line");
    }
    for note in &settings.ignored {
        warn!("{note}");
    }
    raise_open_files_limit();
    let config = agent_config(&settings.args)?;
    // More runtime threads than cores: a netlink request is served inside
    // the sending thread's sendmsg, which waits there for RTNL (for 10-20
    // ms while another request's TCX attach or netns move waits for an RCU
    // grace period). With one thread per core, two such waits stalled the
    // whole agent, reads included.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()?;
    let docker_plugin = match settings.args.docker_plugin.as_str() {
        "none" => None,
        "" => anyhow::bail!("--docker-plugin needs a socket path or none"),
        path => Some(std::path::PathBuf::from(path)),
    };
    let docker_host = settings.args.docker_host.clone();
    // Before the agent touches anything: a second agent on the same driver
    // socket must change nothing (SPEC section 5).
    let _plugin_lock = match docker_plugin.as_deref() {
        Some(path) => {
            let lock = crate::agent::lock::AgentLock::acquire_socket("--docker-plugin", path)?;
            docker::server::refuse_if_served(path)?;
            Some(lock)
        }
        None => None,
    };
    rt.block_on(async move {
        let socket = config.run_dir.join("netd.sock");
        let group = config.socket_group;
        let metrics_listener = match settings.args.metrics {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for --metrics (address in use or not local?)")
            })?),
            None => None,
        };
        let agent = Agent::start(config)
            .await
            .context("agent failed to start")?;
        let listener = server::bind(&socket, group)?;
        let plugin = match docker_plugin.as_deref() {
            Some(path) => Some((docker::server::bind(path)?, path.to_path_buf())),
            None => None,
        };
        notify::notify("READY=1\nSTATUS=serving the API");
        info!(socket = %socket.display(), "netd agent ready");
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            notify::notify("STOPPING=1");
            info!("shutting down; the datapath stays in place");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let agent = SharedAgent::new(agent);
        tokio::spawn(maintenance(agent.clone()));
        tokio::spawn(crate::agent::follow_cluster(agent.clone()));
        if let Some(listener) = metrics_listener {
            info!(addr = ?listener.local_addr().ok(), "serving /metrics over TCP");
            let agent = agent.clone();
            tokio::spawn(async move {
                if let Err(e) = server::serve_metrics(agent, listener).await {
                    tracing::warn!(error = %format!("{e:#}"), "metrics server stopped");
                }
            });
        }
        let reloader = agent.clone();
        tokio::spawn(async move {
            let mut running = settings;
            while hup.recv().await.is_some() {
                reload(&reloader, &levels, &mut running).await;
            }
        });
        if let (Some(_), Some(host)) = (&plugin, docker_host) {
            tokio::spawn(docker::names::follow(agent.clone(), host));
        }
        let driver = plugin.map(|(listener, path)| {
            tokio::spawn(docker::server::serve(
                agent.clone(),
                listener,
                path,
                stopped(stop_rx.clone()),
            ))
        });
        let served = server::serve(agent.clone(), listener, stopped(stop_rx)).await;
        if let Some(driver) = driver {
            match driver.await {
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "Docker driver server failed")
                }
                Err(e) => tracing::warn!(error = %e, "Docker driver server task failed"),
                Ok(Ok(())) => {}
            }
        }
        served
    })
}

/// SIGHUP: reads the config file again; applies what can change live and
/// names what needs a restart. A file that no longer parses changes nothing.
async fn reload(agent: &Arc<SharedAgent>, levels: &logs::LevelHandle, running: &mut Settings) {
    notify::notify("RELOADING=1");
    let new = match config::load(&running.cli) {
        Ok(new) => new,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "config reload failed; the running settings stay");
            notify::notify("READY=1");
            return;
        }
    };
    for note in &new.ignored {
        warn!("{note}");
    }
    let keys: std::collections::BTreeSet<&String> = running
        .from_file
        .keys()
        .chain(new.from_file.keys())
        .collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| running.from_file.get(*k) != new.from_file.get(*k))
        .cloned()
        .collect();
    let timeouts = match ct_timeouts(&new.args) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "config reload failed; the running settings stay");
            notify::notify("READY=1");
            return;
        }
    };
    if let Err(e) = levels.set(&new.args.log_level) {
        warn!(error = %format!("{e:#}"), "log level unchanged");
    }
    agent
        .lock()
        .await
        .apply_live(dns_upstreams(&new.args), timeouts);
    for key in &changed {
        if LIVE_KEYS.contains(&key.as_str()) {
            info!(%key, "config reloaded: applied");
            match new.from_file.get(key) {
                Some(v) => running.from_file.insert(key.clone(), v.clone()),
                None => running.from_file.remove(key),
            };
        } else {
            warn!(%key, "config reloaded: this key changed and takes effect at the next restart");
        }
    }
    if changed.is_empty() {
        info!("config reloaded: nothing changed");
    }
    notify::notify("READY=1");
}
