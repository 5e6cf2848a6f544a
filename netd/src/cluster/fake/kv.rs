//! The fake's storage: keys with etcd's revisions (one per transaction,
//! create and mod revision per key), leases that take their keys with
//! them, and watches fed from the history, so that a watch from a past
//! revision gets what it missed, as etcd's does.
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tokio::sync::mpsc;

use crate::cluster::store::Event;

/// One key's value and revisions.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// 0: on no lease.
    pub lease: i64,
}

/// A write of a transaction.
pub enum Op {
    /// Key, value, lease (0: none).
    Put(String, Vec<u8>, i64),
    Delete(String),
}

/// A batch of events and the revision it brings a watcher to.
pub type Batch = (Vec<Event>, i64);

struct Watcher {
    /// The client (host) that opened it.
    client: String,
    tx: mpsc::UnboundedSender<Batch>,
}

#[derive(Default)]
pub struct Kv {
    revision: i64,
    entries: BTreeMap<String, Entry>,
    /// Live leases and the client that was granted each.
    leases: BTreeMap<i64, String>,
    next_lease: i64,
    history: Vec<(i64, Vec<Event>)>,
    watchers: Vec<Watcher>,
}

impl Kv {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// 0 when the key is absent (etcd's compare on `create_revision`).
    pub fn create_revision(&self, key: &str) -> i64 {
        self.get(key).map_or(0, |e| e.create_revision)
    }

    pub fn mod_revision(&self, key: &str) -> i64 {
        self.get(key).map_or(0, |e| e.mod_revision)
    }

    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(|e| e.value.as_slice())
    }

    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.as_str(), e))
    }

    /// Applies `ops` at one new revision (none when nothing changes) and
    /// tells the watchers. A put on a lease that is not live fails, and
    /// then nothing is applied (etcd: "requested lease not found").
    pub fn commit(&mut self, ops: Vec<Op>) -> Result<()> {
        for op in &ops {
            if let Op::Put(_, _, lease) = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    bail!("etcdserver: requested lease not found");
                }
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put(key, value, lease) => {
                    let create_revision = self.create_revision(&key);
                    events.push(Event {
                        put: true,
                        key: key.clone(),
                        value: value.clone(),
                    });
                    self.entries.insert(
                        key,
                        Entry {
                            value,
                            create_revision: if create_revision == 0 {
                                revision
                            } else {
                                create_revision
                            },
                            mod_revision: revision,
                            lease,
                        },
                    );
                }
                Op::Delete(key) => {
                    if self.entries.remove(&key).is_some() {
                        events.push(Event {
                            put: false,
                            key,
                            value: Vec::new(),
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        self.revision = revision;
        self.history.push((revision, events.clone()));
        self.watchers
            .retain(|w| w.tx.send((events.clone(), revision)).is_ok());
        Ok(())
    }

    /// A new lease, held by `client`.
    pub fn grant(&mut self, client: &str) -> i64 {
        self.next_lease += 1;
        self.leases.insert(self.next_lease, client.to_string());
        self.next_lease
    }

    pub fn lease_alive(&self, lease: i64) -> bool {
        self.leases.contains_key(&lease)
    }

    /// Ends the leases `client` was granted (not renewed for their TTL):
    /// their keys go, in one revision.
    pub fn expire_leases_of(&mut self, client: &str) {
        let ended: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, c)| *c == client)
            .map(|(l, _)| *l)
            .collect();
        self.leases.retain(|l, _| !ended.contains(l));
        let doomed: Vec<Op> = self
            .entries
            .iter()
            .filter(|(_, e)| ended.contains(&e.lease))
            .map(|(k, _)| Op::Delete(k.clone()))
            .collect();
        self.commit(doomed).expect("deletes need no lease");
    }

    /// Follows every change after revision `from` (the history first).
    pub fn watch(&mut self, client: &str, from: i64) -> mpsc::UnboundedReceiver<Batch> {
        let (tx, rx) = mpsc::unbounded_channel();
        for (revision, events) in self.history.iter().filter(|(r, _)| *r > from) {
            let _ = tx.send((events.clone(), *revision));
        }
        self.watchers.push(Watcher {
            client: client.to_string(),
            tx,
        });
        rx
    }

    pub fn drop_all_watches(&mut self) {
        self.watchers.clear();
    }

    /// Ends the watches of `client` (they report a closed watch once they
    /// have handed over what they already got).
    pub fn drop_watches(&mut self, client: &str) {
        self.watchers.retain(|w| w.client != client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, lease: i64) -> Op {
        Op::Put(key.into(), b"v".to_vec(), lease)
    }

    #[test]
    fn revisions_leases_and_history() {
        let mut kv = Kv::default();
        kv.commit(vec![put("/a", 0), put("/b", 0)]).unwrap();
        assert_eq!((kv.revision(), kv.create_revision("/a")), (1, 1));
        kv.commit(vec![put("/a", 0)]).unwrap();
        assert_eq!((kv.create_revision("/a"), kv.mod_revision("/a")), (1, 2));
        // Nothing to change: no new revision.
        kv.commit(vec![Op::Delete("/none".into())]).unwrap();
        assert_eq!(kv.revision(), 2);
        assert!(kv.commit(vec![put("/c", 99)]).is_err());
        assert!(kv.get("/c").is_none());
        let lease = kv.grant("h");
        kv.commit(vec![put("/l/1", lease), put("/l/2", lease)])
            .unwrap();
        let mut late = kv.watch("other", 2);
        kv.expire_leases_of("h");
        assert!(!kv.lease_alive(lease));
        assert_eq!(kv.prefixed("/l/").count(), 0);
        assert_eq!(kv.prefixed("/").count(), 2);
        // The watch from revision 2 gets the puts, then the expiry.
        let (puts, r3) = late.try_recv().unwrap();
        assert_eq!((puts.len(), r3), (2, 3));
        let (deletes, r4) = late.try_recv().unwrap();
        assert!(deletes.iter().all(|e| !e.put));
        assert_eq!((deletes.len(), r4), (2, 4));
        kv.drop_watches("other");
        assert!(late.try_recv().is_err());
    }
}
