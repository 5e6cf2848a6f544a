//! The world beyond an uplink, as every test that needs one builds it: a
//! `world` netns behind the veth `up0` of the bed's host netns
//! ([`UPLINK`] on the host side, [`WORLD`] in the world, the host's
//! default route via the world), made before the agent starts so that the
//! agent finds it as its uplink.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use crate::{
    cmd::ip_ns,
    ports::{ask_from, unanswered_from, Errs, PortServer, P},
    wait::wait_for,
    Bed,
};

/// The world's address (`w0` in the world netns).
pub const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The host's address on the uplink (`up0`), what masquerade uses.
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The world's IPv6 address on `w0` ([`Bed::make_world6`]).
pub const WORLD6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x95, 0, 0, 0, 0, 1);
/// The host's global IPv6 address on the uplink, what NAT66 uses.
pub const UPLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x95, 0, 0, 0, 0, 2);
/// The uplink's name in the host netns.
pub const UPLINK_IF: &str = "up0";
/// How long an agent may take to show a new uplink address.
pub const UPLINK_LIMIT: Duration = Duration::from_secs(10);

/// `[UPLINK6]:port`.
pub fn at6(port: u16) -> SocketAddr {
    SocketAddr::new(UPLINK6.into(), port)
}

/// `UPLINK:port` (as a [`SocketAddr`], for dual-stack probes).
pub fn at4(port: u16) -> SocketAddr {
    SocketAddr::new(UPLINK.into(), port)
}

/// Routes each of `prefixes` (container IPv6 subnets) in netns `world`
/// via the host's uplink address [`UPLINK6`].
pub fn route6_via_uplink(world: &str, prefixes: &[&str]) {
    for prefix in prefixes {
        ip_ns(
            world,
            &["-6", "route", "add", prefix, "via", &UPLINK6.to_string()],
        )
        .unwrap_or_else(|e| panic!("world route to {prefix} via {UPLINK6}: {e:#}"));
    }
}

/// Published ports seen from the world of [`Bed::make_world6`]: each
/// `(proto, host address, container port)` of `reached` must be answered
/// by that port of `srv` (a dual-stack server in the container), seeing
/// the world's own address ([`WORLD6`], or [`WORLD`] as `::ffff:` over
/// IPv4); each `(proto, host address)` of `unreached` must go unanswered
/// without reaching `srv`. Panics with every failure, naming `what`.
pub fn world_reaches(
    world: &str,
    srv: &PortServer<SocketAddr>,
    reached: &[(P, SocketAddr, u16)],
    unreached: &[(P, SocketAddr)],
    what: &str,
) {
    let mut errs = Errs::default();
    for &(p, dst, port) in reached {
        let seen = if dst.is_ipv6() {
            IpAddr::from(WORLD6)
        } else {
            IpAddr::from(WORLD.to_ipv6_mapped())
        };
        let r = ask_from(world, p, dst);
        errs.answer(&format!("{p:?} world -> {dst}"), r, port, dst, &[seen]);
    }
    let hits = srv.count();
    for &(p, dst) in unreached {
        let r = unanswered_from(world, p, dst);
        errs.ok(&format!("{p:?} world -> {dst} (not published there)"), r);
    }
    errs.check(srv.count() == hits, || {
        format!("answered where not published: {:?}", &srv.hits()[hits..])
    });
    errs.done(what);
}

impl Bed {
    /// A "world" netns beyond an uplink veth: [`UPLINK_IF`] ([`UPLINK`]/24)
    /// in the host netns, `w0` ([`WORLD`]/24) in the world, and the host's
    /// default route via the world. Returns the world netns name. Made
    /// before the agent starts, it is the agent's uplink from the start
    /// ([`Bed::with_world`]); made later, [`Bed::wait_uplink`] tells when
    /// the agent follows it.
    pub fn make_world(&self) -> String {
        let world = self.new_netns("world");
        let host = self.host_ns();
        let (w, up) = (format!("{WORLD}/24"), format!("{UPLINK}/24"));
        let via = WORLD.to_string();
        let steps: &[(&str, &[&str])] = &[
            (
                host,
                &[
                    "link", "add", UPLINK_IF, "type", "veth", "peer", "name", "w0", "netns", &world,
                ],
            ),
            (&world, &["link", "set", "lo", "up"]),
            (&world, &["addr", "add", &w, "dev", "w0"]),
            (&world, &["link", "set", "w0", "up"]),
            (host, &["addr", "add", &up, "dev", UPLINK_IF]),
            (host, &["link", "set", UPLINK_IF, "up"]),
            (host, &["route", "add", "default", "via", &via]),
        ];
        for (ns, args) in steps {
            ip_ns(ns, args).unwrap_or_else(|e| panic!("building the uplink: {e:#}"));
        }
        world
    }

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

    /// [`Bed::make_world`] with IPv6 on the uplink too: [`WORLD6`] in the
    /// world, [`UPLINK6`] on `up0` (no DAD), and the host's IPv6 default
    /// route via the world. Returns the world netns name.
    pub fn make_world6(&self) -> String {
        let world = self.make_world();
        let (w6, up6) = (format!("{WORLD6}/64"), format!("{UPLINK6}/64"));
        let steps: &[(&str, &[&str])] = &[
            (&world, &["-6", "addr", "add", &w6, "dev", "w0", "nodad"]),
            (
                self.host_ns(),
                &["-6", "addr", "add", &up6, "dev", "up0", "nodad"],
            ),
            (
                self.host_ns(),
                &["-6", "route", "add", "default", "via", &WORLD6.to_string()],
            ),
        ];
        for (ns, args) in steps {
            ip_ns(ns, args).unwrap_or_else(|e| panic!("building the IPv6 uplink: {e:#}"));
        }
        world
    }

    /// Waits (bounded by `limit`) until `status` shows uplink `up0` with
    /// IPv6 masquerade address `addr`.
    pub fn wait_uplink6(&self, addr: Ipv6Addr, limit: Duration) {
        wait_for(
            &format!("status to show uplink {UPLINK_IF} with {addr}"),
            limit,
            || {
                let uplinks = self.status().uplinks;
                match uplinks.get(UPLINK_IF) {
                    Some(u) if u.address6 == Some(addr) => Ok(()),
                    _ => Err(format!("uplinks = {uplinks:?}")),
                }
            },
        );
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
