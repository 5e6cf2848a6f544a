//! Named network namespaces that delete themselves, and running code in one.

use std::fs::File;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::sched::{setns, CloneFlags};

use crate::cmd::{run_ok, run_timeout};

/// A named netns (`/run/netns/NAME`), deleted on drop. Deleting it destroys
/// every interface in it, including the peer ends of veths.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        run_ok("ip", &["netns", "add", name]).with_context(|| format!("creating netns {name}"))?;
        Ok(Netns {
            name: name.to_string(),
        })
    }

    /// Names the netns of process `pid` (`ip netns attach`); dropping it
    /// removes only the name.
    pub fn attach(name: &str, pid: u32) -> anyhow::Result<Netns> {
        run_ok("ip", &["netns", "attach", name, &pid.to_string()])
            .with_context(|| format!("naming the netns of pid {pid} {name}"))?;
        Ok(Netns {
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        path_of(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for _ in 0..3 {
            let out = run_timeout("ip", &["netns", "del", &self.name], Duration::from_secs(10));
            if out.success() || !path_of(&self.name).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("warning: could not delete netns {}", self.name);
    }
}

/// `/run/netns/NAME`.
pub fn path_of(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Moves the calling thread into netns `name`. Only use on threads made for
/// it ([`spawn_in`]): the test thread itself must stay where it is.
pub fn enter(name: &str) -> anyhow::Result<()> {
    let f = File::open(path_of(name)).with_context(|| format!("opening netns {name}"))?;
    setns(&f, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {name}"))?;
    Ok(())
}

/// Runs `f` on a new thread inside netns `name`.
pub fn spawn_in<T, F>(name: &str, f: F) -> JoinHandle<anyhow::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let name = name.to_string();
    std::thread::spawn(move || {
        enter(&name)?;
        f()
    })
}

/// Joins a probe thread, turning a panic into an error.
pub fn join<T>(h: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("probe thread panicked")))
}
