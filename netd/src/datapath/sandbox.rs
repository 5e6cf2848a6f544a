//! A private copy of the datapath for `netd explain`.
//!
//! The embedded object is loaded a second time with maps of its own (pinned
//! in a scratch directory that is removed right after loading, so they live
//! only as long as this value), and the live maps' contents are copied in.
//! BPF_PROG_TEST_RUN then runs the very programs the veths and uplinks run,
//! on the state they see, but every write they make — conntrack entries,
//! NAT ports, counters — lands in the copies: live flows are never touched,
//! and the copy's drop counters tell which reason a drop had.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{HashMap, LpmTrie},
    programs::{TestRun, TestRunOptions},
    Pod,
};
use netd_common::*;

use super::{ebpf_object, Datapath};

/// One program run on one frame.
#[derive(Debug)]
pub struct Run {
    /// The program's return code (TC action or XDP action).
    pub code: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Drop reasons the run counted.
    pub drops: Vec<&'static str>,
    /// Host routing shortcuts the run took (`Shortcut::name`): how a
    /// redirect was delivered.
    pub shortcuts: Vec<&'static str>,
}

/// Byte offset of `ifindex` in `struct __sk_buff`: a test run's skb gets
/// that device, as on the real hook (the programs key maps on it).
const SKB_IFINDEX_OFFSET: usize = 40;

pub struct Sandbox {
    dp: Datapath,
}

impl Sandbox {
    /// Loads the programs with fresh maps; `ct_size` must hold the live
    /// conntrack maps' entries.
    pub fn load(bpffs: &Path, ct_size: u32) -> Result<Self> {
        let scratch = bpffs.join(format!("explain-{:08x}", rand::random::<u32>()));
        let loaded = Datapath::load_object(ebpf_object(), &scratch, ct_size);
        // The maps and programs live on through their file descriptors.
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(Self {
            dp: loaded.context("failed to load a private copy of the programs for explain")?,
        })
    }

    /// Copies every map the packet programs read from `live`.
    pub fn copy_from(&mut self, live: &mut Datapath) -> Result<()> {
        copy_hash::<u32, Endpoint>(live, &mut self.dp, MAP_ENDPOINTS)?;
        copy_hash::<u32, EndpointRef>(live, &mut self.dp, MAP_ENDPOINT_BY_IP)?;
        copy_hash::<u32, Uplink>(live, &mut self.dp, MAP_UPLINKS)?;
        copy_hash::<PublishKey, PublishTarget>(live, &mut self.dp, MAP_PUBLISHED)?;
        copy_hash::<u32, u32>(live, &mut self.dp, MAP_HOST_ADDRS)?;
        copy_hash::<CtKey, CtEntry>(live, &mut self.dp, MAP_CT_OUT)?;
        copy_hash::<CtKey, CtEntry>(live, &mut self.dp, MAP_CT_IN)?;
        copy_hash::<CtKey, CtEntry>(live, &mut self.dp, MAP_CT_LOCAL)?;
        copy_hash::<FragKey, u32>(live, &mut self.dp, MAP_FRAGMENTS)?;
        copy_hash::<RemoteKey, RemoteEndpoint>(live, &mut self.dp, MAP_OVERLAY_REMOTES)?;
        copy_hash::<u32, OverlayNet>(live, &mut self.dp, MAP_OVERLAY_VNIS)?;
        self.dp.set_overlay_config(live.overlay_config()?)?;
        self.dp.set_host_routing(live.host_routing()?)?;
        let entries: Vec<_> = {
            let from: LpmTrie<_, u32, NetworkInfo> =
                LpmTrie::try_from(live.map_mut(MAP_NETWORKS)?)?;
            from.iter().filter_map(Result::ok).collect()
        };
        let mut to: LpmTrie<_, u32, NetworkInfo> =
            LpmTrie::try_from(self.dp.map_mut(MAP_NETWORKS)?)?;
        for (k, v) in entries {
            to.insert(&k, v, 0)
                .context("failed to copy NETWORKS for explain")?;
        }
        Ok(())
    }

    /// Runs a TC program as if on device `ifindex`.
    pub fn run_tc(&mut self, program: &str, ifindex: u32, frame: &[u8]) -> Result<Run> {
        let mut ctx = [0u8; SKB_IFINDEX_OFFSET + 4];
        ctx[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
        let before = self.dropped()?;
        let prog = self.dp.program(program)?;
        let (code, out) = test_run(prog, frame, Some(&ctx))
            .with_context(|| format!("test run of {program} failed"))?;
        self.finish(code, out, before)
    }

    /// Runs the uplink prefilter (XDP).
    pub fn run_xdp(&mut self, frame: &[u8]) -> Result<Run> {
        let before = self.dropped()?;
        let prog = self.dp.prefilter_program()?;
        let (code, out) =
            test_run(prog, frame, None).context("test run of the uplink prefilter failed")?;
        self.finish(code, out, before)
    }

    /// The copy's endpoint entry of a container address.
    pub fn endpoint_by_ip(&mut self, addr: u32) -> Result<Option<EndpointRef>> {
        let map: HashMap<_, u32, EndpointRef> =
            HashMap::try_from(self.dp.map_mut(MAP_ENDPOINT_BY_IP)?)?;
        Ok(map.get(&addr, 0).ok())
    }

    /// The copy's published target of (host address or any, port, proto).
    pub fn published(
        &mut self,
        addr: u32,
        port_be: u16,
        proto: u8,
    ) -> Result<Option<PublishTarget>> {
        let map: HashMap<_, PublishKey, PublishTarget> =
            HashMap::try_from(self.dp.map_mut(MAP_PUBLISHED)?)?;
        let key = PublishKey {
            addr,
            port: port_be,
            proto,
            _pad: 0,
        };
        Ok(map
            .get(&key, 0)
            .or_else(|_| map.get(&PublishKey { addr: 0, ..key }, 0))
            .ok())
    }

    /// Is `addr` one of the host's addresses (the copy's HOST_ADDRS)?
    pub fn is_host_addr(&mut self, addr: u32) -> Result<bool> {
        let map: HashMap<_, u32, u32> = HashMap::try_from(self.dp.map_mut(MAP_HOST_ADDRS)?)?;
        Ok(map.get(&addr, 0).is_ok())
    }

    /// Drop and shortcut counters of the copy, before a run.
    fn dropped(&self) -> Result<(Vec<u64>, Vec<u64>)> {
        let drops = self.dp.drop_counts()?.iter().map(|d| d.packets).collect();
        let shortcuts = self
            .dp
            .routing_counts()?
            .shortcuts
            .iter()
            .map(|s| s.1)
            .collect();
        Ok((drops, shortcuts))
    }

    fn finish(&self, code: u32, frame: Vec<u8>, before: (Vec<u64>, Vec<u64>)) -> Result<Run> {
        let after = self.dp.drop_counts()?;
        let drops = after
            .iter()
            .zip(before.0.iter().chain(std::iter::repeat(&0)))
            .filter(|(a, b)| a.packets > **b)
            .map(|(a, _)| a.reason)
            .collect();
        let shortcuts = self
            .dp
            .routing_counts()?
            .shortcuts
            .into_iter()
            .zip(before.1.iter().chain(std::iter::repeat(&0)))
            .filter(|((_, a), b)| a > *b)
            .map(|((name, _), _)| name)
            .collect();
        Ok(Run {
            code,
            frame,
            drops,
            shortcuts,
        })
    }
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame` (with `ctx` as the
/// program's context, e.g. a `struct __sk_buff` prefix): the return code
/// and the frame the program left. Explain runs through it, and so do the
/// test-run tests.
pub fn test_run<P>(prog: &P, frame: &[u8], ctx: Option<&[u8]>) -> Result<(u32, Vec<u8>)>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::programs::TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: ctx,
        ..TestRunOptions::new()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

fn copy_hash<K: Pod, V: Pod>(from: &mut Datapath, to: &mut Datapath, name: &str) -> Result<()> {
    let entries: Vec<(K, V)> = {
        let map: HashMap<_, K, V> = HashMap::try_from(from.map_mut(name)?)?;
        map.iter().filter_map(Result::ok).collect()
    };
    let mut copy: HashMap<_, K, V> = HashMap::try_from(to.map_mut(name)?)?;
    for (k, v) in entries {
        copy.insert(k, v, 0)
            .map_err(|e| anyhow!("failed to copy {name} for explain: {e}"))?;
    }
    Ok(())
}

impl Datapath {
    /// Capacity of the live conntrack maps (a sandbox must hold them).
    pub fn ct_capacity(&mut self) -> Result<u32> {
        self.ct_stats().map(|s| s.capacity.max(1))
    }
}
