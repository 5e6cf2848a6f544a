//! Attaching the endpoint programs to a new veth outside the agent's
//! state lock. Each TCX attach waits for an RCU grace period under RTNL
//! (10-20 ms here), so it runs on a blocking thread with program handles
//! of its own (opened from the pins), never with the state held: the veth
//! pool attaches ahead of time, and an add that finds the pool empty
//! attaches without keeping anyone else waiting but the kernel.
use std::sync::Mutex;

use anyhow::{Context, Result};
use aya::programs::SchedClassifier;

use super::loader::{attach_pinned, PinLayout, ENDPOINT_PROGRAMS};

pub struct EndpointAttacher {
    progs: Mutex<Vec<(&'static str, aya::programs::TcAttachType, SchedClassifier)>>,
    pins: PinLayout,
}

impl EndpointAttacher {
    /// Opens the pinned endpoint programs (pinned by `Datapath::load`).
    pub fn open(pins: &PinLayout) -> Result<Self> {
        let mut progs = Vec::new();
        for (name, attach_type) in ENDPOINT_PROGRAMS {
            let path = pins.progs().join(name);
            let prog = SchedClassifier::from_pin(&path)
                .with_context(|| format!("failed to open the pinned program {}", path.display()))?;
            progs.push((name, attach_type, prog));
        }
        Ok(Self {
            progs: Mutex::new(progs),
            pins: pins.clone(),
        })
    }

    /// Attaches both endpoint programs to `host_ifname` and pins the links
    /// (`links/<host_ifname>_<program>`). Blocks for the grace periods.
    /// On failure nothing stays pinned.
    pub fn attach(&self, host_ifname: &str) -> Result<()> {
        let mut progs = self.progs.lock().unwrap_or_else(|e| e.into_inner());
        let mut pinned = Vec::new();
        for (name, attach_type, prog) in progs.iter_mut() {
            let pin = self.pins.link(host_ifname, name);
            let step = attach_pinned(prog, host_ifname, *attach_type, &pin)
                .with_context(|| format!("failed to attach {name} to {host_ifname}"));
            if let Err(e) = step {
                for p in pinned {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            pinned.push(pin);
        }
        Ok(())
    }

    /// Are both links of `host_ifname` pinned?
    pub fn attached(&self, host_ifname: &str) -> bool {
        ENDPOINT_PROGRAMS
            .iter()
            .all(|(name, _)| self.pins.link(host_ifname, name).exists())
    }

    /// Moves both pins of `from` to the name `to` (the veth is renamed
    /// with them; the links themselves follow the ifindex).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        for (name, _) in ENDPOINT_PROGRAMS {
            let (a, b) = (self.pins.link(from, name), self.pins.link(to, name));
            std::fs::rename(&a, &b)
                .with_context(|| format!("failed to rename {} to {}", a.display(), b.display()))?;
        }
        Ok(())
    }

    /// Unpins both links (detaching the programs if the veth still exists).
    pub fn detach(&self, host_ifname: &str) {
        for (name, _) in ENDPOINT_PROGRAMS {
            let _ = std::fs::remove_file(self.pins.link(host_ifname, name));
        }
    }
}
