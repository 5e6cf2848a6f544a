//! `netd monitor`: the hub between the datapath's `EVENTS` ring buffer and
//! the monitors connected to the API. The event switch (`EVENT_CONFIG`) is
//! the union of what connected monitors asked for: off (zero, so the
//! programs build nothing) when none is connected, and switched off again
//! the moment the last one goes away.
mod event;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use anyhow::Result;
use aya::maps::{Array, MapData, RingBuf};
use netd_common::{Event, EventConfig, DEFAULT_EVENT_RATE};
use tokio::{io::unix::AsyncFd, sync::broadcast};
use tracing::warn;

pub use event::{Decoded, Names, TYPES};

use crate::datapath::EventMaps;

/// Decoded events kept for slow monitors before they are told they lost some.
const BACKLOG: usize = 4096;

pub struct Hub {
    /// `EVENT_CONFIG`; `None` for a hub without a datapath (unit tests).
    config: Option<Mutex<Array<MapData, EventConfig>>>,
    /// Subscription id -> the `EVENT_*` bits it wants.
    subs: Mutex<BTreeMap<u64, u32>>,
    next_id: AtomicU64,
    tx: broadcast::Sender<Arc<Decoded>>,
    names: RwLock<Arc<Names>>,
}

/// One connected monitor: dropping it (the client went away) releases its
/// event types.
pub struct Subscription {
    id: u64,
    hub: Arc<Hub>,
    pub events: broadcast::Receiver<Arc<Decoded>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.hub.apply();
    }
}

impl Hub {
    /// Takes the maps, switches events off (a previous agent may have died
    /// with monitors connected) and starts reading the ring buffer.
    pub fn start(maps: EventMaps) -> Result<Arc<Hub>> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let hub = Arc::new(Hub {
            config: Some(Mutex::new(maps.config)),
            subs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            tx,
            names: RwLock::new(Arc::new(Names::default())),
        });
        hub.apply();
        // SAFETY: the ring buffer owns its file descriptor, which stays open
        // as long as the AsyncFd holding it.
        let ring = unsafe { AsyncFd::register(maps.ring) }
            .map_err(|e| anyhow::anyhow!("cannot poll the EVENTS ring buffer: {e}"))?;
        tokio::spawn(read(ring, hub.clone()));
        Ok(hub)
    }

    /// A hub with no ring buffer behind it: its monitors get no events
    /// (an agent on the in-memory kernel of unit tests).
    #[cfg(test)]
    pub fn detached() -> Arc<Hub> {
        let (tx, _) = broadcast::channel(BACKLOG);
        Arc::new(Hub {
            config: None,
            subs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            tx,
            names: RwLock::new(Arc::new(Names::default())),
        })
    }

    /// A monitor for the `EVENT_*` bits of `types`.
    pub fn subscribe(self: &Arc<Self>, types: u32) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let events = self.tx.subscribe();
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, types);
        self.apply();
        Subscription {
            id,
            hub: self.clone(),
            events,
        }
    }

    /// Writes the union of the monitors' types to `EVENT_CONFIG`.
    fn apply(&self) {
        let types = self
            .subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .fold(0, |acc, t| acc | t);
        let value = EventConfig {
            types,
            rate: DEFAULT_EVENT_RATE,
        };
        let Some(config) = &self.config else {
            return;
        };
        let mut config = config.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = config.set(0, value, 0) {
            warn!(error = %e, "cannot write the event switch");
        }
    }

    pub fn set_names(&self, names: Names) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
    }

    /// Connected monitors, and the event types the datapath builds now
    /// (read back from the map).
    pub fn state(&self) -> (usize, u32) {
        let monitors = self.subs.lock().unwrap_or_else(|e| e.into_inner()).len();
        let types = self.config.as_ref().map_or(0, |config| {
            let config = config.lock().unwrap_or_else(|e| e.into_inner());
            config.get(&0, 0).map(|c| c.types).unwrap_or(0)
        });
        (monitors, types)
    }
}

/// Names of the `EVENT_*` bits in `bits`.
pub fn type_names(bits: u32) -> Vec<&'static str> {
    TYPES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect()
}

/// Drains the ring buffer whenever the kernel says it has records.
async fn read(mut ring: AsyncFd<RingBuf<MapData>>, hub: Arc<Hub>) {
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "event ring buffer failed; monitors get nothing more");
                return;
            }
        };
        let names = hub.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let rb = guard.get_inner_mut();
        while let Some(item) = rb.next() {
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the record holds an `Event` (checked length), written
            // by the programs; read unaligned.
            let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) };
            // No monitor is an error only for the sender: nothing to do.
            let _ = hub.tx.send(Arc::new(Decoded::new(&e, &names)));
        }
        guard.clear_ready();
    }
}
