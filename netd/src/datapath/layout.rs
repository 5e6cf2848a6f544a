//! Map layout checks. A pinned map is reused by name with no type check
//! from the kernel, so before loading, the agent makes sure every pin it
//! would adopt has the key and value sizes this build expects, and that no
//! other layout version is live under the same bpffs.
use std::{mem::size_of, path::Path};

use anyhow::{bail, Context, Result};
use aya::maps::MapData;
use netd_common::*;

use super::PinLayout;

/// (map, key size, value size) of this build.
fn expected() -> [(&'static str, usize, usize); 33] {
    let ct = (size_of::<CtKey>(), size_of::<CtEntry>());
    let ct6 = (size_of::<CtKey6>(), size_of::<CtEntry6>());
    let a6 = size_of::<Addr6>();
    [
        (MAP_ENDPOINTS, size_of::<u32>(), size_of::<Endpoint>()),
        (
            MAP_ENDPOINT_BY_IP,
            size_of::<u32>(),
            size_of::<EndpointRef>(),
        ),
        (MAP_NETWORKS, size_of::<u32>() * 2, size_of::<NetworkInfo>()),
        (MAP_DROPS, size_of::<u32>(), size_of::<u64>()),
        (MAP_UPLINKS, size_of::<u32>(), size_of::<Uplink>()),
        (MAP_CT_OUT, ct.0, ct.1),
        (MAP_CT_IN, ct.0, ct.1),
        (MAP_CT_LOCAL, ct.0, ct.1),
        (
            MAP_PUBLISHED,
            size_of::<PublishKey>(),
            size_of::<PublishTarget>(),
        ),
        (MAP_HOST_ADDRS, size_of::<u32>(), size_of::<u32>()),
        (MAP_SOCK_CONFIG, size_of::<u32>(), size_of::<SockConfig>()),
        (
            MAP_SOCK_ORIGIN,
            size_of::<SockOriginKey>(),
            size_of::<PublishTarget>(),
        ),
        (MAP_FRAGMENTS, size_of::<FragKey>(), size_of::<u32>()),
        (MAP_SETTINGS, size_of::<u32>(), size_of::<Settings>()),
        (MAP_ROUTING, size_of::<u32>(), size_of::<u64>()),
        (MAP_EVENTS, 0, 0),
        (MAP_EVENT_CONFIG, size_of::<u32>(), size_of::<EventConfig>()),
        (MAP_EVENT_RATE, size_of::<u32>(), size_of::<RateState>()),
        (MAP_LAST_DROP, size_of::<u32>(), size_of::<u32>()),
        (MAP_EP_COUNTERS, size_of::<u32>(), size_of::<Counters>()),
        (MAP_NET_COUNTERS, size_of::<u32>(), size_of::<Counters>()),
        (MAP_NO_SHORTCUT, size_of::<u32>(), size_of::<u32>()),
        (
            MAP_OVERLAY_REMOTES,
            size_of::<RemoteKey>(),
            size_of::<RemoteEndpoint>(),
        ),
        (MAP_OVERLAY_VNIS, size_of::<u32>(), size_of::<OverlayNet>()),
        (
            MAP_OVERLAY_CONFIG,
            size_of::<u32>(),
            size_of::<OverlayConfig>(),
        ),
        (
            MAP_NETWORKS6,
            size_of::<u32>() + a6,
            size_of::<NetworkInfo6>(),
        ),
        (MAP_ENDPOINT6, size_of::<u32>(), size_of::<Endpoint6>()),
        (MAP_ENDPOINT6_BY_IP, a6, size_of::<EndpointRef6>()),
        (MAP_HOST_ADDRS6, a6, size_of::<u32>()),
        (MAP_UPLINKS6, size_of::<u32>(), size_of::<Uplink6>()),
        (MAP_CT6_OUT, ct6.0, ct6.1),
        (MAP_CT6_IN, ct6.0, ct6.1),
        (MAP_FRAGMENTS6, size_of::<FragKey6>(), a6),
    ]
}

/// Refuses to start on pins of another layout, with what to do instead.
pub fn check(bpffs: &Path, pins: &PinLayout) -> Result<()> {
    let ours = format!("v{MAP_LAYOUT_VERSION}");
    if let Ok(entries) = std::fs::read_dir(bpffs) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let other_version = name
                .strip_prefix('v')
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if other_version && name != ours {
                bail!(
                    "{} holds netd map layout {name}, this agent uses {ours}: stop the other \
                     netd and run its `netd reset --force`, or remove {}",
                    bpffs.display(),
                    entry.path().display()
                );
            }
        }
    }
    for (map, key, value) in expected() {
        let pin = pins.maps().join(map);
        if !pin.exists() {
            continue;
        }
        let info = MapData::from_pin(&pin)
            .and_then(|m| m.info())
            .with_context(|| format!("cannot inspect pinned map {}", pin.display()))?;
        if info.key_size() as usize != key || info.value_size() as usize != value {
            bail!(
                "pinned map {} has key/value sizes {}/{}, this agent expects {key}/{value}: \
                 the layout changed without a version bump; run `netd reset --force`",
                pin.display(),
                info.key_size(),
                info.value_size()
            );
        }
    }
    Ok(())
}
