//! Unit tests of overlay networks on the in-memory cluster store
//! (`cluster::fake`): each [`Host`] is an agent on a fake kernel of its
//! own, following the one store of the test as the daemon does
//! (`agent::follow`: lease, snapshot, watch). Waits are bounded and wait
//! for a condition, never for a time.
mod concurrent;
mod follow;
mod outage;
mod reclaim;
mod refusals;
mod rollback;

use std::{future::Future, net::Ipv4Addr, sync::Arc, time::Duration};

use super::{fake_host, ip, try_open_agent_in, Bed, TempDir};
use crate::{
    agent::{follow_cluster, SharedAgent},
    cluster::{fake::FakeCluster, Cluster, ClusterConfig, Session},
    error::AgentResult,
    kernel::fake::Fake,
    model::{Container, Network},
    schema::{ContainerAdd, NetworkCreate},
};

/// A host of the test cluster: `id` is its host id and the name of its
/// connection to the store; its tunnel address is `192.0.2.N`.
pub(super) struct Host {
    pub bed: Bed,
    pub id: String,
    pub cluster: Cluster,
    store: FakeCluster,
    follower: Option<Follower>,
}

/// The agent's `follow_cluster` task, ended when dropped.
struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a wait may take before the test fails (the agent's session
/// retries once a second).
const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `cond` holds; fails the test with `what` after
/// [`PATIENCE`].
pub(super) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < PATIENCE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config(id: &str, n: u8) -> ClusterConfig {
    ClusterConfig {
        endpoints: vec!["fake://store".into()],
        advertise: Ipv4Addr::new(192, 0, 2, n),
        host_id: id.into(),
        hostname: format!("host-{id}"),
        // The shortest: renewals and reclaim sweeps once a second.
        lease_ttl: 1,
        reclaim_after: None,
    }
}

impl Host {
    /// Host `id` joined to `store`, once its first session has started.
    pub async fn start(store: &FakeCluster, id: &str, n: u8) -> Host {
        let host = Self::start_with(store, id, n, |_| {}).await;
        host.wait_sessions(1).await;
        host
    }

    /// Host `id`, following `store` (not waiting for a session).
    pub async fn start_with(
        store: &FakeCluster,
        id: &str,
        n: u8,
        tweak: impl FnOnce(&mut ClusterConfig),
    ) -> Host {
        let mut config = config(id, n);
        tweak(&mut config);
        let fake = fake_host(&format!("{}/24", config.advertise));
        Self::open(store, fake, TempDir::new(), config).await
    }

    async fn open(store: &FakeCluster, fake: Fake, dir: TempDir, config: ClusterConfig) -> Host {
        let cluster = Cluster {
            store: Arc::new(store.client(&config.host_id)),
            config,
            session: Default::default(),
        };
        let agent = try_open_agent_in(&fake, &dir.0, |_| {}, Some(cluster.clone()))
            .await
            .expect("agent starts on the fake kernel and store");
        let agent = SharedAgent::new(agent);
        let follower = Follower(tokio::spawn(follow_cluster(agent.clone())));
        Host {
            id: cluster.config.host_id.clone(),
            bed: Bed { fake, agent, dir },
            cluster,
            store: store.clone(),
            follower: Some(follower),
        }
    }

    /// Stops following the store (the session's lease stays as it was).
    pub async fn stop_following(&mut self) {
        if let Some(mut f) = self.follower.take() {
            f.0.abort();
            let _ = (&mut f.0).await;
        }
    }

    /// Stops the agent (as a crash would) and starts a new one on the
    /// same kernel, state dir and store (a new session).
    pub async fn restart(mut self) -> Host {
        self.stop_following().await;
        let Host {
            bed,
            cluster,
            store,
            ..
        } = self;
        let Bed { fake, agent, dir } = bed;
        drop(agent);
        Self::open(&store, fake, dir, cluster.config).await
    }

    pub fn session(&self) -> Session {
        self.cluster.session()
    }

    /// Waits until `n` sessions have started and one is up.
    pub async fn wait_sessions(&self, n: u64) {
        eventually(&format!("{} has had {n} sessions", self.id), || async {
            let s = self.session();
            s.connected && s.sessions >= n
        })
        .await;
    }

    /// Waits until the session is down.
    pub async fn wait_disconnected(&self) {
        eventually(&format!("{} has lost its session", self.id), || async {
            !self.session().connected
        })
        .await;
    }

    /// Waits until the agent's view has every change the store has.
    pub async fn caught_up(&self) {
        eventually(&format!("{} follows the store", self.id), || async {
            self.bed.state().await.cluster_view.revision >= self.store.with(|kv| kv.revision())
        })
        .await;
    }

    /// What `netd status` says of the cluster.
    pub async fn status(&self) -> crate::schema::ClusterStatus {
        self.bed
            .agent
            .lock()
            .await
            .status()
            .unwrap_or_else(|e| panic!("status: {e}"))
            .cluster
            .expect("a cluster member")
    }

    pub async fn overlay(&self, name: &str, subnet: Option<&str>) -> AgentResult<Network> {
        self.bed
            .agent
            .create_network(NetworkCreate {
                name: name.into(),
                subnet: subnet.map(|s| s.parse().unwrap()),
                driver: Some("overlay".into()),
                ..Default::default()
            })
            .await
    }

    pub fn add_request(&self, name: &str, network: &str, ip: Option<&str>) -> ContainerAdd {
        ContainerAdd {
            ip: ip.map(|ip| ip.parse().unwrap()),
            ..self.bed.add_request(name, network, &[])
        }
    }

    pub async fn add(&self, name: &str, network: &str, ip: Option<&str>) -> AgentResult<Container> {
        self.bed
            .agent
            .add_container(self.add_request(name, network, ip))
            .await
    }

    /// Waits until the network `name` is realised here.
    pub async fn has_network(&self, name: &str) -> Network {
        eventually(&format!("{} realises {name}", self.id), || async {
            self.bed.state().await.find_network(name).is_ok()
        })
        .await;
        self.bed.state().await.find_network(name).unwrap().clone()
    }

    /// The remote endpoints the datapath forwards to (address, tunnel
    /// address of its host), sorted.
    pub fn remotes(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let mut r: Vec<_> = self
            .bed
            .fake
            .state()
            .remotes
            .values()
            .map(|r| (r.ip, r.host))
            .collect();
        r.sort();
        r
    }

    /// Waits until the datapath forwards to exactly `want` (addresses of
    /// remote endpoints, on `host`'s tunnel address).
    pub async fn wait_remotes(&self, want: &[Ipv4Addr], host: &Host) {
        let want: Vec<_> = want
            .iter()
            .map(|ip| (*ip, host.cluster.config.advertise))
            .collect();
        eventually(
            &format!(
                "{} forwards to {want:?} (has {:?})",
                self.id,
                self.remotes()
            ),
            || async { self.remotes() == want },
        )
        .await;
    }
}

/// The address of `c` on its (first) network.
pub(super) fn addr(c: &Container) -> Ipv4Addr {
    c.endpoints[0].ip
}
