//! How concurrent requests share the agent.
//!
//! The state (`Agent`) sits behind one mutex that is only ever held for
//! short, non-blocking steps: reads (`network ls`, `inspect`, `status`,
//! `port`) take it and answer at once. The hot writes (container add and
//! remove, connect, disconnect, network create and remove) run in three
//! phases: under the mutex they check the request and *claim* what they
//! will use (name, addresses, ports, subnet; see `claims`), then they do
//! their netlink work without it, then they take it again to commit (or
//! to release their claims after undoing the kernel work). Claims make
//! concurrent requests see each other, so no address, subnet, name or
//! port is ever handed out twice.
//!
//! Everything else (reconcile, Docker's driver calls, reset, explain,
//! check) is *exclusive*: it waits until no phased operation is in flight
//! and keeps new ones out while it runs (the `gate`), so it still sees a
//! state that nobody changes under it.
use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Agent;

pub struct SharedAgent {
    state: Mutex<Agent>,
    /// Phased operations hold it shared, exclusive ones uniquely.
    gate: RwLock<()>,
    /// Per-container serialisation of phased operations (connect,
    /// disconnect, remove of one container run one after the other).
    keys: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Mutex<()>>>>,
}

/// The state, with every phased operation kept out.
pub struct Exclusive<'a> {
    agent: MutexGuard<'a, Agent>,
    _gate: RwLockWriteGuard<'a, ()>,
}

impl Deref for Exclusive<'_> {
    type Target = Agent;
    fn deref(&self) -> &Agent {
        &self.agent
    }
}

impl DerefMut for Exclusive<'_> {
    fn deref_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }
}

/// Held for the whole of a phased operation.
pub struct Phased<'a> {
    _gate: RwLockReadGuard<'a, ()>,
}

impl SharedAgent {
    pub fn new(agent: Agent) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(agent),
            gate: RwLock::new(()),
            keys: Default::default(),
        })
    }

    /// Exclusive access: waits for phased operations in flight to end.
    pub async fn lock(&self) -> Exclusive<'_> {
        let gate = self.gate.write().await;
        Exclusive {
            agent: self.state.lock().await,
            _gate: gate,
        }
    }

    /// The state for one short step (a read, or a phase of an operation).
    /// Never held across netlink calls.
    pub async fn state(&self) -> MutexGuard<'_, Agent> {
        self.state.lock().await
    }

    /// Enters a phased operation.
    pub(super) async fn phased(&self) -> Phased<'_> {
        Phased {
            _gate: self.gate.read().await,
        }
    }

    /// Enters a phased operation on container `key`: its id, once it is
    /// its turn (see [`Self::key_lock`]).
    pub(super) async fn phased_on_container(
        &self,
        key: &str,
    ) -> crate::error::AgentResult<(Phased<'_>, tokio::sync::OwnedMutexGuard<()>, String)> {
        let op = self.phased().await;
        let id = self.state().await.find_container(key)?.id.clone();
        let turn = self.key_lock(&id).await;
        Ok((op, turn, id))
    }

    /// Serialises phased operations on one key (a container id).
    pub(super) async fn key_lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.retain(|_, w| w.strong_count() > 0);
            match keys.get(key).and_then(std::sync::Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(Mutex::new(()));
                    keys.insert(key.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}
