//! Unit tests of the agent on the in-memory kernel (`kernel::fake`): no
//! root, no namespaces. A [`Bed`] is an agent with its own state dir on a
//! fresh fake kernel; [`Snapshot`] is everything a failed operation must
//! leave as it found it.
mod cluster;
mod concurrent;
mod docker;
mod gateways;
mod ipam;
mod ports;
mod reconcile;
mod reconcile6;
mod restart;
mod rollback;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use ipnet::Ipv4Net;

use super::{
    lock::{AgentLock, Claim},
    Agent, AgentConfig, SharedAgent,
};
use crate::{
    kernel::fake::{Fake, State},
    model::{Container, Network},
    schema::{ContainerAdd, NetworkCreate},
};

/// A directory removed when dropped.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netd-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake host's uplink and its address.
pub(super) const UPLINK: &str = "eth0";
pub(super) const UPLINK_ADDR: &str = "192.0.2.10/24";

/// An agent on a fake kernel, with its own state dir.
pub(super) struct Bed {
    pub fake: Fake,
    pub agent: Arc<SharedAgent>,
    dir: TempDir,
}

/// What an operation that failed must leave unchanged: the kernel, the
/// agent's objects, the store and the held host ports.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    pub kernel: State,
    pub networks: BTreeMap<String, Network>,
    pub containers: BTreeMap<String, Container>,
    pub stored_networks: Vec<Network>,
    pub stored_containers: Vec<Container>,
    pub held: Vec<String>,
}

fn config(dir: &Path) -> AgentConfig {
    AgentConfig {
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        bpffs: dir.join("bpffs"),
        dns_upstreams: Vec::new(),
        default_pools: Vec::new(),
        default_pools_v6: Vec::new(),
        ipv6: false,
        default_bridge: false,
        uplinks: Vec::new(),
        snat_ports: (20_000, 29_999),
        ct_size: 1024,
        ct_timeouts: Default::default(),
        host_routing: Default::default(),
        cgroup: dir.join("cgroup"),
        socket_group: None,
        cluster: None,
    }
}

async fn open_agent(
    fake: &Fake,
    dir: &Path,
    tweak: impl FnOnce(&mut AgentConfig),
) -> Arc<SharedAgent> {
    SharedAgent::new(
        try_open_agent(fake, dir, tweak)
            .await
            .expect("agent starts on the fake kernel"),
    )
}

async fn try_open_agent(
    fake: &Fake,
    dir: &Path,
    tweak: impl FnOnce(&mut AgentConfig),
) -> anyhow::Result<Agent> {
    try_open_agent_in(fake, dir, tweak, None).await
}

/// [`try_open_agent`] with a cluster store (`cluster::fake`).
async fn try_open_agent_in(
    fake: &Fake,
    dir: &Path,
    tweak: impl FnOnce(&mut AgentConfig),
    cluster: Option<crate::cluster::Cluster>,
) -> anyhow::Result<Agent> {
    let mut config = config(dir);
    tweak(&mut config);
    let lock = AgentLock::acquire(&[Claim {
        flag: "--state-dir",
        dir: &config.state_dir,
    }])?;
    let store = crate::store::Store::open(&config.state_dir)?;
    Agent::open(
        config,
        lock,
        store,
        fake.kernel(),
        crate::monitor::Hub::detached(),
        crate::dns::NameService::records_only(),
        cluster,
    )
    .await
}

/// A fake kernel with one uplink (`eth0`, default route) holding `addr`.
pub(super) fn fake_host(addr: &str) -> Fake {
    let fake = Fake::new();
    let uplink = fake.add_host_link(UPLINK, "veth", Some(addr.parse().unwrap()));
    fake.with(|s| s.default_route.push(uplink));
    fake
}

impl Bed {
    /// A host with one uplink (`eth0`, default route) and an agent with no
    /// networks.
    pub async fn new() -> Bed {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut AgentConfig)) -> Bed {
        let fake = fake_host(UPLINK_ADDR);
        let dir = TempDir::new();
        let agent = open_agent(&fake, &dir.0, tweak).await;
        Bed { fake, agent, dir }
    }

    /// Stops the agent (dropping it, as a crash or a restart would) and
    /// starts a new one on the same kernel and state dir.
    pub async fn restart(self) -> Bed {
        let Bed { fake, agent, dir } = self;
        drop(agent);
        Self::reopen(fake, dir).await
    }

    /// A new agent on the kernel and state dir of one that was dropped.
    pub async fn reopen(fake: Fake, dir: TempDir) -> Bed {
        Self::reopen_with(fake, dir, |_| {}).await
    }

    pub async fn reopen_with(
        fake: Fake,
        dir: TempDir,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Bed {
        let agent = open_agent(&fake, &dir.0, tweak).await;
        Bed { fake, agent, dir }
    }

    /// A fresh container netns.
    pub fn netns(&self, name: &str) -> PathBuf {
        let path = PathBuf::from(format!("/fake/netns/{name}"));
        self.fake.add_netns(&path);
        path
    }

    pub async fn network(&mut self, name: &str, subnet: &str) -> Network {
        self.agent
            .create_network(NetworkCreate {
                name: name.into(),
                subnet: Some(subnet.parse().unwrap()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("network {name}: {e}"))
    }

    pub fn add_request(&self, name: &str, network: &str, publish: &[&str]) -> ContainerAdd {
        ContainerAdd {
            name: name.into(),
            netns: self.netns(name),
            network: Some(network.into()),
            publish: publish.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    pub async fn container(&mut self, name: &str, network: &str, publish: &[&str]) -> Container {
        let req = self.add_request(name, network, publish);
        self.agent
            .add_container(req)
            .await
            .unwrap_or_else(|e| panic!("container {name}: {e}"))
    }

    /// The container named `name`, as the agent holds it.
    pub async fn find(&self, name: &str) -> Container {
        self.state()
            .await
            .find_container(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .clone()
    }

    /// The agent's state (for reads and checks; held for one step).
    pub async fn state(&self) -> tokio::sync::MutexGuard<'_, Agent> {
        self.agent.state().await
    }

    pub async fn snapshot(&self) -> Snapshot {
        let agent = self.agent.state().await;
        let mut held: Vec<String> = agent
            .reservations
            .keys()
            .map(|(ip, port, proto)| format!("{ip:?}:{port}/{proto:?}"))
            .collect();
        held.sort();
        assert!(agent.claimed().is_empty(), "claims left behind");
        Snapshot {
            kernel: self.fake.state(),
            networks: agent.networks.clone(),
            containers: agent.containers.clone(),
            stored_networks: sorted(agent.store.networks().unwrap(), |n| n.id.clone()),
            stored_containers: sorted(agent.store.containers().unwrap(), |c| c.id.clone()),
            held,
        }
    }

    /// Repairs recorded since start.
    pub async fn repairs(&self) -> Vec<String> {
        self.agent.state().await.repairs.clone()
    }

    /// Runs the periodic sweep and returns the repairs it made.
    pub async fn sweep(&mut self) -> Vec<String> {
        let mut agent = self.agent.lock().await;
        let before = agent.repairs.len();
        agent.maintain().await;
        agent.repairs[before..].to_vec()
    }

    /// What `netd container check` finds wrong with `container`.
    pub async fn check(&self, container: &str) -> Vec<String> {
        self.agent
            .lock()
            .await
            .check_container(container, None)
            .await
            .unwrap_or_else(|e| panic!("check {container}: {e}"))
    }
}

fn sorted<T>(mut v: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    v.sort_by_key(key);
    v
}

/// Every host IPv4 address (a port bound on 0.0.0.0).
pub(super) const ANY: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED);

pub(super) fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Runs `op` with each of its steps failing in turn and checks that every
/// failure leaves `bed` exactly as it was. `op` must succeed unfailed;
/// `undo` takes a success back. `committed` names the steps after the
/// operation's point of no return (their failure is logged, not
/// returned). Returns the steps of the unfailed run.
pub(super) async fn fails_cleanly_at_every_step<F, U>(
    bed: &mut Bed,
    what: &str,
    committed: &[&str],
    mut op: F,
    mut undo: U,
) -> Vec<String>
where
    F: for<'a> FnMut(&'a mut Bed) -> futures::future::BoxFuture<'a, crate::error::AgentResult<()>>,
    U: for<'a> FnMut(&'a mut Bed) -> futures::future::BoxFuture<'a, ()>,
{
    let before = bed.snapshot().await;
    bed.fake.count_steps();
    op(bed)
        .await
        .unwrap_or_else(|e| panic!("{what} fails without a fault: {e}"));
    let steps = bed.fake.steps();
    assert!(!steps.is_empty(), "{what} took no kernel step");
    undo(bed).await;
    assert_eq!(
        bed.snapshot().await,
        before,
        "undoing {what} left something behind"
    );
    for (n, step) in steps.iter().enumerate() {
        bed.fake.fail_at(n as u64 + 1);
        let result = op(bed).await;
        assert!(
            !bed.fake.armed(),
            "{what} never reached step {} ({step})",
            n + 1
        );
        match result {
            Err(_) => {
                let after = bed.snapshot().await;
                assert_eq!(
                    after,
                    before,
                    "{what} failing at step {} ({step}) left a change behind; steps: {:?}",
                    n + 1,
                    bed.fake.steps()
                );
            }
            Ok(()) if committed.iter().any(|c| step.starts_with(c)) => undo(bed).await,
            Ok(()) => panic!("{what} succeeded although step {} ({step}) failed", n + 1),
        }
    }
    steps
}
