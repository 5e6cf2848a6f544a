//! The embedded transactional store.
//!
//! redb: a pure-Rust, copy-on-write B-tree file with ACID transactions.
//! Every acknowledged API change is one write transaction committed with
//! immediate durability (fsync) before the API answers, so a kill -9 loses
//! nothing that was acknowledged and never leaves half a change. Values are
//! JSON so the layout can evolve with serde defaults.
use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::model::{Container, Network};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// One change inside a transaction.
pub enum StoreOp<'a> {
    PutNetwork(&'a Network),
    DeleteNetwork(&'a str),
    PutContainer(&'a Container),
    DeleteContainer(&'a str),
}

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("netd.redb");
        let db = Database::create(&path)
            .with_context(|| format!("failed to open store {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(NETWORKS)?;
        tx.open_table(CONTAINERS)?;
        tx.commit()?;
        Ok(Self { db })
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
