//! The embedded transactional store.
//!
//! redb: a pure-Rust, copy-on-write B-tree file with ACID transactions.
//! Every acknowledged API change is one write transaction committed with
//! immediate durability (fsync) before the API answers, so a kill -9 loses
//! nothing that was acknowledged and never leaves half a change. Values are
//! JSON so the layout can evolve with serde defaults.
//!
//! Concurrent container adds and removes commit through one thread that
//! takes every change queued while the previous commit was syncing into
//! the next transaction ([`Store::apply_grouped`]): one fsync answers all
//! of them, each only after its change is on disk, and none of them holds
//! a runtime thread while it waits.
use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::model::{Container, Network};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
/// Per-host settings chosen once (the ULA prefix of IPv6 networks).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_ULA: &str = "ula-prefix";
/// The last view of the cluster store (`cluster::view`), one value.
const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
const CLUSTER_VIEW: &str = "view";

/// One change inside a transaction.
pub enum StoreOp<'a> {
    PutNetwork(&'a Network),
    DeleteNetwork(&'a str),
    PutContainer(&'a Container),
    DeleteContainer(&'a str),
}

pub struct Store {
    db: Arc<Database>,
    /// To the group-commit thread (`None` once dropped: the thread ends).
    committer: Option<std::sync::mpsc::Sender<Batch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Store {
    /// Ends the commit thread (after what is queued), so that the file is
    /// closed when the store is: it can be opened again at once.
    fn drop(&mut self) {
        self.committer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A table of [`StoreOp`]s.
#[derive(Clone, Copy)]
enum Table {
    Networks,
    Containers,
}

/// A [`StoreOp`] encoded, for the group-commit thread.
struct OwnedOp {
    table: Table,
    key: String,
    /// `None`: delete.
    value: Option<Vec<u8>>,
}

/// The changes of one [`Store::apply_grouped`] call and who waits for them.
struct Batch {
    ops: Vec<OwnedOp>,
    done: tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
}

/// Most batches one transaction takes.
const MAX_GROUP: usize = 64;

/// Commits batches as they come, each transaction with every batch queued
/// meanwhile (up to [`MAX_GROUP`]); answers each after the commit.
fn group_commit(db: &Database, queue: &std::sync::mpsc::Receiver<Batch>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let result =
            write_owned(db, group.iter().flat_map(|b| &b.ops)).map_err(|e| format!("{e:#}"));
        for b in group {
            let _ = b.done.send(result.clone());
        }
    }
}

fn write_owned<'a>(db: &Database, ops: impl Iterator<Item = &'a OwnedOp>) -> Result<()> {
    let tx = db.begin_write()?;
    {
        let mut networks = tx.open_table(NETWORKS)?;
        let mut containers = tx.open_table(CONTAINERS)?;
        for op in ops {
            let table = match op.table {
                Table::Networks => &mut networks,
                Table::Containers => &mut containers,
            };
            match &op.value {
                Some(v) => {
                    table.insert(op.key.as_str(), v.as_slice())?;
                }
                None => {
                    table.remove(op.key.as_str())?;
                }
            }
        }
    }
    tx.commit().context("failed to commit to the store")?;
    Ok(())
}

impl StoreOp<'_> {
    fn encode(&self) -> Result<OwnedOp> {
        let (table, key, value) = match self {
            StoreOp::PutNetwork(n) => (Table::Networks, n.id.clone(), Some(encode(n)?)),
            StoreOp::DeleteNetwork(id) => (Table::Networks, id.to_string(), None),
            StoreOp::PutContainer(c) => (Table::Containers, c.id.clone(), Some(encode(c)?)),
            StoreOp::DeleteContainer(id) => (Table::Containers, id.to_string(), None),
        };
        Ok(OwnedOp { table, key, value })
    }
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("netd.redb");
        let db = Database::create(&path)
            .with_context(|| format!("failed to open store {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(NETWORKS)?;
        tx.open_table(CONTAINERS)?;
        tx.open_table(META)?;
        tx.open_table(CLUSTER)?;
        tx.commit()?;
        let db = Arc::new(db);
        let (committer, queue) = std::sync::mpsc::channel();
        let for_thread = db.clone();
        let thread = std::thread::Builder::new()
            .name("netd-store".into())
            .spawn(move || group_commit(&for_thread, &queue))
            .context("failed to start the store's commit thread")?;
        Ok(Self {
            db,
            committer: Some(committer),
            thread: Some(thread),
        })
    }

    /// This host's RFC 4193 prefix (fd00::/8 and a random 40-bit global
    /// id, a /48) that IPv6 subnets are taken from: chosen and stored on
    /// first use, the same ever after.
    pub fn ula_prefix(&self) -> Result<ipnet::Ipv6Net> {
        let tx = self.db.begin_write()?;
        let prefix = {
            let mut meta = tx.open_table(META)?;
            let stored = meta
                .get(META_ULA)?
                .map(|v| serde_json::from_slice::<ipnet::Ipv6Net>(v.value()));
            match stored {
                Some(p) => p.context("corrupt stored ULA prefix")?,
                None => {
                    let p = crate::ipam6::ula_prefix(rand::random());
                    meta.insert(META_ULA, encode(&p)?.as_slice())?;
                    p
                }
            }
        };
        tx.commit().context("failed to commit to the store")?;
        Ok(prefix)
    }

    pub fn networks(&self) -> Result<Vec<Network>> {
        self.load_all(NETWORKS)
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        self.load_all(CONTAINERS)
    }

    fn load_all<T: DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let item = serde_json::from_slice(value.value())
                .with_context(|| format!("corrupt stored object {}", key.value()))?;
            out.push(item);
        }
        Ok(out)
    }

    /// The saved cluster view, if any.
    pub fn cluster_view(&self) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CLUSTER)?;
        Ok(table.get(CLUSTER_VIEW)?.map(|v| v.value().to_vec()))
    }

    /// Replaces the saved cluster view.
    pub fn put_cluster_view(&self, bytes: &[u8]) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(CLUSTER)?.insert(CLUSTER_VIEW, bytes)?;
        tx.commit().context("failed to commit to the store")?;
        Ok(())
    }

    /// Applies all `ops` durably, or none of them, like [`Self::apply`],
    /// in a transaction shared with the other calls queued meanwhile; the
    /// caller waits without holding a thread.
    pub async fn apply_grouped(&self, ops: &[StoreOp<'_>]) -> Result<()> {
        let ops = ops
            .iter()
            .map(StoreOp::encode)
            .collect::<Result<Vec<_>>>()?;
        let (done, answer) = tokio::sync::oneshot::channel();
        self.committer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the store is closed"))?
            .send(Batch { ops, done })
            .map_err(|_| anyhow::anyhow!("the store's commit thread is gone"))?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!(e)),
            Err(_) => Err(anyhow::anyhow!("the store's commit thread is gone")),
        }
    }

    /// Applies all `ops` in one durable transaction, or none of them.
    pub fn apply(&self, ops: &[StoreOp<'_>]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut networks = tx.open_table(NETWORKS)?;
            let mut containers = tx.open_table(CONTAINERS)?;
            for op in ops {
                match op {
                    StoreOp::PutNetwork(n) => {
                        networks.insert(n.id.as_str(), encode(n)?.as_slice())?;
                    }
                    StoreOp::DeleteNetwork(id) => {
                        networks.remove(*id)?;
                    }
                    StoreOp::PutContainer(c) => {
                        containers.insert(c.id.as_str(), encode(c)?.as_slice())?;
                    }
                    StoreOp::DeleteContainer(id) => {
                        containers.remove(*id)?;
                    }
                }
            }
        }
        tx.commit().context("failed to commit to the store")?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when dropped.
    struct TmpDir(std::path::PathBuf);

    impl TmpDir {
        fn new() -> TmpDir {
            let d = std::env::temp_dir().join(format!(
                "netd-store-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&d).unwrap();
            TmpDir(d)
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// State written before IPv6 existed (no `ipv6`, no `ip6` keys) loads
    /// as IPv4-only networks and endpoints, and stays loadable once saved.
    #[test]
    fn state_from_before_ipv6_loads() {
        let dir = TmpDir::new();
        let store = Store::open(&dir.0).unwrap();
        let net = r#"{"id":"n1","name":"a","datapath_id":1,"bridge":"br-n1",
            "subnet":"10.1.0.0/24","gateway":"10.1.0.1","ip_range":null,"internal":false,
            "icc":true,"masquerade":true,"mtu":1500,"labels":{},"options":{},
            "created":"2026-01-01T00:00:00Z"}"#;
        let ctr = r#"{"id":"c1","name":"x","netns":"/run/netns/x","mode":"bridge",
            "endpoints":[{"network_id":"n1","ip":"10.1.0.2","ifname":"eth0",
            "host_ifname":"nd00000000000","aliases":[]}],"created":"2026-01-01T00:00:00Z"}"#;
        let tx = store.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(NETWORKS).unwrap();
            t.insert("n1", net.as_bytes()).unwrap();
            let mut t = tx.open_table(CONTAINERS).unwrap();
            t.insert("c1", ctr.as_bytes()).unwrap();
        }
        tx.commit().unwrap();
        let nets = store.networks().unwrap();
        assert_eq!(nets[0].ipv6, None);
        let ctrs = store.containers().unwrap();
        assert_eq!(ctrs[0].endpoints[0].ip6, None);
        store.apply(&[StoreOp::PutNetwork(&nets[0])]).unwrap();
        assert_eq!(store.networks().unwrap(), nets);
    }

    /// Concurrent grouped commits all land, each answered after its
    /// transaction, and a store opened afresh (as after a crash: nothing
    /// but the file) has every one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_commits_all_land_and_survive_a_reopen() {
        let dir = TmpDir::new();
        let store = Arc::new(Store::open(&dir.0).unwrap());
        let ctr = |i: usize| -> Container {
            serde_json::from_str(&format!(
                r#"{{"id":"c{i}","name":"x{i}","netns":"/run/netns/x","mode":"bridge",
                "endpoints":[],"created":"2026-01-01T00:00:00Z"}}"#
            ))
            .unwrap()
        };
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let c = ctr(i);
                    store.apply_grouped(&[StoreOp::PutContainer(&c)]).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        store
            .apply_grouped(&[StoreOp::DeleteContainer("c7")])
            .await
            .unwrap();
        drop(store);
        let again = Store::open(&dir.0).unwrap();
        let mut ids: Vec<String> = again
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort();
        let mut want: Vec<String> = (0..40)
            .filter(|i| *i != 7)
            .map(|i| format!("c{i}"))
            .collect();
        want.sort();
        assert_eq!(ids, want);
    }

    #[test]
    fn ula_prefix_is_chosen_once() {
        let dir = TmpDir::new();
        let first = Store::open(&dir.0).unwrap().ula_prefix().unwrap();
        assert_eq!(first.prefix_len(), 48);
        assert_eq!(first.addr().octets()[0], 0xfd);
        let again = Store::open(&dir.0).unwrap().ula_prefix().unwrap();
        assert_eq!(first, again);
    }
}
