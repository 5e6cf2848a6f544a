//! Spare veth pairs, made ahead of time with the endpoint programs
//! attached, so that `container add` does not wait for the two RCU grace
//! periods of the TCX attaches (10-20 ms each, under RTNL).
//!
//! A spare is a veth pair in the agent's netns, both ends down and on no
//! bridge: the host end `ns` + 11 hex, marked `netd:pool`, with
//! `from_container` and `to_container` attached and the links pinned under
//! its name; the peer `np` + 11 hex. An add takes one and, in two messages,
//! moves the peer into the container netns (named, MAC and MTU set) and
//! renames the host end to the endpoint's `nd…` name on the bridge (MTU,
//! owner mark; the pins are renamed with it); the host end comes up only
//! after the endpoint is in the maps, as for a fresh veth. With no spare
//! left, the add makes its veth as before.
//!
//! The filler works only after 50 ms with no phased operation in flight
//! and no add: its grace periods hold RTNL, which every add needs too (an
//! add that waits for a spare's attach takes longer than one that makes
//! its own veth). So a burst after a quiet moment is served from the pool
//! and a sustained stream of adds makes its own veths. Spares never outlive
//! the agent's knowledge of them: on shutdown and reset they are deleted;
//! a crashed agent's spares are orphans to the next one (unknown to its
//! pool, marked `netd:pool`) and are deleted by the start-up reconcile.
use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tracing::{debug, warn};

use crate::{
    kernel::{EndpointPrograms, LinkDriver},
    model::new_id,
};

/// Owner mark of spare veths (`netd:pool`).
pub(super) const SPARE_OWNER: &str = "pool";
/// Prefix of a spare's host end.
pub(super) const SPARE_PREFIX: &str = "ns";
/// Prefix of a spare's peer while it waits in the agent's netns.
pub(super) const SPARE_PEER_PREFIX: &str = "np";
/// How long no request may be in flight before a spare is made.
const QUIET: Duration = Duration::from_millis(50);

/// Spares kept ready unless `--veth-pool` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// One spare veth pair.
#[derive(Clone, Debug)]
pub struct Spare {
    pub host: String,
    pub host_index: u32,
    pub peer_index: u32,
}

#[derive(Default)]
struct Inner {
    ready: VecDeque<Spare>,
    /// Host names of spares being made (known before the link exists).
    making: HashSet<String>,
    stopped: bool,
    /// Takes so far (hits and misses): the filler's sign of activity.
    taken: u64,
}

pub struct VethPool {
    target: usize,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
}

impl VethPool {
    pub fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            target,
            inner: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ready spare, if any (the filler is woken to replace it).
    pub fn take(&self) -> Option<Spare> {
        let spare = {
            let mut inner = self.inner();
            inner.taken += 1;
            inner.ready.pop_front()
        };
        self.wake.notify_one();
        spare
    }

    /// Host names of every spare, ready or being made: the reconcile
    /// leaves them (and their pins) alone.
    pub fn names(&self) -> HashSet<String> {
        let inner = self.inner();
        inner
            .ready
            .iter()
            .map(|s| s.host.clone())
            .chain(inner.making.iter().cloned())
            .collect()
    }

    pub fn ready(&self) -> usize {
        self.inner().ready.len()
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// Stops the filler and hands out every ready spare (to be deleted),
    /// once the one being made, if any, is done (at most `wait`).
    pub async fn stop(&self, wait: Duration) -> Vec<Spare> {
        self.inner().stopped = true;
        self.wake.notify_one();
        let until = tokio::time::Instant::now() + wait;
        while !self.inner().making.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.inner().ready.drain(..).collect()
    }

    /// Keeps the pool at its target while the agent runs. `busy` counts
    /// phased operations in flight: a spare is only started when it is 0.
    pub async fn fill(
        self: Arc<Self>,
        links: Arc<dyn LinkDriver>,
        attacher: Arc<dyn EndpointPrograms>,
        busy: Arc<AtomicUsize>,
    ) {
        if self.target == 0 {
            return;
        }
        loop {
            let wanted = {
                let inner = self.inner();
                if inner.stopped {
                    return;
                }
                inner.ready.len() + inner.making.len() < self.target
            };
            if !wanted {
                self.wake.notified().await;
                continue;
            }
            // Only after a quiet moment: a request that comes while a
            // spare's programs are being attached waits for RTNL.
            if busy.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            // No add took a spare within QUIET either (an add that came and
            // went while we slept leaves `busy` at 0 again): back-to-back
            // adds keep the filler off RTNL; it catches up when they stop.
            let taken = self.inner().taken;
            tokio::time::sleep(QUIET).await;
            if busy.load(Ordering::SeqCst) > 0 || self.inner().taken != taken {
                continue;
            }
            let host = format!("{SPARE_PREFIX}{}", &new_id()[..11]);
            let peer = format!("{SPARE_PEER_PREFIX}{}", &new_id()[..11]);
            {
                let mut inner = self.inner();
                if inner.stopped {
                    return;
                }
                inner.making.insert(host.clone());
            }
            let made = make_spare(links.as_ref(), &attacher, &host, &peer).await;
            // A failed one is cleaned up while still listed as being made;
            // a made one is listed ready even after a stop, so that the
            // stop (which waits for the one being made) deletes it.
            let failed = match made {
                Ok(spare) => {
                    debug!(veth = %spare.host, "spare veth ready");
                    let mut inner = self.inner();
                    inner.making.remove(&host);
                    inner.ready.push_back(spare);
                    false
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "failed to make a spare veth; retrying in 1 s");
                    let _ = links.delete_by_name(&host).await;
                    attacher.detach(&host);
                    self.inner().making.remove(&host);
                    true
                }
            };
            if self.inner().stopped {
                return;
            }
            if failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn make_spare(
    links: &dyn LinkDriver,
    attacher: &Arc<dyn EndpointPrograms>,
    host: &str,
    peer: &str,
) -> Result<Spare> {
    let (host_index, peer_index) = links.create_spare_veth(host, peer, SPARE_OWNER).await?;
    let a = attacher.clone();
    let h = host.to_string();
    tokio::task::spawn_blocking(move || a.attach(&h))
        .await
        .context("attach thread failed")??;
    Ok(Spare {
        host: host.to_string(),
        host_index,
        peer_index,
    })
}

/// Deletes a spare: its veth pair and its pinned links.
pub(super) async fn remove_spare(
    links: &dyn LinkDriver,
    attacher: &dyn EndpointPrograms,
    spare: &Spare,
) {
    if let Err(e) = links.delete(spare.host_index).await {
        warn!(veth = %spare.host, error = %format!("{e:#}"), "failed to delete a spare veth");
    }
    attacher.detach(&spare.host);
}

/// `ns` and 11 hex digits: the host end of a spare.
pub(super) fn is_spare_name(name: &str) -> bool {
    name.len() == 13
        && name.starts_with(SPARE_PREFIX)
        && name[SPARE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

impl super::SharedAgent {
    /// Keeps the pool full while the agent runs (see [`VethPool::fill`]).
    pub async fn fill_pool(self: Arc<Self>) {
        let (pool, links, attacher) = {
            let s = self.state().await;
            (s.pool.clone(), s.links.clone(), s.attacher.clone())
        };
        pool.fill(links, attacher, self.in_flight()).await;
    }

    /// Stops the filler and deletes every spare (at shutdown).
    pub async fn remove_spares(&self) {
        self.lock().await.remove_spares().await;
    }
}

impl super::Agent {
    /// Stops the filler and deletes every spare.
    pub(super) async fn remove_spares(&mut self) {
        for spare in self.pool.stop(Duration::from_secs(2)).await {
            remove_spare(self.links.as_ref(), self.attacher.as_ref(), &spare).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare(host: &str, index: u32) -> Spare {
        Spare {
            host: host.into(),
            host_index: index,
            peer_index: index + 1,
        }
    }

    #[test]
    fn spares_are_handed_out_once_and_known_until_then() {
        let pool = VethPool::new(4);
        {
            let mut inner = pool.inner();
            inner.ready.push_back(spare("ns00000000001", 10));
            inner.ready.push_back(spare("ns00000000002", 20));
            inner.making.insert("ns00000000003".into());
        }
        assert_eq!(pool.names().len(), 3);
        let a = pool.take().unwrap();
        assert_eq!(a.host, "ns00000000001");
        assert!(
            !pool.names().contains(&a.host),
            "a taken spare is the taker's"
        );
        assert_eq!(pool.ready(), 1);
        assert_eq!(pool.target(), 4);
        assert_eq!(pool.take().unwrap().host_index, 20);
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn a_stop_waits_for_the_spare_being_made_and_hands_out_the_rest() {
        let pool = VethPool::new(2);
        pool.inner().making.insert("ns00000000009".into());
        let p = pool.clone();
        let finisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut inner = p.inner();
            inner.making.remove("ns00000000009");
            inner.ready.push_back(spare("ns00000000009", 9));
        });
        let left = pool.stop(Duration::from_secs(5)).await;
        finisher.await.unwrap();
        assert_eq!(left.len(), 1, "the one being made is deleted too");
        assert!(pool.inner().stopped);
        assert!(pool.names().is_empty());
    }

    #[test]
    fn spare_names() {
        assert!(is_spare_name("ns0123456789a"));
        assert!(!is_spare_name("nd0123456789a"));
        assert!(!is_spare_name("ns0123456789"));
        assert!(!is_spare_name("ns0123456789g"));
        assert!(super::super::is_own_veth_name("np0123456789a"));
        assert!(super::super::is_own_veth_name("nd0123456789a"));
        assert!(!super::super::is_own_veth_name("eth0"));
    }
}
