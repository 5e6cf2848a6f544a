//! The world beyond an uplink, as every test that needs one builds it: a
//! `world` netns behind the veth `up0` of the bed's host netns
//! ([`UPLINK`] on the host side, [`WORLD`] in the world, the host's
//! default route via the world), made before the agent starts so that the
//! agent finds it as its uplink.
use std::{net::Ipv4Addr, time::Duration};

use crate::{wait::wait_for, Bed};

/// The world's address (`w0` in the world netns).
pub const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The host's address on the uplink (`up0`), what masquerade uses.
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The uplink's name in the host netns.
pub const UPLINK_IF: &str = "up0";
/// How long an agent may take to show a new uplink address.
pub const UPLINK_LIMIT: Duration = Duration::from_secs(10);

impl Bed {
    /// A bed with `daemon_args` whose host has an uplink to a world netns,
    /// its agent running and following the uplink. Returns the world
    /// netns name too.
    pub fn with_world(daemon_args: &[&str]) -> (Bed, String) {
        let bed = Bed::without_agent(daemon_args);
        let world = bed.make_world();
        bed.start_agent();
        bed.wait_uplink(UPLINK, UPLINK_LIMIT);
        (bed, world)
    }

    /// Waits (bounded by `limit`) until `status` shows uplink `up0` with
    /// `addr` and an ifindex; returns how long that took.
    pub fn wait_uplink(&self, addr: Ipv4Addr, limit: Duration) -> Duration {
        wait_for(
            &format!("status to show uplink {UPLINK_IF} with {addr}"),
            limit,
            || {
                let uplinks = self.status().uplinks;
                match uplinks.get(UPLINK_IF) {
                    Some(u) if u.address == Some(addr) && u.ifindex > 0 => Ok(()),
                    _ => Err(format!("uplinks = {uplinks:?}")),
                }
            },
        )
        .1
    }
}
